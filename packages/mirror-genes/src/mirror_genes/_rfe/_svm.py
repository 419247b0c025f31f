"""Exact L2-regularised squared-hinge linear SVM (liblinear's ``LinearSVC`` problem) over a Gram.

Problem (one binary task, labels ``y_i`` in {-1, +1}, intercept fitted as an extra constant
feature of value ``s = intercept_scaling`` that is regularised, as liblinear does)::

    min_{w, b}  1/2 (|w|^2 + b^2) + C sum_i max(0, 1 - y_i (w.x_i + s b))^2

Every optimum has the form ``w = X^T beta``, ``b = s sum(beta)`` with ``beta_i = alpha_i y_i``,
``alpha >= 0`` the dual variables, so only the Gram ``K = X X^T`` is needed
(``Kb = K + s^2`` adds the intercept). The solver is the finite Newton / active-set method of
Keerthi & DeCoste (2005): with ``S = {i : y_i f_i < 1}`` (the points that violate the margin),
the minimiser of the quadratic that equals the objective near the current point solves

    (Kb_SS + I / (2C)) beta_S = y_S,   beta_i = 0 outside S;

if the margin violators at that point are exactly ``S``, it is the optimum (dual feasibility
``alpha_S = 2C (1 - y_S f_S) > 0`` and primal ``y_i f_i >= 1`` outside S hold by
construction); otherwise an exact line search on the (piecewise quadratic, convex) objective
along the step guarantees descent and finite termination. A warm start from the previous
solution (RFE removes a few features per round) usually converges in one to three linear
solves. One-vs-rest tasks sharing the same active set share one Cholesky factorisation.

``refine_dual`` is the same Newton step driven by *exact* decision values computed elsewhere
(the RFE-CV engine computes them in float64 from the data) while the Gram it factorises may
be an approximation (float32 products): iterative refinement of the optimality system.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dpotrs

__all__ = [
    "DualSolution",
    "solve_dual",
    "refine_dual",
    "fit_linear_svc",
    "kkt_violation",
    "ovr_targets",
]


@dataclass
class DualSolution:
    """``beta`` (n x m, ``alpha * y``) for m one-vs-rest tasks, plus solver diagnostics."""

    beta: np.ndarray
    n_iter: np.ndarray
    converged: bool


def ovr_targets(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """±1 targets like liblinear/LinearSVC: one column (+1 = class 1) for two classes,
    one column per class (one-vs-rest) for more."""
    codes = np.asarray(codes)
    if n_classes == 2:
        return np.where(codes == 1, 1.0, -1.0)[:, None]
    return np.where(codes[:, None] == np.arange(n_classes)[None, :], 1.0, -1.0)


def _line_search(f: np.ndarray, df: np.ndarray, y: np.ndarray, d_dot_f: float,
                 d_dot_df: float, C: float) -> float:
    """Exact minimiser t >= 0 of phi(t) = 1/2 |beta + t d|_K^2 + C sum max(0, m_i - t a_i)^2.

    ``f = Kb beta``, ``df = Kb d``; phi'(t) is piecewise linear and non-decreasing, with
    breakpoints where a point enters or leaves the margin-violating set.
    """
    m = 1.0 - y * f
    a = y * df
    act0 = (m > 0) | ((m == 0) & (a < 0))
    A0 = float(np.dot(a[act0], m[act0]))
    B0 = float(np.dot(a[act0], a[act0]))
    leave = (a > 0) & (m > 0)
    enter = (a < 0) & (m < 0)
    ev = np.flatnonzero(leave | enter)
    te = m[ev] / a[ev]
    order = np.argsort(te, kind="stable")
    ev, te = ev[order], te[order]
    sign = np.where(a[ev] > 0, -1.0, 1.0)
    A = A0 + np.concatenate(([0.0], np.cumsum(sign * a[ev] * m[ev])))
    B = B0 + np.concatenate(([0.0], np.cumsum(sign * a[ev] * a[ev])))
    inter = d_dot_f - 2.0 * C * A          # phi'(t) = inter[k] + t * slope[k] on interval k
    slope = d_dot_df + 2.0 * C * B
    if inter[0] >= 0:                      # not a descent direction (numerically optimal)
        return 0.0
    at_events = inter[:-1] + te * slope[:-1]
    hit = np.flatnonzero(at_events >= 0)
    k = int(hit[0]) if hit.size else te.size
    if slope[k] <= 0:
        return float(te[k]) if k < te.size else 1.0
    return float(-inter[k] / slope[k])


def _cho_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(L L^T)^-1 b`` for numpy's (C-ordered, lower) Cholesky factor: LAPACK ``potrs`` on
    ``L.T`` (Fortran-ordered upper factor, no copy), without ``solve_triangular``'s checks."""
    x, info = dpotrs(L.T, b, lower=0)
    if info:  # pragma: no cover - only for invalid arguments
        raise np.linalg.LinAlgError(f"potrs failed (info={info})")
    return x


