"""Per-patient predictions in one tidy table, and every metric recomputed from it.

Columns (exactly, in this order): ``method, task, protocol, modalities, fold, seed,
patient_id, label, prediction, risk, time, event``; a cell that does not apply is empty.

- subtyping: ``label`` true class, ``prediction`` predicted class, ``risk`` the class
  probabilities as ``class=p;class=p`` (sorted class order, 6 significant digits: AUC needs
  them), ``time``/``event`` empty;
- survival: ``label`` the patient's time bin (edges fitted on the training fold),
  ``prediction`` the risk group ``high``/``low`` (split at the median risk of the training
  fold), ``risk`` the float ``-sum(S)``, ``time`` and ``event`` (1 = event observed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from mirror_genes.constants import EVENT, LABEL, PATIENT_ID, TIME
from mirror_genes.utils import InputFileError, atomic_path

from .._errors import EvaluationError
from ._inputs import SUBTYPING, SURVIVAL, _few
from ._metrics import subtyping_metrics, survival_metrics

RUN_KEYS = ["method", "task", "protocol", "modalities", "fold", "seed"]
GROUP_KEYS = ["method", "task", "protocol", "modalities", "seed"]
PREDICTION_COLUMNS = RUN_KEYS + [PATIENT_ID, LABEL, "prediction", "risk", TIME, EVENT]
METRIC_COLUMNS = RUN_KEYS + ["metric", "value"]
HIGH, LOW = "high", "low"


def encode_proba(proba: np.ndarray, classes) -> list[str]:
    """``class=p;class=p`` strings (6 significant digits), one per row of ``proba``."""
    return [";".join(f"{c}={p:.6g}" for c, p in zip(classes, row, strict=True)) for row in np.asarray(proba)]


def decode_proba(cells) -> tuple[np.ndarray, list[str]]:
    """Inverse of :func:`encode_proba`: (probabilities (n, n_classes), class names)."""
    pairs = [[item.rpartition("=") for item in str(cell).split(";")] for cell in cells]
    classes = [name for name, _, _ in pairs[0]]
    if any([name for name, _, _ in row] != classes for row in pairs):
        raise EvaluationError("subtyping rows of one run list different classes in 'risk'")
    return np.array([[float(v) for _, _, v in row] for row in pairs], dtype=np.float64), classes


def subtyping_rows(keys: dict, patients, labels, predicted, proba, classes) -> pd.DataFrame:
    """Prediction rows of one subtyping run (``keys``: the RUN_KEYS values)."""
    n = len(patients)
    return _frame(keys, patients, np.asarray(labels).astype(str), np.asarray(predicted).astype(str),
                  np.array(encode_proba(proba, classes), dtype=object), np.full(n, np.nan), np.full(n, np.nan))


def survival_rows(keys: dict, patients, bins, risk, threshold: float, time, event) -> pd.DataFrame:
    """Prediction rows of one survival run; ``threshold``: the training-fold median risk."""
    risk = np.asarray(risk, dtype=np.float64)
    group = np.where(risk > threshold, HIGH, LOW)
    return _frame(keys, patients, np.asarray(bins).astype(str), group, risk.astype(object), time, event)


def _frame(keys, patients, label, prediction, risk, time, event) -> pd.DataFrame:
    n = len(patients)
    df = pd.DataFrame({k: [keys[k]] * n for k in RUN_KEYS})
    df[PATIENT_ID] = np.asarray(patients).astype(str)
    df[LABEL], df["prediction"], df["risk"] = label, prediction, risk
    df[TIME] = np.asarray(time, dtype=np.float64)
    df[EVENT] = pd.array(np.where(np.isnan(np.asarray(event, dtype=float)), pd.NA, event), dtype="Int64")
    return df.astype({"fold": np.int64, "seed": np.int64})


def class_probabilities(predictions: pd.DataFrame) -> pd.DataFrame:
    """Class probabilities of subtyping rows, parsed from ``risk``.

    Parameters
    ----------
    predictions
        A predictions table (subtyping rows of one class set).

    Returns
    -------
    Patients x classes frame, same index as the subtyping rows.
    """
    rows = predictions[predictions["task"] == SUBTYPING]
    proba, classes = decode_proba(rows["risk"])
    return pd.DataFrame(proba, index=rows.index, columns=classes)


def metrics_from_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Every fold-level metric, computed from the per-patient predictions.

    Parameters
    ----------
    predictions
        Table with :data:`PREDICTION_COLUMNS` (in memory or from :func:`read_predictions`).

    Returns
    -------
    Long table ``method, task, protocol, modalities, fold, seed, metric, value``, one row per
    run and metric. The probes report exactly this, so the CSV reproduces every number.
    """
    rows = []
    for keys, g in predictions.groupby(RUN_KEYS, sort=False):
        task = keys[1]
        if task == SUBTYPING:
            proba, classes = decode_proba(g["risk"])
            values = subtyping_metrics(g[LABEL], g["prediction"], proba=proba, classes=classes)
        elif task == SURVIVAL:
            values = survival_metrics(g[TIME].to_numpy(float), g[EVENT].to_numpy(float),
                                      g["risk"].to_numpy(float))
        else:
            raise EvaluationError(f"unknown task {task!r} in predictions")
        rows += [(*keys, name, value) for name, value in values.items()]
    return pd.DataFrame(rows, columns=METRIC_COLUMNS).astype({"fold": np.int64, "seed": np.int64})


