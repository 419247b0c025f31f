"""Label-free feature filters, the missing-cell mask and median imputation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import constants as K
from .._errors import SelectionError
from ._subset import subset_var

IMPUTE_RULE = ("a missing cell gets the median of its feature over the non-missing values of "
               "the fitting samples (0 where the feature has none)")


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


def missing_mask(adata: AnnData) -> np.ndarray:
    """Dense boolean samples x features: NaN in ``X`` or flagged in ``layers[MISSING]``.

    The layer remembers cells that an earlier imputation already filled, so a later step can
    treat them as missing again (and, e.g., refit the imputation on training samples only).
    """
    mask = np.isnan(np.asarray(adata.X, dtype=np.float32))
    layer = adata.layers[K.MISSING] if K.MISSING in adata.layers else None
    if layer is not None:
        mask |= (layer.toarray() if sp.issparse(layer) else np.asarray(layer)).astype(bool)
    return mask


def values_with_nan(adata: AnnData) -> np.ndarray:
    """float32 copy of ``X`` with NaN in every missing cell (see :func:`missing_mask`)."""
    X = np.array(adata.X, dtype=np.float32, copy=True)
    X[missing_mask(adata)] = np.nan
    return X


def filter_features(adata: AnnData, *, max_missing: float = 0.2, drop_constant: bool = True,
                    inplace: bool = True) -> AnnData | None:
    """Drop features missing in more than ``max_missing`` of samples, and constant ones.

    Uses no labels, so it may run before cross-validation without leaking. Cells flagged in
    ``layers["missing"]`` count as missing even when ``X`` holds an imputed value.

    Parameters
    ----------
    adata
        Samples x features.
    max_missing
        Largest allowed fraction of missing cells per feature.
    drop_constant
        Drop features with zero variance over the non-missing samples.
    inplace
        Subset ``adata`` in place (return None), else return the filtered copy.

    Returns
    -------
    None, or the filtered AnnData. ``uns["filter_features"]`` records ``params``, the counts
    and the dropped features by name (``dropped_missing``, ``dropped_constant``) with their
    gene symbols (``dropped_missing_symbols``, ``dropped_constant_symbols``).
    """
    X = values_with_nan(adata)
    missing = np.isnan(X).mean(axis=0)
    too_missing = missing > max_missing
    constant = np.zeros(adata.n_vars, dtype=bool)
    if drop_constant:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: already dropped
            var = np.nanvar(X, axis=0)
        constant = ~(var > 0) & ~too_missing
    keep = ~too_missing & ~constant
    if not keep.any():
        raise SelectionError("every feature is constant or missing in more than "
                             f"{max_missing:.0%} of samples")
    symbols = _symbols(adata)
    record = {"params": {"max_missing": max_missing, "drop_constant": drop_constant},
              "n_dropped_missing": int(too_missing.sum()), "n_dropped_constant": int(constant.sum()),
              "n_kept": int(keep.sum()),
              "dropped_missing": adata.var_names[too_missing].tolist(),
              "dropped_missing_symbols": symbols[too_missing].tolist(),
              "dropped_constant": adata.var_names[constant].tolist(),
              "dropped_constant_symbols": symbols[constant].tolist()}
    return subset_var(adata, keep, K.UNS_FILTER, record, inplace)


def _symbols(adata: AnnData) -> np.ndarray:
    """Gene symbol of each feature (its name where the symbol is empty)."""
    names = adata.var_names.to_numpy(dtype=object).astype(str)
    if K.GENE_SYMBOL not in adata.var:
        return names
    raw = adata.var[K.GENE_SYMBOL].astype(object).where(adata.var[K.GENE_SYMBOL].notna(), "")
    symbols = raw.astype(str).str.strip().to_numpy()
    return np.where(symbols != "", symbols, names)


def _fit_rows(adata: AnnData, fit_on) -> tuple[np.ndarray, str]:
    """Boolean mask of the samples the medians are fitted on, and a description of them."""
    if fit_on is None:
        return np.ones(adata.n_obs, dtype=bool), "all samples"
    values = np.asarray(fit_on)
    if values.dtype == bool:
        if values.shape != (adata.n_obs,):
            raise SelectionError(f"fit_on: a boolean mask needs {adata.n_obs} entries, "
                                 f"got {values.shape[0]}")
        rows = values
    else:
        names = pd.Index(values.astype(str))
        unknown = names.difference(adata.obs_names)
        if len(unknown):
            raise SelectionError(f"fit_on: {len(unknown)} sample(s) not in adata, "
                                 f"e.g. {unknown[0]!r}")
        rows = adata.obs_names.isin(names)
    if not rows.any():
        raise SelectionError("fit_on selects no sample to fit the medians on")
    return rows, f"{int(rows.sum())} of {adata.n_obs} samples"


def impute_median(adata: AnnData, *, fit_on=None, copy: bool = False) -> AnnData | None:
    """Fill missing cells with their feature's median over the fitting samples.

    A cell is missing when it is NaN in ``X`` or flagged in ``layers["missing"]``; the flag
    is kept (as a sparse boolean layer), so calling this again refits the medians, e.g. on
    the training samples of a split, without the values imputed before.

    Parameters
    ----------
    adata
        Samples x features.
    fit_on
        Samples whose values define the medians: a boolean mask or ``obs_names``; None uses
        every sample. Pass the training samples where a split exists, so that held-out
        values never shape the training data.
    copy
        Return a modified copy instead of changing ``adata``.

    Returns
    -------
    None, or the imputed copy. Writes a finite float32 ``X``, ``layers["missing"]``,
    ``var["impute_median"]`` and ``uns["impute_median"]`` (``params``: ``rule``,
    ``fit_on``; ``n_imputed`` cells, ``n_features_imputed``, ``n_fit_samples``).
    """
    adata = adata.copy() if copy else adata
    rows, fitted = _fit_rows(adata, fit_on)
    X = values_with_nan(adata)
    missing = np.isnan(X)
    med = nan_medians(X[rows])
    adata.X = fill_nan(X, med)
    adata.layers[K.MISSING] = sp.csr_matrix(missing)
    adata.var[K.IMPUTE_MEDIAN] = med
    adata.uns[K.UNS_IMPUTE] = {
        "params": {"rule": IMPUTE_RULE, "fit_on": fitted},
        "n_imputed": int(missing.sum()),
        "n_features_imputed": int(missing.any(axis=0).sum()),
        "n_fit_samples": int(rows.sum()),
    }
    return adata if copy else None
