"""The training loop: devices, precision, DDP, checkpoints, RNG states, metrics, progress.

Determinism: the epoch's case order comes from ``(seed, epoch)``, the dataset's patch samples
and noise from ``(seed, epoch, index)``, the DataLoader's worker seeds from a generator of
its own, so torch's global generator serves dropout alone; it is saved in every checkpoint.
A run stopped after epoch k and resumed therefore ends with the weights of an uninterrupted
run (bit for bit on the CPU, whatever the number of DataLoader workers).
"""

from __future__ import annotations

import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import constants as C
from .._errors import NonFiniteLossError
from ..config import TrainConfig, to_dict
from ._checkpoint import load_state, save_checkpoint
from ._distributed import (
    DistInfo,
    ShardedBatchSampler,
    all_gather_object,
    barrier,
    current,
    make_gather,
    sum_across_ranks,
)
from ._memory import retain_freed_memory
from ._metrics import plot_loss_curves, write_metrics
from ._precision import autocast, make_scaler, resolve_device, resolve_precision
from ._progress import epoch_bar
from ._rng import get_rng_state, set_rng_state
from ._rundir import update_manifest

# Test hooks: simulate a hard kill (SIGKILL, no clean-up) after an epoch's checkpoint, or
# before a given step ("EPOCH:STEP", both 1-based); used by the resume tests.
KILL_AFTER_EPOCH_ENV = "MIRROR_MODEL_TEST_KILL_AFTER_EPOCH"
KILL_AT_STEP_ENV = "MIRROR_MODEL_TEST_KILL_AT_STEP"


@dataclass
class _Run:
    """Everything one epoch needs, built once by :func:`fit`."""

    module: torch.nn.Module          # the plain module (weights, prototypes)
    net: torch.nn.Module             # what runs forward: the module or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    device: torch.device
    precision: str
    info: DistInfo
    cfg: TrainConfig
    terms: list[str]
    run_dir: Path | None
    extra: dict
    progress: bool | None
    gather: object = None
    history: list[dict] = field(default_factory=list)
    saved_epoch: int = 0             # epochs held by the newest checkpoint on disk


