"""Preprocessing: restrict an AnnData to a gene panel; feature filters and imputation."""

from ._filter import filter_features, impute_median
from ._panel import apply_panel

__all__ = ["apply_panel", "filter_features", "impute_median"]
