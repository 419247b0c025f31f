"""Parameter checks, labels, folds, the elimination schedule and the matrix checks."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._errors import LabelError, SelectionError

SCORINGS = ("accuracy", "balanced_accuracy", "f1_macro")
ENGINES = ("fast", "sklearn")
ESTIMATORS = ("linear_svc",)

_BLOCK_BYTES = 1 << 22


def check_params(estimator, C, step, scoring, min_features, engine) -> None:
    """``ValueError`` for an option outside its domain (before any data is read)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    if isinstance(C, bool) or not isinstance(C, Real) or not np.isfinite(C) or C <= 0:
        raise ValueError(f"C must be a finite number > 0, got {C!r}")
    bad_step = ValueError(f"step must be a float in (0, 1) or an int >= 1, got {step!r}")
    if isinstance(step, bool) or not isinstance(step, Real):
        raise bad_step
    if isinstance(step, Integral):
        if step < 1:
            raise bad_step
    elif not 0.0 < float(step) < 1.0:
        raise bad_step
    if isinstance(min_features, bool) or not isinstance(min_features, Integral) \
            or min_features < 1:
        raise ValueError(f"min_features must be an int >= 1, got {min_features!r}")


def elimination_sizes(n_features: int, step: float | int, min_features: int) -> list[int]:
    """Feature counts visited by RFE, largest first (``RFE.step_n_features_`` of one fold)."""
    target = min(int(min_features), n_features)
    if isinstance(step, Integral):
        n_step = int(step)
    else:
        n_step = int(max(1, step * n_features))
    sizes, k = [], n_features
    while k > target:
        sizes.append(k)
        k -= min(n_step, k - target)
    sizes.append(k)
    return sizes


def encode_labels(y, label_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels as str, sorted classes, int codes)``; ``LabelError`` for missing labels or a
    single class."""
    col = pd.Series(np.asarray(y, dtype=object).ravel()) if not isinstance(y, pd.Series) else y
    missing = int(pd.isna(col).sum())
    if missing:
        raise LabelError(f"{missing} of {col.size} samples have no {label_name!r} label (NaN); "
                         "drop or label them before rfecv")
    labels = np.asarray(col.astype(str).to_numpy(), dtype=object).astype(str)
    classes, codes = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        only = classes[0] if classes.size else "none"
        raise LabelError(f"{label_name!r} has a single class ({only!r}); rfecv needs >= 2")
    return labels, classes, codes.astype(np.int64)


def dense_matrix(X) -> np.ndarray:
    """Dense numeric array (sparse densified, integers/booleans as float64)."""
    if sp.issparse(X):
        X = X.toarray()
    X = np.asarray(X)
    if X.ndim != 2:
        raise SelectionError(f"the matrix must be 2-D (samples x features), got {X.ndim}-D")
    if X.dtype.kind not in "fiub":
        raise SelectionError(f"matrix dtype {X.dtype} is not numeric")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    return X


class StratifiedFolds:
    """``StratifiedKFold(n_splits)`` without shuffling, same folds (tested against
    scikit-learn), without importing scikit-learn (about a second on first import).

    Classes are taken in order of first appearance; the test-fold sizes of each class are
    those of dealing the label-sorted samples round robin over the folds; each class's
    samples, in index order, fill the folds' test sets in fold order."""

    def __init__(self, n_splits: int):
        self.n_splits = int(n_splits)

    def get_n_splits(self) -> int:
        return self.n_splits

    def split(self, _X, codes):
        codes = np.asarray(codes)
        k = self.n_splits
        first = np.unique(codes, return_index=True)[1]
        by_appearance = np.argsort(first, kind="stable")
        rank = np.empty_like(by_appearance)
        rank[by_appearance] = np.arange(by_appearance.size)
        enc = rank[np.searchsorted(np.unique(codes), codes)]
        dealt = np.sort(enc)
        alloc = np.stack([np.bincount(dealt[i::k], minlength=first.size) for i in range(k)])
        test_fold = np.empty(codes.size, dtype=np.int64)
        for c in range(first.size):
            test_fold[enc == c] = np.repeat(np.arange(k), alloc[:, c])
        for i in range(k):
            yield np.flatnonzero(test_fold != i), np.flatnonzero(test_fold == i)


def _splitter(cv):
    if isinstance(cv, Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"cv must be >= 2 folds, got {cv}")
        return StratifiedFolds(int(cv)), int(cv)
    if hasattr(cv, "split"):
        return cv, repr(cv)
    return None, "explicit"


