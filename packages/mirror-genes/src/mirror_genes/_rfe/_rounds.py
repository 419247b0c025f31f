"""One elimination round of a run: certify its decisions, or take them ahead and verify.

*Certified round* (``certify_round``): pass, check the duality-gap certificate (``_certify``),
refine the solution with the exact residual, pass again, ... until the round's cut and test
predictions are certified.

*Pipelined round* (``speculate`` then ``verify``): after the first pass of round ``r`` (at
the float32-Gram solution ``beta~``), refine to ``beta^`` and take the cut *now*: the
importances at ``beta^`` differ from those at ``beta~`` by at most ``|z_j| |beta^ - beta~|``
per coefficient, which decides every feature but a few near the cut; those few get their
exact coefficients at ``beta^`` from their rows. The next round's pass carries ``beta^``
(over round ``r``'s features) as extra columns, and ``verify`` checks the certificate
there. A failed verification (rare: a near tie) is undone by the caller, which then runs
the certified round. Either way the decisions are those certified at an exact optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _track
from ._certify import (
    ambiguous,
    cut_certified,
    gap_eps,
    importance_bounds,
    predictions_certified,
    smallest,
)
from ._svm import refine_dual

MAX_PASSES = 6   # passes of a certified round before a decision is left uncertified
_U = 2.0 ** -53


@dataclass
class Check:
    ok: bool                  # cut and predictions certified
    eps: np.ndarray           # gap bound per task
    floor: np.ndarray         # the bound's rounding floor per task
    removed: np.ndarray       # the cut (global feature indices)
    f_test: np.ndarray        # decision values of the test samples
    t: np.ndarray             # y * f on the training samples

    @property
    def at_floor(self) -> bool:
        return bool(np.all(self.eps <= 16.0 * self.floor))


@dataclass
class Pending:
    """A cut taken ahead of its certificate (verified in the next pass)."""

    beta: np.ndarray          # the refined solution the cut was taken at
    active: np.ndarray        # the round's active features (before the cut)
    k: int
    removed: np.ndarray


def _magnitudes(ctx, run) -> np.ndarray:
    """``(inv (|x - c|max + |mu - c|))^2`` per feature (0 where ``inv == 0``): the run's
    bound on every scaled value, squared (computed once; ``mu``/``inv`` are fixed)."""
    if run.mag2 is None:
        run.mag2 = np.square(run.inv * (ctx.dabs + np.abs(run.mu - ctx.center)))
    return run.mag2


def _bounds(ctx, run, res, cs, beta, act):
    """Gap bound ``eps`` (per task), its rounding floor, and ``phi``, ``t`` (``act``: the
    active features)."""
    train = run.layout.train
    t = run.Y * res.f[train, cs]
    phi = res.gamma * res.amag[cs]
    g_n = 1.02 * (train.size + 8) * _U
    mag2 = float(_magnitudes(ctx, run)[act].sum())
    slack = 0.5 * (g_n * np.abs(beta).sum(axis=0)) ** 2 * (mag2 + 1.0)
    eps = gap_eps(run.Y, beta, t, phi, ctx.C, slack)
    floor = np.sqrt(2.0 * ctx.C * train.size) * (phi + 8.0 * _U * (3.0 + np.abs(t).max(axis=0)))
    return eps, floor, phi, t


def _own(res, cs, active):
    """The active features and their coefficients in the pass (``res.rows`` holds them)."""
    act = np.flatnonzero(active)
    return act, res.W[res.positions(act), cs]


def check(ctx, run, res, cs, k: int, beta: np.ndarray, active: np.ndarray) -> Check:
    """Certificate of a round from a pass that carried ``beta`` over ``active``: the cut of
    the ``k`` least important features and the test predictions."""
    act, W = _own(res, cs, active)
    eps, floor, phi, t = _bounds(ctx, run, res, cs, beta, act)
    imp, err = importance_bounds(W, eps)
    err[run.inv[act] == 0.0] = 0.0
    gone = smallest(imp, k)
    ok = cut_certified(imp, err, gone)
    f_test = res.f[run.layout.test, cs]
    if ok and f_test.size:
        bound = phi[None, :] + np.sqrt(run.test_sq * 1.01 + 1.0)[:, None] * eps[None, :]
        ok = predictions_certified(f_test, bound, ctx.n_classes)
    return Check(ok, eps, floor, act[gone], f_test, t)


def refine(ctx, run, res, cs) -> None:
    """``run.beta`` <- one defect correction from the pass's exact decision values (after
    tracking the untracked samples those values put at the margin)."""
    _track.add_violators(ctx.Xt, run, res.f[run.layout.train, cs])
    _correct(ctx, run, res, cs)


def _correct(ctx, run, res, cs) -> None:
    """The defect correction of :func:`refine` on the samples tracked now."""
    f = res.f[run.layout.train, cs]
    beta, sol = refine_dual(run.K, run.Y[run.track], run.beta[run.track], f[run.track],
                            C=ctx.C, caches=run.caches, version=run.version)
    run.beta = _track.expand(run, beta)
    run.count["refinements"] += 1
    run.count["newton_steps"] += int(sol.n_iter.sum())


def _step(ctx, run, res, cs, k, last_eps: dict, final: bool):
    """Check a run of a certified round; refine it unless done. ``(check, state)`` with state
    ``"done"``, ``"again"`` or ``"exact"`` (refining stalls: the float32 Gram is too far off,
    rebuild it in float64)."""
    chk = check(ctx, run, res, cs, k, run.beta, run.active)
    run.S = chk.t < 1.0
    stalled = run in last_eps and not np.all(chk.eps < 0.25 * last_eps[run])
    if chk.ok or final or chk.at_floor or (stalled and run.exact):
        run.count["uncertified"] += int(not chk.ok)
        return chk, "done"
    if stalled:
        return chk, "exact"
    refine(ctx, run, res, cs)
    return chk, "again"


def certify_round(ctx, todo, k: int, passer, rebuild_exact, solve) -> dict:
    """Passes until every run's decisions of this round are certified (refining in between).
    ``passer(entries)`` runs a pass; ``rebuild_exact(runs)`` and ``solve(run)`` are the
    engine's. Returns ``{run: Check}``."""
    done, pending, last_eps = {}, list(todo), {}
    for it in range(MAX_PASSES):
        res = passer([(run, run.beta, run.active) for run in pending])
        final = it + 1 == MAX_PASSES
        out = list(ctx.pool.map(lambda a: _step(ctx, a[0], res, a[1], k, last_eps, final),  # noqa: B023
                                zip(pending, res.cols, strict=True)))
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
            rebuild_exact(to_exact)
            list(ctx.pool.map(solve, to_exact))
        pending = again
        if not pending:
            break
    return done


