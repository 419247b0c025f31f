"""COSMIC Cancer Gene Census (CGC) reader: current and older layouts, CSV or TSV."""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zlib

import pandas as pd

from .._errors import InputFileError
from .._provenance import file_record
from ._open import GZIP_MAGIC, check_readable, describe_content

# Normalised output column -> accepted header spellings, compared after lower-casing and
# dropping everything that is not a letter or digit ("Tumour Types (Somatic)" ->
# "tumourtypessomatic"). The first alias present in the header wins.
_ALIASES: dict[str, tuple[str, ...]] = {
    "gene_symbol": ("genesymbol", "hugosymbol"),
    "name": ("name", "genename"),
    "entrez_id": ("entrezgeneid", "entrezgene", "entrezid", "geneid"),
    "tier": ("tier",),
    "tumour_types_somatic": ("tumourtypessomatic", "tumortypessomatic",
                             "tumourtypessomaticmutations", "tumortypessomaticmutations"),
    "tumour_types_germline": ("tumourtypesgermline", "tumortypesgermline",
                              "tumourtypesgermlinemutations", "tumortypesgermlinemutations"),
    "role_in_cancer": ("roleincancer",),
    "synonyms": ("synonyms",),
}
# How the current CGC spells the columns, for error messages.
_CANONICAL_HEADER = {
    "gene_symbol": "Gene Symbol",
    "tumour_types_somatic": "Tumour Types(Somatic)",
}
_REQUIRED = ("gene_symbol", "tumour_types_somatic")
_LIST_COLUMNS = ("tumour_types_somatic", "tumour_types_germline", "role_in_cancer", "synonyms")

COLUMNS = ("gene_symbol", "name", "tier", "tumour_types_somatic", "tumour_types_germline",
           "role_in_cancer", "synonyms", "ensembl_ids", "entrez_id")

_ENSG_RE = re.compile(r"^ENSG\d{6,}(\.\d+)?$")


def _norm(header_cell: str) -> str:
    return re.sub(r"[^0-9a-z]", "", header_cell.lower())


def _split_list(cell: str) -> list[str]:
    return [item.strip() for item in cell.split(",") if item.strip()]


def _read_text(path) -> str:
    # The census is small (about 1 MB): read it whole; gzip is told by its magic bytes.
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise InputFileError(path, f"cannot be read ({err})") from None
    what = describe_content(raw[:4096])
    if what is not None:  # e.g. the census saved from Excel as .xlsx, or a login page
        raise InputFileError(path, f"looks like {what}, not a COSMIC Cancer Gene Census CSV")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Older COSMIC exports were Latin-1; latin-1 never fails, and a binary file then
        # fails the header check below with a clear message.
        return raw.decode("latin-1")


def _to_int(path, row: int, column: str, value: str, *, strict: bool):
    value = value.strip()
    if not value:
        return pd.NA
    try:
        number = float(value)
        if number.is_integer():
            return int(number)
    except ValueError:
        pass
    if strict:
        raise InputFileError(path, f"data row {row}: {column} {value!r} is not an integer")
    return pd.NA


