"""Distributed data parallel (``torchrun``) helpers: process group, sharding, gather.

One global batch is the same set of cases whatever the number of ranks: the epoch's order
comes from ``(seed, epoch)``, it is cut into global batches of ``batch_size`` cases, and each
global batch is split into contiguous per-rank shards. With the dataset drawing its patch
samples and noise from ``(seed, epoch, index)``, a run on N ranks sees exactly the batches of
a single-process run, and the contrastive loss sees all of them through :func:`make_gather`.
"""

from __future__ import annotations

import atexit
import datetime
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .._errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank among ``world_size``, local rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """World size that ``torchrun`` announced through the environment (1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that ``torchrun`` set up (NCCL on GPUs, gloo on CPUs).

    Parameters
    ----------
    device_type
        ``cuda`` or ``cpu``: which backend to use.

    Returns
    -------
    The process's :class:`DistInfo`; a single process when not launched by ``torchrun``.
    """
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":  # NCCL collectives (and barriers) run on the current device
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        # a group still alive at interpreter exit can abort the process in its C++ destructors
        # ("terminate called without an active exception": torchrun then reports a failed rank
        # although the work is done), so the group this call created is destroyed at exit
        atexit.register(_destroy_group)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def _destroy_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistInfo:
    """The :class:`DistInfo` of an already initialised process group (or a single process)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank (e.g. an error message or a decision)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj, info: DistInfo) -> list:
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_across_ranks(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a (detached) tensor over ranks; a NaN on any rank reaches every rank."""
    if not info.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def make_gather(group=None) -> Callable[[torch.Tensor], tuple[torch.Tensor, int]]:
    """The ``gather`` callable of the model contract, differentiable across ranks.

    Parameters
    ----------
    group
        Process group (the default group when None).

    Returns
    -------
    ``gather(x) -> (rows of all ranks concatenated, offset of this rank's rows)``; the rows of
    other ranks carry gradients (``torch.distributed.nn.functional.all_gather``), so every
    rank's contrastive loss trains every rank's encoders. Ranks may hold different numbers
    of rows (the last batch of an epoch): rows are padded to the largest count and cut back.
    """
    from torch.distributed.nn.functional import all_gather

    def gather(x: torch.Tensor) -> tuple[torch.Tensor, int]:
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.int64)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        dist.all_gather(sizes, n, group=group)
        sizes = [int(s) for s in sizes]
        most = max(sizes)
        if x.shape[0] < most:
            x = torch.cat([x, x.new_zeros((most - x.shape[0], *x.shape[1:]))])
        with warnings.catch_warnings():
            # deprecated in favour of a private API; the differentiable public one is what we want
            warnings.filterwarnings("ignore", message=".*all_gather is deprecated")
            parts = all_gather(x, group=group)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)]), sum(sizes[:rank])

    return gather


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The case order of one epoch, a function of ``(seed, epoch)`` alone."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([int(seed), int(epoch), 0x5EED]).permutation(n)


class ShardedBatchSampler:
    """Batch sampler: global batches of the epoch's order, this rank's contiguous share of each.

    A last global batch with fewer cases than ranks is dropped (a rank cannot hold zero
    cases); every other batch is kept, the last one split as evenly as possible.

    Parameters
    ----------
    n
        Number of cases in the dataset.
    batch_size
        Global batch size (all ranks together).
    seed
        Seed of the per-epoch shuffle.
    info
        Rank and world size.
    shuffle
        Shuffle the cases each epoch (training); False keeps the dataset order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, info: DistInfo = DistInfo(),
                 shuffle: bool = True) -> None:
        if batch_size < info.world_size:
            raise ConfigError(f"train.batch_size {batch_size} is smaller than the {info.world_size} "
                              "processes; each rank needs at least one case per batch")
        self.n, self.batch_size, self.seed, self.info, self.shuffle = n, batch_size, seed, info, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self) -> list[np.ndarray]:
        order = epoch_order(self.n, self.seed, self.epoch, self.shuffle)
        batches = [order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        return [b for b in batches if len(b) >= self.info.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield np.array_split(batch, self.info.world_size)[self.info.rank].tolist()

    def __len__(self) -> int:
        return len(self.global_batches())
