"""Training: the loop, checkpoints, RNG states, distributed helpers, precision, metrics.

The loop (:func:`fit`) owns devices, precision (autocast, GradScaler for fp16), DDP under
``torchrun``, per-epoch atomic checkpoints, RNG states, metrics files and progress. The
user-facing :class:`mirror_model.MIRROR` drives it.
"""

from ._checkpoint import (
    check_input_sizes,
    check_model_config,
    checkpoint_model_config,
    load_checkpoint,
    resolve_checkpoint_path,
    save_checkpoint,
)
from ._distributed import DistInfo, ShardedBatchSampler, epoch_order, init_distributed, make_gather
from ._loop import KILL_AFTER_EPOCH_ENV, KILL_AT_STEP_ENV, batch_to_device, fit, make_optimizer
from ._memory import retain_freed_memory
from ._metrics import plot_loss_curves, write_metrics
from ._precision import autocast, make_scaler, resolve_device, resolve_precision
from ._rng import get_rng_state, seed_everything, set_rng_state
from ._rundir import read_manifest, slides_fingerprint

__all__ = [
    "KILL_AFTER_EPOCH_ENV", "KILL_AT_STEP_ENV", "DistInfo", "ShardedBatchSampler", "autocast", "batch_to_device",
    "check_input_sizes", "check_model_config", "checkpoint_model_config", "epoch_order", "fit", "get_rng_state",
    "init_distributed", "load_checkpoint", "make_gather", "make_optimizer", "make_scaler", "plot_loss_curves",
    "read_manifest", "resolve_checkpoint_path", "resolve_device", "resolve_precision", "retain_freed_memory",
    "save_checkpoint",
    "seed_everything", "set_rng_state", "slides_fingerprint", "write_metrics",
]
