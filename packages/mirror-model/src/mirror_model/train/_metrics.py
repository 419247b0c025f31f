"""Per-epoch metrics: CSV and JSON-lines files, one loss-curve PNG per loss term.

The history lives in the checkpoint too, so a resumed run rewrites exactly the rows of the
epochs it kept (an epoch killed half-way never leaves a row behind).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from mirror_genes.utils import atomic_path

from .. import constants as C

FIGURES = "figures"
FIGURE_NAME = "loss_{term}.png"
# Leading columns in a fixed order; loss terms follow, then anything else.
_FIRST = ("epoch", "steps", "samples", C.LOSS)
_LAST = ("logit_scale", "lr", "samples_per_s", "epoch_s")


def columns(history: list[dict]) -> list[str]:
    """Column order of the metrics table."""
    keys = {k for row in history for k in row}
    terms = [t for t in C.LOSS_TERMS if t in keys]
    rest = sorted(keys - set(_FIRST) - set(_LAST) - set(terms))
    return [k for k in _FIRST if k in keys] + terms + rest + [k for k in _LAST if k in keys]


def write_metrics(history: list[dict], run_dir: str | os.PathLike) -> None:
    """Rewrite ``metrics.csv`` and ``metrics.jsonl`` from the whole history, atomically.

    Parameters
    ----------
    history
        One dict of plain numbers per completed epoch.
    run_dir
        The run directory.
    """
    run_dir = Path(run_dir)
    cols = columns(history)
    with atomic_path(run_dir / C.METRICS_CSV) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            writer.writerows(history)
    with atomic_path(run_dir / C.METRICS_JSONL) as tmp:
        with open(tmp, "w") as fh:
            for row in history:
                fh.write(json.dumps(row) + "\n")


def plot_loss_curves(history: list[dict], run_dir: str | os.PathLike, weights: dict | None = None) -> list[Path]:
    """One PNG per loss term (and the weighted total) against the epoch.

    Parameters
    ----------
    history
        One dict per completed epoch.
    run_dir
        The run directory; figures go to ``figures/loss_<term>.png``.
    weights
        Loss weight per term, shown in the titles.

    Returns
    -------
    The written figure paths.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)  # headless: runs on servers and in tests
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = []
    folder = Path(run_dir) / FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    for term in (C.LOSS, *C.LOSS_TERMS):
        points = [(row["epoch"], row[term]) for row in history
                  if term in row and row[term] is not None and math.isfinite(row[term])]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, lw=1.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean over the epoch's steps")
        weight = (weights or {}).get(term)
        ax.set_title("total (weighted sum) loss" if term == C.LOSS
                     else f"{term} loss" + (f" (weight {weight:g})" if weight is not None else ""))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = folder / FIGURE_NAME.format(term=term)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        out.append(path)
    return out
