"""Training loop for the supervised MIL baselines (ABMIL, PORPOISE) on one outer fold.

The epoch is chosen on an inner validation split of the training fold, never on the held-out
cases (the reference chose it on the reported fold: DESIGN.md section 4). Evaluation uses every
patch of every bag, in order, without dropping a last partial batch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._errors import ConfigError
from ..eval import concordance_index, discrete_hazard_nll, risk_from_logits
from ._common import pad_collate, resolve_device, to_device
from ._result import SUBTYPING, SURVIVAL, TASKS, BaselineResult


class _Indexed(Dataset):
    """Items of ``data`` at ``indices``, each paired with its position (to look targets up)."""

    def __init__(self, data, indices: np.ndarray) -> None:
        self.data, self.indices = data, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = int(self.indices[i])
        return self.data[idx], idx


class _Collate:
    """Collate (item, position) pairs: a class, not a closure, so DataLoader workers can pickle it."""

    def __init__(self, collate_fn=None, n_patches: int | None = None, generator=None) -> None:
        self.collate_fn, self.n_patches, self.generator = collate_fn, n_patches, generator

    def __call__(self, pairs):
        items, idx = zip(*pairs)
        if self.collate_fn is not None:
            batch = self.collate_fn(list(items))
        else:
            batch = pad_collate(items, self.n_patches, self.generator)
        return batch, torch.as_tensor(idx, dtype=torch.long)


class _Targets:
    """Labels of the training and inner-validation cases only; asking for any other case fails.

    Held-out labels are never copied in, so no code path of the loop can read them.
    """

    def __init__(self, task: str, y, event, time, allowed: np.ndarray) -> None:
        n = len(y)
        self.task, self.allowed = task, np.zeros(n, dtype=bool)
        self.allowed[allowed] = True
        self.y = np.zeros(n, dtype=np.int64)
        self.y[allowed] = np.asarray(y)[allowed].astype(np.int64)
        self.event = np.zeros(n, dtype=np.float64)
        self.time = np.zeros(n, dtype=np.float64)
        if task == SURVIVAL:
            self.event[allowed] = np.asarray(event, dtype=np.float64)[allowed]
            self.time[allowed] = np.asarray(time, dtype=np.float64)[allowed]

    def check(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if not self.allowed[idx].all():
            raise RuntimeError("internal: the loop asked for a held-out label")
        return idx

    def loss(self, logits: torch.Tensor, idx, label_smoothing: float = 0.0) -> torch.Tensor:
        idx = self.check(idx)
        y = torch.as_tensor(self.y[idx], device=logits.device)
        if self.task == SUBTYPING:
            return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        event = torch.as_tensor(self.event[idx], device=logits.device, dtype=logits.dtype)
        return discrete_hazard_nll(logits, y, event)

    def metric(self, logits: np.ndarray, idx) -> float:
        """Inner-validation metric (higher is better): macro one-vs-rest AUC, or Harrell's C."""
        idx = self.check(idx)
        if self.task == SURVIVAL:
            return concordance_index(self.time[idx], self.event[idx], risk_from_logits(logits))
        y = self.y[idx]
        if len(np.unique(y)) < 2:
            return float(np.mean(logits.argmax(1) == y))  # AUC undefined: fall back to accuracy
        from sklearn.metrics import roc_auc_score

        prob = torch.softmax(torch.as_tensor(logits), 1).numpy()
        if prob.shape[1] == 2:
            return float(roc_auc_score(y, prob[:, 1]))
        return float(roc_auc_score(y, prob, multi_class="ovr", average="macro", labels=np.arange(prob.shape[1])))


