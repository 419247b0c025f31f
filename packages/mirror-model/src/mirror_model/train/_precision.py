"""Device and numeric precision: pick CUDA when present, autocast and loss scaling.

Nothing here hard-codes a device: the loop asks :func:`resolve_device` and moves tensors
with ``.to(device)``.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .._errors import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str = "auto", *, local_rank: int | None = None) -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N`` into a :class:`torch.device`.

    Parameters
    ----------
    device
        ``auto`` picks CUDA when PyTorch sees a GPU, else the CPU.
    local_rank
        Under ``torchrun`` the process's local rank: ``cuda`` then means ``cuda:<local_rank>``.

    Returns
    -------
    The device; :class:`ConfigError` when CUDA is asked for but absent.
    """
    name = str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: PyTorch sees no CUDA GPU here; use --device cpu or auto")
        if name == "cuda":
            rank = local_rank if local_rank is not None else int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", rank % torch.cuda.device_count())
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"--device {device}: not a device name (auto, cpu, cuda, cuda:N)") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    raise ConfigError(f"--device {device}: not one of auto, cpu, cuda, cuda:N")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> fp16 on CUDA (the reference's autocast) and fp32 on the CPU.

    Parameters
    ----------
    precision
        ``auto``, ``fp32``, ``bf16`` or ``fp16``.
    device
        Where training runs.

    Returns
    -------
    ``fp32``, ``bf16`` or ``fp16``; fp16 on the CPU is refused (no loss scaling there).
    """
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA device; on the CPU use fp32 or bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16: this GPU does not support bfloat16; use fp16 or fp32")
    if precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"--precision {precision}: not one of auto, fp32, bf16, fp16")
    return precision


def autocast(device: torch.device, precision: str):
    """Autocast context for the forward pass (a no-op at fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (gradients underflow otherwise); None for fp32 and bf16."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)