BORDER_MAX = 8   # active-set changes up to this size reuse the last factor (bordering)


class _Bordered:
    """Solves with ``A_new = Kb[S', S'] + lam I`` from the Cholesky factor ``L`` of
    ``A = Kb[S, S] + lam I`` when ``S'`` differs from ``S`` by a few points: the points
    removed (``R``) are eliminated through the Schur complement of ``A^-1`` on ``R``
    (the inverse of a principal submatrix), the points added (``N``) are a bordering of
    that submatrix. ``|R| + |N|`` extra triangular solves, no new factorisation."""

    def __init__(self, Kb: np.ndarray, lam: float, base: np.ndarray, L: np.ndarray,
                 idx: np.ndarray):
        keep = np.isin(base, idx)
        self.L, self.size = L, base.size
        self.pos_T, self.pos_R = np.flatnonzero(keep), np.flatnonzero(~keep)
        self.in_T = np.isin(idx, base)
        if self.pos_R.size:
            E = np.zeros((base.size, self.pos_R.size))
            E[self.pos_R, np.arange(self.pos_R.size)] = 1.0
            self.P = _cho_solve(L, E)
            self.SR = self.P[self.pos_R]
        added = idx[~self.in_T]
        if added.size:
            T = base[self.pos_T]
            self.B = Kb.take(T, axis=0).take(added, axis=1)
            self.Y = self._solve_T(self.B)
            D = Kb.take(added, axis=0).take(added, axis=1)
            D.flat[::added.size + 1] += lam
            self.Sigma = D - self.B.T @ self.Y

    def _solve_T(self, c: np.ndarray) -> np.ndarray:
        full = np.zeros((self.size,) + c.shape[1:])
        full[self.pos_T] = c
        z = _cho_solve(self.L, full)
        if self.pos_R.size:
            z -= self.P @ np.linalg.solve(self.SR, z[self.pos_R])
        return z[self.pos_T]

    def __call__(self, b: np.ndarray) -> np.ndarray:
        u = self._solve_T(b[self.in_T])
        if self.in_T.all():
            return u
        x = np.empty_like(b)
        x_N = np.linalg.solve(self.Sigma, b[~self.in_T] - self.B.T @ u)
        x[~self.in_T] = x_N
        x[self.in_T] = u - self.Y @ x_N
        return x


def _factor(Kb: np.ndarray, idx: np.ndarray, lam: float, cache: dict, version) -> None:
    """Cholesky factor of ``Kb[idx, idx] + lam I``, cached under ``(version, idx)``."""
    key = (version, idx.tobytes())
    if cache.get("key") != key:
        A = Kb.take(idx, axis=0).take(idx, axis=1)  # 2-3x faster than Kb[np.ix_(idx, idx)]
        A.flat[::idx.size + 1] += lam
        cache["L"] = np.linalg.cholesky(A)
        cache["A"] = A
        cache["idx"] = idx
        cache["key"] = key
        cache["n_factor"] = cache.get("n_factor", 0) + 1


def _solver(Kb: np.ndarray, idx: np.ndarray, lam: float, cache: dict, version):
    """``(solve, A)``: a solver for ``Kb[idx, idx] + lam I`` and that matrix (``None`` when
    the solver borders the cached factor of a nearby active set of the same Gram)."""
    key = (version, idx.tobytes())
    if cache.get("key") != key and cache.get("key", (None,))[0] == version:
        base = cache["idx"]
        if base.size > 4 * BORDER_MAX and \
                np.setxor1d(base, idx, assume_unique=True).size <= BORDER_MAX:
            if cache.get("bkey") != key:
                cache["border"] = _Bordered(Kb, lam, base, cache["L"], idx)
                cache["bkey"] = key
            return cache["border"], None
    _factor(Kb, idx, lam, cache, version)
    L = cache["L"]
    return (lambda b: _cho_solve(L, b)), cache["A"]


