"""The fast engine: every fit of RFE-CV solved exactly, all runs in lockstep.

Runs are the CV folds and the final fit on all samples. Per round, per run: solve the dual
over the run's (float32-accumulated) Gram, compute the coefficients and decision values in
float64 from the data, certify the round's decisions from the duality gap (``_certify``),
refine the solution with the exact residual until they are certified, eliminate, and
downdate the Gram. Design and measurements: ``docs/rfecv.md``.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from .._progress import step_bar
from ._svm import ovr_targets, refine_dual, solve_dual
from . import _gram
from ._certify import (
    cut_certified,
    gap_eps,
    importance_bounds,
    predictions_certified,
    smallest,
)
from ._layout import RunLayout, SampleLayout
from ._pass import centered64, coef_pass
from ._scoring import predict, score

INIT_ROWS = 1024     # features per initial Gram block (a task of the thread pool)
REFRESH_RATIO = 16   # rebuild a Gram once it has shrunk this much since it was built
EXACT_BELOW = 2      # a rebuild with <= EXACT_BELOW * n_train features is done in float64
MAX_PASSES = 6       # coefficient passes per round before a decision is left uncertified
DENSE64_BYTES = 1 << 30  # keep a float64 centred copy for the passes up to this size

_U = 2.0 ** -53


class _Run:
    """One recursive elimination and its Gram ``K = Z_train Z_train^T + 1`` over the active
    features (``exact``: float64 products, else float32 products accumulated in float64)."""

    def __init__(self, layout: RunLayout, p: int, Y: np.ndarray, exact: bool):
        ntr = layout.train.size
        self.layout, self.Y, self.exact = layout, Y, exact
        self.mu, self.inv = np.zeros(p), np.zeros(p)
        self.K = np.ones((ntr, ntr))
        self.lock = threading.Lock()
        self.version = 0
        self.active = np.ones(p, dtype=bool)
        self.beta = np.zeros((ntr, Y.shape[1]))
        self.S: np.ndarray | None = None
        self.caches = [{} for _ in range(Y.shape[1])]
        self.test_sq = np.zeros(layout.test.size)
        self.n_ref = p
        self.scores: list[float] = []
        self.removed = np.zeros(0, dtype=np.int64)
        self.count = dict.fromkeys(("unconverged", "newton_steps", "solves", "uncertified",
                                    "refinements", "to_exact"), 0)


@dataclass
class _Ctx:
    Xt: np.ndarray
    center: np.ndarray        # all-sample mean per feature (the pass works on x - center)
    dabs: np.ndarray          # max |x - center| per feature
    const: np.ndarray
    scale: bool
    C: float
    n_classes: int
    codes: np.ndarray         # class codes in the reordered sample order
    atom_starts: np.ndarray
    weights: np.ndarray       # atoms x runs, 1 where the atom is in the run's training set
    counts: np.ndarray        # training samples per run
    pool: ThreadPoolExecutor
    threads: int
    Dt: np.ndarray | None = None   # float64 Xt - center, when small enough
    seconds: dict = field(default_factory=dict)
    passes: int = 0


class _Inline:
    """Executor stand-in for one thread: ``map`` runs in the calling thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, *iterables):
        return map(fn, *iterables)


def n_threads_default() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(8, os.cpu_count() or 1))


def _timed(ctx: _Ctx, key: str, fn, *args):
    """Run ``fn``, adding its wall time to ``ctx.seconds[key]`` and its CPU time (all
    threads) to ``ctx.seconds[key + "_cpu"]``."""
    clock, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    ctx.seconds[key] = ctx.seconds.get(key, 0.0) + time.perf_counter() - clock
    ctx.seconds[key + "_cpu"] = ctx.seconds.get(key + "_cpu", 0.0) + time.process_time() - cpu
    return out


def _run_tasks(ctx: _Ctx, tasks, parallel: bool = True) -> None:
    """Gram updates ``(run, rows, sign)``, largest first, over the thread pool (``parallel``;
    not from inside a pool task)."""
    tasks = sorted(tasks, key=lambda t: -t[1].size * t[0].layout.train.size ** 2)
    mapper = ctx.pool.map if parallel else map
    list(mapper(lambda t: _gram.update_rows(ctx.Xt, *t), tasks))


def _init_grams(ctx: _Ctx, runs) -> None:
    p = ctx.Xt.shape[0]
    blocks = [(j0, min(p, j0 + INIT_ROWS)) for j0 in range(0, p, INIT_ROWS)]
    list(ctx.pool.map(lambda b: _gram.init_block(ctx.Xt, b[0], b[1], runs, ctx), blocks))
    for run in runs:
        run.version += 1


def _reset(run: _Run, exact: bool) -> list:
    """Start a rebuild of the run's Gram from its active features; returns the tasks."""
    run.exact = run.exact or exact
    run.K[...] = 1.0
    run.version += 1
    run.n_ref = max(1, int(np.count_nonzero(run.active & (run.inv != 0.0))))
    return _gram.update_tasks(run, np.flatnonzero(run.active), 1.0)


