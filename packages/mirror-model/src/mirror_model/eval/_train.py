"""The torch linear probe: one seeded fit, epoch selection, and held-out predictions."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np

from ._inputs import SUBTYPING, Cohort, strata, stratified_holdout
from ._survival import assign_bins, concordance_index, discrete_hazard_nll, risk_from_logits

INNER, REFERENCE, FIXED = "inner", "reference", "fixed"
LR = {SUBTYPING: 2e-3, "survival": 3e-3}


@dataclass
class ProbeSpec:
    """How one linear probe is trained."""

    task: str
    n_out: int
    epochs: int = 100
    batch_size: int = 16
    lr: float = 2e-3
    label_smoothing: float = 0.1


@dataclass
class FitOutput:
    """Logits of the chosen model on the held-out rows and on the training fold, and the epoch."""

    val_logits: np.ndarray
    train_logits: np.ndarray
    selected_epoch: int
    n_inner_val: int


def targets(cohort: Cohort, idx: np.ndarray, edges) -> tuple:
    """Training targets as tensors: class indices, or (time bin, event)."""
    import torch

    if cohort.task == SUBTYPING:
        lookup = {c: i for i, c in enumerate(cohort.classes)}
        return (torch.as_tensor([lookup[v] for v in cohort.labels[idx]], dtype=torch.long),)
    return (torch.as_tensor(assign_bins(cohort.time[idx], edges)),
            torch.as_tensor(cohort.event[idx], dtype=torch.float32))


def probe_loss(spec: ProbeSpec, logits, target: tuple):
    """Label-smoothed cross-entropy (subtyping) or the discrete-hazard NLL (survival)."""
    import torch.nn.functional as F

    if spec.task == SUBTYPING:
        return F.cross_entropy(logits, target[0], label_smoothing=spec.label_smoothing)
    return discrete_hazard_nll(logits, target[0], target[1])


def standardise(X: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    """Scale every row with the mean and std of ``fit_rows`` (std 0 -> 1)."""
    mean = X[fit_rows].mean(axis=0)
    std = X[fit_rows].std(axis=0)
    return ((X - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread: probe matrices are tiny, and on a busy machine intra-op threads
    cost far more in synchronisation than they save (a 30x slowdown was measured on 2 cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_linear(x: np.ndarray, target: tuple, spec: ProbeSpec, seed: int, epochs: int,
               watch: np.ndarray | None = None):
    """Train ``nn.Linear`` with Adam on mini-batches (every case used; no drop_last).

    Returns the layer and, when ``watch`` is given, its logits on ``watch`` after every epoch.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(x.shape[1], spec.n_out)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(layer.parameters(), lr=spec.lr)
    xt = torch.from_numpy(x)
    wt = None if watch is None else torch.from_numpy(watch)
    history = []
    for _ in range(epochs):
        layer.train()
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(order), spec.batch_size):
            idx = order[start:start + spec.batch_size]
            loss = probe_loss(spec, layer(xt[idx]), tuple(t[idx] for t in target))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if wt is not None:
            with torch.no_grad():
                history.append(layer(wt).numpy().copy())
    return layer, history


def _logits(layer, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return layer(torch.from_numpy(x)).numpy().astype(np.float64)


def _heldout_score(cohort: Cohort, va: np.ndarray, logits: np.ndarray) -> float:
    """The reported metric on the held-out fold (reference protocol only): accuracy or C-index."""
    if cohort.task == SUBTYPING:
        return float(np.mean(np.asarray(cohort.classes)[logits.argmax(axis=1)] == cohort.labels[va]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return concordance_index(cohort.time[va], cohort.event[va], risk_from_logits(logits))


def _select_inner(cohort, tr, edges, spec, seed, fraction) -> tuple[int, int]:
    """Epoch with the lowest probe loss on an inner, stratified validation split of ``tr``."""
    import torch

    rng = np.random.default_rng([seed, 7])
    itr, iva = stratified_holdout(strata(cohort, tr, edges), fraction, rng)
    x = standardise(cohort.X, tr[itr])
    target_val = targets(cohort, tr[iva], edges)
    _, history = fit_linear(x[tr[itr]], targets(cohort, tr[itr], edges), spec, seed, spec.epochs,
                            watch=x[tr[iva]])
    with torch.no_grad():
        losses = [float(probe_loss(spec, torch.from_numpy(h), target_val)) for h in history]
    return int(np.argmin(losses)) + 1, len(iva)


def fit_predict(cohort, tr, va, edges, spec, seed, selection, *, scale_rows=None,
                inner_fraction: float = 0.2) -> FitOutput:
    """:func:`_fit_predict` on one torch thread."""
    with single_thread():
        return _fit_predict(cohort, tr, va, edges, spec, seed, selection, scale_rows=scale_rows,
                            inner_fraction=inner_fraction)


def _fit_predict(cohort: Cohort, tr: np.ndarray, va: np.ndarray, edges, spec: ProbeSpec, seed: int,
                selection: str, *, scale_rows: np.ndarray | None = None,
                inner_fraction: float = 0.2) -> FitOutput:
    """Train on rows ``tr`` and predict rows ``va`` with the epoch chosen by ``selection``.

    ``scale_rows`` (default ``tr``; the whole training fold for few-shot) fit the feature
    standardisation, and the returned training logits are on them (features only, no labels).

    ``inner``: the epoch minimising the loss on an inner split of ``tr``, then a refit on all
    of ``tr`` for that many epochs; ``reference``: the epoch maximising the held-out metric
    (the reference's optimistic protocol); ``fixed``: ``spec.epochs``.
    """
    scale_rows = tr if scale_rows is None else scale_rows
    x = standardise(cohort.X, scale_rows)
    target = targets(cohort, tr, edges)
    if selection == INNER:
        epoch, n_inner = _select_inner(cohort, tr, edges, spec, seed, inner_fraction)
        layer, _ = fit_linear(x[tr], target, spec, seed, epoch)
        return FitOutput(_logits(layer, x[va]), _logits(layer, x[scale_rows]), epoch, n_inner)
    if selection == FIXED:
        layer, _ = fit_linear(x[tr], target, spec, seed, spec.epochs)
        return FitOutput(_logits(layer, x[va]), _logits(layer, x[scale_rows]), spec.epochs, 0)
    _, history = fit_linear(x[tr], target, spec, seed, spec.epochs, watch=np.concatenate([x[va], x[scale_rows]]))
    scores = np.array([_heldout_score(cohort, va, h[:len(va)].astype(np.float64)) for h in history])
    epoch = int(np.nanargmax(scores)) + 1 if np.isfinite(scores).any() else spec.epochs
    chosen = history[epoch - 1].astype(np.float64)
    return FitOutput(chosen[:len(va)], chosen[len(va):], epoch, 0)
