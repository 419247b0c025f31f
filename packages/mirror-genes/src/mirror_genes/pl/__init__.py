"""Plots: selection report figures."""

from ._selection import panel_heatmap, rfecv_curve, top_variable_genes

__all__ = ["panel_heatmap", "rfecv_curve", "top_variable_genes"]
