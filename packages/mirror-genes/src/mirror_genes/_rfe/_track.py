"""Tracked samples: the part of a run's Gram that is kept up to date.

The solver only ever factorises the Gram on the margin violators ``S`` (``y f < 1``), and a
sample far outside the margin (``y f`` well above 1) has ``beta = 0`` and stays there while
a few features leave. In the data this engine is built for (many more features than
samples) about a third of the training samples are such samples, and they stay outside
round after round, so the Gram of each run is built and downdated only on its *tracked*
samples ``T``: those whose margin is below ``BAND`` at the start, as guessed from the final
fit (the run on all samples), whose Gram is built first and in full: its own margins for
the final fit, for a fold the margins of the fold's problem solved over that Gram
(:func:`guess`). The solves are then the exact solves of the problem restricted to ``T``.

Nothing relies on that guess being right: every pass computes the exact decision values of
*all* samples, and the refinement (``_rounds.refine``) first adds to ``T`` every untracked
sample whose exact margin is below ``1 + WIDEN_MARGIN`` (its Gram row is computed from the
data, ``_gram.widen``). The certificates are computed from the exact decision values of all
samples, so a sample that should have been tracked costs passes, never a wrong answer.
"""

from __future__ import annotations

import numpy as np

from . import _gram
from ._svm import solve_dual

BAND = 1.25           # track samples whose (guessed) margin y f is below this at the start
TRACK_ALL_ABOVE = 0.75  # ... unless that is more than this fraction of the training samples
WIDEN_MARGIN = 0.05   # an untracked sample joins once its exact margin is below 1 + this
WIDEN_LIMIT = 0.02    # once more than this fraction of the samples joined, track them all


def margins(run) -> np.ndarray:
    """Smallest ``y f`` over the tasks for each tracked sample, from the run's Gram and
    solution (``f = Kb beta``)."""
    f = run.K @ run.beta[run.track]
    return (run.Y[run.track] * f).min(axis=1)


def guess(final, run, C: float) -> np.ndarray:
    """Margins of ``run``'s training samples at the optimum of its problem over the final
    fit's Gram (built in full: the same samples, but scaled on all samples), the smallest
    over the tasks. The Gram is re-centred on the run's training samples first (exact,
    from the Gram alone: the intercept is regularised, so the centring matters); only the
    run's own scale factors are missing."""
    idx = run.layout.train      # the final fit trains on all samples, in this order
    K = final.K[np.ix_(idx, idx)] - 1.0
    m = K.mean(axis=1)
    Kb = K - m[:, None] - m[None, :] + (m.mean() + 1.0)
    # warm start: the final fit's solution on these samples (mostly the same support)
    sol = solve_dual(Kb, run.Y, C=C, kernel_has_intercept=True, beta0=final.beta[idx],
                     active0=final.beta[idx] != 0.0, polish=False)
    return (run.Y * (Kb @ sol.beta)).min(axis=1)


def narrow(run, keep: np.ndarray, built: bool) -> None:
    """Track only the training positions ``keep`` (boolean over the run's training samples;
    every sample is tracked so far). ``built``: the run's Gram is built (keep its part),
    else start it empty. Nothing changes when ``keep`` holds more than ``TRACK_ALL_ABOVE``
    of the samples (gathering columns would cost more than it saves)."""
    idx = np.flatnonzero(keep | np.any(run.beta != 0.0, axis=1))  # the support stays
    if idx.size == 0 or idx.size > TRACK_ALL_ABOVE * keep.size:
        return
    run.K = run.K[np.ix_(idx, idx)] if built else np.ones((idx.size, idx.size))
    run.track, run.cols, run.segments = idx, run.layout.train[idx], None
    run.version += 1


def violators(run, f: np.ndarray) -> np.ndarray:
    """Untracked training positions to track now: those whose exact margin (``f``: decision
    values of the training samples, n_train x tasks) is below ``1 + WIDEN_MARGIN`` for some
    task; all of them once the samples that joined would exceed ``WIDEN_LIMIT`` of the
    training samples (the guess does not fit this run: stop paying for rows and for the
    passes of solutions that missed a sample)."""
    n = f.shape[0]
    if run.track.size == n:
        return np.zeros(0, dtype=np.int64)
    near = (run.Y * f).min(axis=1) < 1.0 + WIDEN_MARGIN
    near[run.track] = False
    new = np.flatnonzero(near)
    if new.size and run.count["widened"] + new.size > WIDEN_LIMIT * n:
        rest = np.ones(n, dtype=bool)
        rest[run.track] = False
        new = np.flatnonzero(rest)
    return new


def add_violators(Xt: np.ndarray, run, f: np.ndarray) -> bool:
    """Track the samples :func:`violators` names (their Gram rows from the data); whether
    there were any."""
    new = violators(run, f)
    if new.size:
        _gram.widen(Xt, run, new)
        run.count["widened"] += int(new.size)
    return bool(new.size)


def expand(run, part: np.ndarray) -> np.ndarray:
    """A tracked-samples array back over all training samples (zeros elsewhere)."""
    out = np.zeros((run.layout.train.size,) + part.shape[1:], dtype=part.dtype)
    out[run.track] = part
    return out