def make_folds(cv, codes: np.ndarray, classes: np.ndarray) -> tuple[list, object]:
    """``[(train, test), ...]`` index pairs and a description of ``cv`` (int, repr, or
    ``"explicit"``), with the checks every engine relies on."""
    n = codes.size
    splitter, desc = _splitter(cv)
    if splitter is not None:
        n_splits = splitter.get_n_splits() if hasattr(splitter, "get_n_splits") else None
        if n_splits is not None:
            counts = np.bincount(codes, minlength=classes.size)
            small = [(str(c), int(k)) for c, k in zip(classes, counts, strict=True)
                     if k < n_splits]
            if small:
                what = ", ".join(f"{c!r} has {k}" for c, k in small)
                raise SelectionError(f"{n_splits}-fold CV needs >= {n_splits} samples per "
                                     f"class: {what}")
        folds = [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64))
                 for tr, te in splitter.split(np.zeros((n, 1)), codes)]
    else:
        try:
            folds = [(np.asarray(tr, dtype=np.int64).ravel(),
                      np.asarray(te, dtype=np.int64).ravel()) for tr, te in cv]
        except (TypeError, ValueError) as exc:
            raise ValueError("cv must be an int, a splitter or a list of (train, test) index "
                             f"pairs: {exc}") from None
    _check_folds(folds, codes, classes)
    return folds, desc


def _check_folds(folds, codes, classes) -> None:
    n = codes.size
    if not folds:
        raise ValueError("cv produced no folds")
    for i, (tr, te) in enumerate(folds):
        if tr.size == 0 or te.size == 0:
            raise SelectionError(f"fold {i}: empty training or test set")
        if tr.min() < 0 or te.min() < 0 or tr.max() >= n or te.max() >= n:
            raise SelectionError(f"fold {i}: sample index out of range 0..{n - 1}")
        if np.unique(tr).size != tr.size:
            raise SelectionError(f"fold {i}: the training set repeats sample indices")
        present = np.unique(codes[tr])
        if present.size < 2:
            raise SelectionError(f"fold {i}: the training samples hold a single class "
                                 f"({classes[present[0]]!r})")


def nonfinite_error(count: int, source: str) -> SelectionError:
    return SelectionError(f"{source} has {count} NaN/infinite cells; impute or drop them "
                          "before rfecv")


def feature_major(X: np.ndarray, perm: np.ndarray, source: str, n_threads: int = 1):
    """``Xt = X[perm].T`` as a C-contiguous features x samples copy in the input dtype, with
    the non-finite check (``SelectionError``), and per feature: constant on all samples,
    the all-sample mean ``c`` (float64) and ``dabs = max |x - c|`` (for rounding bounds).
    Blocks of features are independent, so ``n_threads`` threads share them (numpy releases
    the GIL in the copies and reductions; on 2 cores this serial step was ~10 % of a run)."""
    n, p = X.shape
    Xt = np.empty((p, n), dtype=X.dtype)
    const = np.zeros(p, dtype=bool)
    c = np.zeros(p)
    dabs = np.zeros(p)
    block = max(1, _BLOCK_BYTES // max(n * X.itemsize, 1))
    identity = bool(np.array_equal(perm, np.arange(n)))

    def one(j0: int) -> int:
        j1 = min(p, j0 + block)
        Xt[j0:j1] = (X[:, j0:j1] if identity else X[perm, j0:j1]).T
        blk = Xt[j0:j1]
        nb = blk.size - int(np.count_nonzero(np.isfinite(blk)))
        if nb:
            return nb
        hi, lo = blk.max(axis=1).astype(np.float64), blk.min(axis=1).astype(np.float64)
        const[j0:j1] = hi == lo
        c[j0:j1] = blk.mean(axis=1, dtype=np.float64)
        dabs[j0:j1] = np.maximum(hi - c[j0:j1], c[j0:j1] - lo)
        return 0

    starts = range(0, p, block)
    if n_threads > 1 and len(starts) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(n_threads, len(starts))) as pool:
            bad = sum(pool.map(one, starts))
    else:
        bad = sum(map(one, starts))
    if bad:
        raise nonfinite_error(bad, source)
    return Xt, const, c, dabs


def check_finite_and_constant(X: np.ndarray, source: str) -> np.ndarray:
    """Constant-feature mask of a samples x features matrix (``SelectionError`` on NaN/inf)."""
    bad = 0
    lo = np.full(X.shape[1], np.inf)
    hi = np.full(X.shape[1], -np.inf)
    block = max(1, _BLOCK_BYTES // max(X.shape[1], 1))
    for i0 in range(0, X.shape[0], block):
        blk = X[i0:i0 + block]
        bad += blk.size - int(np.count_nonzero(np.isfinite(blk)))
        if not bad:
            np.minimum(lo, blk.min(axis=0), out=lo)
            np.maximum(hi, blk.max(axis=0), out=hi)
    if bad:
        raise nonfinite_error(bad, source)
    return lo == hi


def warn_constant(const: np.ndarray, stacklevel: int) -> None:
    k = int(const.sum())
    if k:
        warnings.warn(f"{k} constant features (zero variance on the given samples) are "
                      "treated as zero and eliminated first", UserWarning,
                      stacklevel=stacklevel + 1)