def make_optimizer(module: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam at a constant learning rate (the reference), in its fused implementation.

    The fused kernel (CPU and CUDA) is ~9x faster than the per-tensor loop on the CPU for the
    reference model's 52M parameters; where it is unavailable, the multi-tensor one is used.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def batch_to_device(batch: dict, device: torch.device) -> dict:
    """Move the batch's tensors (not its lists of IDs) to ``device``."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


def _kill_hook(name: str, value: str) -> None:
    if os.environ.get(name) == value:
        os.kill(os.getpid(), signal.SIGKILL)


def fit(module: torch.nn.Module, dataset, cfg: TrainConfig, *, run_dir: str | os.PathLike | None = None,
        resume: dict | None = None, collate_fn=None, checkpoint_extra: dict | None = None,
        progress: bool | None = None, info: DistInfo | None = None) -> list[dict]:
    """Train ``module`` on ``dataset`` for ``cfg.epochs`` epochs (continuing ``resume``).

    Parameters
    ----------
    module
        A MirrorModule (``forward(batch, gather=...)`` returning named losses,
        ``normalize_prototypes_()``), already seeded and built.
    dataset
        Map-style dataset of cases; ``set_epoch(e)`` is called before each epoch when present.
    cfg
        Training configuration (epochs, batch size, learning rate, device, precision...).
    run_dir
        Where rank 0 writes checkpoints, metrics and figures (nothing written when None).
    resume
        A loaded checkpoint to continue from (weights, optimiser, scaler, RNG, history).
    collate_fn
        Batch collation of the data layer.
    checkpoint_extra
        Plain values stored in every checkpoint (model config, standardiser, data record).
    progress
        Progress bar on/off (None: on unless ``MIRROR_NO_PROGRESS`` is set); rank 0 only.
    info
        Rank and world size (default: the initialised process group, if any).

    Returns
    -------
    The per-epoch metrics history (also in the checkpoint and the metrics files).
    """
    run = _setup(module, cfg, run_dir, checkpoint_extra or {}, progress, info or current())
    start = _restore(run, resume) if resume is not None else 0
    sampler = ShardedBatchSampler(len(dataset), cfg.batch_size, cfg.seed, run.info)
    for epoch in range(start, cfg.epochs):
        row = run_epoch(run, dataset, sampler, epoch, collate_fn)
        run.history.append(row)
        end_epoch(run, epoch + 1)
    return run.history


def _setup(module, cfg, run_dir, extra, progress, info) -> _Run:
    device = resolve_device(cfg.device, local_rank=info.local_rank)
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cpu":
        retain_freed_memory()  # no fresh page faults for large tensors at every step (_memory)
    module.to(device)
    optimizer = make_optimizer(module, cfg)
    net, gather = module, None
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Depthwise conv weights (in-channels 1) get gradients whose strides differ only along
        # that size-1 axis; DDP's one-time performance warning about it is noise.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        net = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
        gather = make_gather()
    terms = list(module.cfg.enabled_losses()) if hasattr(module, "cfg") else list(C.LOSS_TERMS)
    return _Run(module=module, net=net, optimizer=optimizer, scaler=make_scaler(device, precision),
                device=device, precision=precision, info=info, cfg=cfg, terms=terms,
                run_dir=Path(run_dir) if run_dir is not None else None, extra=extra,
                progress=progress if info.is_main else False, gather=gather)


def _restore(run: _Run, ckpt: dict) -> int:
    """Load weights, optimiser, scaler, history and this rank's RNG state; return the epoch."""
    where = ckpt.get("path", "checkpoint")
    load_state(run.module, ckpt["model"], where)
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.history = [dict(row) for row in ckpt.get("history", [])]
    run.saved_epoch = int(ckpt["epoch"])
    states = ckpt.get("rng") or []
    if states:
        set_rng_state(states[run.info.rank % len(states)])
    return int(ckpt["epoch"])


def train_step(run: _Run, batch: dict) -> tuple[torch.Tensor, int]:
    """One optimiser step.

    Returns
    -------
    The global-batch means of [total, terms..., logit scale] and the global batch size
    (negative when a loss is not finite: then no update touched the weights).
    """
    # Prototype rows are unit vectors when the assignment uses them (reference: before every step).
    if hasattr(run.module, "normalize_prototypes_"):
        run.module.normalize_prototypes_()
    batch = batch_to_device(batch, run.device)
    n_local = len(next(v for v in batch.values() if torch.is_tensor(v)))
    with autocast(run.device, run.precision):
        out = run.net(batch, gather=run.gather)
    scale = out.get("logit_scale")
    logged = [out[C.LOSS]] + [out[t] for t in run.terms]
    logged.append(scale if scale is not None else torch.zeros((), device=run.device))
    # Case-weighted sums over ranks: global-batch means even when the last batch splits unevenly.
    sums = sum_across_ranks(torch.cat([torch.stack([v.detach().float() for v in logged]) * n_local,
                                       torch.ones(1, device=run.device) * n_local]), run.info)
    n_global = int(round(float(sums[-1])))
    values = sums[:-1] / n_global
    if not bool(torch.isfinite(values[:-1]).all()):
        return values, -n_global
    # DDP averages gradients over ranks; weighting each rank's mean loss by its share of the
    # global batch makes that average the gradient of the global-batch mean.
    loss = out[C.LOSS] * (n_local * run.info.world_size / n_global) if run.info.distributed else out[C.LOSS]
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    return values, n_global


def _non_finite(run: _Run, values: torch.Tensor, epoch: int, step: int) -> NonFiniteLossError:
    names = [C.LOSS, *run.terms]
    bad = [(n, float(v)) for n, v in zip(names, values.tolist()) if not math.isfinite(v)]
    name, value = next(((n, v) for n, v in bad if n != C.LOSS), bad[0])
    kept = (f"the last good checkpoint (epoch {run.saved_epoch}) is kept" if run.saved_epoch
            else "no checkpoint had been written yet")
    return NonFiniteLossError(f"epoch {epoch}, step {step}: loss term {name!r} is {value}; training stopped, {kept}")


def _loader(run: _Run, dataset, sampler, epoch: int, collate_fn) -> DataLoader:
    # Worker seeds come from this generator, never from torch's global one (kept for dropout).
    gen = torch.Generator().manual_seed(run.cfg.seed * 100_003 + epoch)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=run.cfg.num_workers, collate_fn=collate_fn,
                      pin_memory=run.device.type == "cuda", generator=gen, persistent_workers=False)


