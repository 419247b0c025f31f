"""The fast engine: every fit of RFE-CV solved exactly, all runs in lockstep.

Runs are the CV folds and the final fit on all samples. Per round, per run: solve the dual
over the run's (float32-accumulated) Gram, compute coefficients and decision values in float64
from the data (one pass for all runs), refine the solution with the exact residual, take the
cut, and downdate the Gram; the cut and the test predictions are certified from the duality
gap (``_certify``) in the next round's pass (``_rounds``). Each Gram is kept on the run's
samples near the margin only (``_track``). Design: ``docs/rfecv.md``.
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
from . import _gram, _rounds, _track
from ._layout import RunLayout, SampleLayout
from ._pass import coef_pass
from ._scoring import predict, score
from ._svm import ovr_targets, solve_dual

INIT_ROWS = 2048     # features per initial Gram block (a task of the thread pool)
REFRESH_RATIO = 16   # rebuild a Gram once it has shrunk this much since it was built
EXACT_BELOW = 2      # Grams are float64 once at most EXACT_BELOW * n_train features are left


class _Run:
    """One recursive elimination and its Gram ``K = Z_T Z_T^T + 1`` over the active features
    and the tracked training samples ``track`` (positions in ``layout.train``; all at first,
    see ``_track``) (``exact``: float64 products, else float32 products accumulated in
    float64). ``beta`` and ``S`` cover all training samples (``beta = 0`` off ``track``)."""

    def __init__(self, layout: RunLayout, p: int, Y: np.ndarray, exact: bool):
        ntr = layout.train.size
        self.layout, self.Y, self.exact = layout, Y, exact
        self.mu, self.inv = np.zeros(p), np.zeros(p)
        self.track, self.cols, self.segments = np.arange(ntr), layout.train, layout.segments
        self.K = np.ones((ntr, ntr))
        self.lock = threading.Lock()
        self.version = 0
        self.active = np.ones(p, dtype=bool)
        self.beta = np.zeros((ntr, Y.shape[1]))
        self.S: np.ndarray | None = None
        self.caches = [{} for _ in range(Y.shape[1])]
        self.test_sq = np.zeros(layout.test.size)
        self.n_ref = p
        self.mag2: np.ndarray | None = None   # see _rounds._magnitudes
        self.scores: list[float] = []
        self.removed = np.zeros(0, dtype=np.int64)
        self.pending: _rounds.Pending | None = None
        self.last_update: np.ndarray | None = None   # rows of the last downdate (None: rebuilt)
        self.count = dict.fromkeys(("unconverged", "newton_steps", "solves", "uncertified",
                                    "refinements", "to_exact", "recoveries", "widened"), 0)


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
    tasks = sorted(tasks, key=lambda t: -t[1].size * t[0].track.size ** 2)
    mapper = ctx.pool.map if parallel else map
    list(mapper(lambda t: _gram.update_rows(ctx.Xt, *t), tasks))


def _init_grams(ctx: _Ctx, runs) -> None:
    """Statistics of every run and the final fit's Gram; solve the final fit, track each
    run's samples near its margin (``_track``), then build the folds' Grams on those."""
    p = ctx.Xt.shape[0]
    blocks = [(j0, min(p, j0 + INIT_ROWS)) for j0 in range(0, p, INIT_ROWS)]
    final, folds = runs[0], runs[1:]
    list(ctx.pool.map(lambda b: _gram.init_block(ctx.Xt, b[0], b[1], runs, ctx, [final]),
                      blocks))
    final.version += 1
    if not folds:
        return
    _solve(ctx, final)
    # each fold's guess: its problem solved over the final fit's Gram (its samples, the
    # final fit's scaling), then the final fit keeps its own samples near the margin
    guesses = list(ctx.pool.map(lambda run: _track.guess(final, run, ctx.C), folds))
    _track.narrow(final, _track.margins(final) < _track.BAND, built=True)
    for run, t in zip(folds, guesses, strict=True):
        _track.narrow(run, t < _track.BAND, built=False)
    list(ctx.pool.map(lambda b: _gram.gram_block(ctx.Xt, b[0], b[1], folds), blocks))
    for run in folds:
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
            sol = solve_dual(run.K, run.Y[run.track], C=ctx.C, beta0=run.beta[run.track],
                             active0=None if run.S is None else run.S[run.track],
                             kernel_has_intercept=True,
                             caches=run.caches, version=run.version, polish=run.exact)
            break
        except np.linalg.LinAlgError:
            if run.exact or attempt:
                raise
            run.count["to_exact"] += 1
            _rebuild(ctx, [(run, True)], parallel=False)
    run.beta = _track.expand(run, sol.beta)
    run.count["unconverged"] += int(not sol.converged)
    run.count["newton_steps"] += int(sol.n_iter.sum())
    run.count["solves"] += 1


def _pass(ctx: _Ctx, entries):
    res = _timed(ctx, "coef_pass", coef_pass, ctx.Xt, ctx.center, ctx.dabs, entries, ctx.pool,
                 ctx.threads)
    ctx.passes += 1
    return res


def _certify(ctx: _Ctx, todo, k: int) -> dict:
    """The certified (non-pipelined) round for ``todo``: ``{run: Check}``."""
    return _rounds.certify_round(ctx, todo, k, lambda e: _pass(ctx, e),
                                 lambda rs: _rebuild(ctx, [(r, True) for r in rs]),
                                 lambda r: _solve(ctx, r))


def _eliminate(ctx: _Ctx, runs, parallel: bool = True) -> None:
    """Remove each run's least important features (``run.removed``) and update its Gram:
    downdate by the removed features, or rebuild from the remaining ones when that is
    cheaper or the Gram has shrunk ``REFRESH_RATIO`` times since it was built; once at most
    ``EXACT_BELOW * n_train`` features are left the Gram is rebuilt in float64 (cheap by
    then, and the solves need no refinement any more)."""
    tasks, rebuild = [], []
    for run in runs:
        removed = run.removed
        run.active[removed] = False
        n_left = int(np.count_nonzero(run.active & (run.inv != 0.0)))
        n_gone = int(np.count_nonzero(run.inv[removed] != 0.0))
        run.last_update = None
        few = n_left <= EXACT_BELOW * run.layout.train.size
        if n_left <= n_gone or n_left * REFRESH_RATIO < run.n_ref or (few and not run.exact):
            rebuild.append((run, few))
        elif n_gone:
            tasks += _gram.update_tasks(run, removed, -1.0)
            run.version += 1
            run.last_update = removed
    for run, exact in rebuild:
        tasks += _reset(run, exact)
    _run_tasks(ctx, tasks, parallel)


def _undo(ctx: _Ctx, run: _Run, removed: np.ndarray) -> None:
    """Put back the features of a cut taken ahead (its verification failed)."""
    run.active[removed] = True
    if run.last_update is not None:
        run.version += 1
        _run_tasks(ctx, _gram.update_tasks(run, run.last_update, 1.0))
    else:
        _rebuild(ctx, [(run, False)])
    run.last_update = None


def _stats(ctx: _Ctx, runs, stats: dict) -> None:
    total = {key: sum(run.count[key] for run in runs) for key in runs[0].count}
    stats.update(total, passes=ctx.passes, seconds=dict(ctx.seconds), threads=ctx.threads,
                 exact_runs=sum(run.exact for run in runs),
                 tracked=[int(run.track.size - run.count["widened"]) for run in runs],
                 train=[int(run.layout.train.size) for run in runs])


def setup(Xt, center, dabs, const, codes, n_classes, layout: SampleLayout, *, C: float,
          scale: bool, precision: str, pool, threads: int) -> tuple[_Ctx, list[_Run]]:
    """The shared context and the runs (final fit first), Grams not built yet."""
    n = Xt.shape[1]
    codes = np.asarray(codes)[layout.perm]
    Y = ovr_targets(codes, n_classes)
    p = Xt.shape[0]
    # float32 Grams pay off while there are many more features than training samples
    runs = [_Run(rl, p, Y[rl.train],
                 exact=precision == "float64" or p <= EXACT_BELOW * rl.train.size)
            for rl in layout.runs]
    weights = np.stack([rl.atoms for rl in layout.runs], axis=1)
    sizes_atoms = np.diff(np.append(layout.atom_starts, n))
    ctx = _Ctx(Xt, center, dabs, const, scale, C, n_classes, codes, layout.atom_starts,
               weights, sizes_atoms @ weights, pool, threads)
    return ctx, runs


@dataclass
class _Book:
    """Where certified rounds are recorded: fold scores, and the final run's cut rounds."""

    scoring: str
    final: _Run
    elim_round: np.ndarray

    def commit(self, ctx: _Ctx, run: _Run, chk: _rounds.Check, rnd: int) -> None:
        if run is self.final:
            self.elim_round[chk.removed] = rnd
        else:
            y_pred = predict(chk.f_test, ctx.n_classes)
            run.scores.append(score(self.scoring, ctx.codes[run.layout.test], y_pred))


