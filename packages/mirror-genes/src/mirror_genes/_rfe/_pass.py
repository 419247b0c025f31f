"""The float64 coefficient pass: exact ``w`` and decision values from the data.

For a set of runs with dual solutions ``beta``: ``w = Z^T beta`` for every feature
active in one of them and ``f = Z w + b`` for *all* samples (training samples: the exact
residual of the solve; test samples: the predictions), in one streaming pass over the
feature rows (widened to float64 per block of ``PASS_ROWS`` rows, split over threads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    p: int = 0                # features in all
    _pos: np.ndarray | None = field(default=None, repr=False)   # feature -> position in rows

    def positions(self, features: np.ndarray) -> np.ndarray:
        """Positions in ``rows`` (and ``W``) of some of the visited features."""
        if self.rows.size == self.p:
            return features
        if self._pos is None:
            pos = np.full(self.p, -1, dtype=np.int64)
            pos[self.rows] = np.arange(self.rows.size)
            self._pos = pos
        return self._pos[features]


def _union_rows(entries, p: int) -> np.ndarray:
    union = np.zeros(p, dtype=bool)
    for _run, _beta, active in entries:
        union |= active
    return np.flatnonzero(union)


def _columns(entries, n):
    """``B`` (samples x F: each entry's ``beta`` on its run's training samples, 0 elsewhere),
    ``SB`` (column sums) and each entry's column slice."""
    F = sum(beta.shape[1] for _run, beta, _active in entries)
    B = np.zeros((n, F))
    SB = np.empty(F)
    cols, c = [], 0
    for run, beta, _active in entries:
        cs = slice(c, c + beta.shape[1])
        cols.append(cs)
        B[run.layout.train, cs] = beta
        SB[cs] = beta.sum(axis=0)
        c = cs.stop
    return B, SB, cols


def _row_terms(entries, cols, rows, center):
    """``MU`` (``mu - center``) and ``INVA`` (``inv``, 0 where inactive), rows x F."""
    F = cols[-1].stop
    MU, INVA = np.empty((rows.size, F)), np.empty((rows.size, F))
    cen = center[rows]
    for (run, _beta, active), cs in zip(entries, cols, strict=True):
        MU[:, cs] = (run.mu[rows] - cen)[:, None]
        INVA[:, cs] = (run.inv[rows] * active[rows])[:, None]
    return MU, INVA


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
    more than it saves: page faults and THP compaction, measured). Each thread also builds the
    per-row terms of its rows and their share of ``amag``, so only ``B`` is built serially."""
    p, n = Xt.shape
    rows = _union_rows(entries, p)
    contiguous = rows.size == p
    B, SB, cols = _columns(entries, n)
    F = B.shape[1]
    W = np.empty((rows.size, F))

    def work(bounds):
        lo, hi = bounds
        sub = rows[lo:hi]
        MU, INVA = _row_terms(entries, cols, sub, center)
        C = center[sub]
        MUSB = MU * SB
        INVA2 = INVA * INVA
        XU, XUc, tmp = np.zeros((n, F)), np.empty((n, F)), np.empty((n, F))
        MUU, MUUc = np.zeros(F), np.empty(F)
        for c0 in range(0, hi - lo, PASS_ROWS * CHUNK):
            XUc[...] = 0.0
            MUUc[...] = 0.0
            for r0 in range(c0, min(hi - lo, c0 + PASS_ROWS * CHUNK), PASS_ROWS):
                r1 = min(hi - lo, r0 + PASS_ROWS)
                Xb = Xt[lo + r0:lo + r1] if contiguous else Xt[sub[r0:r1]]
                D = np.subtract(Xb, C[r0:r1, None], dtype=np.float64)
                G = D @ B
                G -= MUSB[r0:r1]
                np.multiply(G, INVA[r0:r1], out=W[lo + r0:lo + r1])
                G *= INVA2[r0:r1]                       # u = w * inv
                XUc += np.matmul(D.T, G, out=tmp)
                MUUc += np.einsum("ij,ij->j", MU[r0:r1], G)
            XU += XUc
            MUU += MUUc
        amag = np.einsum("ij,ij->j", (dabs[sub][:, None] + np.abs(MU)) * INVA, np.abs(W[lo:hi]))
        return XU, MUU, amag

    n_threads = max(1, min(n_threads, rows.size // PASS_ROWS + 1))
    edges = (np.linspace(0, rows.size // PASS_ROWS, n_threads + 1).astype(int) * PASS_ROWS)
    edges[-1] = rows.size
    parts = list(pool.map(work, zip(edges[:-1], edges[1:], strict=True)))
    XU = sum(pt[0] for pt in parts)
    MUU = sum(pt[1] for pt in parts)
    f = XU - MUU + SB
    amag = sum(pt[2] for pt in parts) + np.abs(SB)
    n_chunks = -(-rows.size // (PASS_ROWS * CHUNK * n_threads)) + n_threads
    gamma = 1.05 * (PASS_ROWS + CHUNK + n_chunks + 12) * 2.0 ** -53
    return PassResult(rows, W, f, cols, amag, gamma, p)
