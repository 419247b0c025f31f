"""Input checks shared by the probes: one embedding row per patient, patient-level folds."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._errors import EvaluationError
from ._survival import survival_bins

SUBTYPING = "subtyping"
SURVIVAL = "survival"


@dataclass
class Cohort:
    """Validated arrays, one row per patient."""

    X: np.ndarray             # (n, d) float32
    patients: np.ndarray      # (n,) str
    task: str
    labels: np.ndarray | None  # (n,) str (subtyping)
    classes: list[str] | None
    time: np.ndarray | None    # (n,) float64 (survival)
    event: np.ndarray | None   # (n,) int64


def _few(names, k: int = 3) -> str:
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > k else ""
    return ", ".join(str(n) for n in names[:k]) + more


def make_cohort(X, patients, labels=None, time=None, event=None) -> Cohort:
    """Check shapes, finiteness and patient uniqueness; infer the task from what is given."""
    X = np.asarray(X, dtype=np.float32)
    patients = np.asarray(patients).astype(str)
    if X.ndim != 2 or X.shape[0] != len(patients):
        raise EvaluationError(f"embeddings have shape {X.shape}; expected (n_patients={len(patients)}, d)")
    if not np.isfinite(X).all():
        raise EvaluationError("embeddings hold NaN or Inf values")
    dup = pd.Index(patients)[pd.Index(patients).duplicated()].unique()
    if len(dup):
        raise EvaluationError(f"{len(dup)} patient(s) have several embedding rows (e.g. {_few(dup)}); "
                              "evaluation needs one row per patient")
    if (labels is None) == (time is None and event is None):
        raise EvaluationError("give either labels (subtyping) or time and event (survival)")
    if labels is not None:
        lab = pd.Series(labels, dtype=object)
        if len(lab) != len(patients) or lab.isna().any():
            raise EvaluationError("labels must hold one non-missing value per embedding row")
        lab = lab.astype(str).to_numpy()
        return Cohort(X, patients, SUBTYPING, lab, sorted(set(lab)), None, None)
    if time is None or event is None:
        raise EvaluationError("survival needs both time and event")
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=np.float64)
    if len(t) != len(patients) or len(e) != len(patients):
        raise EvaluationError("time and event must hold one value per embedding row")
    if not (np.isfinite(t).all() and np.isin(e, (0.0, 1.0)).all()):
        raise EvaluationError("time must be finite and event 0 (censored) or 1 (event observed) for every patient")
    return Cohort(X, patients, SURVIVAL, None, None, t, e.astype(np.int64))


def fold_indices(cohort: Cohort, folds) -> list[tuple[np.ndarray, np.ndarray]]:
    """Map patient folds to row indices; unknown patients, empty sides and overlaps are errors."""
    index = pd.Index(cohort.patients)
    out = []
    for k, (train, val) in enumerate(folds):
        train, val = [str(p) for p in train], [str(p) for p in val]
        unknown = sorted((set(train) | set(val)) - set(index))
        if unknown:
            raise EvaluationError(f"fold {k}: {len(unknown)} split patient(s) have no embedding "
                                  f"(e.g. {_few(unknown)})")
        both = sorted(set(train) & set(val))
        if both:
            raise EvaluationError(f"fold {k}: {len(both)} patient(s) on both sides (e.g. {_few(both)})")
        if not train or not val:
            raise EvaluationError(f"fold {k}: the {'training' if not train else 'validation'} side is empty")
        out.append((index.get_indexer(sorted(set(train))), index.get_indexer(sorted(set(val)))))
    if not out:
        raise EvaluationError("no folds given")
    return out


def _comparable(time: np.ndarray, event: np.ndarray) -> bool:
    """Whether any (event, later-or-censored-at-the-same-time) pair exists: the C-index is defined."""
    died = event.astype(bool)
    return bool(died.any() and ((time[died].min() < time.max()) or
                                np.isin(time[died], time[~died]).any()))


def check_fold(cohort: Cohort, k: int, tr: np.ndarray, va: np.ndarray, n_bins: int = 4) -> np.ndarray | None:
    """Per-fold label checks. Returns the survival bin edges (fitted on the training part)."""
    if cohort.task == SUBTYPING:
        present = sorted(set(cohort.labels[tr]))
        if len(present) < 2:
            raise EvaluationError(f"fold {k}: the training part holds one class only ({_few(present)}); "
                                  "a probe needs at least two")
        absent = sorted(set(cohort.labels[va]) - set(present))
        if absent:
            raise EvaluationError(f"fold {k}: class(es) {_few(absent)} appear in validation but not in training")
        return None
    if not cohort.event[tr].any():
        raise EvaluationError(f"fold {k}: no events (deaths) in the training part; survival bins "
                              "and the hazard model need observed events")
    if not _comparable(cohort.time[va], cohort.event[va]):
        warnings.warn(f"fold {k}: no comparable pairs (no events) in the validation part; its C-index "
                      "is NaN and left out of the mean", stacklevel=3)
    return survival_bins(cohort.time[tr], cohort.event[tr], n_bins)


def strata(cohort: Cohort, idx: np.ndarray, edges: np.ndarray | None) -> np.ndarray:
    """Stratum per row: the class (subtyping) or ``2 * bin + event`` (survival)."""
    from ._survival import assign_bins

    if cohort.task == SUBTYPING:
        return cohort.labels[idx]
    return (2 * assign_bins(cohort.time[idx], edges) + cohort.event[idx]).astype(str)


def stratified_holdout(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``groups``) of an inner train / inner validation split.

    Each stratum sends ``round(fraction * size)`` members to validation but keeps at least one
    in training (a stratum of one stays in training).
    """
    if not 0.0 < fraction < 1.0:
        raise EvaluationError(f"inner validation fraction must lie in (0, 1), got {fraction}")
    val = []
    for g in sorted(set(groups)):
        members = np.flatnonzero(groups == g)
        rng.shuffle(members)
        n_val = min(int(np.floor(fraction * len(members) + 0.5)), len(members) - 1)
        val.extend(members[:n_val].tolist())
    val = np.sort(np.asarray(val, dtype=np.int64))
    if len(val) == 0:
        raise EvaluationError(f"training fold of {len(groups)} patients is too small for an inner "
                              f"validation split of {fraction:.0%}")
    return np.setdiff1d(np.arange(len(groups)), val), val