def _solve_on_set(Kb: np.ndarray, idx: np.ndarray, y: np.ndarray, lam: float,
                  cache: dict, version=None, polish: bool = True) -> np.ndarray:
    """beta_S = (Kb_SS + lam I)^-1 y_S with one step of iterative refinement (``y`` is the
    right-hand side, ``y - offset`` for an offset problem; ``polish=False``: without it).

    The factorisation uses numpy's LAPACK (it releases the GIL, so folds solve in parallel
    threads); the O(|S|^2) triangular solves LAPACK's ``potrs``. With ``version`` set, an
    active set close to the cached one of the same Gram borders its factor (``_Bordered``)."""
    solve, A = _solver(Kb, idx, lam, cache, version) if version is not None else \
        (None, None)
    if solve is None:
        _factor(Kb, idx, lam, cache, version)
        L, A = cache["L"], cache["A"]
        solve = lambda b: _cho_solve(L, b)  # noqa: E731
    rhs = y[idx]
    bS = solve(rhs)
    if not polish:
        return bS
    if A is not None:
        resid = rhs - A @ bS
    else:
        v = np.zeros(Kb.shape[0])
        v[idx] = bS
        resid = rhs - (Kb @ v)[idx] - lam * bS
    bS += solve(resid)
    return bS


def _objective(beta: np.ndarray, f: np.ndarray, y: np.ndarray, C: float,
               e: np.ndarray | None = None) -> float:
    """Primal objective ``1/2 |w|^2 + 1/2 b^2 + C sum max(0, 1 - y f)^2`` with
    ``f = Kb beta + e`` (``e``: the offset, default 0)."""
    h = np.maximum(0.0, 1.0 - y * f)
    quad = f if e is None else f - e
    return 0.5 * float(beta @ quad) + C * float(h @ h)


def _kkt_gap(beta: np.ndarray, f: np.ndarray, y: np.ndarray, C: float) -> float:
    """max_i |alpha_i - 2C max(0, 1 - y_i f_i)| (zero exactly at the optimum)."""
    return float(np.max(np.abs(beta * y - 2.0 * C * np.maximum(0.0, 1.0 - y * f))))


def _solve_one(Kb: np.ndarray, y: np.ndarray, C: float, beta: np.ndarray,
               S0: np.ndarray | None, max_iter: int, tol: float,
               cache: dict, version=None,
               e: np.ndarray | None = None, polish: bool = True) -> tuple[np.ndarray, int, bool]:
    """Active-set Newton for one task; ``e`` offsets the decision values, ``f = Kb beta + e``
    (defect correction: ``e`` is the exact minus the approximate ``f`` of a point)."""
    lam = 1.0 / (2.0 * C)
    e0 = np.zeros_like(beta) if e is None else e
    rhs = y - e0
    f = Kb @ beta + e0
    P = _objective(beta, f, y, C, e0)
    S = y * f < 1.0
    # a guessed active set (e.g. the previous round's) is tried first; the Keerthi-DeCoste
    # descent guarantee needs the active set of the current point, used from then on
    guessed = S0 is not None and not np.array_equal(S0, S)
    if guessed:
        S = np.asarray(S0, dtype=bool)
    for it in range(1, max_iter + 1):
        idx = np.flatnonzero(S)
        beta_hat = np.zeros_like(beta)
        if idx.size:
            beta_hat[idx] = _solve_on_set(Kb, idx, rhs, lam, cache, version, polish)
            f_hat = Kb @ beta_hat + e0
        else:
            f_hat = e0.copy()
        margin = y * f_hat
        S_hat = margin < 1.0
        if np.array_equal(S_hat, S):
            return beta_hat, it, True
        # points whose side changed only by rounding: accept when every KKT violation is tiny
        flipped = S_hat != S
        if np.max(np.abs(1.0 - margin[flipped])) <= tol:
            return beta_hat, it, True
        P_hat = _objective(beta_hat, f_hat, y, C, e0)
        if P_hat < P:
            # full Newton step: a point determined by its active set alone, with a strictly
            # smaller objective, so no active set is visited twice
            beta, f, P, S = beta_hat, f_hat, P_hat, S_hat
            guessed = False
            continue
        if guessed:  # the guess did not help: restart from the current point's active set
            S = y * f < 1.0
            guessed = False
            continue
        d = beta_hat - beta
        df = f_hat - f
        t = _line_search(f, df, y, float(d @ f), float(d @ df), C)
        P_new = _objective(beta + t * d, f + t * df, y, C, e0) if t > 0.0 else P
        if not P_new < P:  # no descent left: optimal up to rounding, or stuck
            return beta, it, _kkt_gap(beta, f, y, C) <= 1e-8 * max(1.0, C)
        beta = beta + t * d
        f = f + t * df
        P = P_new
        S = y * f < 1.0
    return beta, max_iter, False