def check_predictions(predictions: pd.DataFrame, folds) -> int:
    """Check that every validation patient of every fold appears exactly once per run group.

    Parameters
    ----------
    predictions
        A predictions table.
    folds
        (train patients, val patients) per fold, as ``mirror_genes.splits.read_splits`` returns.

    Returns
    -------
    Number of (method, task, protocol, modalities, seed) groups checked; a missing, extra or
    repeated patient raises :class:`EvaluationError`.
    """
    for keys, g in predictions.groupby(GROUP_KEYS, sort=False):
        for k, (_, val) in enumerate(folds):
            got = g.loc[g["fold"] == k, PATIENT_ID].astype(str)
            dup = sorted(set(got[got.duplicated()]))
            missing, extra = sorted(set(map(str, val)) - set(got)), sorted(set(got) - set(map(str, val)))
            for what, names in (("repeated", dup), ("missing", missing), ("not in its validation fold", extra)):
                if names:
                    raise EvaluationError(f"{'/'.join(map(str, keys))} fold {k}: {len(names)} patient(s) "
                                          f"{what} (e.g. {_few(names)})")
        if set(g["fold"]) - set(range(len(folds))):
            raise EvaluationError(f"{'/'.join(map(str, keys))}: predictions for folds beyond the {len(folds)} given")
    return predictions.groupby(GROUP_KEYS).ngroups


def write_predictions(predictions: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``predictions.csv`` atomically (exact columns, empty cells where not applicable).

    Parameters
    ----------
    predictions
        A predictions table.
    path
        Output file.

    Returns
    -------
    The written path.
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise EvaluationError(f"predictions lack column(s) {missing}")
    path = Path(path)
    with atomic_path(path) as tmp:
        predictions[PREDICTION_COLUMNS].to_csv(tmp, index=False, na_rep="")
    return path


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``predictions.csv`` back with the in-memory types.

    Parameters
    ----------
    path
        File written by :func:`write_predictions`.

    Returns
    -------
    Table with :data:`PREDICTION_COLUMNS`: ``risk`` float on survival rows and the
    probability string on subtyping rows; ``time`` float and ``event`` Int64 (NA on subtyping).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputFileError(path, f"cannot read predictions ({str(err).splitlines()[0]})") from None
    if list(df.columns) != PREDICTION_COLUMNS:
        raise InputFileError(path, f"columns are {list(df.columns)}; expected {PREDICTION_COLUMNS}")
    df = df.astype({"fold": np.int64, "seed": np.int64})
    surv = df["task"] == SURVIVAL
    df["risk"] = df["risk"].astype(object)
    df.loc[surv, "risk"] = df.loc[surv, "risk"].astype(float)
    # empty cells (classification rows) become NaN / <NA>; errors="coerce" is not used, so a
    # malformed number still fails loudly
    df[TIME] = pd.to_numeric(df[TIME].mask(df[TIME] == ""))
    df[EVENT] = pd.to_numeric(df[EVENT].mask(df[EVENT] == "")).astype("Int64")
    return df
