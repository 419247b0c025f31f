"""Scorers with the arithmetic of ``sklearn.metrics`` (so that ties between sizes resolve the
same way), and the class decision of a linear one-vs-rest model."""

from __future__ import annotations

import numpy as np


def score(scoring: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if scoring == "accuracy":
        return float(np.average(y_true == y_pred))
    labels = np.union1d(y_true, y_pred)
    t = np.searchsorted(labels, y_true)
    q = np.searchsorted(labels, y_pred)
    k = labels.size
    true_sum = np.bincount(t, minlength=k)
    pred_sum = np.bincount(q, minlength=k)
    tp = np.bincount(t[t == q], minlength=k)
    if scoring == "balanced_accuracy":
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class = tp / true_sum
        per_class = per_class[~np.isnan(per_class)]
        return float(np.mean(per_class))
    denom = 1.0 * true_sum.astype(np.float64) + pred_sum.astype(np.float64)
    num = 2.0 * tp.astype(np.float64)
    mask = denom == 0
    denom[mask] = 1.0
    f1 = num / denom
    f1[mask] = 0.0
    return float(np.nanmean(f1))


def predict(f: np.ndarray, n_classes: int) -> np.ndarray:
    """Two classes: ``classes[1]`` where the decision value is > 0; more: the first arg-max."""
    if n_classes == 2:
        return (f[:, 0] > 0).astype(np.int64)
    return np.argmax(f, axis=1)