def run_epoch(run: _Run, dataset, sampler: ShardedBatchSampler, epoch: int, collate_fn=None) -> dict:
    """Train one epoch (0-based ``epoch``); returns its metrics row (``epoch`` 1-based)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler.set_epoch(epoch)
    run.net.train()
    sums = torch.zeros(len(run.terms) + 2, dtype=torch.float64)
    steps = samples = 0
    t0 = t_step = time.perf_counter()
    with epoch_bar(f"epoch {epoch + 1}/{run.cfg.epochs}", len(sampler), progress=run.progress) as update:
        for step, batch in enumerate(_loader(run, dataset, sampler, epoch, collate_fn), 1):
            _kill_hook(KILL_AT_STEP_ENV, f"{epoch + 1}:{step}")
            values, n_global = train_step(run, batch)
            if n_global < 0:
                raise _non_finite(run, values, epoch + 1, step)
            sums += values.cpu().double()
            steps += 1
            samples += n_global
            now = time.perf_counter()
            update(float(values[0]), n_global / max(now - t_step, 1e-9))
            t_step = now  # the next step's time includes waiting for its batch
    elapsed = time.perf_counter() - t0
    means = (sums / max(steps, 1)).tolist()
    row = {"epoch": epoch + 1, "steps": steps, "samples": samples, C.LOSS: means[0]}
    row.update({t: means[i + 1] for i, t in enumerate(run.terms)})
    if any(t == C.LOSS_ALIGN for t in run.terms):
        row["logit_scale"] = means[-1]
    row.update(lr=float(run.optimizer.param_groups[0]["lr"]), samples_per_s=samples / max(elapsed, 1e-9),
               epoch_s=elapsed)
    return row


def _weights(module) -> dict:
    cfg = getattr(module, "cfg", None)
    return cfg.enabled_losses() if cfg is not None and hasattr(cfg, "enabled_losses") else {}


def checkpoint_payload(run: _Run, epoch: int, rng: list) -> dict:
    """Everything needed to resume after ``epoch`` completed epochs (plain types and tensors)."""
    return {
        "epoch": int(epoch),
        "model": {k: v.detach().cpu() for k, v in run.module.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "rng": rng,
        "train_config": to_dict(run.cfg),
        "precision": run.precision,
        "world_size": run.info.world_size,
        "history": [dict(r) for r in run.history],
        **run.extra,
    }


def end_epoch(run: _Run, epoch: int) -> None:
    """Rank 0 writes the checkpoint, metrics, figures and manifest; every rank waits for it."""
    last = epoch == run.cfg.epochs
    write_ckpt = run.run_dir is not None and (last or epoch % run.cfg.checkpoint_every == 0)
    rng = all_gather_object(get_rng_state(), run.info) if write_ckpt else []  # collective: every rank
    if run.info.is_main and run.run_dir is not None:
        # Checkpoint first: metrics rows never get ahead of what a resume can restore.
        if write_ckpt:
            save_checkpoint(checkpoint_payload(run, epoch, rng), run.run_dir / C.CHECKPOINT_LAST)
        write_metrics(run.history, run.run_dir)
        plot_loss_curves(run.history, run.run_dir, _weights(run.module))
        update_manifest(run.run_dir, epochs_completed=epoch, status="finished" if last else "running")
    if write_ckpt:
        run.saved_epoch = epoch
    barrier(run.info)
    if write_ckpt:
        _kill_hook(KILL_AFTER_EPOCH_ENV, str(epoch))
