"""Shared figure plumbing: Agg-backed figures outside pyplot, atomic PNG saving."""

from __future__ import annotations

import os
from pathlib import Path

from mirror_genes.utils import atomic_path


def new_figure(size: tuple[float, float]):
    """A Figure on the Agg canvas, never registered with pyplot (no global state, no GUI)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: draw() and buffer_rgba() work headless
    return fig


def axes_of(ax, size: tuple[float, float]):
    """(figure, axes): the given axes and its figure, or a new single-axes figure."""
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(size)
    return fig, fig.add_subplot()


def save_png(fig, path: str | os.PathLike | None, dpi: int = 150) -> None:
    """Write ``fig`` as PNG to ``path`` atomically (nothing when ``path`` is None)."""
    if path is None:
        return
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