def _rebuild(ctx: _Ctx, runs_exact, parallel: bool = True) -> None:
    """Rebuild Grams from the active features (``runs_exact``: list of (run, exact))."""
    tasks = []
    for run, exact in runs_exact:
        tasks += _reset(run, exact)
    _run_tasks(ctx, tasks, parallel)


def _solve(ctx: _Ctx, run: _Run) -> None:
    """Exact solve over the run's Gram (a float32 Gram that is not positive definite enough
    for the Cholesky switches the run to float64 first)."""
    for attempt in range(2):
        try:
            sol = solve_dual(run.K, run.Y, C=ctx.C, beta0=run.beta, active0=run.S,
                             kernel_has_intercept=True, caches=run.caches,
                             version=run.version)
            break
        except np.linalg.LinAlgError:
            if run.exact or attempt:
                raise
            run.count["to_exact"] += 1
            _rebuild(ctx, [(run, True)], parallel=False)
    run.beta = sol.beta
    run.count["unconverged"] += int(not sol.converged)
    run.count["newton_steps"] += int(sol.n_iter.sum())
    run.count["solves"] += 1


@dataclass
class _Check:
    ok: bool
    eps: np.ndarray
    floor: np.ndarray
    imp: np.ndarray | None = None
    f_test: np.ndarray | None = None


def _check(ctx: _Ctx, run: _Run, res, cs, k: int) -> _Check:
    """Certificate of one run's round from one pass: gap bound, cut, test predictions."""
    train, test = run.layout.train, run.layout.test
    n_tr = train.size
    W, f = res.W[:, cs], res.f[:, cs]
    t = run.Y * f[train]
    phi = res.gamma * res.amag[cs]
    rows = res.rows
    act_rows = run.active[rows] & (run.inv[rows] != 0.0)
    mag = (run.inv[rows] * (ctx.dabs[rows] + np.abs(run.mu[rows] - ctx.center[rows])))[
        act_rows]
    g_n = 1.02 * (n_tr + 8) * _U
    slack = 0.5 * (g_n * np.abs(run.beta).sum(axis=0)) ** 2 * (float(mag @ mag) + 1.0)
    eps = gap_eps(run.Y, run.beta, t, phi, ctx.C, slack)
    floor = np.sqrt(2.0 * ctx.C * n_tr) * (phi + 8.0 * _U * (3.0 + np.abs(t).max(axis=0)))
    imp_r, err_r = importance_bounds(W, eps)
    err_r[~act_rows] = 0.0
    p = run.active.size
    imp, err = np.zeros(p), np.zeros(p)
    imp[rows], err[rows] = imp_r, err_r
    act = np.flatnonzero(run.active)
    gone = smallest(imp[act], k)
    ok = cut_certified(imp[act], err[act], gone)
    run.removed = act[gone]
    f_test = f[test]
    if ok and test.size:
        bound = phi[None, :] + np.sqrt(run.test_sq * 1.01 + 1.0)[:, None] * eps[None, :]
        ok = predictions_certified(f_test, bound, ctx.n_classes)
    run.S = t < 1.0
    return _Check(ok, eps, floor, imp, f_test)


def _check_refine(ctx: _Ctx, run: _Run, res, cs, k: int, last_eps: dict, final: bool):
    """Check one run after a pass; refine it unless it is done. Returns ``(check, state)``
    with state ``"done"``, ``"again"`` or ``"exact"`` (refining does not converge: the
    float32 Gram is too far off; rebuild in float64)."""
    chk = _check(ctx, run, res, cs, k)
    at_floor = bool(np.all(chk.eps <= 16.0 * chk.floor))
    stalled = run in last_eps and not np.all(chk.eps < 0.25 * last_eps[run])
    if chk.ok or final or at_floor or (stalled and run.exact):
        run.count["uncertified"] += int(not chk.ok)
        return chk, "done"
    if stalled:
        return chk, "exact"
    run.beta, sol = refine_dual(run.K, run.Y, run.beta, res.f[run.layout.train, cs], C=ctx.C,
                                caches=run.caches, version=run.version)
    run.count["refinements"] += 1
    run.count["newton_steps"] += int(sol.n_iter.sum())
    return chk, "again"


def _certified_round(ctx: _Ctx, todo, k_remove: int) -> dict:
    """Passes until every run's decisions of this round are certified (refining the
    solutions with the exact residuals in between). Returns ``{run: _Check}``."""
    done, pending, last_eps = {}, list(todo), {}
    for it in range(MAX_PASSES):
        res = _timed(ctx, "coef_pass", coef_pass, ctx.Xt, ctx.center, ctx.dabs, pending,
                     ctx.pool, ctx.threads, ctx.Dt)
        ctx.passes += 1
        final = it + 1 == MAX_PASSES
        out = _timed(ctx, "certify", lambda: list(ctx.pool.map(
            lambda a: _check_refine(ctx, a[0], res, a[1], k_remove, last_eps, final),
            zip(pending, res.cols, strict=True))))
        again, to_exact = [], []
        for run, (chk, state) in zip(pending, out, strict=True):
            if state == "done":
                done[run] = chk
                continue
            last_eps[run] = chk.eps
            again.append(run)
            if state == "exact":
                to_exact.append(run)
                run.count["to_exact"] += 1
                last_eps.pop(run)
        if to_exact:
            _rebuild(ctx, [(run, True) for run in to_exact])
            list(ctx.pool.map(lambda r: _solve(ctx, r), to_exact))
        pending = again
        if not pending:
            break
    return done


