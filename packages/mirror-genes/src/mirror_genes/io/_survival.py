"""Survival: Xena survival tables (TCGA and GDC hubs), clinicalMatrix OS columns, cBioPortal."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .._errors import InputFileError
from ._clinical import read_phenotype
from ._table import to_float

DAYS_PER_MONTH = 365.25 / 12


def survival_from_table(df: pd.DataFrame, *, endpoint: str = "OS",
                        path: str | os.PathLike = "phenotype") -> pd.DataFrame | None:
    """``time`` (days) and ``event`` (1 = event, 0 = censored) from a parsed table, or None.

    Xena layouts carry ``<endpoint>`` and ``<endpoint>.time``; cBioPortal carries
    ``Overall Survival (Months)`` and ``Overall Survival Status`` (``1:DECEASED``).
    """
    time_col = f"{endpoint}.time"
    if endpoint in df.columns and time_col in df.columns:
        time = to_float(df[time_col])
        event = to_float(df[endpoint])
    elif endpoint == "OS" and {"Overall Survival (Months)", "Overall Survival Status"} <= set(df.columns):
        time = to_float(df["Overall Survival (Months)"]) * DAYS_PER_MONTH
        status = df["Overall Survival Status"].str.split(":").str[0]
        event = to_float(status)
    else:
        return None
    bad = event.notna() & ~event.isin([0, 1])
    if bad.any():
        raise InputFileError(path, f"{endpoint} values must be 0/1, found {sorted(event[bad].unique())[:3]}")
    neg = time < 0
    if neg.any():
        raise InputFileError(path, f"negative {endpoint} time for {int(neg.sum())} samples "
                                   f"(first: {time[neg].index[0]})")
    return pd.DataFrame({"time": time.astype(float), "event": event.astype(float)}, index=df.index)


def read_survival(path: str | os.PathLike, *, endpoint: str = "OS") -> pd.DataFrame:
    """Read survival as ``time`` (days) and ``event`` (1 = died, 0 = censored) per sample.

    Parameters
    ----------
    path
        Xena survival table (TCGA hub ``sample _PATIENT OS OS.time ...`` or GDC hub
        ``sample OS _PATIENT OS.time``), a clinicalMatrix with OS columns, or a cBioPortal
        clinical export.
    endpoint
        Xena endpoint: ``OS``, ``DSS``, ``DFI`` or ``PFI`` (cBioPortal exports: ``OS`` only).

    Returns
    -------
    DataFrame indexed by sample barcode with float ``time`` and ``event`` (NaN where unknown),
    plus ``_PATIENT``.
    """
    p = Path(path)
    df = read_phenotype(p)
    surv = survival_from_table(df, endpoint=endpoint, path=p)
    if surv is None:
        raise InputFileError(
            p, f"no {endpoint} survival columns ({endpoint!r} and '{endpoint}.time', or "
               "cBioPortal 'Overall Survival (Months)'/'Overall Survival Status')")
    surv["_PATIENT"] = df["_PATIENT"]
    if surv["time"].notna().sum() == 0:
        raise InputFileError(p, f"{endpoint}.time is empty for every sample")
    surv.attrs.update(path=str(p), endpoint=endpoint)
    return surv


__all__ = ["read_survival", "survival_from_table", "DAYS_PER_MONTH"]
