"""Fold-level metrics: subtyping (accuracy, balanced accuracy, macro-F1, AUC) and C-index."""

from __future__ import annotations

import warnings

import numpy as np

from .._errors import EvaluationError
from ._survival import concordance_index

ACCURACY = "accuracy"
BALANCED_ACCURACY = "balanced_accuracy"
MACRO_F1 = "macro_f1"
AUC = "auc"
C_INDEX = "c_index"
SUBTYPING_METRICS = (ACCURACY, BALANCED_ACCURACY, MACRO_F1, AUC)
SURVIVAL_METRICS = (C_INDEX,)


def subtyping_metrics(labels, predicted, *, proba=None, classes=None) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1 and AUC of one fold's predictions.

    Parameters
    ----------
    labels
        True class per patient.
    predicted
        Predicted class per patient.
    proba
        Class probabilities (n, n_classes) in the order of ``classes``; without them AUC is NaN.
    classes
        Class names, the column order of ``proba``; the second one is the positive class
        of a binary task.

    Returns
    -------
    ``{"accuracy", "balanced_accuracy", "macro_f1", "auc"}``. AUC is binary ROC-AUC for two
    classes and one-vs-rest macro AUC for more; NaN with a warning when the fold lacks a class.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    labels = np.asarray(labels).astype(str)
    predicted = np.asarray(predicted).astype(str)
    if len(labels) != len(predicted) or len(labels) == 0:
        raise EvaluationError(f"labels and predictions differ in length or are empty ({len(labels)}, {len(predicted)})")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        out = {ACCURACY: float(accuracy_score(labels, predicted)),
               BALANCED_ACCURACY: float(balanced_accuracy_score(labels, predicted)),
               MACRO_F1: float(f1_score(labels, predicted, average="macro", zero_division=0))}
    out[AUC] = _auc(labels, proba, classes)
    return out


def _auc(labels: np.ndarray, proba, classes) -> float:
    from sklearn.metrics import roc_auc_score

    if proba is None or classes is None:
        return float("nan")
    proba = np.asarray(proba, dtype=np.float64)
    classes = [str(c) for c in classes]
    if proba.shape != (len(labels), len(classes)):
        raise EvaluationError(f"probabilities have shape {proba.shape}; expected ({len(labels)}, {len(classes)})")
    missing = sorted(set(classes) - set(labels))
    if missing:
        warnings.warn(f"AUC undefined: class(es) {missing} absent from this fold; reported as NaN", stacklevel=3)
        return float("nan")
    if len(classes) == 2:
        return float(roc_auc_score(labels == classes[1], proba[:, 1]))
    proba = proba / proba.sum(axis=1, keepdims=True)  # rounding in the CSV must not break the sum check
    return float(roc_auc_score(labels, proba, multi_class="ovr", average="macro", labels=classes))


def survival_metrics(time, event, risk) -> dict[str, float]:
    """C-index of one fold's risk scores.

    Parameters
    ----------
    time
        Follow-up time per patient.
    event
        1 where the event was observed, 0 where censored.
    risk
        Predicted risk (higher = earlier event).

    Returns
    -------
    ``{"c_index": value}``; NaN (with a warning) when no pair is comparable.
    """
    return {C_INDEX: concordance_index(time, event, risk)}
