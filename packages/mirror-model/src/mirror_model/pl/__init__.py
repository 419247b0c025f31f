"""Figures of mirror-model in one place: attention heatmaps, embedding UMAPs, training curves,
and (re-exported from :mod:`mirror_model.eval`) probe-metric bars and Kaplan-Meier curves.

Every function returns a :class:`matplotlib.figure.Figure` on the Agg canvas (never pyplot's
global state, so it runs headless) and writes it as PNG, atomically, when given ``save=``.
Details: ``docs/report.md``.
"""

from ..eval import plot_kaplan_meier, plot_probe_metrics
from ._attention import attention_heatmap, patch_size_level0, read_coords, slide_attention
from ._embedding import umap_embeddings
from ._training import training_curves

__all__ = [
    "attention_heatmap", "patch_size_level0", "plot_kaplan_meier", "plot_probe_metrics", "read_coords",
    "slide_attention", "training_curves", "umap_embeddings",
]
