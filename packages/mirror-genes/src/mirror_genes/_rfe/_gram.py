"""Scaling statistics and fold Grams, built once and then downdated as features leave.

Every run keeps ``K = Z_train Z_train^T + 1`` (the ``+1`` is liblinear's regularised
intercept feature) over its active features, where ``Z = (x - mu) * inv`` is the run's
standardisation (``mu``/``inv`` exact float64, fitted on its training samples).

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


def scale_stats(Xb: np.ndarray, atom_starts: np.ndarray, weights: np.ndarray,
                counts: np.ndarray, const: np.ndarray):
    """Per-run mean and 1/std (population std, like ``StandardScaler``) of a block of
    feature rows ``Xb`` (features x all samples, reordered), from per-atom sums.

    Shifted by the all-sample mean ``c`` first (the corrected two-pass algorithm), so the
    training-set sums do not cancel. A feature whose variance is zero up to the rounding
    bound of scikit-learn's ``_is_constant_feature`` gets ``inv = 0`` (treated as zero).
    Returns ``mu`` and ``inv``, features x runs (float64)."""
    c = Xb.mean(axis=1, dtype=np.float64)
    D = np.subtract(Xb, c[:, None], dtype=np.float64)
    s1 = np.add.reduceat(D, atom_starts, axis=1) @ weights
    np.square(D, out=D)
    s2 = np.add.reduceat(D, atom_starts, axis=1) @ weights
    del D
    mu = c[:, None] + s1 / counts
    var = np.maximum((s2 - s1 * s1 / counts) / counts, 0.0)
    is_const = (var <= counts * _EPS * var + (counts * mu * _EPS) ** 2) | const[:, None]
    inv = np.zeros_like(var)
    np.divide(1.0, np.sqrt(var, where=~is_const, out=np.ones_like(var)), out=inv,
              where=~is_const)
    return mu, inv


def scaled_rows(Xb: np.ndarray, mu: np.ndarray, inv: np.ndarray, exact: bool) -> np.ndarray:
    """``(Xb - mu) * inv`` per row: float64 in the exact mode, float32 otherwise."""
    if exact or Xb.dtype != np.float32:
        Z = np.subtract(Xb, mu[:, None], dtype=np.float64)
        Z *= inv[:, None]
        return Z if exact else Z.astype(np.float32)
    Z = np.subtract(Xb, mu.astype(np.float32)[:, None])
    Z *= inv.astype(np.float32)[:, None]
    return Z


def gram_add(run, Z: np.ndarray, sign: float) -> None:
    """``run.K += sign * Z_train^T Z_train``.

    ``Z`` holds all samples (columns in the reordered sample order) when the run has
    ``segments``: one GEMM per pair of training segments, on strided views; otherwise ``Z``
    already holds the gathered training columns. numpy's matmul runs BLAS (syrk for
    ``A.T @ A``) and releases the GIL; the add into ``K`` is under the run's lock."""
    add = np.add if sign > 0 else np.subtract
    segs = run.layout.segments
    if segs is None:
        G = Z.T @ Z
        with run.lock:
            add(run.K, G, out=run.K)
        return
    offs = np.cumsum([0] + [b - a for a, b in segs])
    for i, (a, b) in enumerate(segs):
        Za = Z[:, a:b]
        for j in range(i, len(segs)):
            c, d = segs[j]
            G = Za.T @ Za if j == i else Za.T @ Z[:, c:d]
            with run.lock:
                Kv = run.K[offs[i]:offs[i + 1], offs[j]:offs[j + 1]]
                add(Kv, G, out=Kv)
                if j != i:
                    Kt = run.K[offs[j]:offs[j + 1], offs[i]:offs[i + 1]]
                    add(Kt, G.T, out=Kt)


def train_view(Xb: np.ndarray, run) -> np.ndarray:
    """The columns of ``Xb`` that ``gram_add`` expects for this run."""
    if run.layout.segments is None:
        return np.take(Xb, run.layout.train, axis=1)
    return Xb


def init_block(Xt: np.ndarray, j0: int, j1: int, runs, ctx) -> None:
    """Statistics and Gram contributions of feature rows ``j0:j1`` for every run (the runs
    are visited in an order rotated by the block, so concurrent blocks rarely wait on the
    same run's lock)."""
    Xb = Xt[j0:j1]
    if ctx.scale:
        mu, inv = scale_stats(Xb, ctx.atom_starts, ctx.weights, ctx.counts,
                              ctx.const[j0:j1])
    else:
        mu = np.zeros((j1 - j0, len(runs)))
        inv = np.repeat(np.where(ctx.const[j0:j1], 0.0, 1.0)[:, None], len(runs), axis=1)
    first = (j0 // max(1, j1 - j0)) % len(runs)
    for r in [*range(first, len(runs)), *range(first)]:
        run = runs[r]
        run.mu[j0:j1] = mu[:, r]
        run.inv[j0:j1] = inv[:, r]
        Z = scaled_rows(train_view(Xb, run), mu[:, r], inv[:, r], run.exact)
        if run.layout.test.size:
            Zt = Z[:, run.layout.test] if run.layout.segments is not None else \
                scaled_rows(Xb[:, run.layout.test], mu[:, r], inv[:, r], True)
            sq = np.einsum("ij,ij->j", Zt, Zt, dtype=np.float64)
            with run.lock:
                run.test_sq += sq
        gram_add(run, Z, 1.0)


def update_rows(Xt: np.ndarray, run, rows: np.ndarray, sign: float) -> None:
    """``K += sign * Z[rows]^T Z[rows]`` (global feature rows, in the run's precision)."""
    Xb = Xt[rows] if run.layout.segments is not None else \
        Xt[np.ix_(rows, run.layout.train)]
    Z = scaled_rows(Xb, run.mu[rows], run.inv[rows], run.exact)
    gram_add(run, Z, sign)


def update_tasks(run, rows: np.ndarray, sign: float) -> list:
    """Split a Gram update into blocks of ``GRAM_ROWS`` rows (rows with ``inv == 0`` skipped)."""
    rows = rows[run.inv[rows] != 0.0]
    return [(run, rows[r0:r0 + GRAM_ROWS], sign) for r0 in range(0, rows.size, GRAM_ROWS)]
