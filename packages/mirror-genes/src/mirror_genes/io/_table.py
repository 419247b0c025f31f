"""Tab/comma tables with a header (phenotypes, survival): one reader, clear errors."""

from __future__ import annotations

import csv
import io
import os
import zlib
from pathlib import Path

import pandas as pd

from .._errors import InputFileError
from ._open import TEXT_TABLE, check_readable, describe_content, open_binary


def read_text_table(path: str | os.PathLike) -> pd.DataFrame:
    """All cells as strings ('' for empty); '#' comment lines skipped; tab or comma separated."""
    p = check_readable(path)
    try:
        with open_binary(p, threaded=False) as fh:
            raw = fh.read()
    except (EOFError, zlib.error, OSError) as err:
        raise InputFileError(p, f"corrupt or truncated gzip ({err})") from None
    what = describe_content(raw[:4096])
    if what is not None:
        raise InputFileError(p, f"looks like {what}, not {TEXT_TABLE}")
    try:
        # utf-8-sig: a byte-order mark (Excel's "UTF-8 CSV") is dropped, as in every reader
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(p, "not UTF-8 text (binary file?)") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise InputFileError(p, "file is empty (no header line)")
    sep = "\t" if "\t" in lines[0] else ","
    try:
        df = pd.read_csv(io.StringIO("\n".join(lines)), sep=sep, dtype=str,
                         keep_default_na=False, quoting=csv.QUOTE_MINIMAL)
    except Exception as err:  # pandas raises several parser error types
        msg = str(err).strip().splitlines()[-1]
        raise InputFileError(p, f"cannot parse table ({msg})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def to_float(values: pd.Series) -> pd.Series:
    """Numeric parse; '' / 'NA' / junk become NaN."""
    return pd.to_numeric(values.replace({"NA": "", "NaN": "", "[Not Available]": ""}),
                         errors="coerce")


def require_unique(df: pd.DataFrame, column: str, path: Path) -> None:
    dup = df[column][df[column].duplicated()]
    if len(dup):
        raise InputFileError(path, f"duplicated {column!r} values: {', '.join(dup.unique()[:5])}")
