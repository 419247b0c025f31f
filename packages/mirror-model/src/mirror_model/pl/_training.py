"""Training curves: one panel per loss term of a run's ``metrics.csv``."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from .._errors import RunDirError
from ._common import new_figure, save_png

_TITLES = {C.LOSS: "total (weighted)", C.LOSS_ALIGN: "alignment (contrastive)",
           C.LOSS_WSI_RETENTION: "slide retention (masked MSE)", C.LOSS_RNA_RETENTION: "RNA retention (masked MSE)",
           C.LOSS_STYLE: "style (KL)", C.LOSS_CLUSTER: "cluster (symmetric KL)"}


def _read(metrics) -> tuple[pd.DataFrame, str]:
    if isinstance(metrics, pd.DataFrame):
        return metrics, "metrics frame"
    path = Path(metrics)
    if path.is_dir():
        path = path / C.METRICS_CSV
    try:
        return pd.read_csv(path), str(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path}: unreadable metrics table ({str(err).splitlines()[0]})") from None


def _finite(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(frame[column], errors="coerce").replace([np.inf, -np.inf], np.nan)


def training_curves(metrics, *, terms=None, save: str | os.PathLike | None = None):
    """Per-epoch training losses, one panel per loss term present.

    Parameters
    ----------
    metrics
        A run's ``metrics.csv`` (or the run folder holding it), or the frame itself: one row
        per epoch with ``epoch`` and any of ``loss``, ``align``, ``wsi_retention``,
        ``rna_retention``, ``style``, ``cluster``.
    terms
        Columns to draw, in order; None: the total and every loss term present. A column
        ``val_<term>`` is drawn dashed in the same panel.
    save
        Write the figure here as PNG (atomically).

    Returns
    -------
    The matplotlib ``Figure``: up to three panels a row, epoch on x, each panel on its own y
    scale (the terms differ by orders of magnitude). Columns without a finite value are skipped.
    """
    frame, source = _read(metrics)
    wanted = [C.LOSS, *C.LOSS_TERMS] if terms is None else list(terms)
    present = [t for t in wanted if t in frame.columns and _finite(frame, t).notna().any()]
    if not present:
        raise RunDirError(f"{source}: no loss column with values among {wanted}; columns: {list(frame.columns)}")
    x = _finite(frame, "epoch") if "epoch" in frame.columns else pd.Series(np.arange(1, len(frame) + 1))
    cols = min(3, len(present))
    rows = math.ceil(len(present) / cols)
    fig = new_figure((3.4 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    marker = "o" if len(frame) <= 40 else None
    for ax, term in zip(axes, present, strict=False):
        ax.plot(x, _finite(frame, term), marker=marker, ms=3, lw=1.5, label="train")
        if f"val_{term}" in frame.columns:
            ax.plot(x, _finite(frame, f"val_{term}"), ls="--", marker=marker, ms=3, lw=1.5, label="validation")
            ax.legend(fontsize=7, frameon=False)
        ax.set_title(_TITLES.get(term, term), fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean loss" if term in _TITLES else term)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[len(present):]:
        ax.set_visible(False)
    save_png(fig, save)
    return fig
