"""UMAP of MIRROR embeddings (slide, RNA, joint), one panel per representation."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .. import constants as C
from .._errors import ConfigError
from ._common import new_figure, save_png

DEFAULT_KEYS = (C.OBSM_SLIDE, C.OBSM_RNA, C.OBSM_JOINT)
_NAMES = {C.OBSM_SLIDE: "slide", C.OBSM_RNA: "RNA", C.OBSM_JOINT: "joint (slide + RNA)"}


def _from_anndata(adata, keys, color) -> tuple[dict, pd.Series | None]:
    keys = [k for k in DEFAULT_KEYS if k in adata.obsm] if keys is None else list(keys)
    missing = [k for k in keys if k not in adata.obsm]
    if missing or not keys:
        raise ConfigError(f"umap_embeddings: obsm has no {missing or list(DEFAULT_KEYS)}; "
                          f"present: {sorted(adata.obsm)}")
    labels = None
    if color is not None:
        if color not in adata.obs:
            raise ConfigError(f"umap_embeddings: color={color!r} is not an obs column; "
                              f"present: {sorted(adata.obs.columns)[:12]}")
        labels = adata.obs[color].reset_index(drop=True)
    return {k: np.asarray(adata.obsm[k]) for k in keys}, labels


def _inputs(data, keys, color, labels) -> tuple[dict, pd.Series | None]:
    """{panel name: (n, d) array} and the per-row colour values (or None)."""
    if hasattr(data, "obsm") and hasattr(data, "obs"):
        return _from_anndata(data, keys, color)
    arrays = dict(data) if isinstance(data, Mapping) else {"embedding": data}
    if keys is not None:
        arrays = {k: arrays[k] for k in keys}
    arrays = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
    sizes = {len(v) for v in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(f"umap_embeddings: arrays have different row counts {sorted(sizes)}")
    if labels is not None and len(labels) != sizes.pop():
        raise ValueError("umap_embeddings: labels must have one value per row")
    return arrays, None if labels is None else pd.Series(np.asarray(labels)).reset_index(drop=True)


def _umap(x: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    import umap

    if len(x) < 4:
        raise ValueError(f"umap_embeddings: needs at least 4 rows, got {len(x)}")
    # random_state makes the layout reproducible (umap-learn then runs single-threaded anyway)
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(x) - 1), random_state=seed, n_jobs=1)
    return reducer.fit_transform(np.nan_to_num(x))


def _scatter(ax, xy, labels, size) -> object:
    """Draw one panel; returns the mappable for a colour bar (None for categories)."""
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, color="C0", linewidths=0)
        return None
    if pd.api.types.is_float_dtype(labels) and labels.nunique() > 12:
        return ax.scatter(xy[:, 0], xy[:, 1], c=labels.to_numpy(float), s=size, cmap="viridis", linewidths=0)
    text = labels.astype(object).where(labels.notna(), "NA").astype(str)
    for i, value in enumerate(sorted(set(text) - {"NA"}) + (["NA"] if "NA" in set(text) else [])):
        mask = (text == value).to_numpy()
        ax.scatter(xy[mask, 0], xy[mask, 1], s=size, linewidths=0, label=f"{value} (n={mask.sum()})",
                   color="lightgrey" if value == "NA" else f"C{i % 10}")
    return None


def umap_embeddings(data, *, color: str | None = C.LABEL, keys=None, labels=None, n_neighbors: int = 15,
                    seed: int = 0, save: str | os.PathLike | None = None):
    """UMAP of each embedding (slide, RNA, joint) side by side, coloured by subtype.

    Parameters
    ----------
    data
        AnnData from ``mirror-model embed`` (obsm ``X_mirror_slide``, ``X_mirror_rna``,
        ``X_mirror``), a mapping ``{panel name: (n, d) array}``, or one array.
    color
        obs column to colour by (AnnData input); None: one colour.
    keys
        obsm keys (or mapping keys) to show, in order; None: those present of the three.
    labels
        Per-row colour values for array input.
    n_neighbors
        UMAP neighbourhood size (capped at n - 1).
    seed
        UMAP ``random_state``: the same seed gives the same picture.
    save
        Write the figure here as PNG (atomically).

    Returns
    -------
    The matplotlib ``Figure``: one panel per embedding; categories get a legend with counts
    (missing values grey), continuous values a colour bar.
    """
    arrays, values = _inputs(data, keys, color, labels)
    fig = new_figure((3.6 * len(arrays) + 1.6, 3.8))
    axes = fig.subplots(1, len(arrays), squeeze=False)[0]
    size = float(np.clip(3000 / max(len(next(iter(arrays.values()))), 1), 4, 40))
    mappable = None
    for ax, (key, x) in zip(axes, arrays.items(), strict=True):
        mappable = _scatter(ax, _umap(x, n_neighbors, seed), values, size) or mappable
        ax.set_title(f"{_NAMES.get(key, key)}: {x.shape[1]}-d", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP1")
        ax.set_ylabel("UMAP2")
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes), shrink=0.8, label=color or "value")
    elif values is not None:
        axes[-1].legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                        title=color, title_fontsize=8, markerscale=max(1.0, 20 / size))
    save_png(fig, save)
    return fig
