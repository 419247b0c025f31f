"""Label-free feature filters and median imputation."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np

from .._errors import SelectionError
from ._subset import subset_var


def nan_medians(X: np.ndarray) -> np.ndarray:
    """Per-feature median over non-missing values (0 where a feature is all-missing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: handled below
        med = np.nanmedian(X, axis=0)
    return np.where(np.isnan(med), 0.0, med).astype(X.dtype, copy=False)


def fill_nan(X: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """Copy of ``X`` with NaN cells replaced by ``medians`` of their feature."""
    out = np.array(X, copy=True)
    rows, cols = np.nonzero(np.isnan(out))
    out[rows, cols] = medians[cols]
    return out


def filter_features(adata: ad.AnnData, *, max_missing: float = 0.2, drop_constant: bool = True,
                    inplace: bool = True) -> ad.AnnData | None:
    """Drop features missing in more than ``max_missing`` of samples, and constant ones.

    Uses no labels, so it may run before cross-validation without leaking.

    Parameters
    ----------
    adata
        Samples x features.
    max_missing
        Largest allowed fraction of NaN cells per feature.
    drop_constant
        Drop features with zero variance over the non-missing samples.
    inplace
        Subset ``adata`` in place (return None), else return the filtered copy.

    Returns
    -------
    None, or the filtered AnnData with ``uns["filter_features"]``.
    """
    X = np.asarray(adata.X)
    missing = np.isnan(X).mean(axis=0)
    keep = missing <= max_missing
    n_missing = int((~keep).sum())
    n_constant = 0
    if drop_constant:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: already dropped
            var = np.nanvar(X, axis=0)
        constant = ~(var > 0) & keep
        n_constant = int(constant.sum())
        keep &= ~constant
    if not keep.any():
        raise SelectionError("every feature is constant or missing in more than "
                             f"{max_missing:.0%} of samples")
    record = {"params": {"max_missing": max_missing, "drop_constant": drop_constant},
              "n_dropped_missing": n_missing, "n_dropped_constant": n_constant,
              "n_kept": int(keep.sum())}
    return subset_var(adata, keep, "filter_features", record, inplace)


def impute_median(adata: ad.AnnData, *, copy: bool = False) -> ad.AnnData | None:
    """Fill NaN cells with their feature's median (``var["impute_median"]``).

    Parameters
    ----------
    adata
        Samples x features.
    copy
        Return a modified copy instead of changing ``adata``.

    Returns
    -------
    None, or the imputed copy.
    """
    adata = adata.copy() if copy else adata
    X = np.asarray(adata.X)
    med = nan_medians(X)
    n = int(np.isnan(X).sum())
    adata.X = fill_nan(X, med)
    adata.var["impute_median"] = med
    adata.uns["impute_median"] = {"params": {}, "n_imputed": n}
    return adata if copy else None
