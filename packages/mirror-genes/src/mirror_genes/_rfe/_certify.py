"""Certificates: the elimination decisions and predictions of the exact optimum.

For one binary task of a run (``y`` in ±1, dual point ``alpha = beta * y >= 0``) and the
primal point ``(w_hat, b_hat)`` the pass computed from it, weak duality gives

    P(w_hat, b_hat) - P* <= G = P(w_hat, b_hat) - D(alpha),

and ``P`` (``1/2 |w|^2 + 1/2 b^2 + C sum max(0, 1 - y f)^2``) is 1-strongly convex, so

    |w_hat - w*|^2 + (b_hat - b*)^2 <= 2 G.

Written per sample with ``t_i = y_i f_i`` (``f`` the exact decision values of the primal
point) and ``lam = 1/(2C)``, the gap is a sum of non-negative terms without cancellation:
``C (1 - t_i - lam alpha_i)^2`` where ``t_i < 1``, ``alpha_i (t_i - 1) + lam alpha_i^2 / 2``
otherwise, plus ``1/2 |w_hat - Z^T beta|^2 + 1/2 (b_hat - sum beta)^2`` (the rounding of the
pass). ``t`` is only known up to the rounding bound ``phi`` of the pass; each term is convex
in ``t``, so its largest value over ``[t - phi, t + phi]`` is at an end point. ``eps =
sqrt(2 G)`` then bounds every coefficient, ``|w_hat_j - w*_j| <= eps``, and every decision
value, ``|f_hat(x) - f*(x)| <= sqrt(|z|^2 + 1) eps`` (Cauchy-Schwarz).

A round's decisions are certified when the importance intervals ``sum_c (w_jc +- eps_c)^2``
separate the removed features from the kept ones (exact ties only between features known
to be exactly zero, broken by index as ``argsort(kind="stable")`` does), and every test
prediction keeps its class over the decision-value intervals.
"""

from __future__ import annotations

import numpy as np

_U = 2.0 ** -53


def gap_eps(Y: np.ndarray, beta: np.ndarray, t: np.ndarray, phi: np.ndarray, C: float,
            slack: np.ndarray) -> np.ndarray:
    """``eps`` per task (column): ``sqrt(2 G)`` with ``G`` the upper bound of the duality
    gap described above; ``t = y * f_hat`` on the training samples (n x m), ``phi`` the
    rounding bound of ``t`` per task, ``slack`` the pass's rounding of ``w`` and ``b``."""
    lam = 1.0 / (2.0 * C)
    alpha = np.maximum(beta * Y, 0.0)
    width = phi[None, :] + 4.0 * _U * (2.0 + np.abs(t) + lam * alpha)

    def term(tt):
        inner = np.where(tt < 1.0, C * (1.0 - tt - lam * alpha) ** 2, 0.0)
        outer = np.where(tt >= 1.0, alpha * (tt - 1.0) + 0.5 * lam * alpha * alpha, 0.0)
        return inner + outer

    G = np.maximum(term(t - width), term(t + width)).sum(axis=0) + slack
    G *= 1.0 + 4.0 * Y.shape[0] * _U + 1e-15
    return np.sqrt(2.0 * G)


def importance_bounds(W: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Importance ``sum_c w_c^2`` and its error bound ``sum_c (2 |w_c| + eps_c) eps_c`` (zero
    where every ``w`` is exactly zero by construction is handled by the caller)."""
    imp = np.einsum("ij,ij->i", W, W)
    err = (2.0 * np.abs(W) + eps[None, :]) @ eps
    err *= 1.0 + 1e-12
    return imp, err


def smallest(imp: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest values, ties by position: the set that
    ``np.argsort(imp, kind="stable")[:k]`` holds, in O(len) (sorted)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= imp.size:
        return np.arange(imp.size)
    v = imp[np.argpartition(imp, k - 1)[k - 1]]
    below = np.flatnonzero(imp < v)
    ties = np.flatnonzero(imp == v)[:k - below.size]
    return np.sort(np.concatenate((below, ties)))


def ambiguous(imp: np.ndarray, err: np.ndarray, gone: np.ndarray) -> np.ndarray:
    """Positions whose side of the cut ``gone`` (the smallest ``imp``, ties by position) the
    intervals ``imp +- err`` do not decide (sorted; empty when the cut is certain)."""
    if gone.size == 0 or gone.size >= imp.size:
        return np.zeros(0, dtype=np.int64)
    kept = np.ones(imp.size, dtype=bool)
    kept[gone] = False
    kept_pos = np.flatnonzero(kept)
    hi_gone = imp[gone] + err[gone]
    lo_kept = imp[kept_pos] - err[kept_pos]
    a, b = float(hi_gone.max()), float(lo_kept.min())
    if a < b:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate((gone[hi_gone >= b], kept_pos[lo_kept <= a])))


def cut_certified(imp: np.ndarray, err: np.ndarray, gone: np.ndarray) -> bool:
    """Are the features ``gone`` (the smallest ``imp``, ties by position) the smallest of the
    exact importances too, whatever they are within ``imp +- err``? (Exact ties only between
    values known exactly, ``err == 0``, which the position order breaks like the exact one.)"""
    return not np.any(err[ambiguous(imp, err, gone)] > 0.0)


def predictions_certified(f: np.ndarray, bound: np.ndarray, n_classes: int) -> bool:
    """Does every test sample keep its predicted class for all decision values within
    ``f +- bound`` (n_test x tasks)?"""
    if f.size == 0:
        return True
    if n_classes == 2:
        return bool(np.all((np.abs(f[:, 0]) > bound[:, 0]) | (bound[:, 0] == 0.0)))
    top = np.argmax(f, axis=1)
    rows = np.arange(f.shape[0])
    low = f[rows, top] - bound[rows, top]
    high = f + bound
    high[rows, top] = -np.inf
    exact = np.all(bound == 0.0, axis=1)
    return bool(np.all((low > high.max(axis=1)) | exact))