def _exact_importance(ctx, run, beta: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``sum_c w_c^2`` at ``beta`` for a few feature rows, from the data."""
    train = run.layout.train
    D = np.subtract(ctx.Xt[rows][:, train], ctx.center[rows, None], dtype=np.float64)
    w = D @ beta - np.outer(run.mu[rows] - ctx.center[rows], beta.sum(axis=0))
    w *= run.inv[rows, None]
    return np.einsum("ij,ij->i", w, w)


def speculate(ctx, run, res, cs, k: int) -> Pending:
    """Refine the run's solution from this pass and take the round's cut ahead (see the
    module docstring); the pass carried ``run.beta`` over ``run.active``."""
    train = run.layout.train
    beta0 = run.beta
    run.S = run.Y * res.f[train, cs] < 1.0
    # a float64 Gram's solution is exact already (up to rounding), unless an untracked
    # sample reached the margin
    added = _track.add_violators(ctx.Xt, run, res.f[train, cs])
    if not run.exact or added:
        _correct(ctx, run, res, cs)
    pend = Pending(run.beta, run.active.copy(), k, np.zeros(0, dtype=np.int64))
    if k == 0:
        return pend
    act, W = _own(res, cs, run.active)
    step = np.linalg.norm(run.beta - beta0, axis=0)
    znorm = np.sqrt(train.size) * np.where(
        run.inv[act] == 0.0, 0.0,
        1.0 if ctx.scale else ctx.dabs[act] + np.abs(ctx.center[act]))
    eps = znorm[:, None] * step[None, :] * (1.0 + 1e-6)    # bounds |w(beta^) - w(beta~)|
    imp = np.einsum("ij,ij->i", W, W)
    err = np.einsum("ij,ij->i", 2.0 * np.abs(W) + eps, eps)
    gone = smallest(imp, k)
    amb = ambiguous(imp, err, gone)
    if amb.size:  # the sure part of the cut, plus the smallest exact importances of the rest
        sure = np.setdiff1d(gone, amb, assume_unique=True)
        exact = _exact_importance(ctx, run, run.beta, act[amb])
        gone = np.sort(np.concatenate((sure, amb[smallest(exact, k - sure.size)])))
    pend.removed = act[gone]
    return pend


def verify(ctx, run, res, cs, pend: Pending) -> tuple[Check, str]:
    """Check a cut taken ahead: ``"ok"`` (certified, or at the rounding floor, and the same
    cut), ``"redo"`` (certified or at the floor, but a different cut: take that one) or
    ``"slow"`` (not certified yet: run the certified round)."""
    chk = check(ctx, run, res, cs, pend.k, pend.beta, pend.active)
    if not (chk.ok or chk.at_floor):
        return chk, "slow"
    same = np.array_equal(np.sort(chk.removed), np.sort(pend.removed))
    return chk, "ok" if same else "redo"