def read_cgc(path: str | os.PathLike) -> pd.DataFrame:
    """Read a COSMIC Cancer Gene Census export into a normalised table.

    Accepts the current layout (``Gene Symbol,Name,Entrez GeneId,Genome Location,Tier,
    Hallmark,...,Synonyms``) and older releases (no ``Tier``/``Hallmark``, headers such as
    ``Tumour Types (Somatic)`` or ``Tumour Types  (Somatic Mutations)``), comma- or
    tab-separated, optionally gzipped, with or without a UTF-8 byte-order mark. Header
    names are compared ignoring case, spaces and punctuation.

    Parameters
    ----------
    path
        The user-supplied CGC file (COSMIC licence terms forbid shipping it).

    Returns
    -------
    pandas.DataFrame
        One row per gene, in file order, with columns ``gene_symbol`` (str), ``name`` (str),
        ``tier`` (``Int64``; NA for older layouts without tiers), ``tumour_types_somatic``,
        ``tumour_types_germline``, ``role_in_cancer``, ``synonyms`` (lists of stripped
        strings, empty when the column is absent), ``ensembl_ids`` (unversioned ``ENSG`` IDs
        found among the synonyms) and ``entrez_id`` (``Int64``). ``DataFrame.attrs["cgc_source"]``
        holds the file's path, size, sha256, layout (``"tiered"`` or ``"legacy"``) and
        delimiter, for provenance records.

    Raises
    ------
    InputFileError
        Missing, unreadable or empty file; a header without the ``Gene Symbol`` or
        ``Tumour Types(Somatic)`` columns (the message names the missing ones); malformed
        rows; a non-integer tier; a row without a gene symbol; a duplicated gene symbol.
    """
    p = check_readable(path)
    text = _read_text(p)
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    if not header_line:
        raise InputFileError(p, "file is empty (no header line)")
    sep = "\t" if header_line.count("\t") > header_line.count(",") else ","
    try:
        records = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=sep)
                   if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise InputFileError(p, f"malformed CGC table ({err})") from None
    header = [cell.strip() for cell in records[0]]
    width = len(header)
    for number, row in enumerate(records[1:], start=1):
        if len(row) > width and any(cell.strip() for cell in row[width:]):
            raise InputFileError(
                p, f"data row {number} has {len(row)} cells but the header has {width} "
                "(unquoted comma inside a cell?)")
    body = [[cell.strip() for cell in (row + [""] * width)[:width]] for row in records[1:]]

    position: dict[str, int] = {}
    for i, cell in enumerate(header):
        position.setdefault(_norm(cell), i)
    found: dict[str, int] = {}
    for target, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in position:
                found[target] = position[alias]
                break
    missing = [name for name in _REQUIRED if name not in found]
    if missing:
        shown = ", ".join(repr(c) for c in header[:6])
        more = f" ... ({width} columns)" if width > 6 else ""
        raise InputFileError(
            p, "not a COSMIC Cancer Gene Census file: missing column(s) "
            + ", ".join(repr(_CANONICAL_HEADER[m]) for m in missing)
            + f"; header is {shown}{more}")
    if not body:
        raise InputFileError(p, "CGC file has a header but no gene rows")

    def column(name: str) -> list[str]:
        return [row[found[name]] for row in body] if name in found else [""] * len(body)

    symbols = column("gene_symbol")
    rows = list(range(1, len(body) + 1))  # 1-based data row numbers (blank rows skipped)
    empty = [r for r, s in zip(rows, symbols) if not s]
    if empty:
        raise InputFileError(p, f"data row {empty[0]} has no gene symbol")
    seen: dict[str, int] = {}
    for r, s in zip(rows, symbols):
        if s in seen:
            raise InputFileError(p, f"gene symbol {s!r} appears twice (data rows {seen[s]} and {r})")
        seen[s] = r

    out = pd.DataFrame({"gene_symbol": symbols, "name": column("name")})
    out["tier"] = pd.array(
        [_to_int(p, r, "Tier", v, strict=True) for r, v in zip(rows, column("tier"))], dtype="Int64")
    for name in _LIST_COLUMNS:
        out[name] = [_split_list(v) for v in column(name)]
    out["ensembl_ids"] = [
        list(dict.fromkeys(s.split(".", 1)[0] for s in syn if _ENSG_RE.match(s)))
        for syn in out["synonyms"]]
    out["entrez_id"] = pd.array(
        [_to_int(p, r, "Entrez GeneId", v, strict=False) for r, v in zip(rows, column("entrez_id"))],
        dtype="Int64")
    out = out.loc[:, list(COLUMNS)]
    record = file_record(p, "cosmic_cgc")
    record.update({"layout": "tiered" if "tier" in found else "legacy",
                   "delimiter": "tab" if sep == "\t" else "comma",
                   "n_genes": int(len(out))})
    out.attrs["cgc_source"] = record
    return out
