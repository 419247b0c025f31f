"""Scaling statistics and fold Grams, built once and then downdated as features leave.

Every run keeps ``K = Z_T Z_T^T + 1`` (the ``+1`` is liblinear's regularised intercept
feature) over its active features, where ``Z = (x - mu) * inv`` is the run's standardisation
(``mu``/``inv`` exact float64, fitted on its training samples) and ``T`` its *tracked*
training samples (all of them, or those near the margin: see ``_track``); ``widen`` adds
samples to ``T``.

Precision: in the default *float32* mode the products are float32 GEMMs over blocks of
``GRAM_ROWS`` features, accumulated into a float64 ``K``. That Gram is only used to steer
the solver (a preconditioner): the coefficients that decide the elimination are computed
in float64 from the data and certified (``_certify``). A run switches to the *exact*
(float64) mode when its float32 Gram is not good enough (see ``_fast``).
"""

from __future__ import annotations

import numpy as np

GRAM_ROWS = 2048   # features per GEMM block (float32 accumulates over at most this many)

_EPS = np.finfo(np.float64).eps


def scale_stats(Xb: np.ndarray, c: np.ndarray, atom_starts: np.ndarray, weights: np.ndarray,
                counts: np.ndarray, const: np.ndarray, scale: bool = True):
    """Per-run mean and 1/std (population std, like ``StandardScaler``) of a block of
    feature rows ``Xb`` (features x all samples, reordered), from per-atom sums, and every
    sample's squared scaled norm over the block under each run's scaling.

    Shifted by the all-sample mean ``c`` (given) first (corrected two-pass algorithm), so the
    training-set sums do not cancel. A feature whose variance is zero up to the rounding
    bound of scikit-learn's ``_is_constant_feature`` gets ``inv = 0`` (treated as zero);
    ``scale=False``: ``mu = 0``, ``inv = 1`` (0 for features constant on all samples).
    Returns ``mu``, ``inv`` (features x runs) and ``sq`` (samples x runs), float64."""
    D = np.subtract(Xb, c[:, None], dtype=np.float64)
    D2 = np.square(D)
    if scale:
        s1 = np.add.reduceat(D, atom_starts, axis=1) @ weights
        s2 = np.add.reduceat(D2, atom_starts, axis=1) @ weights
        mu = c[:, None] + s1 / counts
        var = np.maximum((s2 - s1 * s1 / counts) / counts, 0.0)
        is_const = (var <= counts * _EPS * var + (counts * mu * _EPS) ** 2) | const[:, None]
        inv = np.zeros_like(var)
        np.divide(1.0, np.sqrt(var, where=~is_const, out=np.ones_like(var)), out=inv,
                  where=~is_const)
    else:
        mu = np.zeros((Xb.shape[0], weights.shape[1]))
        inv = np.repeat(np.where(const, 0.0, 1.0)[:, None], weights.shape[1], axis=1)
    # sum_j inv_j^2 (d_ij - delta_j)^2 with delta = mu - c, for every sample and run
    inv2, delta = inv * inv, mu - c[:, None]
    sq = D2.T @ inv2 - 2.0 * (D.T @ (inv2 * delta)) + np.sum(inv2 * delta * delta, axis=0)
    return mu, inv, sq


def scaled_columns(Xb: np.ndarray, cols: np.ndarray, segs, mu: np.ndarray, inv: np.ndarray,
                   exact: bool) -> np.ndarray:
    """``(x - mu) * inv`` of the sample columns ``cols`` of the feature rows ``Xb`` (all
    samples, reordered), as a contiguous rows x cols array: float64 in the exact mode,
    float32 otherwise. ``segs`` (column ranges that make up ``cols``, or None) are written
    straight into place (no gather)."""
    dtype = np.float64 if exact else np.float32
    mu_ = mu.astype(dtype)[:, None]
    if segs is None:
        # in place where the gather has the right type: every fresh array costs page faults
        Z = np.take(Xb, cols, axis=1)
        if Z.dtype == dtype:
            Z -= mu_
        else:
            Z = np.subtract(Z, mu_, dtype=dtype)
    else:
        Z = np.empty((Xb.shape[0], cols.size), dtype=dtype)
        o = 0
        for a, b in segs:
            np.subtract(Xb[:, a:b], mu_, out=Z[:, o:o + b - a], dtype=dtype, casting="unsafe")
            o += b - a
    Z *= inv.astype(dtype)[:, None]
    return Z


