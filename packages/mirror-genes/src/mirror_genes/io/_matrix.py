"""Xena genomic matrices (features x samples) into samples x features AnnData, streamed."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from .. import _progress
from .._errors import InputFileError
from .._ids import unversion_all
from ._open import check_readable, open_binary, read_first_line
from ._probemap import read_probemap

# First header cell of each hub's genomic matrices: TCGA and toil hubs "sample", GDC "Ensembl_ID".
MATRIX_HEADER_CELLS = ("sample", "Ensembl_ID")
NULL_VALUES = ["NA", "NaN", "nan", "", "null", "NULL"]
# Small blocks bound the parser's working memory (a few blocks are in flight); a block must
# still hold whole rows, so it grows with the header width (~ one row).
_BLOCK_SIZE = 1 << 21


def read_matrix_header(path: str | os.PathLike) -> list[str]:
    """Sample IDs of a Xena matrix (its header without the first cell), validated.

    Parameters
    ----------
    path
        Matrix file, gzipped or not.

    Returns
    -------
    The sample IDs in file order.
    """
    return _header(check_readable(path))[1:]


def _header(path: Path) -> list[str]:
    cells = read_first_line(path).split("\t")
    first = cells[0].strip()
    if first not in MATRIX_HEADER_CELLS:
        hint = ""
        if first in ("sampleID", "Sample ID", "Patient ID", "Study ID"):
            hint = " (this looks like a phenotype/clinical table, not an expression matrix)"
        raise InputFileError(
            path,
            f"first header cell is {first!r}; a Xena expression matrix starts with "
            f"{' or '.join(repr(c) for c in MATRIX_HEADER_CELLS)}{hint}",
        )
    if len(cells) < 2:
        raise InputFileError(path, "header has no sample columns")
    samples = pd.Index(cells[1:])
    if (samples == "").any():
        raise InputFileError(path, f"empty sample name in header column {int(np.argmax(samples == '')) + 2}")
    dup = samples[samples.duplicated()].unique()
    if len(dup):
        raise InputFileError(
            path, f"duplicated sample columns: {', '.join(map(str, dup[:5]))}"
            + (f" and {len(dup) - 5} more" if len(dup) > 5 else ""))
    return cells


def _locate_bad_cell(path: Path, column: str, col_index: int) -> str:
    """Scan for the first non-numeric cell of a column (error path only) to name its line."""
    with open_binary(path, threaded=False) as fh:
        fh.readline()
        for lineno, raw in enumerate(fh, start=2):
            cells = raw.decode("utf-8", "replace").rstrip("\r\n").split("\t")
            if col_index >= len(cells):
                return f"line {lineno} has {len(cells)} cells, header has more"
            cell = cells[col_index]
            if cell in NULL_VALUES:
                continue
            try:
                float(cell)
            except ValueError:
                return f"non-numeric cell {cell!r} at line {lineno}, column {column!r}"
    return f"non-numeric cell in column {column!r}"


def _arrow_error(path: Path, err: Exception, names: Sequence[str]) -> InputFileError:
    msg = str(err).splitlines()[0]
    if "CSV conversion error" in msg and "column #" in msg:
        idx = int(msg.split("column #")[1].split(":")[0])
        return InputFileError(path, _locate_bad_cell(path, names[idx], idx))
    if "Expected" in msg and "columns" in msg:
        return InputFileError(path, f"ragged rows: {msg.split(': ', 1)[-1]}")
    return InputFileError(path, msg)


def read_xena_matrix(
    path: str | os.PathLike,
    *,
    samples: Iterable[str] | None = None,
    probemap: str | os.PathLike | pd.DataFrame | None = None,
    dtype=np.float32,
    progress: bool | None = None,
) -> ad.AnnData:
    """Read a Xena genomic matrix (TCGA, GDC or toil hub) as samples x features.

    The file is streamed in blocks; with ``samples`` given only those columns are converted
    and kept, so memory is proportional to the kept subset, not to the file.

    Parameters
    ----------
    path
        Matrix file, gzipped or not (detected from its content).
    samples
        Column subset to keep (sample IDs as in the header). Absent IDs are skipped and
        listed in ``adata.uns["xena_matrix"]["missing_samples"]``.
    probemap
        Xena probemap (``id gene chrom chromStart chromEnd strand``) mapping feature IDs
        (versioned Ensembl genes, or transcripts) to ``var["gene_symbol"]``.
    dtype
        Floating type of ``X``.
    progress
        Show a progress bar (default: on unless ``MIRROR_NO_PROGRESS`` is set).

    Returns
    -------
    AnnData with ``X`` (samples x features), ``var["gene_symbol"]`` and, for Ensembl IDs,
    ``var["ensembl_id"]`` (version stripped).
    """
    path = check_readable(path)
    names = _header(path)
    all_samples = names[1:]
    if samples is None:
        keep = list(all_samples)
        missing: list[str] = []
    else:
        wanted = list(dict.fromkeys(str(s) for s in samples))
        present = set(all_samples)
        keep = [s for s in all_samples if s in set(wanted)]  # file order: deterministic
        missing = [s for s in wanted if s not in present]
    arrow_type = pa.float32() if np.dtype(dtype) == np.float32 else pa.float64()
    block_size = max(_BLOCK_SIZE, 32 * sum(len(n) + 1 for n in names))
    read_opts = pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=block_size)
    parse_opts = pcsv.ParseOptions(delimiter="\t", quote_char=False)
    conv_opts = pcsv.ConvertOptions(
        column_types={names[0]: pa.string(), **{s: arrow_type for s in keep}},
        include_columns=[names[0], *keep],
        null_values=NULL_VALUES,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    value_columns = list(range(1, len(keep) + 1))
    feature_blocks: list[np.ndarray] = []
    value_blocks: list[np.ndarray] = []
    size = path.stat().st_size
    try:
        with _progress.byte_bar(f"reading {path.name}", size, progress=progress) as advance, \
                open_binary(path, on_bytes=advance) as stream:
            reader = pcsv.open_csv(stream, read_options=read_opts, parse_options=parse_opts,
                                   convert_options=conv_opts)
            for batch in reader:
                feature_blocks.append(batch.column(0).to_numpy(zero_copy_only=False))
                if keep:
                    # one C++ call per block; column-major rows x samples == samples x rows C-order
                    tensor = batch.select(value_columns).to_tensor(null_to_nan=True, row_major=False)
                    value_blocks.append(np.asarray(tensor).T)
    except pa.ArrowInvalid as err:
        raise _arrow_error(path, err, names) from None
    except (EOFError, zlib.error, OSError) as err:
        raise InputFileError(path, f"corrupt or truncated gzip ({err})") from None

    features = pd.Index(np.concatenate(feature_blocks) if feature_blocks else [], dtype=object)
    if len(features) == 0:
        raise InputFileError(path, "matrix has a header but no feature rows")
    dup = features[features.duplicated()].unique()
    if len(dup):
        raise InputFileError(
            path, f"duplicated feature rows: {', '.join(map(str, dup[:5]))}"
            + (f" and {len(dup) - 5} more" if len(dup) > 5 else ""))
    if keep:
        X = np.concatenate(value_blocks, axis=1) if len(value_blocks) > 1 else value_blocks[0]
        value_blocks.clear()
    else:
        X = np.zeros((0, len(features)), dtype=dtype)
    var = pd.DataFrame(index=features.astype(str))
    var.index.name = None
    _annotate_features(var, names[0], probemap)
    obs = pd.DataFrame(index=pd.Index(keep, dtype=str))
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["xena_matrix"] = {
        "path": str(path.resolve()),
        "header_cell": names[0],
        "n_samples_in_file": len(all_samples),
        "n_features": int(len(features)),
        "missing_samples": missing,
    }
    return adata


def _annotate_features(var: pd.DataFrame, header_cell: str, probemap) -> None:
    ids = var.index.to_numpy(dtype=object)
    looks_ensembl = len(ids) > 0 and all(str(i).startswith("ENS") for i in ids[:50])
    if probemap is not None:
        pm = probemap if isinstance(probemap, pd.DataFrame) else read_probemap(probemap)
        symbols = pm["gene"].reindex(ids)
        if symbols.isna().all():
            # versions may differ between matrix and probemap: fall back to unversioned IDs
            unversioned = pm.assign(_k=unversion_all(pm.index)).drop_duplicates("_k").set_index("_k")
            symbols = unversioned["gene"].reindex(unversion_all(ids))
        if symbols.isna().all():
            src = probemap if not isinstance(probemap, pd.DataFrame) else "probemap"
            raise InputFileError(src, "probemap matches none of the matrix's feature IDs")
        var["gene_symbol"] = pd.Series(symbols.to_numpy(), index=var.index).fillna("").astype(str)
    elif looks_ensembl:
        var["gene_symbol"] = ""
    else:
        var["gene_symbol"] = var.index.astype(str)
    if looks_ensembl:
        var["ensembl_id"] = unversion_all(ids)
