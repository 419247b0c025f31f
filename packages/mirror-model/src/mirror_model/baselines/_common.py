"""Helpers the baselines share: devices, patch masks, masked softmax, ragged-bag collation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import constants as C
from .._errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else is passed to :class:`torch.device`."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device: {device!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from None


def patch_mask(batch: dict) -> torch.Tensor:
    """Boolean (B, N) mask of real patches; all True when the batch carries no ``C.PATCH_MASK``."""
    patches = batch[C.PATCHES]
    mask = batch.get(C.PATCH_MASK)
    if mask is None:
        return torch.ones(patches.shape[:2], dtype=torch.bool, device=patches.device)
    mask = mask.to(device=patches.device, dtype=torch.bool)
    # an empty bag would give 0/0 in the softmax: say so instead of returning NaN
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a bag in the batch has no real patch (PATCH_MASK all False)")
    return mask


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the patch axis in which padded patches get exactly zero weight."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def to_device(batch: dict, device: torch.device) -> dict:
    """Move every tensor of a batch dict to ``device`` (non-tensors such as slide IDs stay)."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _subsample(item: dict, n_patches: int | None, generator: torch.Generator | None) -> dict:
    # Training bags larger than n_patches get a random subset (without replacement); smaller
    # bags keep all their patches and the mask takes care of the ragged length, so no patch is
    # duplicated (a duplicate would count twice in the attention softmax).
    n = item[C.PATCHES].shape[0]
    if n_patches is None or n <= n_patches:
        return item
    keep = torch.randperm(n, generator=generator)[:n_patches].sort().values
    return {k: v[keep] if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == n and k != C.RNA else v
            for k, v in item.items()}


def pad_collate(items: Sequence[dict], n_patches: int | None = None,
                generator: torch.Generator | None = None) -> dict:
    """Stack per-case dicts into a batch, padding ragged bags and adding ``C.PATCH_MASK``.

    Parameters
    ----------
    items
        Per-case dicts with ``C.PATCHES`` (N_i, D) and optionally ``C.RNA`` (G,) and other keys.
        Tensors whose first axis has the bag's length (coordinates, per-patch noise) are padded
        like the patches; other equal-shape tensors are stacked; non-tensors become lists.
    n_patches
        When given, bags with more patches are subsampled to this many (training only).
    generator
        Torch generator of the subsampling (seeded by the caller).

    Returns
    -------
    The batch dict, ``C.PATCH_MASK`` (B, N_max) True at real patches.
    """
    items = [{k: torch.as_tensor(v) if not isinstance(v, (str, list, tuple)) and v is not None else v
              for k, v in it.items()} for it in items]
    items = [_subsample(it, n_patches, generator) for it in items]
    lengths = [int(it[C.PATCHES].shape[0]) for it in items]
    n_max = max(lengths)
    out: dict = {}
    for key in items[0]:
        if key == C.PATCH_MASK:
            continue
        values = [it[key] for it in items]
        if not all(torch.is_tensor(v) for v in values):
            out[key] = values
        elif key != C.RNA and all(v.dim() >= 1 and v.shape[0] == n for v, n in zip(values, lengths)):
            padded = values[0].new_zeros((len(values), n_max, *values[0].shape[1:]))
            for i, v in enumerate(values):
                padded[i, : v.shape[0]] = v
            out[key] = padded
        else:
            out[key] = torch.stack(values)
    mask = torch.zeros(len(items), n_max, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    out[C.PATCH_MASK] = mask
    return out