def _round_certified(ctx: _Ctx, runs, todo, r: int, k: int, book: _Book) -> None:
    """Round ``r`` without taking the cut ahead: certify, record, then cut."""
    for run, chk in _certify(ctx, todo, k).items():
        book.commit(ctx, run, chk, r)
        run.removed = chk.removed
    if k:
        _timed(ctx, "eliminate", _eliminate, ctx, todo)


def _recover(ctx: _Ctx, run: _Run, chk, verdict: str, r: int, k: int, redo: bool,
             book: _Book, nxt: bool) -> None:
    """The cut of round ``r - 1`` taken ahead failed its verification: put it back, certify
    round ``r - 1`` (unless the verification already did), cut, and (``redo``: the run takes
    part in round ``r``) do round ``r`` again up to its cut taken ahead, then the next
    solve (``nxt``)."""
    pend, run.pending = run.pending, None
    if pend.removed.size:
        _undo(ctx, run, pend.removed)
    run.beta = pend.beta.copy()
    if verdict == "slow":
        chk = _certify(ctx, [run], pend.k)[run]
    else:
        run.count["uncertified"] += int(not chk.ok)
    book.commit(ctx, run, chk, r - 1)
    if pend.k:
        run.removed = chk.removed
        _eliminate(ctx, [run])
    if redo:
        _solve(ctx, run)
        res = _pass(ctx, [(run, run.beta, run.active)])
        _ahead(ctx, run, res, res.cols[0], k, nxt, parallel=True)


