"""The float64 coefficient pass: exact ``w`` and decision values from the data.

For a set of runs with dual solutions ``beta``: ``w = Z^T beta`` for every feature
active in one of them and ``f = Z w + b`` for *all* samples (training samples: the exact
residual of the solve; test samples: the predictions), in one streaming pass over the
feature rows (widened to float64 per block of ``PASS_ROWS`` rows, split over threads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PASS_ROWS = 64   # features per block (the block and its products stay in L2)
CHUNK = 16       # blocks summed into a partial result before it joins the total


@dataclass
class PassResult:
    rows: np.ndarray          # global feature rows visited
    W: np.ndarray             # rows x F coefficients (0 where a run's feature is inactive)
    f: np.ndarray             # n x F decision values, all samples
    cols: list                # column slice of each run
    amag: np.ndarray          # F: sum_j (|x - c|max_j + |mu_j - c_j|) |u_j| + |b|
    gamma: float              # relative rounding bound of ``f`` (times ``amag``)


def _union_rows(entries, p: int) -> np.ndarray:
    union = np.zeros(p, dtype=bool)
    for _run, _beta, active in entries:
        union |= active
    return np.flatnonzero(union)


def _stack(entries, rows, n, center):
    F = sum(beta.shape[1] for _run, beta, _active in entries)
    B = np.zeros((n, F))
    SB = np.empty(F)
    MU = np.empty((rows.size, F))
    INVA = np.empty((rows.size, F))
    cols, c = [], 0
    for run, beta, active in entries:
        m = beta.shape[1]
        cs = slice(c, c + m)
        cols.append(cs)
        B[run.layout.train, cs] = beta
        SB[cs] = beta.sum(axis=0)
        MU[:, cs] = (run.mu[rows] - center[rows])[:, None]
        INVA[:, cs] = (run.inv[rows] * active[rows])[:, None]
        c += m
    return B, SB, MU, INVA, cols


def coef_pass(Xt: np.ndarray, center: np.ndarray, dabs: np.ndarray, entries, pool,
              n_threads: int) -> PassResult:
    """One pass for ``entries``: ``(run, beta, active)`` (a run may come twice, e.g. with
    its current solution and with the previous round's over that round's features).

    Works on ``d = x - center`` (float64), so that ``w_j = inv_j (sum_i d_ij beta_i -
    (mu_j - c_j) sum beta)`` and ``f_i = sum_j d_ij u_j - sum_j (mu_j - c_j) u_j + b``
    (``u = w * inv``) add small terms; the rounding bound of
    ``f`` is ``gamma * amag`` (dot products over at most ``PASS_ROWS`` terms, partial sums
    of ``CHUNK`` blocks, then of the chunks and threads). Each block is widened and centred
    on the fly (a float64 copy of the matrix would be read faster, but allocating it costs
    more than it saves: page faults and THP compaction, measured)."""
    p, n = Xt.shape
    rows = _union_rows(entries, p)
    contiguous = rows.size == p
    B, SB, MU, INVA, cols = _stack(entries, rows, n, center)
    F = B.shape[1]
    W = np.empty((rows.size, F))
    C = center[rows]
    MUSB = MU * SB
    INVA2 = INVA * INVA

    def work(bounds):
        lo, hi = bounds
        XU, XUc, tmp = np.zeros((n, F)), np.empty((n, F)), np.empty((n, F))
        MUU, MUUc = np.zeros(F), np.empty(F)
        for c0 in range(lo, hi, PASS_ROWS * CHUNK):
            XUc[...] = 0.0
            MUUc[...] = 0.0
            for r0 in range(c0, min(hi, c0 + PASS_ROWS * CHUNK), PASS_ROWS):
                r1 = min(hi, r0 + PASS_ROWS)
                Xb = Xt[r0:r1] if contiguous else Xt[rows[r0:r1]]
                D = np.subtract(Xb, C[r0:r1, None], dtype=np.float64)
                G = D @ B
                G -= MUSB[r0:r1]
                np.multiply(G, INVA[r0:r1], out=W[r0:r1])
                G *= INVA2[r0:r1]                       # u = w * inv
                XUc += np.matmul(D.T, G, out=tmp)
                MUUc += np.einsum("ij,ij->j", MU[r0:r1], G)
            XU += XUc
            MUU += MUUc
        return XU, MUU

    n_threads = max(1, min(n_threads, rows.size // PASS_ROWS + 1))
    edges = (np.linspace(0, rows.size // PASS_ROWS, n_threads + 1).astype(int) * PASS_ROWS)
    edges[-1] = rows.size
    parts = list(pool.map(work, zip(edges[:-1], edges[1:], strict=True)))
    XU = sum(pt[0] for pt in parts)
    MUU = sum(pt[1] for pt in parts)
    f = XU - MUU + SB
    amag = np.einsum("ij,ij->j", (dabs[rows][:, None] + np.abs(MU)) * INVA, np.abs(W)) \
        + np.abs(SB)
    n_chunks = -(-rows.size // (PASS_ROWS * CHUNK * n_threads)) + n_threads
    gamma = 1.05 * (PASS_ROWS + CHUNK + n_chunks + 12) * 2.0 ** -53
    return PassResult(rows, W, f, cols, amag, gamma)
