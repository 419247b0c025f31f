"""Discrete-time survival: time bins, the hazard NLL, risk, Harrell's C-index, log-rank.

Naming: ``time`` is the follow-up time, ``event`` is 1 when the event (death) was observed
and 0 when the patient was censored. Nothing here is called "censorship".
"""

from __future__ import annotations

import warnings

import numpy as np

from .._errors import EvaluationError

N_BINS = 4
EDGE_EPS = 1e-6
TIED_TOL = 1e-8


def survival_bins(time, event, n_bins: int = N_BINS) -> np.ndarray:
    """Bin edges: quantiles of the uncensored times, outer edges widened to the cohort range.

    Parameters
    ----------
    time
        Follow-up time per patient of the cohort the bins are fitted on (in the probes: the
        training fold only).
    event
        1 where the event was observed, 0 where censored.
    n_bins
        Number of bins (reference: 4).

    Returns
    -------
    ``n_bins + 1`` non-decreasing edges; the first is ``min(time) - 1e-6``, the last
    ``max(time) + 1e-6`` over all given patients (censored ones included).
    """
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    if n_bins < 1:
        raise EvaluationError(f"n_bins must be >= 1, got {n_bins}")
    if not event.any():
        raise EvaluationError("no events (deaths) among the patients: survival bins need uncensored times")
    edges = np.quantile(time[event], np.linspace(0.0, 1.0, n_bins + 1))
    edges[0] = time.min() - EDGE_EPS
    edges[-1] = time.max() + EDGE_EPS
    return np.maximum.accumulate(edges)


def assign_bins(time, edges) -> np.ndarray:
    """Bin index of each time: bin ``i`` holds ``edges[i] <= t < edges[i+1]``.

    Parameters
    ----------
    time
        Follow-up times.
    edges
        Edges from :func:`survival_bins`.

    Returns
    -------
    int64 indices in ``[0, len(edges) - 2]``; times outside the fitted range (held-out
    patients) fall into the first or last bin.
    """
    edges = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(edges, np.asarray(time, dtype=np.float64), side="right") - 1
    return np.clip(idx, 0, len(edges) - 2).astype(np.int64)


def discrete_hazard_nll(logits, bins, event):
    """Negative log-likelihood of the discrete-time hazard model (batch mean).

    Parameters
    ----------
    logits
        Tensor (B, K); hazard ``h = sigmoid(logits)``, survival ``S = cumprod(1 - h)``.
    bins
        Long tensor (B,): the bin of each patient's time.
    event
        Float tensor (B,): 1 died in that bin (contributes ``S[bin-1] * h[bin]``), 0 censored
        (contributes ``S[bin]``).

    Returns
    -------
    Scalar tensor, computed in log space (``logsigmoid``) for stability.
    """
    import torch.nn.functional as F

    log_h = F.logsigmoid(logits)
    log_1mh = F.logsigmoid(-logits)
    log_s = log_1mh.cumsum(dim=1)
    idx = bins.long().unsqueeze(1)
    log_s_y = log_s.gather(1, idx).squeeze(1)
    log_h_y = log_h.gather(1, idx).squeeze(1)
    log_1mh_y = log_1mh.gather(1, idx).squeeze(1)
    event = event.to(logits.dtype)
    died = -(log_s_y - log_1mh_y) - log_h_y   # -log S(y-1) - log h(y)
    censored = -log_s_y                      # -log S(y)
    return (event * died + (1.0 - event) * censored).mean()


def risk_from_logits(logits) -> np.ndarray:
    """Risk score ``-sum_k S_k`` (higher = earlier expected event).

    Parameters
    ----------
    logits
        Array (n, K) of hazard logits.

    Returns
    -------
    float64 array (n,).
    """
    logits = np.asarray(logits, dtype=np.float64)
    hazard = 1.0 / (1.0 + np.exp(-logits))
    return -np.cumprod(1.0 - hazard, axis=1).sum(axis=1)


def concordance_index(time, event, risk, *, tied_tol: float = TIED_TOL) -> float:
    """Harrell's C-index of a risk score (higher risk = earlier event).

    Parameters
    ----------
    time
        Follow-up times.
    event
        1 where the event was observed, 0 where censored.
    risk
        Predicted risk.
    tied_tol
        Risks closer than this count as tied (0.5).

    Returns
    -------
    Concordant fraction of comparable pairs: ``(i, j)`` with ``event_i`` and ``time_i < time_j``,
    or equal times with ``j`` censored. Equals scikit-survival
    ``concordance_index_censored(event, time, risk, tied_tol)[0]`` and lifelines
    ``concordance_index(time, -risk, event)``. NaN with a warning when no pair is comparable
    (e.g. no events).
    """
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=np.float64)
    if not (len(time) == len(event) == len(risk)):
        raise EvaluationError(f"time, event and risk differ in length ({len(time)}, {len(event)}, {len(risk)})")
    if not (np.isfinite(time).all() and np.isfinite(risk).all()):
        raise EvaluationError("time and risk must be finite for the C-index")
    score, pairs = 0.0, 0
    events = np.flatnonzero(event)
    for chunk in np.array_split(events, max(1, int(np.ceil(len(events) / 512)))):
        t_i, r_i = time[chunk, None], risk[chunk, None]
        comparable = (time[None, :] > t_i) | ((time[None, :] == t_i) & ~event[None, :])
        diff = r_i - risk[None, :]
        tied = np.abs(diff) <= tied_tol
        score += np.count_nonzero(comparable & (diff > 0) & ~tied) + 0.5 * np.count_nonzero(comparable & tied)
        pairs += np.count_nonzero(comparable)
    if pairs == 0:
        warnings.warn("C-index undefined: no comparable pairs (no events, or every event at the "
                      "latest time); reported as NaN", stacklevel=2)
        return float("nan")
    return float(score / pairs)


def logrank_p(time, event, groups) -> float:
    """Log-rank test p-value between two groups (lifelines ``logrank_test``).

    Parameters
    ----------
    time
        Follow-up times.
    event
        1 where the event was observed, 0 where censored.
    groups
        Two distinct group labels, one per patient.

    Returns
    -------
    p-value; NaN when a group is empty.
    """
    from lifelines.statistics import logrank_test

    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(int)
    groups = np.asarray(groups)
    names = np.unique(groups)
    if len(names) != 2:
        return float("nan")
    a, b = groups == names[0], groups == names[1]
    res = logrank_test(time[a], time[b], event_observed_A=event[a], event_observed_B=event[b])
    return float(res.p_value)
