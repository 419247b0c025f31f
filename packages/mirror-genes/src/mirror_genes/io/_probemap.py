"""Xena probemaps (``id gene chrom chromStart chromEnd strand``)."""

from __future__ import annotations

import os

import pandas as pd

from .._errors import InputFileError
from ._open import check_readable, open_binary, read_first_line


def read_probemap(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Xena probemap (``id gene chrom chromStart chromEnd strand``).

    Parameters
    ----------
    path
        Probemap file, gzipped or not.

    Returns
    -------
    DataFrame of strings indexed by feature ``id``; column ``gene`` holds the HUGO symbol.
    """
    p = check_readable(path)
    cells = read_first_line(p).split("\t")
    if cells[0] != "id" or len(cells) < 2 or cells[1] != "gene":
        raise InputFileError(p, f"not a Xena probemap: header starts {cells[:2]!r}, expected ['id', 'gene']")
    try:
        with open_binary(p, threaded=False) as fh:
            df = pd.read_csv(fh, sep="\t", dtype=str, keep_default_na=False)
    except Exception as err:  # pandas raises several types for malformed text
        raise InputFileError(p, f"cannot parse probemap ({err})") from None
    if df["id"].duplicated().any():
        raise InputFileError(p, f"duplicated probemap ids: {df['id'][df['id'].duplicated()].iloc[0]}")
    return df.set_index("id")