def _eliminate(ctx: _Ctx, runs) -> None:
    """Remove each run's certified least important features and update its Gram: downdate
    by the removed features, or rebuild from the remaining ones when that is cheaper or the
    Gram has shrunk ``REFRESH_RATIO`` times since it was built (the rebuild is float64 once
    few features are left)."""
    tasks, rebuild = [], []
    for run in runs:
        removed = run.removed
        run.active[removed] = False
        n_left = int(np.count_nonzero(run.active & (run.inv != 0.0)))
        n_gone = int(np.count_nonzero(run.inv[removed] != 0.0))
        if n_left <= n_gone or n_left * REFRESH_RATIO < run.n_ref:
            rebuild.append((run, n_left <= EXACT_BELOW * run.layout.train.size))
        elif n_gone:
            tasks += _gram.update_tasks(run, removed, -1.0)
            run.version += 1
    for run, exact in rebuild:
        tasks += _reset(run, exact)
    _run_tasks(ctx, tasks)


def _stats(ctx: _Ctx, runs, stats: dict) -> None:
    total = {key: sum(run.count[key] for run in runs) for key in runs[0].count}
    stats.update(total, passes=ctx.passes, seconds=dict(ctx.seconds), threads=ctx.threads,
                 exact_runs=sum(run.exact for run in runs))


def setup(Xt, center, dabs, const, codes, n_classes, layout: SampleLayout, *, C: float,
          scale: bool, precision: str, pool, threads: int) -> tuple[_Ctx, list[_Run]]:
    """The shared context and the runs (final fit first), Grams not built yet."""
    n = Xt.shape[1]
    codes = np.asarray(codes)[layout.perm]
    Y = ovr_targets(codes, n_classes)
    runs = [_Run(rl, Xt.shape[0], Y[rl.train], exact=precision == "float64")
            for rl in layout.runs]
    weights = np.stack([rl.atoms for rl in layout.runs], axis=1)
    sizes_atoms = np.diff(np.append(layout.atom_starts, n))
    ctx = _Ctx(Xt, center, dabs, const, scale, C, n_classes, codes, layout.atom_starts,
               weights, sizes_atoms @ weights, pool, threads)
    return ctx, runs


def fast_rfecv(Xt: np.ndarray, center: np.ndarray, dabs: np.ndarray, const: np.ndarray,
               codes: np.ndarray,
               n_classes: int, layout: SampleLayout, *, C: float, sizes: list[int],
               scoring: str, scale: bool, progress: bool | None = None,
               n_threads: int | None = None, precision: str = "float32",
               stats: dict | None = None):
    """The fast engine on ``Xt`` (features x samples in ``layout.perm`` order; ``codes`` in
    the original order; ``center``/``dabs`` from ``feature_major``). Returns ``(fold_scores, elim_round)``: scores folds x sizes (largest
    size first) and, for the final run, the round in which each feature left (``len(sizes)``
    for those never removed; cut at the chosen size by the caller)."""
    p = Xt.shape[0]
    threads = n_threads or n_threads_default()
    n_rounds = len(sizes)
    elim_round = np.full(p, n_rounds, dtype=np.int64)
    executor = ThreadPoolExecutor(threads) if threads > 1 else _Inline()
    with (threadpool_limits(limits=1), executor as pool,
          step_bar("RFE-CV (fast)", len(layout.runs) * (n_rounds + 1), progress=progress)
          as advance):
        ctx, runs = setup(Xt, center, dabs, const, codes, n_classes, layout, C=C, scale=scale,
                          precision=precision, pool=pool, threads=threads)
        final, folds = runs[0], runs[1:]
        codes = ctx.codes
        _timed(ctx, "gram_init", _init_grams, ctx, runs)
        if Xt.size * 8 <= DENSE64_BYTES:
            ctx.Dt = _timed(ctx, "gram_init", centered64, Xt, center, pool)
        advance(len(runs))
        for r, size in enumerate(sizes):
            last = r + 1 == n_rounds
            todo = folds if last else runs
            _timed(ctx, "solve", lambda: list(pool.map(lambda run: _solve(ctx, run), todo)))
            k = 0 if last else size - sizes[r + 1]
            checks = _certified_round(ctx, todo, k)
            for run in folds:
                y_pred = predict(checks[run].f_test, n_classes)
                run.scores.append(score(scoring, codes[run.layout.test], y_pred))
            if not last:
                elim_round[final.removed] = r
                _timed(ctx, "eliminate", _eliminate, ctx, runs)
            advance(len(runs))
    if stats is not None:
        _stats(ctx, runs, stats)
    bad = sum(run.count["unconverged"] for run in runs)
    if bad:
        warnings.warn(f"the dual solver stopped before exact convergence in {bad} fits",
                      RuntimeWarning, stacklevel=3)
    return np.array([run.scores for run in folds]), elim_round
