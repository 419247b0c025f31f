"""Feature subsetting with scanpy's ``inplace`` convention, shared by pp functions."""

from __future__ import annotations

import anndata as ad
import numpy as np


def subset_var(adata: ad.AnnData, index: np.ndarray, key: str, record: dict,
               inplace: bool) -> ad.AnnData | None:
    """Keep features ``index`` (mask or positions), record ``uns[key]``; None when in place."""
    if inplace:
        adata._inplace_subset_var(index)
        adata.uns[key] = record
        return None
    out = adata[:, index].copy()
    out.uns[key] = record
    return out
