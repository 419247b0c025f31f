"""Attention heatmaps on slide geometry, and per-patch attention of a MIRROR slide encoder.

Coordinates are level-0 top-left pixels of each patch (TRIDENT and CLAM ``coords``); each
patch is drawn as a square of its level-0 side, so the picture has the slide's tissue outline.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from .._errors import ConfigError, SlideFileError
from ._common import axes_of, save_png


def _scalar(value) -> float:
    """First element of an HDF5 attribute (scalars and per-axis arrays alike)."""
    return float(np.asarray(value, dtype=float).ravel()[0])


def patch_size_level0(attrs) -> int:
    """Side of one patch in level-0 pixels, from the attributes of a ``coords`` dataset.

    Parameters
    ----------
    attrs
        Mapping of the ``coords`` attributes (``h5py`` ``.attrs`` or a dict).

    Returns
    -------
    TRIDENT's ``patch_size_level0`` when present; else CLAM's ``patch_size x downsample``
    (``downsample`` is the level's true downsample, per axis; the x value is used); else
    ``patch_size x 2**patch_level`` with a warning when ``patch_level > 0`` (pyramid levels
    are often 4x apart, e.g. Aperio SVS, so this guess can be wrong).
    """
    if "patch_size_level0" in attrs:
        return int(round(_scalar(attrs["patch_size_level0"])))
    if "patch_size" not in attrs:
        raise ConfigError("coords attributes hold neither patch_size_level0 nor patch_size; "
                          "pass the level-0 patch size explicitly")
    size = _scalar(attrs["patch_size"])
    if "downsample" in attrs:
        return int(round(size * _scalar(attrs["downsample"])))
    level = int(_scalar(attrs.get("patch_level", 0)))
    if level > 0:
        warnings.warn(f"coords attributes have patch_level={level} but no downsample; assuming "
                      f"2**{level} (check the slide's pyramid)", stacklevel=2)
    return int(round(size * 2**level))


def read_coords(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Patch coordinates and level-0 patch size of a TRIDENT / CLAM ``.h5`` file.

    Parameters
    ----------
    path
        HDF5 file with a ``coords`` dataset (N x 2, level-0 top-left pixels).

    Returns
    -------
    ``(coords (N, 2) int64, patch size in level-0 pixels)`` (see :func:`patch_size_level0`).
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            ds = f.get("coords")
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2 or ds.shape[1] != 2:
                raise SlideFileError(path, "no 'coords' dataset of shape N x 2")
            return np.asarray(ds[:], dtype=np.int64), patch_size_level0(ds.attrs)
    except OSError as err:
        raise SlideFileError(path, f"unreadable HDF5 ({str(err).splitlines()[0]})") from None


def _squares(coords: np.ndarray, size: float) -> np.ndarray:
    """(N, 4, 2) corners of the patch squares."""
    x, y = coords[:, 0], coords[:, 1]
    return np.stack([np.stack([x, y], 1), np.stack([x + size, y], 1),
                     np.stack([x + size, y + size], 1), np.stack([x, y + size], 1)], 1)


def _check_heatmap_inputs(coords, weights, patch_size) -> tuple[np.ndarray, np.ndarray]:
    coords = np.asarray(coords, dtype=float)
    weights = np.asarray(weights, dtype=float).ravel()
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
        raise ValueError(f"coords must be a non-empty N x 2 array, got shape {coords.shape}")
    if len(weights) != len(coords):
        raise ValueError(f"{len(weights)} weights for {len(coords)} patches")
    if not (np.isfinite(weights).all() and np.isfinite(coords).all()):
        raise ValueError("coords and weights must be finite")
    if not patch_size > 0:
        raise ValueError(f"patch_size must be > 0 (level-0 pixels), got {patch_size}")
    return coords, weights


def attention_heatmap(coords, weights, *, patch_size: float, ax=None, title: str | None = None,
                      cmap: str = "viridis", vmax: float | None = None,
                      save: str | os.PathLike | None = None):
    """Attention weights drawn as one coloured square per patch at its slide position.

    Parameters
    ----------
    coords
        (N, 2) level-0 top-left pixel (x, y) of each patch (``coords`` of a TRIDENT/CLAM file).
    weights
        (N,) attention per patch, e.g. :func:`slide_attention` or ``ABMIL.attention(batch)[0]``.
    patch_size
        Patch side in level-0 pixels (:func:`patch_size_level0`; for CLAM ``patch_size`` x the
        level's downsample).
    ax
        Axes to draw on; None: a new figure shaped like the tissue's bounding box.
    title
        Axes title; None: the patch count.
    cmap
        Matplotlib colour map.
    vmax
        Top of the colour scale; None: the 99th percentile of the weights (attention is
        heavy-tailed: a few patches would otherwise flatten the rest to one colour).
    save
        Write the figure here as PNG (atomically).

    Returns
    -------
    The matplotlib ``Figure``. The y axis points down, as on the slide; aspect is equal;
    background (no patch) stays white. Higher weights are drawn on top where squares overlap.
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import Normalize

    coords, weights = _check_heatmap_inputs(coords, weights, patch_size)
    lo, hi = coords.min(0), coords.max(0) + patch_size
    w, h = hi - lo
    fig, ax = axes_of(ax, (6.4, float(np.clip(5.4 * h / w, 3.0, 9.0))))
    top = float(np.percentile(weights, 99)) if vmax is None else float(vmax)
    bottom = float(weights.min())
    norm = Normalize(bottom, top if top > bottom else bottom + 1e-12)
    order = np.argsort(weights, kind="stable")
    squares = PolyCollection(_squares(coords[order], float(patch_size)), array=weights[order], cmap=cmap,
                             norm=norm, edgecolors="none", linewidths=0, antialiaseds=False)
    ax.add_collection(squares)
    ax.set_facecolor("white")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(hi[1], lo[1])  # y down, like the slide
    ax.set_aspect("equal")
    ax.set_xlabel("x (level-0 pixels)")
    ax.set_ylabel("y (level-0 pixels)")
    ax.set_title(title or f"attention over {len(weights)} patches", fontsize=9)
    fig.colorbar(squares, ax=ax, shrink=0.8, aspect=30, label="attention weight",
                 extend="max" if weights.max() > norm.vmax else "neither")
    save_png(fig, save)
    return fig


def _slide_encoder(model):
    """The TransMIL slide encoder inside a MIRROR, a MirrorModule, or the encoder itself."""
    for candidate in (model, getattr(model, "slide_encoder", None),
                      getattr(getattr(model, "module", None), "slide_encoder", None)):
        attn = getattr(getattr(candidate, "layer2", None), "attn", None)
        if attn is not None and hasattr(attn, "to_qkv"):
            return candidate
    raise ConfigError(f"slide_attention: {type(model).__name__} holds no TransMIL slide encoder "
                      "(expected a MIRROR, MirrorModule or SlideEncoder with a built module)")


def _cls_row(attn, x):
    """Exact softmax attention of the [CLS] query (row 0) over every token: (B, heads, L)."""
    hd = attn.heads * attn.head_dim
    q, k = attn.to_qkv(x)[..., : 2 * hd].split(hd, -1)
    q = q[:, :1].unflatten(-1, (attn.heads, attn.head_dim)).transpose(1, 2)   # (B, H, 1, d)
    k = k.unflatten(-1, (attn.heads, attn.head_dim)).transpose(1, 2)          # (B, H, L, d)
    scores = (q @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(attn.head_dim)
    return scores.float().softmax(-1)


def _last_layer_input(enc, bag):
    """What the last attention layer receives (after its LayerNorm) for one (1, n, D) bag.

    Read with a hook rather than recomputed, so the square layout, the PPEG and the first layer
    are exactly the encoder's own.
    """
    captured = []

    def hook(module, args, kwargs):
        captured.append(args[0] if args else kwargs["x"])

    handle = enc.layer2.attn.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        enc(bag, None, tokens=False)
    finally:
        handle.remove()
    return captured[-1]


def _bag_attention(enc, bag) -> np.ndarray:
    """Per-patch [CLS] attention of one (n, D) bag, summed over each patch's layout copies."""
    n = bag.shape[0]
    if n == 0:
        raise ValueError("slide_attention: a bag needs at least one patch")
    x = _last_layer_input(enc, bag[None])
    side = math.isqrt(n - 1) + 1
    if x.shape[1] != 1 + side * side:
        raise ConfigError(f"slide_attention: the encoder's last layer saw {x.shape[1]} tokens, expected "
                          f"[CLS] + {side}x{side} grid for {n} patches; the slide layout has changed")
    row = _cls_row(enc.layer2.attn, x).mean(1)[0, 1:]   # heads averaged; the [CLS] self-weight dropped
    # the square grid repeats the first patches to fill it: a copy's weight belongs to its patch
    w = np.bincount(np.arange(side * side) % n, weights=row.double().cpu().numpy(), minlength=n)
    return w / w.sum()


def slide_attention(model, patches, *, patch_mask=None) -> np.ndarray:
    """Per-patch attention of a MIRROR slide encoder's [CLS] token in its last layer.

    Parameters
    ----------
    model
        A trained ``MIRROR``, its ``MirrorModule`` (``.module``), or the ``SlideEncoder``.
    patches
        (N, D) features of one slide, or (B, N, D) bags (tensor or array).
    patch_mask
        Optional bool (B, N), True at real patches of padded bags.

    Returns
    -------
    (N,) or (B, N) float64 weights, each bag's summing to 1 over its patches (0 at padding).

    Notes
    -----
    The encoder exposes no attention matrix, so the [CLS] row is computed exactly from the last
    layer's own input and projections: ``softmax(q_cls K' / sqrt(d))``, averaged over heads.
    The weight of the [CLS] token on itself is dropped and the rest renormalised; patches that
    the square layout repeats get the sum of their copies. With Nystrom attention (the default)
    this is the exact-softmax attention of the [CLS] query, an approximation of what the
    Nystrom layer computes (identical when the bag has no more tokens than landmarks, where
    the layer is exact); the layer's residual depthwise convolution on the values is not
    attention and is not included. Computed in eval mode, one bag at a time, without grad.
    """
    import torch

    enc = _slide_encoder(model)
    param = next(enc.parameters())
    p = torch.as_tensor(patches).to(param.device, param.dtype)
    single = p.ndim == 2
    p = p[None] if single else p
    if p.ndim != 3:
        raise ValueError(f"patches must be (N, D) or (B, N, D), got shape {tuple(p.shape)}")
    mask = None if patch_mask is None else torch.as_tensor(patch_mask, dtype=torch.bool).cpu()
    if mask is not None and tuple(mask.shape) != tuple(p.shape[:2]):
        raise ValueError(f"patch_mask shape {tuple(mask.shape)} does not match patches {tuple(p.shape[:2])}")
    out = np.zeros(tuple(p.shape[:2]))
    was_training = enc.training
    enc.eval()
    try:
        with torch.no_grad():
            for i in range(p.shape[0]):
                keep = slice(None) if mask is None else mask[i].numpy()
                out[i, keep] = _bag_attention(enc, p[i] if mask is None else p[i][mask[i].to(p.device)])
    finally:
        enc.train(was_training)
    return out[0] if single else out
