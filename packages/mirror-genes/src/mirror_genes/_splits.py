"""Patient-level cross-validation splits, in the reference ``splits_<k>.csv`` layout."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._atomic import atomic_path
from ._errors import InputFileError, SelectionError

_SPLIT_FILE = re.compile(r"^splits_(\d+)\.csv$")


def make_splits(labels, patients, n_splits: int, *, random_state: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds in which every patient's samples fall on one side.

    Parameters
    ----------
    labels
        Class label per sample (stratification).
    patients
        Patient ID per sample (grouping: a patient never straddles a fold).
    n_splits
        Number of folds, at least 2.
    random_state
        Seed of the shuffle.

    Returns
    -------
    (train_idx, val_idx) per fold, sorted indices into the given arrays.
    """
    # Strings, so that scikit-learn sees a class target whatever the label dtype (object arrays of
    # ints read as an "unknown" target type).
    labels = np.asarray([str(v) for v in labels], dtype=object)
    patients = np.asarray(patients, dtype=object)
    counts = pd.Series(labels).value_counts()
    if len(counts) < 2:
        raise SelectionError(f"need at least two classes for cross-validation, found {list(counts.index)}")
    small = counts[counts < n_splits]
    if len(small):
        raise SelectionError(
            f"class {small.index[0]!r} has {int(small.iloc[0])} samples, fewer than the "
            f"{n_splits} folds asked; use fewer folds")
    from sklearn.model_selection import StratifiedGroupKFold  # heavy: only when splitting

    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return [(np.sort(tr), np.sort(va)) for tr, va in cv.split(np.zeros(len(labels)), labels, patients)]


def splits_to_patients(splits, patients) -> list[tuple[list[str], list[str]]]:
    """Turn index folds into patient-ID folds.

    Parameters
    ----------
    splits
        (train_idx, val_idx) per fold, as :func:`make_splits` returns.
    patients
        Patient ID per sample.

    Returns
    -------
    (sorted train patient IDs, sorted val patient IDs) per fold.
    """
    patients = np.asarray(patients, dtype=object)
    return [(sorted(set(patients[tr])), sorted(set(patients[va]))) for tr, va in splits]


def write_splits(patient_splits, folder: str | os.PathLike) -> list[Path]:
    """Write one ``splits_<k>.csv`` per fold in the reference layout.

    Parameters
    ----------
    patient_splits
        (train patient IDs, val patient IDs) per fold.
    folder
        Output folder.

    Returns
    -------
    The written paths; columns ``train`` and ``val`` (the shorter one left empty).
    """
    folder = Path(folder)
    out = []
    for k, (train, val) in enumerate(patient_splits):
        n = max(len(train), len(val))
        df = pd.DataFrame({"train": pd.Series(train, dtype=object).reindex(range(n)),
                           "val": pd.Series(val, dtype=object).reindex(range(n))})
        path = folder / f"splits_{k}.csv"
        with atomic_path(path) as tmp:
            df.to_csv(tmp)  # leading index column, as pandas-written reference files have
        out.append(path)
    return out


def read_splits(source: str | os.PathLike) -> list[tuple[list[str], list[str]]]:
    """Read reference ``splits_<k>.csv`` files.

    Parameters
    ----------
    source
        A folder of ``splits_<k>.csv`` files (read in k order) or one such file.

    Returns
    -------
    (train patients, val patients) per fold; IDs cut to 12 characters. A patient on both
    sides is an error.
    """
    source = Path(source)
    if source.is_dir():
        files = sorted((p for p in source.iterdir() if _SPLIT_FILE.match(p.name)),
                       key=lambda p: int(_SPLIT_FILE.match(p.name).group(1)))
        if not files:
            raise InputFileError(source, "no splits_<k>.csv files in this folder")
    elif source.is_file():
        files = [source]
    else:
        raise InputFileError(source, "no such file or folder")
    result = []
    for path in files:
        try:
            df = pd.read_csv(path, dtype=str)
        except Exception as err:  # pandas parser errors vary
            raise InputFileError(path, f"cannot parse splits file ({str(err).splitlines()[0]})") from None
        missing = {"train", "val"} - set(df.columns)
        if missing:
            raise InputFileError(path, f"missing column(s) {sorted(missing)}; a splits file has 'train' and 'val'")
        train = [str(p)[:12] for p in df["train"].dropna() if str(p).strip()]
        val = [str(p)[:12] for p in df["val"].dropna() if str(p).strip()]
        both = sorted(set(train) & set(val))
        if both:
            raise InputFileError(path, f"{len(both)} patient(s) on both sides (e.g. {both[0]}): "
                                       "splits must be patient-level")
        result.append((sorted(set(train)), sorted(set(val))))
    return result


def splits_to_indices(patient_splits, patients) -> list[tuple[np.ndarray, np.ndarray]]:
    """Map patient splits onto sample indices.

    Parameters
    ----------
    patient_splits
        (train patient IDs, val patient IDs) per fold, as :func:`read_splits` returns.
    patients
        Patient ID per sample of the data.

    Returns
    -------
    (train_idx, val_idx) per fold. Split patients absent from the data are skipped with a
    warning; a fold with an empty side raises :class:`SelectionError`.
    """
    patients = pd.Index(np.asarray(patients, dtype=object))
    out = []
    for k, (train, val) in enumerate(patient_splits):
        tr = np.flatnonzero(patients.isin(train))
        va = np.flatnonzero(patients.isin(val))
        unknown = (set(train) | set(val)) - set(patients)
        if unknown:
            warnings.warn(f"fold {k}: {len(unknown)} split patient(s) are not in the data", stacklevel=2)
        if len(tr) == 0 or len(va) == 0:
            raise SelectionError(f"fold {k}: no samples on the {'train' if len(tr) == 0 else 'val'} side")
        out.append((tr, va))
    return out
