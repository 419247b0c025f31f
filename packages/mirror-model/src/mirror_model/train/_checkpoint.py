"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, checked.

A checkpoint is a dict of tensors and plain Python values only (no pickled objects), so the
safe loader reads it. Keys: ``format``, ``format_version``, ``epoch`` (completed epochs),
``model`` (state dict), ``optimizer``, ``scaler``, ``rng`` (per rank), ``model_config``,
``train_config``, ``standardizer``, ``history`` (per-epoch metrics), ``versions``.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch

from mirror_genes.utils import atomic_path

from .. import constants as C
from .._errors import CheckpointError
from ..config import ModelConfig, model_config_from_dict, to_dict

FORMAT = "mirror-model-checkpoint"
FORMAT_VERSION = 1

# One-line mismatch messages: (expected, found) -> text
_INPUT_SIZES = {"patch_dim": "{e}-d patch features, the slides have {f}-d",
                "n_genes": "{e} RNA features, the RNA has {f}"}


def save_checkpoint(payload: dict, path: str | os.PathLike) -> Path:
    """Write a checkpoint atomically (temporary file renamed once complete).

    Parameters
    ----------
    payload
        The checkpoint dict (tensors and plain Python values only).
    path
        Target file.

    Returns
    -------
    The written path.
    """
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def resolve_checkpoint_path(source: str | os.PathLike) -> Path:
    """A run directory means its last checkpoint; a file means itself."""
    p = Path(source)
    if p.is_dir():
        p = p / C.CHECKPOINT_LAST
        if not p.is_file():
            raise CheckpointError(f"{source}: no {C.CHECKPOINT_LAST} in this folder (not a finished epoch of a run)")
    elif not p.is_file():
        raise CheckpointError(f"{source}: no such checkpoint file or run folder")
    return p


def load_checkpoint(source: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with the safe loader.

    Parameters
    ----------
    source
        A checkpoint file or a run directory (its ``checkpoint_last.pt``).
    map_location
        Where tensors land.

    Returns
    -------
    The checkpoint dict; :class:`CheckpointError` when the file is missing, unsafe (needs
    arbitrary unpickling), corrupt, or not a mirror-model checkpoint.
    """
    path = resolve_checkpoint_path(source)
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol of foreign files
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused by torch.load(weights_only=True): not only tensors "
                              f"and plain values ({_unpickler_reason(err)})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a mirror-model checkpoint")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this "
                              f"mirror-model reads ({FORMAT_VERSION}); upgrade mirror-model")
    ckpt["path"] = str(path)
    return ckpt


def _unpickler_reason(err: Exception) -> str:
    """The useful part of torch's long weights-only refusal (what it could not load)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        text = text.split(" Please use", 1)[0]
    return " ".join(text.split())[:160] or type(err).__name__


def checkpoint_model_config(ckpt: dict) -> ModelConfig:
    """The checkpoint's architecture as a :class:`ModelConfig`."""
    try:
        return model_config_from_dict(ckpt["model_config"])
    except Exception as err:  # ConfigError or a missing key
        raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: invalid model configuration ({err})") from None


def check_model_config(ckpt: dict, cfg: ModelConfig) -> None:
    """Refuse a checkpoint built for another architecture, naming both values.

    Parameters
    ----------
    ckpt
        A loaded checkpoint.
    cfg
        The configuration of the model the weights would go into.
    """
    saved, wanted = ckpt["model_config"], to_dict(cfg)
    for key in sorted(set(saved) | set(wanted)):
        if key == "activation_checkpointing":  # a memory lever, not part of the architecture
            continue
        if saved.get(key) != wanted.get(key):
            raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: checkpoint has model.{key} = "
                                  f"{saved.get(key)!r}, the model has {wanted.get(key)!r}")


def check_input_sizes(cfg: ModelConfig, *, patch_dim: int | None, n_genes: int | None, where: str) -> None:
    """Refuse data whose input sizes differ from the model's, naming both sizes.

    Parameters
    ----------
    cfg
        The model (checkpoint) configuration.
    patch_dim
        Patch feature size of the slides (None when no slides).
    n_genes
        Number of RNA features (None when no RNA).
    where
        What the model came from (checkpoint path or "model"), for the message.
    """
    for key, value in (("patch_dim", patch_dim), ("n_genes", n_genes)):
        expected = getattr(cfg, key)
        if value is not None and int(value) != int(expected):
            sizes = _INPUT_SIZES[key].format(e=int(expected), f=int(value))
            raise CheckpointError(f"{where}: the model was built for {sizes}")


def load_state(module: torch.nn.Module, state: dict, where: str) -> None:
    """Load a state dict strictly; mismatching keys or shapes become one CheckpointError."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise CheckpointError(f"{where}: weights do not fit the model ({detail[:200]})") from None