def _ahead(ctx: _Ctx, run: _Run, res, cs, k: int, nxt: bool, parallel: bool) -> None:
    """Refine, take the round's cut ahead, cut, and solve the next round (``nxt``)."""
    pend = _rounds.speculate(ctx, run, res, cs, k)
    run.pending, run.removed = pend, pend.removed
    if k:
        _eliminate(ctx, [run], parallel)
    if nxt:
        _solve(ctx, run)


def _round_ahead(ctx: _Ctx, runs, todo, r: int, k: int, book: _Book, nxt) -> None:
    """Round ``r`` pipelined (the runs of ``todo`` solved already): one pass carries the
    current solutions and the previous round's refined ones; then, per run, as one task of
    the thread pool: verify the previous cut, take this round's cut ahead, cut, solve the
    next round (runs in ``nxt``). A run whose verification fails is recovered afterwards."""
    entries = [(run, run.beta, run.active) for run in todo]
    verifying = [run for run in runs if run.pending is not None]
    entries += [(run, run.pending.beta, run.pending.active) for run in verifying]
    res = _pass(ctx, entries)
    cur = dict(zip(todo, res.cols[:len(todo)], strict=True))
    ver = dict(zip(verifying, res.cols[len(todo):], strict=True))

    def chain(run):
        out = None
        if run in ver:
            out = _rounds.verify(ctx, run, res, ver[run], run.pending)
            if out[1] != "ok":
                return out
            run.count["uncertified"] += int(not out[0].ok)
            run.pending = None
        if run in cur:
            _ahead(ctx, run, res, cur[run], k, run in nxt, parallel=False)
        return out

    order = [run for run in runs if run in cur or run in ver]
    outs = _timed(ctx, "rounds", lambda: list(ctx.pool.map(chain, order)))
    for run, out in zip(order, outs, strict=True):
        if out is None:
            continue
        if out[1] == "ok":
            book.commit(ctx, run, out[0], r - 1)
        else:
            run.count["recoveries"] += 1
            _recover(ctx, run, *out, r, k, run in cur, book, run in nxt)