def solve_dual(K: np.ndarray, Y: np.ndarray, *, C: float = 1.0, intercept_scaling: float = 1.0,
               beta0: np.ndarray | None = None, active0: np.ndarray | None = None,
               max_iter: int = 200, tol: float = 1e-11,
               kernel_has_intercept: bool = False, caches: list | None = None,
               version=None, offset: np.ndarray | None = None,
               polish: bool = True) -> DualSolution:
    """Solve the squared-hinge L2 SVM dual for each column of ``Y`` (±1) over Gram ``K``.

    ``K`` (n x n, symmetric PSD) is the plain feature Gram; ``intercept_scaling**2`` is added
    for the regularised intercept unless ``kernel_has_intercept``. ``beta0`` (n x m) is a warm
    start and ``active0`` (n x m bool) a guess of the margin violators at the optimum (e.g.
    those of a previous, similar problem). ``caches`` (one dict per column) keeps each
    column's last Cholesky factor, keyed by ``version`` (bump it when ``K`` changes) and the
    active set, for ``refine_dual``; ``offset`` (n x m) is added to the decision values
    (``f = Kb beta + offset``, see ``refine_dual``). ``polish=False`` skips the iterative
    refinement of each linear solve (for a ``K`` whose own error is far above the solve's
    rounding, e.g. float32 products). Returns ``beta`` with ``w = X^T beta`` and
    ``intercept = intercept_scaling**2 * beta.sum(0)``.
    """
    K = np.asarray(K, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    n, m = Y.shape
    if K.shape != (n, n):
        raise ValueError(f"Gram shape {K.shape} does not match {n} labels")
    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    Kb = K if kernel_has_intercept else K + intercept_scaling ** 2
    B = np.zeros((n, m)) if beta0 is None else np.array(beta0, dtype=np.float64, copy=True)
    if active0 is not None:
        active0 = np.asarray(active0, dtype=bool).reshape(n, m)
    n_iter = np.zeros(m, dtype=np.int64)
    ok = True
    shared: dict = {}
    for k in range(m):
        S0 = None if active0 is None else active0[:, k]
        cache = shared if caches is None else caches[k]
        e = None if offset is None else offset[:, k]
        B[:, k], n_iter[k], conv = _solve_one(Kb, Y[:, k], C, B[:, k], S0, max_iter, tol,
                                              cache, version, e, polish)
        ok &= conv
    return DualSolution(beta=B, n_iter=n_iter, converged=ok)


def refine_dual(Kb: np.ndarray, Y: np.ndarray, beta: np.ndarray, f: np.ndarray, *,
                C: float, caches: list, version=None) -> tuple[np.ndarray, DualSolution]:
    """Defect correction: ``f`` (n x m) are the *exact* decision values of ``beta``, ``Kb`` an
    approximation of the exact Gram (e.g. float32 products). Solves the problem whose
    decision values are ``Kb beta' + (f - Kb beta)`` -- exact at ``beta``, off by
    ``(Kb_exact - Kb)(beta' - beta)`` elsewhere -- by the active-set Newton method with its
    line search, from ``beta``. Each correction shrinks the error by about the relative
    error of ``Kb``; active-set changes are handled by the solver (a plain Newton step on a
    changed active set can overshoot on nearly degenerate points)."""
    offset = f - Kb @ beta
    sol = solve_dual(Kb, Y, C=C, beta0=beta, active0=Y * f < 1.0, kernel_has_intercept=True,
                     caches=caches, version=version, offset=offset)
    return sol.beta, sol


def kkt_violation(K: np.ndarray, y: np.ndarray, beta: np.ndarray, *, C: float = 1.0,
                  intercept_scaling: float = 1.0) -> float:
    """Largest violation of the optimality conditions of one task (0 at the exact optimum):
    ``alpha_i = 2C max(0, 1 - y_i f_i)`` and ``alpha_i >= 0``."""
    y = np.asarray(y, dtype=np.float64)
    f = (np.asarray(K, dtype=np.float64) + intercept_scaling ** 2) @ beta
    alpha = beta * y
    target = 2.0 * C * np.maximum(0.0, 1.0 - y * f)
    return float(max(np.max(np.abs(alpha - target)), np.max(np.maximum(-alpha, 0.0))))


def fit_linear_svc(X: np.ndarray, labels: np.ndarray, *, C: float = 1.0,
                   intercept_scaling: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``LinearSVC(C, loss="squared_hinge", penalty="l2")`` solved exactly via its dual.

    Returns ``(coef, intercept, classes)`` shaped like scikit-learn's (``coef`` is 1 x p for
    two classes, n_classes x p otherwise).
    """
    X = np.asarray(X, dtype=np.float64)
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    if classes.size < 2:
        raise ValueError("need at least two classes")
    Y = ovr_targets(codes, classes.size)
    sol = solve_dual(X @ X.T, Y, C=C, intercept_scaling=intercept_scaling)
    coef = (X.T @ sol.beta).T
    intercept = intercept_scaling ** 2 * sol.beta.sum(axis=0)
    return coef, intercept, classes
