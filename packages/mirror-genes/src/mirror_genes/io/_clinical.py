"""Phenotype tables: Xena clinicalMatrix, GDC-hub clinical, cBioPortal clinical exports."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .._errors import InputFileError
from ._table import read_text_table, require_unique

# Sample-ID column of each layout, in detection order.
_SAMPLE_COLUMNS = {
    "sampleID": "xena_clinical_matrix",  # TCGA hub clinicalMatrix
    "Sample ID": "cbioportal",  # cBioPortal clinical export
    "SAMPLE_ID": "cbioportal",  # cBioPortal data_clinical_sample.txt
    "sample": "gdc_clinical",  # GDC hub clinical / survival-like tables
    "submitter_id.samples": "gdc_clinical",  # older GDC hub phenotype
}
SAMPLE_ID_COLUMNS = tuple(_SAMPLE_COLUMNS)


def read_phenotype(path: str | os.PathLike) -> pd.DataFrame:
    """Read a phenotype table keyed by sample barcode.

    Layouts are detected from the header: Xena ``clinicalMatrix`` (first column ``sampleID``),
    GDC-hub clinical tables (``sample``), cBioPortal clinical exports (``Sample ID``).

    Parameters
    ----------
    path
        Phenotype file, gzipped or not.

    Returns
    -------
    DataFrame of strings indexed by sample barcode, with ``attrs["layout"]`` and
    ``attrs["path"]``; a ``_PATIENT`` column is added when the file has none.
    """
    p = Path(path)
    df = read_text_table(p)
    column = next((c for c in _SAMPLE_COLUMNS if c in df.columns), None)
    if column is None:
        raise InputFileError(
            p, f"no sample-ID column (expected one of {', '.join(map(repr, _SAMPLE_COLUMNS))}); "
            f"header starts {list(df.columns[:3])!r}")
    df = df[df[column].str.strip() != ""]
    require_unique(df, column, p)
    layout = _SAMPLE_COLUMNS[column]
    df = df.set_index(column)
    df.index = df.index.str.strip()
    df.index.name = "sample"
    if "_PATIENT" not in df.columns:
        patient_col = next((c for c in ("Patient ID", "PATIENT_ID") if c in df.columns), None)
        df["_PATIENT"] = df[patient_col] if patient_col else df.index.str[:12]
    df.attrs.update(layout=layout, path=str(p))
    return df