def _verify_last(ctx: _Ctx, runs, r: int, book: _Book) -> None:
    """The pass that verifies the last round's predictions (taken ahead)."""
    waiting = [run for run in runs if run.pending is not None]
    if not waiting:
        return
    res = _pass(ctx, [(run, run.pending.beta, run.pending.active) for run in waiting])
    out = list(ctx.pool.map(lambda a: _rounds.verify(ctx, a[0], res, a[1], a[0].pending),
                            zip(waiting, res.cols)))
    for run, (chk, verdict) in zip(waiting, out, strict=True):
        if verdict == "ok":
            run.count["uncertified"] += int(not chk.ok)
            book.commit(ctx, run, chk, r)
            run.pending = None
        else:
            run.count["recoveries"] += 1
            _recover(ctx, run, chk, verdict, r + 1, 0, False, book, False)


def _loop(ctx: _Ctx, runs, sizes, book: _Book, pipeline: bool, advance) -> None:
    """All rounds (the final run sits out the last one: nothing is cut after it)."""
    n_rounds = len(sizes)

    def todo_of(r):
        return runs[1:] if r + 1 == n_rounds else runs

    if pipeline:
        _timed(ctx, "solve", lambda: list(ctx.pool.map(lambda run: _solve(ctx, run),
                                                       todo_of(0))))
    for r, size in enumerate(sizes):
        todo = todo_of(r)
        k = 0 if r + 1 == n_rounds else size - sizes[r + 1]
        if pipeline:
            nxt = set(todo_of(r + 1)) if r + 1 < n_rounds else set()
            _round_ahead(ctx, runs, todo, r, k, book, nxt)
        else:
            _timed(ctx, "solve", lambda: list(ctx.pool.map(lambda run: _solve(ctx, run), todo)))  # noqa: B023
            _round_certified(ctx, runs, todo, r, k, book)
        advance(len(runs))
    _verify_last(ctx, runs, n_rounds - 1, book)


def fast_rfecv(Xt: np.ndarray, center: np.ndarray, dabs: np.ndarray, const: np.ndarray,
               codes: np.ndarray, n_classes: int, layout: SampleLayout, *, C: float,
               sizes: list[int], scoring: str, scale: bool, progress: bool | None = None,
               n_threads: int | None = None, precision: str = "float32",
               pipeline: bool = True, stats: dict | None = None):
    """The fast engine on ``Xt`` (features x samples in ``layout.perm`` order; ``codes`` in
    the original order; ``center``/``dabs`` from ``feature_major``). ``pipeline``: take each
    round's cut ahead and certify it in the next round's pass (same answer, fewer passes).
    Returns ``(fold_scores, elim_round)``: scores folds x sizes (largest size first) and,
    for the final run, the round in which each feature left (``len(sizes)`` for those never
    removed; cut at the chosen size by the caller)."""
    threads = n_threads or n_threads_default()
    n_rounds = len(sizes)
    executor = ThreadPoolExecutor(threads) if threads > 1 else _Inline()
    with (threadpool_limits(limits=1), executor as pool,
          step_bar("RFE-CV (fast)", len(layout.runs) * (n_rounds + 1), progress=progress)
          as advance):
        ctx, runs = setup(Xt, center, dabs, const, codes, n_classes, layout, C=C, scale=scale,
                          precision=precision, pool=pool, threads=threads)
        book = _Book(scoring, runs[0], np.full(Xt.shape[0], n_rounds, dtype=np.int64))
        _timed(ctx, "gram_init", _init_grams, ctx, runs)
        advance(len(runs))
        _loop(ctx, runs, sizes, book, pipeline, advance)
    if stats is not None:
        _stats(ctx, runs, stats)
    bad = sum(run.count["unconverged"] for run in runs)
    if bad:
        warnings.warn(f"the dual solver stopped before exact convergence in {bad} fits",
                      RuntimeWarning, stacklevel=3)
    return np.array([run.scores for run in runs[1:]]), book.elim_round