def train_rows(Xb: np.ndarray, run, mu: np.ndarray, inv: np.ndarray,
               exact: bool) -> np.ndarray:
    """:func:`scaled_columns` of the run's tracked training samples (the columns of its Gram)."""
    return scaled_columns(Xb, run.cols, run.segments, mu, inv, exact)


def gram_add(run, Z: np.ndarray, sign: float) -> None:
    """``run.K += sign * Z^T Z`` for training rows ``Z``: numpy's matmul runs BLAS syrk for
    ``A.T @ A`` and releases the GIL; the add into ``K`` is under the run's lock."""
    G = Z.T @ Z
    with run.lock:
        if sign > 0:
            np.add(run.K, G, out=run.K)
        else:
            np.subtract(run.K, G, out=run.K)


def init_block(Xt: np.ndarray, j0: int, j1: int, runs, ctx, gram_runs) -> None:
    """Statistics of feature rows ``j0:j1`` for every run, and their Gram contributions for
    ``gram_runs`` (visited in an order rotated by the block, so concurrent blocks rarely wait
    on the same run's lock)."""
    Xb = Xt[j0:j1]
    mu, inv, sq = scale_stats(Xb, ctx.center[j0:j1], ctx.atom_starts, ctx.weights,
                              ctx.counts, ctx.const[j0:j1], ctx.scale)
    for r, run in enumerate(runs):
        run.mu[j0:j1] = mu[:, r]
        run.inv[j0:j1] = inv[:, r]
        if run.layout.test.size:
            with run.lock:
                run.test_sq += sq[run.layout.test, r]
    gram_block(Xt, j0, j1, gram_runs)


def gram_block(Xt: np.ndarray, j0: int, j1: int, runs) -> None:
    """Gram contributions of feature rows ``j0:j1`` (statistics known) for ``runs``."""
    first = (j0 // max(1, j1 - j0)) % max(1, len(runs))
    for run in [*runs[first:], *runs[:first]]:
        gram_add(run, train_rows(Xt[j0:j1], run, run.mu[j0:j1], run.inv[j0:j1], run.exact),
                 1.0)


def update_rows(Xt: np.ndarray, run, rows: np.ndarray, sign: float) -> None:
    """``K += sign * Z[rows]^T Z[rows]`` (global feature rows, in the run's precision)."""
    gram_add(run, train_rows(Xt[rows], run, run.mu[rows], run.inv[rows], run.exact), sign)


def widen(Xt: np.ndarray, run, new: np.ndarray) -> None:
    """Track the training positions ``new`` too: their Gram rows (products with every
    tracked sample and among themselves, over the run's active features) from the data."""
    rows = np.flatnonzero(run.active & (run.inv != 0.0))
    m = run.track.size
    track = np.concatenate((run.track, new))
    cols = run.layout.train[track]
    B = np.zeros((track.size, new.size))
    for r0 in range(0, rows.size, GRAM_ROWS):
        sub = rows[r0:r0 + GRAM_ROWS]
        Z = scaled_columns(Xt[sub], cols, None, run.mu[sub], run.inv[sub], run.exact)
        B += Z.T @ Z[:, m:]
    K = np.empty((track.size, track.size))
    K[:m, :m] = run.K
    K[:, m:] = B + 1.0
    K[m:, :m] = K[:m, m:].T
    run.K, run.track, run.cols, run.segments = K, track, cols, None
    run.version += 1


def update_tasks(run, rows: np.ndarray, sign: float) -> list:
    """Split a Gram update into blocks of ``GRAM_ROWS`` rows (rows with ``inv == 0`` skipped)."""
    rows = rows[run.inv[rows] != 0.0]
    return [(run, rows[r0:r0 + GRAM_ROWS], sign) for r0 in range(0, rows.size, GRAM_ROWS)]