def _check_splits(n: int, train_idx, val_idx, test_idx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [np.asarray([] if a is None else a, dtype=np.int64).ravel() for a in (train_idx, val_idx, test_idx)]
    for name, a in zip(("train_idx", "val_idx", "test_idx"), parts):
        if len(a) == 0:
            if name == "val_idx" and val_idx is None:
                continue
            raise ConfigError(f"{name}: empty")
        if a.min() < 0 or a.max() >= n:
            raise ConfigError(f"{name}: positions must lie in [0, {n})")
    joined = np.concatenate(parts)
    if len(np.unique(joined)) != len(joined):
        raise ConfigError("train_idx, val_idx and test_idx overlap (or repeat a case)")
    return tuple(parts)


def _loader(data, indices, batch_size: int, *, shuffle: bool, seed: int, n_patches=None,
            collate_fn=None, num_workers: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    collate = _Collate(collate_fn, n_patches, torch.Generator().manual_seed(seed + 1))
    return DataLoader(_Indexed(data, indices), batch_size=batch_size, shuffle=shuffle, generator=gen,
                      collate_fn=collate, drop_last=False, num_workers=num_workers)


def _train_epoch(model: nn.Module, loader, optimizer, targets: _Targets, device, label_smoothing: float) -> float:
    model.train()
    total, count = 0.0, 0
    for batch, idx in loader:
        loss = targets.loss(model(to_device(batch, device)), idx, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + float(loss.detach()) * len(idx), count + len(idx)
    return total / max(count, 1)


@torch.no_grad()
def predict_logits(model: nn.Module, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """Logits and positions of every case of a loader yielding (batch, positions); eval mode."""
    model.eval()
    out, order = [], []
    for batch, idx in loader:
        out.append(model(to_device(batch, device)).float().cpu())
        order.append(idx)
    return torch.cat(out).numpy().astype(np.float64), torch.cat(order).numpy()


def _validate(model, loader, targets: _Targets, device) -> tuple[float, float]:
    logits, idx = predict_logits(model, loader, device)
    loss = float(targets.loss(torch.as_tensor(logits), idx))
    return loss, targets.metric(logits, idx)


def _better(entry: dict, best: dict | None, select_by: str) -> bool:
    # strict improvement only: on ties the earlier (less trained) epoch is kept
    if best is None:
        return True
    if select_by == "loss":
        return entry["val_loss"] < best["val_loss"]
    metric = entry["val_metric"]
    return not np.isnan(metric) and (np.isnan(best["val_metric"]) or metric > best["val_metric"])


def fit_supervised(model: nn.Module, data, y, *, task: str, train_idx, val_idx, test_idx, event=None,
                   time=None, eval_data=None, epochs: int = 20, lr: float | None = None,
                   weight_decay: float | None = None, batch_size: int = 1, n_patches: int | None = None,
                   select_by: str = "loss", label_smoothing: float = 0.0, seed: int = 42,
                   device: str = "auto", collate_fn=None, num_workers: int = 0) -> BaselineResult:
    """Train a supervised MIL model on one outer fold and predict its held-out cases.

    Parameters
    ----------
    model
        An :class:`ABMIL` or :class:`PORPOISE` (or any module mapping a batch to logits). It is
        trained in place and left holding the weights of the chosen epoch.
    data
        Indexable of per-case dicts (``C.PATCHES`` (N_i, D), ``C.RNA`` (G,) for PORPOISE), used
        for training; e.g. a ``PairedBagDataset``.
    y
        Per-case integer target: class index (subtyping) or survival bin (survival). Entries at
        ``test_idx`` are never read (they may hold anything).
    task
        ``"subtyping"`` (cross-entropy) or ``"survival"`` (discrete-time hazard NLL).
    train_idx
        Positions used for gradient steps.
    val_idx
        Inner validation positions (drawn from the training fold by the caller): pick the epoch.
        None: no selection, the last epoch is kept (few-shot training sets are too small to
        split, as in the few-shot probes).
    test_idx
        Held-out positions: predicted once, with the chosen weights.
    event
        Per-case event flag (1 = death observed); survival only.
    time
        Per-case survival time; survival only (inner-validation C-index).
    eval_data
        Dataset used for validation and prediction, when it differs from ``data`` (e.g. a copy
        that returns all patches where ``data`` samples a fixed number). Default ``data``.
    epochs
        Number of training epochs (20).
    lr
        Adam learning rate; default the model's ``default_lr`` (ABMIL 1e-4, PORPOISE 2e-4).
    weight_decay
        Adam weight decay; default the model's ``default_weight_decay`` (1e-5).
    batch_size
        Cases per step (1: whole ragged bags, as MIL is usually trained).
    n_patches
        Subsample training bags larger than this (None: every patch). Evaluation uses all.
    select_by
        ``"loss"`` (lowest inner-validation loss) or ``"metric"`` (highest AUC / C-index).
    label_smoothing
        Cross-entropy label smoothing for training (subtyping).
    seed
        Seeds torch's global RNG (dropout), the shuffling and the patch subsampling.
    device
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    collate_fn
        Batch collation of a list of items; default pads ragged bags and adds ``C.PATCH_MASK``.
    num_workers
        DataLoader worker processes.

    Returns
    -------
    :class:`BaselineResult` with held-out logits, the chosen (1-based) epoch and the curve.
    """
    if task not in TASKS:
        raise ConfigError(f"task: {task!r} is not one of {TASKS}")
    if select_by not in ("loss", "metric"):
        raise ConfigError(f"select_by: {select_by!r} is not one of 'loss', 'metric'")
    if epochs < 1:
        raise ConfigError(f"epochs: must be >= 1, got {epochs}")
    if task == SURVIVAL and (event is None or time is None):
        raise ConfigError("task 'survival' needs event and time")
    tr, va, te = _check_splits(len(y), train_idx, val_idx, test_idx)
    targets = _Targets(task, y, event, time, np.concatenate([tr, va]))
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model.to(dev)
    lr = float(lr if lr is not None else getattr(model, "default_lr", 1e-4))
    wd = float(weight_decay if weight_decay is not None else getattr(model, "default_weight_decay", 1e-5))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    evaluated = data if eval_data is None else eval_data
    opts = dict(collate_fn=collate_fn, num_workers=num_workers)
    train_loader = _loader(data, tr, batch_size, shuffle=True, seed=seed, n_patches=n_patches, **opts)
    val_loader = _loader(evaluated, va, batch_size, shuffle=False, seed=seed, **opts)
    curve, best, best_state = [], None, None
    for epoch in range(1, epochs + 1):
        if hasattr(data, "set_epoch"):  # MirrorDataset: a fresh patch sample each epoch, still seeded
            data.set_epoch(epoch - 1)
        train_loss = _train_epoch(model, train_loader, optimizer, targets, dev, label_smoothing)
        val_loss, val_metric = _validate(model, val_loader, targets, dev) if len(va) else (np.nan, np.nan)
        entry = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_metric": val_metric}
        curve.append(entry)
        if not len(va) or _better(entry, best, select_by):
            best, best_state = entry, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    logits, order = predict_logits(model, _loader(evaluated, te, batch_size, shuffle=False, seed=seed, **opts), dev)
    train_loader = _loader(evaluated, tr, batch_size, shuffle=False, seed=seed, **opts)  # all patches, in order
    params = {"lr": lr, "weight_decay": wd, "epochs": epochs, "batch_size": batch_size, "n_patches": n_patches,
              "select_by": select_by if len(va) else "last-epoch", "label_smoothing": label_smoothing, "seed": seed,
              "device": str(dev)}
    if task == SURVIVAL:
        # risk-group threshold for predictions tables: median risk of the training fold, all patches
        train_logits, _ = predict_logits(model, train_loader, dev)
        params["train_median_risk"] = float(np.median(risk_from_logits(train_logits)))
    return BaselineResult(method=getattr(model, "method", type(model).__name__), task=task, test_idx=order,
                          logits=logits, best_epoch=best["epoch"], curve=curve, params=params)
