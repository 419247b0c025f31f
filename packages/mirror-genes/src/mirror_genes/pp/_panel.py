"""Restrict an AnnData to the genes of a saved panel (for projects other than the one that built it)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
from anndata import AnnData

from .. import constants as K
from .._errors import PanelError
from .._ids import is_ensembl, unversion
from .._provenance import now_utc
from ..panels._panel import Panel, load
from ._subset import subset_var

MATCH_MODES = ("auto", "var_names", "ensembl", "gene_symbol")
SYMBOL_COLUMNS = (K.GENE_SYMBOL, "gene_symbols", "gene_name", "symbol")
ENSEMBL_COLUMNS = (K.ENSEMBL_ID, "gene_ids", "gene_id")
_SHOW = 5


def _column(var, candidates) -> str | None:
    return next((c for c in candidates if c in var.columns), None)


def _strings(values) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
            for v in values]


def _strategy(adata, panel: Panel, mode: str) -> dict:
    """Requested keys, where each is found in ``adata``, and a label of the key used."""
    var = adata.var
    index: dict[str, list[int]] = {}

    def add(keys) -> None:
        for i, key in enumerate(keys):
            if key:
                positions = index.setdefault(key, [])
                if not positions or positions[-1] != i:
                    positions.append(i)

    if mode == "var_names":
        requested = list(panel.features)
        add(_strings(var.index))
        key_label, unit = "var_names", "feature"
    elif mode == "ensembl":
        requested = list(dict.fromkeys(unversion(f) for f in panel.features))
        add(unversion(k) for k in _strings(var.index))
        column = _column(var, ENSEMBL_COLUMNS)
        if column is not None:
            add(unversion(k) for k in _strings(var[column]))
        key_label = "unversioned var_names" + (f" and var[{column!r}]" if column else "")
        unit = "feature"
        if not any(is_ensembl(r) for r in requested):
            index = {}  # symbols are not Ensembl IDs: this mode cannot apply
    else:
        requested = list(panel.genes)
        column = _column(var, SYMBOL_COLUMNS)
        add(_strings(var[column]) if column is not None else _strings(var.index))
        key_label = f"var[{column!r}]" if column is not None else "var_names"
        unit = "gene"
    found = [k for k in requested if k in index]
    return {"mode": mode, "requested": requested, "index": index, "found": found,
            "missing": [k for k in requested if k not in index], "key": key_label, "unit": unit,
            "fraction": len(found) / len(requested) if requested else 0.0}


def apply_panel(adata: AnnData, panel, *, match: str = "auto",
                inplace: bool = False) -> AnnData | None:
    """Keep only the features of ``adata`` that belong to a gene panel, in panel order.

    Subsetting the variable axis replaces every per-variable array, so this follows
    ``scanpy.pp.filter_genes(..., inplace=False)``: by default a new AnnData is returned and
    ``adata`` is left untouched; ``inplace=True`` rewrites ``adata`` itself (through AnnData's
    own in-place subsetting, which also rebuilds its arrays) and returns ``None``.

    Parameters
    ----------
    adata
        Samples x features AnnData of any project.
    panel
        A :class:`mirror_genes.panels.Panel`, or a panel path / packaged name for
        :func:`mirror_genes.panels.load`.
    match
        How panel entries are found in ``adata``:

        - ``"var_names"``: panel feature IDs equal to ``var_names``;
        - ``"ensembl"``: unversioned Ensembl IDs of the panel features equal to unversioned
          ``var_names`` or ``var["ensembl_id"]`` (also ``gene_ids``/``gene_id``), so
          ``ENSG00000141510.16`` finds ``ENSG00000141510.17``;
        - ``"gene_symbol"``: the panel's gene symbols (deduplicated) equal to
          ``var["gene_symbol"]`` (else ``gene_symbols``, ``gene_name``, ``symbol``, else
          ``var_names``); every feature of a gene is kept (all transcripts on toil data);
        - ``"auto"``: the mode that finds the largest fraction of its panel entries; ties go
          to ``var_names``, then ``ensembl``, then ``gene_symbol``.
    inplace
        Subset ``adata`` itself instead of returning a new object.

    Returns
    -------
    anndata.AnnData or None
        The subset (``inplace=False``) or ``None``. Features follow the panel order (within
        one gene, ``adata``'s order). ``uns["panel"]`` records ``params`` (``match``,
        ``match_used``, the ``adata`` key used, ``inplace``), ``name``, ``n_requested``,
        ``n_found``, ``n_features``, ``missing`` (panel entries not found), ``candidates``
        (entries each mode would find), ``source`` and ``provenance_json`` (the panel's
        provenance as a JSON string).

    Raises
    ------
    PanelError
        Unknown ``match``; no panel entry found in ``adata``; an unreadable panel file.

    Warns
    -----
    UserWarning
        One line with the number and the first few of the panel entries not found.
    """
    if match not in MATCH_MODES:
        raise PanelError(f"unknown match {match!r}; choose one of {', '.join(MATCH_MODES)}")
    source = ""
    if not isinstance(panel, Panel):
        if not isinstance(panel, (str, os.PathLike)):
            raise TypeError(f"panel must be a Panel or a path, not {type(panel).__name__}")
        source = os.fspath(panel)
        panel = load(panel)
    modes = ("var_names", "ensembl", "gene_symbol") if match == "auto" else (match,)
    results = [_strategy(adata, panel, m) for m in modes]
    best = max(results, key=lambda r: r["fraction"])  # max keeps the first of ties
    candidates = {r["mode"]: len(r["found"]) for r in results}
    if not best["found"]:
        tried = ", ".join(f"{r['mode']} via {r['key']}: 0 of {len(r['requested'])}" for r in results)
        first = ", ".join(_strings(adata.var_names[:3]))
        raise PanelError(
            f"none of panel {panel.name!r}'s entries is in adata ({tried}); panel starts "
            f"{', '.join(panel.features[:3])}, adata var_names start {first}")

    positions: list[int] = []
    used: set[int] = set()
    for key in best["found"]:
        for i in best["index"][key]:
            if i not in used:
                used.add(i)
                positions.append(i)
    missing = best["missing"]
    if missing:
        more = f" and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
        warnings.warn(
            f"apply_panel: {len(missing)} of {len(best['requested'])} panel {best['unit']}s of "
            f"{panel.name!r} not found in adata (match={best['mode']!r}): "
            f"{', '.join(missing[:_SHOW])}{more}", UserWarning, stacklevel=2)

    record = {
        "params": {"match": match, "match_used": best["mode"], "adata_key": best["key"],
                   "inplace": bool(inplace)},
        "name": panel.name,
        "n_requested": len(best["requested"]),
        "n_found": len(best["found"]),
        "n_features": len(positions),
        "missing": list(missing),
        "candidates": candidates,
        "source": source,
        "provenance_json": json.dumps(panel.provenance, sort_keys=True),
        "created": now_utc(),
    }
    order = np.asarray(positions, dtype=np.int64)
    return subset_var(adata, order, K.UNS_PANEL, record, inplace)
