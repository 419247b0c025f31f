"""COSMIC Cancer Gene Census curation: flag the features of the cohort's cancer genes."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import constants as K
from .._errors import CohortError, SelectionError
from .._ids import is_ensembl, unversion
from .._provenance import now_utc, versions
from ..cohorts import CohortPreset, get_preset
from ..io._cgc import read_cgc

TUMOUR_TYPE_RULE = (
    "case-insensitive; an entry of 'Tumour Types(Somatic)' or 'Tumour Types(Germline)' "
    "matches a keyword when the keyword's words occur in the entry as a contiguous run of "
    "whole words (words are runs of letters/digits joined by hyphens)"
)
# A word: letters or digits, possibly joined by hyphens ("non-small", "B-ALL", "MLL-AF4").
# Everything else (spaces, commas, slashes, brackets, apostrophes) separates words.
_WORD_RE = re.compile(r"[^\W_]+(?:-[^\W_]+)*")


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD_RE.findall(str(text).casefold()))


def _contains_run(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    if n == 0 or n > len(haystack):
        return False
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def tumour_type_matches(entry: str, keyword: str) -> bool:
    """Whether one CGC tumour-type entry matches one cohort keyword.

    The rule: comparison ignores case; the entry matches when the keyword's words occur in it
    as a contiguous run of whole words. Words are runs of letters and digits, joined by
    hyphens; spaces, punctuation and apostrophes separate words. Hence ``breast`` matches
    ``lobular breast``; ``lung`` matches ``lung SCC``; ``Hodgkin`` matches
    ``Hodgkin's lymphoma`` but not ``non-Hodgkin lymphoma``; ``SCLC`` does not match
    ``NSCLC``; ``small cell lung`` does not match ``non-small cell lung cancer``; and
    ``lobular breast`` does not match plain ``breast``.

    Parameters
    ----------
    entry
        One item of a CGC ``Tumour Types`` list (already split at commas).
    keyword
        One tumour-type keyword.

    Returns
    -------
    bool
    """
    return _contains_run(_words(entry), _words(keyword))


def _as_list(cell) -> list[str]:
    if cell is None:
        return []
    if isinstance(cell, str):
        return [item.strip() for item in cell.split(",") if item.strip()]
    if isinstance(cell, float) and np.isnan(cell):
        return []
    try:
        return [str(item).strip() for item in cell if str(item).strip()]
    except TypeError:
        return [str(cell).strip()] if str(cell).strip() else []


def _as_table(cgc) -> tuple[pd.DataFrame, dict]:
    if isinstance(cgc, (str, os.PathLike)):
        table = read_cgc(cgc)
    elif isinstance(cgc, pd.DataFrame):
        table = cgc
    else:
        raise TypeError(f"cgc must be a DataFrame from read_cgc or a path, not {type(cgc).__name__}")
    missing = [c for c in ("gene_symbol", "tumour_types_somatic") if c not in table.columns]
    if missing:
        raise SelectionError(
            f"CGC table lacks column(s) {', '.join(missing)}; read the census with "
            "mirror_genes.io.read_cgc")
    out = pd.DataFrame({"gene_symbol": table["gene_symbol"].astype(str).str.strip().to_numpy()})
    if (out["gene_symbol"] == "").any():
        raise SelectionError("CGC table has a row without a gene symbol")
    dup = out["gene_symbol"][out["gene_symbol"].duplicated()]
    if len(dup):
        raise SelectionError(f"CGC table lists gene {dup.iloc[0]!r} twice")
    tier = table["tier"] if "tier" in table.columns else pd.Series(pd.NA, index=table.index)
    numeric = pd.to_numeric(pd.Series(tier).astype(object), errors="coerce").tolist()
    out["tier"] = pd.array(
        [int(v) if pd.notna(v) and float(v).is_integer() else pd.NA for v in numeric], dtype="Int64")
    for column in ("tumour_types_somatic", "tumour_types_germline", "synonyms", "ensembl_ids"):
        values = table[column].tolist() if column in table.columns else [None] * len(table)
        out[column] = [_as_list(v) for v in values]
    # Ensembl gene IDs: the given column plus any ENSG listed among the synonyms, unversioned.
    out["ensembl_ids"] = [
        list(dict.fromkeys(unversion(s) for s in list(ids) + list(syn) if s.startswith("ENSG")))
        for ids, syn in zip(out["ensembl_ids"], out["synonyms"])]
    source = dict(table.attrs.get("cgc_source") or {})
    if not source:
        source = {"role": "cosmic_cgc", "path": "", "name": "", "size": 0, "sha256": "",
                  "note": "DataFrame passed without file provenance"}
    return out, {k: (v if isinstance(v, (str, int, float, bool)) else str(v)) for k, v in source.items()}


def _keywords(adata, tumour_types) -> tuple[list[str], str]:
    if isinstance(tumour_types, CohortPreset):
        return list(tumour_types.cosmic_keywords), f"cohort preset {tumour_types.name!r}"
    if tumour_types is None:
        meta = adata.uns.get(K.UNS_INGEST, {}) if hasattr(adata.uns, "get") else {}
        params = meta.get("params", {}) if isinstance(meta, dict) else {}
        cohort = params.get("cohort") if isinstance(params, dict) else None
        if cohort is None or str(cohort) == "":
            raise SelectionError(
                "no tumour types to curate the CGC with: pass tumour_types=[...] (e.g. "
                "['breast']); adata.uns['mirror_genes']['params']['cohort'] is not set")
        try:
            preset = get_preset(str(cohort))
        except CohortError as err:
            raise SelectionError(f"{err}; pass tumour_types=[...] instead") from None
        return list(preset.cosmic_keywords), f"cohort preset {preset.name!r}"
    if isinstance(tumour_types, str):
        tumour_types = [tumour_types]
    keywords = list(dict.fromkeys(str(t).strip() for t in tumour_types if str(t).strip()))
    if not keywords:
        raise SelectionError("tumour_types is empty: pass at least one CGC tumour-type keyword")
    if not any(_words(k) for k in keywords):
        raise SelectionError(f"tumour_types {keywords!r} hold no letters or digits")
    return keywords, "argument"


def _tiers(tiers) -> list[int] | None:
    if tiers is None:
        return None
    if isinstance(tiers, (int, np.integer)):
        tiers = [tiers]
    try:
        out = sorted({int(t) for t in tiers})
    except (TypeError, ValueError):
        raise SelectionError(f"tiers must be integers such as (1, 2) or None, not {tiers!r}") from None
    if not out:
        raise SelectionError("tiers is empty: pass e.g. (1, 2), or None for every tier")
    return out


def _positions(keys: Sequence[str]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            index.setdefault(key, []).append(i)
    return index


def cgc_curate(
    adata: AnnData,
    cgc,
    *,
    tumour_types: str | Iterable[str] | CohortPreset | None = None,
    tiers: Iterable[int] | int | None = (1, 2),
    key_added: str = K.UNS_CGC,
    copy: bool = False,
) -> AnnData | None:
    """Flag the features of the COSMIC Cancer Gene Census genes of a cancer type.

    CGC genes are kept when their tier is in ``tiers`` and one of their somatic or germline
    tumour-type entries matches a keyword (see :func:`tumour_type_matches`). Each kept gene
    then claims features, in three passes of decreasing confidence; a feature is claimed at
    most once and a gene found by an earlier pass is not looked up again:

    1. ``symbol``: every feature whose ``var["gene_symbol"]`` (``var_names`` when that column
       is absent) equals the CGC symbol, so all transcripts of the gene on toil data;
    2. ``ensembl``: every feature whose ``var["ensembl_id"]`` or unversioned ``var_name`` is
       one of the Ensembl gene IDs listed among the gene's CGC synonyms;
    3. ``synonym``: every feature whose symbol equals one of the gene's CGC synonyms, unless
       that synonym is itself a CGC gene symbol or a synonym of another kept gene.

    Parameters
    ----------
    adata
        Samples x features AnnData (conventions of ``mirror_genes.io.read_xena_matrix``).
    cgc
        Table from :func:`mirror_genes.io.read_cgc`, or the path of the census file.
    tumour_types
        Tumour-type keywords, or a cohort preset (its ``cosmic_keywords``). Default: the
        preset named in ``adata.uns["mirror_genes"]["params"]["cohort"]``.
    tiers
        CGC tiers to keep; ``None`` keeps every tier. Census releases without a ``Tier``
        column cannot be filtered: all their genes are kept, with a warning.
    key_added
        Prefix of the written ``var`` columns and key of the ``uns`` record.
    copy
        Return a curated copy instead of writing into ``adata``.

    Returns
    -------
    anndata.AnnData or None
        The curated copy when ``copy=True``, else ``None``. Writes
        ``var[f"{key_added}_member"]`` (bool), ``var[f"{key_added}_gene"]`` (claiming CGC
        symbol, ``""`` for other features), ``var[f"{key_added}_tumour_types"]`` (the claiming
        gene's tumour-type entries that matched, comma-joined) and ``uns[key_added]`` with
        ``params``, ``matched_genes``, ``unmatched_genes`` (kept genes with no feature),
        ``n_features``, ``match_kind`` (number of genes found by each pass),
        ``matched_tumour_types``, ``synonym_matches`` (``"CGC:feature symbol"``), source
        checksum and versions.

    Raises
    ------
    SelectionError
        No ``tumour_types`` given and no cohort recorded in ``adata.uns``; empty keywords or
        tiers; a CGC table without the needed columns.
    InputFileError
        ``cgc`` is a path that cannot be read as a census.

    Warns
    -----
    UserWarning
        When nothing is flagged (no tumour-type hit, or no feature hit), and when a census
        without tiers is filtered by tier.
    """
    if copy:
        adata = adata.copy()
    table, source = _as_table(cgc)
    keywords, keyword_source = _keywords(adata, tumour_types)
    tier_list = _tiers(tiers)
    key = str(key_added)
    if not key:
        raise SelectionError("key_added must be a non-empty string")
    tier_ok, tier_applied = _tier_mask(table, tier_list)
    selected, gene_types = _select_genes(table, tier_ok, keywords)
    genes = table["gene_symbol"].tolist()
    claimed, kind_of, synonym_matches = _claim_features(adata.var, table, selected)
    selected_genes = [genes[r] for r in selected]
    matched = [g for g in selected_genes if g in kind_of]
    _warn_if_empty(adata, key, keywords, tier_list, selected, matched)

    member = claimed != ""
    types_of_gene = {genes[r]: ", ".join(gene_types[r]) for r in selected}
    adata.var[f"{key}_member"] = member
    adata.var[f"{key}_gene"] = pd.Series(claimed.astype(str), index=adata.var.index, dtype=object)
    adata.var[f"{key}_tumour_types"] = pd.Series(
        [types_of_gene.get(g, "") for g in claimed], index=adata.var.index, dtype=object)
    matched_entries = dict.fromkeys(e for r in selected for e in gene_types[r])
    adata.uns[key] = {
        "params": {
            "tumour_types": list(keywords),
            "tumour_types_source": keyword_source,
            "tumour_type_rule": TUMOUR_TYPE_RULE,
            "tiers": list(tier_list) if tier_list is not None else "all",
            "tier_filter_applied": bool(tier_applied),
            "key_added": key,
            "cgc_source": source,
        },
        "n_cgc_genes": int(len(table)),
        "n_selected_genes": int(len(selected)),
        "matched_tumour_types": list(matched_entries),
        "matched_genes": matched,
        "unmatched_genes": [g for g in selected_genes if g not in kind_of],
        "n_features": int(member.sum()),
        "match_kind": {kind: sum(1 for g in matched if kind_of[g] == kind)
                       for kind in ("symbol", "ensembl", "synonym")},
        "synonym_matches": synonym_matches,
        "created": now_utc(),
        "versions": versions(),
    }
    return adata if copy else None


def _tier_mask(table: pd.DataFrame, tier_list: list[int] | None) -> tuple[np.ndarray, bool]:
    """Rows whose tier passes, and whether a tier filter was applied at all."""
    if tier_list is None:
        return np.ones(len(table), dtype=bool), False
    if len(table) and table["tier"].isna().all():
        warnings.warn(
            f"cgc_curate: the census has no Tier column (older release); tier filter "
            f"{tuple(tier_list)} not applied, every gene kept", UserWarning, stacklevel=3)
        return np.ones(len(table), dtype=bool), False
    return table["tier"].isin(tier_list).fillna(False).to_numpy(dtype=bool), True


def _select_genes(table: pd.DataFrame, tier_ok: np.ndarray,
                  keywords: list[str]) -> tuple[list[int], dict[int, list[str]]]:
    """Rows of the CGC genes of the cancer type, and each one's matching tumour-type entries."""
    keyword_words = [w for w in (_words(k) for k in keywords) if w]
    entry_hits: dict[str, bool] = {}  # the same entries recur across hundreds of rows
    selected: list[int] = []
    gene_types: dict[int, list[str]] = {}
    rows = zip(tier_ok, table["tumour_types_somatic"], table["tumour_types_germline"])
    for row, (ok, somatic, germline) in enumerate(rows):
        if not ok:
            continue
        hits = []
        for entry in list(somatic) + list(germline):
            if entry not in entry_hits:
                words = _words(entry)
                entry_hits[entry] = any(_contains_run(words, kw) for kw in keyword_words)
            if entry_hits[entry] and entry not in hits:
                hits.append(entry)
        if hits:
            selected.append(row)
            gene_types[row] = hits
    return selected, gene_types


def _feature_keys(var: pd.DataFrame) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Feature positions by gene symbol and by unversioned Ensembl gene ID."""
    symbols = (var[K.GENE_SYMBOL] if K.GENE_SYMBOL in var.columns
               else pd.Series(var.index, index=var.index))
    symbols = symbols.astype(object).where(symbols.notna(), "").astype(str).str.strip().tolist()
    by_ensembl: dict[str, list[int]] = {}
    names = [unversion(str(v)) for v in var.index]
    extra = (var[K.ENSEMBL_ID].astype(object).where(var[K.ENSEMBL_ID].notna(), "").astype(str)
             if K.ENSEMBL_ID in var.columns else [""] * len(names))
    for i, (a, b) in enumerate(zip(names, extra)):
        for k in dict.fromkeys((a, unversion(b.strip()))):
            if k and is_ensembl(k):
                by_ensembl.setdefault(k, []).append(i)
    return _positions(symbols), by_ensembl


def _claim_features(var: pd.DataFrame, table: pd.DataFrame,
                    selected: list[int]) -> tuple[np.ndarray, dict[str, str], list[str]]:
    """The CGC symbol claiming each feature (``""``: none), each gene's pass, synonym hits."""
    by_symbol, by_ensembl = _feature_keys(var)
    genes = table["gene_symbol"].tolist()
    claimed = np.full(len(var), "", dtype=object)
    kind_of: dict[str, str] = {}

    def claim(gene: str, positions: Iterable[int], kind: str) -> bool:
        free = [i for i in positions if claimed[i] == ""]
        if free:
            claimed[free] = gene
            kind_of.setdefault(gene, kind)
        return bool(free)

    for r in selected:
        claim(genes[r], by_symbol.get(genes[r], []), "symbol")
    for r in selected:
        if genes[r] not in kind_of:
            ids = table["ensembl_ids"].iloc[r]
            claim(genes[r], [i for e in ids for i in by_ensembl.get(e, [])], "ensembl")
    # Synonym fallback: a synonym that is another CGC symbol, or that two kept genes share,
    # is ambiguous and never used.
    all_symbols = set(genes)
    synonym_owners: dict[str, int] = {}
    for r in selected:
        for s in set(table["synonyms"].iloc[r]):
            synonym_owners[s] = synonym_owners.get(s, 0) + 1
    synonym_matches: list[str] = []
    for r in selected:
        if genes[r] in kind_of:
            continue
        for s in table["synonyms"].iloc[r]:
            if s in all_symbols or synonym_owners.get(s, 0) > 1 or is_ensembl(s):
                continue
            if claim(genes[r], by_symbol.get(s, []), "synonym"):
                synonym_matches.append(f"{genes[r]}:{s}")
    return claimed, kind_of, synonym_matches


def _warn_if_empty(adata: AnnData, key: str, keywords: list[str], tier_list, selected: list,
                   matched: list) -> None:
    if not selected:
        warnings.warn(
            f"cgc_curate: no CGC gene{'' if tier_list is None else f' of tier {tuple(tier_list)}'} "
            f"has a tumour type matching {keywords}; var['{key}_member'] is all False",
            UserWarning, stacklevel=3)
    elif not matched:
        first = ", ".join(map(str, list(adata.var.index[:3])))
        warnings.warn(
            f"cgc_curate: none of the {len(selected)} selected CGC genes matches a feature of "
            f"adata (var_names start {first}); var['{key}_member'] is all False",
            UserWarning, stacklevel=3)
