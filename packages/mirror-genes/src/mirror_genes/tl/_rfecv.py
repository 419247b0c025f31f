"""Recursive feature elimination with cross-validation (RFE-CV), scikit-learn semantics, fast.

``rfecv`` reproduces ``RFECV(Pipeline(StandardScaler, LinearSVC(C, squared hinge, l2)),
step, cv=StratifiedKFold(cv), scoring, min_features_to_select)`` -- the MIRROR reference gene
selection -- and writes the result into ``adata.var`` / ``adata.uns``. ``engine="fast"``
solves every LinearSVC of the procedure exactly through its dual over a per-fold Gram of the
training samples, downdated as features are eliminated (see ``docs/rfecv.md``);
``engine="sklearn"`` runs scikit-learn itself on the same folds.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .._errors import LabelError, SelectionError
from .._progress import step_bar
from .._provenance import versions
from ._svm import ovr_targets, solve_dual

__all__ = ["rfecv"]

SCORINGS = ("accuracy", "balanced_accuracy", "f1_macro")
ENGINES = ("fast", "sklearn")
ESTIMATORS = ("linear_svc",)

_GRAM_ROWS = 2048        # features per block when building / downdating a Gram
_PASS_ROWS = 64          # features per block in the coefficient pass (fits in L2)
_REFRESH_RATIO = 64      # rebuild a Gram from scratch once it has shrunk this much (accuracy)
_COMPACT_RATIO = 0.95    # coefficient pass: drop rows no run uses once they are 5 % of the visited


# ----------------------------------------------------------------------------------------------
# public function
# ----------------------------------------------------------------------------------------------

def rfecv(adata, label_key: str = "label", *, estimator: str = "linear_svc", C: float = 1.0,
          step: float | int = 0.05, cv=5, scoring: str = "accuracy", min_features: int = 1,
          scale: bool = True, engine: str = "fast", key_added: str = "rfecv",
          random_state: int | None = 42, layer: str | None = None,
          progress: bool | None = None, copy: bool = False):
    """Select features by recursive feature elimination, size chosen by cross-validation.

    Semantics are those of scikit-learn's ``RFECV`` with a ``StandardScaler`` + ``LinearSVC``
    pipeline (the MIRROR reference used ``LinearSVC(C=1, loss="squared_hinge", penalty="l2",
    max_iter=5000)``, ``step=0.05``, ``cv=StratifiedKFold(5)``, ``scoring="accuracy"``).

    Per fold: the scaler is fitted on the fold's training samples, features are eliminated on
    the training samples (``step`` of them per round, least ``coef**2`` first, summed over the
    one-vs-rest classes), and every size is scored on the fold's test samples. The chosen size
    has the best mean score (the smallest such size on ties); a final elimination on all given
    samples, scaled on all of them, stops at that size.

    Parameters
    ----------
    adata
        ``AnnData``, samples x features. ``adata.X`` (or ``layer``) must be finite.
    label_key
        Column of ``adata.obs`` with the class labels (compared as strings, classes sorted).
    estimator
        Only ``"linear_svc"`` (L2-regularised squared-hinge linear SVM, intercept fitted as a
        regularised constant feature like liblinear, one-vs-rest for > 2 classes).
    C
        Inverse regularisation strength.
    step
        Float in (0, 1): that fraction of the *starting* feature count is removed per round
        (``int(max(1, step * n_features))``); int >= 1: that many. The last round is clipped
        so that it ends at ``min_features``.
    cv
        Int: ``StratifiedKFold(n_splits=cv)`` without shuffling; a scikit-learn splitter; or an
        explicit sequence of ``(train_idx, test_idx)`` pairs (positions into ``adata``).
    scoring
        ``"accuracy"``, ``"balanced_accuracy"`` or ``"f1_macro"``.
    min_features
        Smallest size evaluated.
    scale
        Standardise features (fitted on the training samples of each fit).
    engine
        ``"fast"`` (exact dual solver over downdated Grams) or ``"sklearn"`` (scikit-learn's
        ``RFECV`` on the same folds; ``LinearSVC(max_iter=5000, random_state=random_state)``).
    key_added
        Results go to ``adata.var[f"{key_added}_support"]`` (bool),
        ``adata.var[f"{key_added}_ranking"]`` (int, 1 = selected, larger = eliminated
        earlier) and ``adata.uns[key_added]`` (``params``, ``n_features`` ascending,
        ``mean_score``, ``std_score``, ``fold_scores`` (folds x sizes), ``chosen_size``,
        ``classes``, ``n_constant``, ``versions``).
    random_state
        Seed of liblinear in ``engine="sklearn"`` (the fast engine is deterministic).
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    progress
        Show a progress bar (default: on unless ``MIRROR_NO_PROGRESS`` is set).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``.

    Raises
    ------
    LabelError
        ``label_key`` missing, samples without a label, or fewer than two classes.
    SelectionError
        Non-finite cells in the matrix, fewer than two features, a class smaller than the
        number of folds, or a training fold with a single class.
    """
    _check_params(estimator, C, step, scoring, min_features, engine)
    if copy:
        adata = adata.copy()

    labels, classes, codes = _labels(adata, label_key)
    X = _matrix(adata, layer)
    n, p = X.shape
    if p < 2:
        raise SelectionError(f"rfecv needs at least 2 features, the matrix has {p}")
    folds, cv_desc = _folds(cv, codes, classes)

    sizes = elimination_sizes(p, step, min_features)
    if min_features > p:
        warnings.warn(f"min_features={min_features} > {p} features: all features are kept",
                      UserWarning, stacklevel=2)

    if engine == "fast":
        Xt, const = _feature_major(X, layer)
        _warn_constant(const, stacklevel=2)
        result = _fast_rfecv(Xt, codes, classes.size, folds, C=C, sizes=sizes,
                             scoring=scoring, scale=scale, const=const, progress=progress)
        del Xt
    else:
        const = _check_finite_and_constant(X, layer)
        _warn_constant(const, stacklevel=2)
        *result, sk_sizes = _sklearn_rfecv(X, labels, folds, C=C, step=step,
                                           scoring=scoring, min_features=min_features,
                                           scale=scale, random_state=random_state,
                                           const=const, progress=progress)
        if not np.array_equal(sk_sizes, sizes):  # pragma: no cover - a scikit-learn change
            raise RuntimeError(f"scikit-learn visited sizes {sk_sizes}, expected {sizes}")

    fold_scores_desc, support, ranking, chosen = result
    sizes_asc = np.asarray(sizes[::-1], dtype=np.int64)
    fold_scores = np.asarray(fold_scores_desc, dtype=np.float64)[:, ::-1].copy()

    adata.var[f"{key_added}_support"] = np.asarray(support, dtype=bool)
    adata.var[f"{key_added}_ranking"] = np.asarray(ranking, dtype=np.int64)
    adata.uns[key_added] = {
        "params": {
            "label_key": str(label_key),
            "estimator": estimator,
            "C": float(C),
            "step": int(step) if isinstance(step, Integral) else float(step),
            "cv": cv_desc,
            "n_splits": int(len(folds)),
            "scoring": scoring,
            "min_features": int(min_features),
            "scale": bool(scale),
            "engine": engine,
            "random_state": "None" if random_state is None else int(random_state),
            "layer": "X" if layer is None else str(layer),
            "loss": "squared_hinge",
            "penalty": "l2",
            "intercept_scaling": 1.0,
            "solver": ("exact dual (active-set Newton) over downdated fold Grams"
                       if engine == "fast" else
                       "scikit-learn RFECV + liblinear (tol=1e-4, max_iter=5000)"),
        },
        "n_features": sizes_asc,
        "mean_score": np.mean(fold_scores, axis=0),
        "std_score": np.std(fold_scores, axis=0),
        "fold_scores": fold_scores,
        "chosen_size": int(chosen),
        "classes": [str(c) for c in classes],
        "n_constant": int(const.sum()),
        "versions": versions(),
    }
    return adata if copy else None


# ----------------------------------------------------------------------------------------------
# validation and inputs
# ----------------------------------------------------------------------------------------------

def _check_params(estimator, C, step, scoring, min_features, engine) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    if isinstance(C, bool) or not isinstance(C, Real) or not np.isfinite(C) or C <= 0:
        raise ValueError(f"C must be a finite number > 0, got {C!r}")
    if isinstance(step, bool) or not isinstance(step, Real):
        raise ValueError(f"step must be a float in (0, 1) or an int >= 1, got {step!r}")
    if isinstance(step, Integral):
        if step < 1:
            raise ValueError(f"step must be a float in (0, 1) or an int >= 1, got {step!r}")
    elif not 0.0 < float(step) < 1.0:
        raise ValueError(f"step must be a float in (0, 1) or an int >= 1, got {step!r}")
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


def _labels(adata, label_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if label_key not in adata.obs.columns:
        raise LabelError(f"label column {label_key!r} not in adata.obs "
                         f"(columns: {', '.join(map(str, adata.obs.columns[:10]))})")
    col = adata.obs[label_key]
    missing = int(pd.isna(col).sum())
    if missing:
        raise LabelError(f"{missing} of {col.size} samples have no {label_key!r} label (NaN); "
                         "drop or label them before rfecv")
    labels = np.asarray(col.astype(str).to_numpy(), dtype=object).astype(str)
    classes, codes = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        only = classes[0] if classes.size else "none"
        raise LabelError(f"{label_key!r} has a single class ({only!r}); rfecv needs >= 2")
    return labels, classes, codes.astype(np.int64)


def _matrix(adata, layer):
    if layer is None:
        X = adata.X
    else:
        if layer not in adata.layers:
            raise SelectionError(f"layer {layer!r} not in adata.layers "
                                 f"({', '.join(adata.layers.keys()) or 'none'})")
        X = adata.layers[layer]
    if X is None:
        raise SelectionError("adata.X is empty; pass layer= or set X")
    if sp.issparse(X):
        X = X.toarray()
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise SelectionError(f"matrix dtype {X.dtype} is not numeric")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    return X


def _folds(cv, codes: np.ndarray, classes: np.ndarray) -> tuple[list, object]:
    from sklearn.model_selection import StratifiedKFold

    n = codes.size
    counts = np.bincount(codes, minlength=classes.size)
    if isinstance(cv, Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"cv must be >= 2 folds, got {cv}")
        splitter, desc = StratifiedKFold(n_splits=int(cv)), int(cv)
    elif hasattr(cv, "split"):
        splitter, desc = cv, repr(cv)
    else:
        splitter, desc = None, "explicit"

    if splitter is not None:
        n_splits = splitter.get_n_splits() if hasattr(splitter, "get_n_splits") else None
        if n_splits is not None:
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
            folds = [(np.asarray(tr, dtype=np.int64).ravel(), np.asarray(te, dtype=np.int64)
                      .ravel()) for tr, te in cv]
        except (TypeError, ValueError) as exc:
            raise ValueError("cv must be an int, a splitter or a list of (train, test) index "
                             f"pairs: {exc}") from None
    if not folds:
        raise ValueError("cv produced no folds")
    for i, (tr, te) in enumerate(folds):
        if tr.size == 0 or te.size == 0:
            raise SelectionError(f"fold {i}: empty training or test set")
        if tr.min() < 0 or te.min() < 0 or tr.max() >= n or te.max() >= n:
            raise SelectionError(f"fold {i}: sample index out of range 0..{n - 1}")
        present = np.unique(codes[tr])
        if present.size < 2:
            raise SelectionError(f"fold {i}: the training samples hold a single class "
                                 f"({classes[present[0]]!r})")
    return folds, desc


def _nonfinite_error(count: int, layer) -> SelectionError:
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    return SelectionError(f"{where} has {count} NaN/infinite cells; impute or drop them "
                          "before rfecv")


def _feature_major(X: np.ndarray, layer) -> tuple[np.ndarray, np.ndarray]:
    """Features x samples C-contiguous copy (no copy if ``X`` is Fortran-ordered), with the
    non-finite check and the constant-feature mask computed on the way."""
    n, p = X.shape
    if X.flags.f_contiguous:
        Xt = X.T
        copy = False
    else:
        Xt = np.empty((p, n), dtype=X.dtype)
        copy = True
    const = np.empty(p, dtype=bool)
    bad = 0
    block = max(1, (1 << 22) // max(n, 1))
    for j0 in range(0, p, block):
        j1 = min(p, j0 + block)
        if copy:
            Xt[j0:j1] = X[:, j0:j1].T
        blk = Xt[j0:j1]
        finite = np.isfinite(blk)
        nb = blk.size - int(np.count_nonzero(finite))
        if nb:
            bad += nb
            continue
        const[j0:j1] = blk.max(axis=1) == blk.min(axis=1)
    if bad:
        raise _nonfinite_error(bad, layer)
    return Xt, const


def _check_finite_and_constant(X: np.ndarray, layer) -> np.ndarray:
    bad = 0
    lo = np.full(X.shape[1], np.inf)
    hi = np.full(X.shape[1], -np.inf)
    block = max(1, (1 << 22) // max(X.shape[1], 1))
    for i0 in range(0, X.shape[0], block):
        blk = X[i0:i0 + block]
        bad += blk.size - int(np.count_nonzero(np.isfinite(blk)))
        if not bad:
            np.minimum(lo, blk.min(axis=0), out=lo)
            np.maximum(hi, blk.max(axis=0), out=hi)
    if bad:
        raise _nonfinite_error(bad, layer)
    return lo == hi


def _warn_constant(const: np.ndarray, stacklevel: int) -> None:
    k = int(const.sum())
    if k:
        warnings.warn(f"{k} constant features (zero variance on the given samples) are "
                      "treated as zero and eliminated first", UserWarning,
                      stacklevel=stacklevel + 1)


# ----------------------------------------------------------------------------------------------
# scoring (same arithmetic as sklearn.metrics, so that ties between sizes resolve the same)
# ----------------------------------------------------------------------------------------------

def _score(scoring: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if scoring == "accuracy":
        return float(np.average(y_true == y_pred))
    labels = np.union1d(y_true, y_pred)
    t = np.searchsorted(labels, y_true)
    q = np.searchsorted(labels, y_pred)
    k = labels.size
    true_sum = np.bincount(t, minlength=k)
    pred_sum = np.bincount(q, minlength=k)
    tp = np.bincount(t[t == q], minlength=k)
    if scoring == "balanced_accuracy":
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class = tp / true_sum
        per_class = per_class[~np.isnan(per_class)]
        return float(np.mean(per_class))
    denom = 1.0 * true_sum.astype(np.float64) + pred_sum.astype(np.float64)
    num = 2.0 * tp.astype(np.float64)
    mask = denom == 0
    denom[mask] = 1.0
    f1 = num / denom
    f1[mask] = 0.0
    return float(np.nanmean(f1))


# ----------------------------------------------------------------------------------------------
# fast engine
# ----------------------------------------------------------------------------------------------

class _Run:
    """One recursive elimination (a CV fold, or the final fit on all samples) and its Gram
    ``K = Z_train Z_train^T`` over the active features."""

    def __init__(self, train: np.ndarray, test: np.ndarray, p: int, Y_train: np.ndarray):
        self.train = np.asarray(train, dtype=np.int64)
        self.test = np.asarray(test, dtype=np.int64)
        self.Y = Y_train
        ntr = self.train.size
        self.mu = np.zeros(p)
        self.inv = np.zeros(p)
        self.K = np.zeros((ntr, ntr))
        self.active = np.ones(p, dtype=bool)
        self.beta = np.zeros((ntr, Y_train.shape[1]))
        self.S: np.ndarray | None = None        # margin violators of the last solution
        self.n_ref = p
        self.scores: list[float] = []
        self.unconverged = 0
        self.newton_steps = 0
        self.solves = 0

    def gram(self) -> np.ndarray:
        """``K`` plus the intercept's constant feature (``+1``)."""
        return self.K + 1.0


def _scale_stats(T: np.ndarray, const: np.ndarray, scale: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 1/std per row of ``T`` (features x training samples, float64), like
    ``StandardScaler`` (population std; near-constant rows, detected with its error bound,
    get 1/std = 0: the feature is zero). ``T`` is centred in place when ``scale``."""
    ntr = T.shape[1]
    if not scale:
        return np.zeros(T.shape[0]), np.where(const, 0.0, 1.0)
    mu = T.mean(axis=1)
    T -= mu[:, None]
    ss = np.einsum("ij,ij->i", T, T)
    corr = T.sum(axis=1)
    var = (ss - corr * corr / ntr) / ntr
    eps = np.finfo(np.float64).eps
    is_const = (var <= ntr * eps * var + (ntr * mu * eps) ** 2) | const
    inv = np.zeros_like(var)
    np.divide(1.0, np.sqrt(var, where=~is_const, out=np.ones_like(var)), out=inv,
              where=~is_const)
    return mu, inv


def _syrk_update(K: np.ndarray, Z: np.ndarray, sign: float, buf: np.ndarray) -> None:
    """``K += sign * Z^T Z`` in place (``Z``: features x samples). numpy's ``a.T @ a`` runs
    BLAS syrk and releases the GIL (scipy's BLAS wrappers hold it), so runs in different
    threads really run in parallel."""
    np.matmul(Z.T, Z, out=buf)
    if sign > 0:
        K += buf
    else:
        K -= buf


def _init_gram(Xt: np.ndarray, run: _Run, const: np.ndarray, scale: bool) -> None:
    """Scaling statistics on the run's training samples and the Gram of its scaled training
    samples over all features (one pass over ``Xt``)."""
    p = Xt.shape[0]
    buf = np.empty_like(run.K)
    for j0 in range(0, p, _GRAM_ROWS):
        j1 = min(p, j0 + _GRAM_ROWS)
        T = np.take(Xt[j0:j1], run.train, axis=1).astype(np.float64, copy=False)
        mu, inv = _scale_stats(T, const[j0:j1], scale)  # T centred in place
        run.mu[j0:j1] = mu
        run.inv[j0:j1] = inv
        T *= inv[:, None]
        _syrk_update(run.K, T, 1.0, buf)


def _accumulate(Xt: np.ndarray, run: _Run, rows: np.ndarray, sign: float, K=None) -> None:
    """``K += sign * Z[rows]^T Z[rows]`` for the given (global) feature rows (``K`` defaults
    to the run's Gram)."""
    K = run.K if K is None else K
    rows = rows[run.inv[rows] != 0.0]
    buf = np.empty_like(K)
    for r0 in range(0, rows.size, _GRAM_ROWS):
        r = rows[r0:r0 + _GRAM_ROWS]
        Z = np.subtract(Xt[np.ix_(r, run.train)], run.mu[r][:, None], dtype=np.float64)
        Z *= run.inv[r][:, None]
        _syrk_update(K, Z, sign, buf)


def _eliminate(Xt: np.ndarray, run: _Run, importance: np.ndarray, n_remove: int) -> None:
    """Remove the ``n_remove`` least important active features (ties in index order, like
    ``np.argsort(kind="stable")`` in scikit-learn) and update the Gram: downdate by the
    removed features, or rebuild from the remaining ones when that is cheaper or the Gram
    has shrunk by ``_REFRESH_RATIO`` since it was last built (bounds cancellation)."""
    act = np.flatnonzero(run.active)
    order = np.argsort(importance[act], kind="stable")
    removed = act[order[:n_remove]]
    run.active[removed] = False
    n_left = int(np.count_nonzero(run.active & (run.inv != 0.0)))
    n_gone = int(np.count_nonzero(run.inv[removed] != 0.0))
    if n_left <= n_gone or n_left * _REFRESH_RATIO < run.n_ref:
        run.K[...] = 0.0
        rows, sign = np.flatnonzero(run.active), 1.0
        run.n_ref = max(n_left, 1)
    elif n_gone:
        rows, sign = removed, -1.0
    else:
        return
    _accumulate(Xt, run, rows, sign)


class _CoefPass:
    """``w = Z^T beta`` for every active feature of every run, and (for runs with test
    samples) the decision values on the test samples, ``f = Z_test w + b``: one pass over
    the feature rows still active in some run (gathered block by block, no copy of the
    matrix) in L2-sized blocks, split over threads."""

    def __init__(self, Xt: np.ndarray, runs: list[_Run], pool, n_threads: int):
        self.Xt = Xt
        self.runs = runs
        self.pool = pool
        self.n_threads = max(1, n_threads)
        self.rows = np.arange(Xt.shape[0])
        self.contiguous = True  # rows == arange(p): slice instead of gather
        self.cols = []
        c = 0
        for run in runs:
            m = run.beta.shape[1]
            self.cols.append(slice(c, c + m))
            c += m
        self.F = c
        self._restack()

    def _restack(self) -> None:
        F, rows = self.F, self.rows
        self.MU = np.empty((rows.size, F))
        self.INV = np.empty((rows.size, F))
        for run, cs in zip(self.runs, self.cols, strict=True):
            self.MU[:, cs] = run.mu[rows][:, None]
            self.INV[:, cs] = run.inv[rows][:, None]

    def compact(self) -> None:
        """Visit only rows still active in some run, once they are few enough."""
        union = np.zeros(self.Xt.shape[0], dtype=bool)
        for run in self.runs:
            union |= run.active
        keep = union[self.rows]
        if np.count_nonzero(keep) < _COMPACT_RATIO * self.rows.size:
            self.rows = self.rows[keep]
            self.contiguous = False
            self._restack()

    def __call__(self, decisions: bool) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        n = self.Xt.shape[1]
        F, rows = self.F, self.rows
        B = np.zeros((n, F))
        SB = np.empty(F)
        ACT = np.empty((rows.size, F))
        for run, cs in zip(self.runs, self.cols, strict=True):
            B[run.train, cs] = run.beta
            SB[cs] = run.beta.sum(axis=0)
            ACT[:, cs] = run.active[rows][:, None]
        W = np.empty((rows.size, F))

        def work(bounds):
            lo, hi = bounds
            XU = np.zeros((n, F)) if decisions else None
            MUU = np.zeros(F)
            for r0 in range(lo, hi, _PASS_ROWS):
                r1 = min(hi, r0 + _PASS_ROWS)
                Xb = self.Xt[r0:r1] if self.contiguous else self.Xt[rows[r0:r1]]
                Xb = Xb.astype(np.float64, copy=False)
                w = Xb @ B
                w -= self.MU[r0:r1] * SB
                w *= self.INV[r0:r1]
                w *= ACT[r0:r1]
                W[r0:r1] = w
                if decisions:
                    u = w * self.INV[r0:r1]
                    XU += Xb.T @ u
                    MUU += np.einsum("ij,ij->j", self.MU[r0:r1], u)
            return XU, MUU

        edges = np.linspace(0, rows.size, self.n_threads + 1).astype(int)
        parts = list(self.pool.map(work, zip(edges[:-1], edges[1:], strict=True)))
        if decisions:
            XU = sum(pt[0] for pt in parts)
            MUU = sum(pt[1] for pt in parts)
        importances, test_f = [], []
        p = self.Xt.shape[0]
        for run, cs in zip(self.runs, self.cols, strict=True):
            imp = np.zeros(p)
            imp[rows] = np.einsum("ij,ij->i", W[:, cs], W[:, cs])
            importances.append(imp)
            if decisions and run.test.size:
                test_f.append(XU[run.test, cs] - MUU[cs] + SB[cs])
            else:
                test_f.append(None)
        return importances, test_f


def _solve(run: _Run, C: float) -> None:
    Kb = run.gram()
    sol = solve_dual(Kb, run.Y, C=C, beta0=run.beta, active0=run.S, kernel_has_intercept=True)
    run.beta = sol.beta
    run.S = run.Y * (Kb @ sol.beta) < 1.0
    run.unconverged += int(not sol.converged)
    run.newton_steps += int(sol.n_iter.sum())
    run.solves += 1


def _predict(f: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        return (f[:, 0] > 0).astype(np.int64)
    return np.argmax(f, axis=1)


def _n_threads() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(8, os.cpu_count() or 1))


def _fast_rfecv(Xt: np.ndarray, codes: np.ndarray, n_classes: int, folds: Sequence,
                *, C: float, sizes: list[int], scoring: str, scale: bool, const: np.ndarray,
                progress: bool | None = None, n_threads: int | None = None,
                stats: dict | None = None):
    """The fast engine. ``Xt`` is features x samples. Returns ``(fold_scores, support,
    ranking, chosen_size)`` with ``fold_scores`` folds x sizes (largest size first).

    The folds and the final fit on all samples run in lockstep (the final elimination path
    does not depend on where it stops, so it is recorded and cut at the chosen size
    afterwards). BLAS runs single-threaded; the parallelism is over runs and feature blocks
    in a thread pool (numpy releases the GIL), so that the BLAS libraries numpy and scipy
    load never oversubscribe the cores."""
    p, n = Xt.shape
    threads = n_threads or _n_threads()
    Y = ovr_targets(codes, n_classes)
    runs = [_Run(tr, te, p, Y[tr]) for tr, te in folds]
    final = _Run(np.arange(n), np.zeros(0, dtype=np.int64), p, Y)
    every = [final, *runs]  # the longest job (all samples) first
    n_rounds = len(sizes)
    elim_round = np.full(p, n_rounds, dtype=np.int64)  # final run: round each feature left
    seconds = dict.fromkeys(("gram_init", "solve", "coef_pass", "eliminate"), 0.0)
    with (threadpool_limits(limits=1), ThreadPoolExecutor(threads) as pool,
          step_bar("RFE-CV (fast)", len(every) * (n_rounds + 1), progress=progress)
          as advance):

        def init(run):
            _init_gram(Xt, run, const, scale)
            advance(1)

        clock = time.perf_counter()
        list(pool.map(init, every))
        seconds["gram_init"] += time.perf_counter() - clock
        cpass = _CoefPass(Xt, every, pool, threads)
        for r, size in enumerate(sizes):
            last = r + 1 == n_rounds
            clock = time.perf_counter()
            list(pool.map(lambda run: _solve(run, C), every if not last else runs))
            seconds["solve"] += time.perf_counter() - clock
            clock = time.perf_counter()
            importances, test_f = cpass(decisions=True)
            seconds["coef_pass"] += time.perf_counter() - clock
            for run, f in zip(runs, test_f[1:], strict=True):
                run.scores.append(_score(scoring, codes[run.test], _predict(f, n_classes)))
            if not last:
                clock = time.perf_counter()
                k = size - sizes[r + 1]
                before = final.active.copy()
                list(pool.map(lambda a: _eliminate(Xt, a[0], a[1], k),
                              zip(every, importances, strict=True)))
                elim_round[before & ~final.active] = r
                cpass.compact()
                seconds["eliminate"] += time.perf_counter() - clock
            advance(len(every))

    fold_scores = np.array([run.scores for run in runs])
    # scikit-learn: the smallest size among the best *summed* scores
    sums_rev = np.sum(fold_scores, axis=0)[::-1]
    chosen = int(np.asarray(sizes)[::-1][int(np.argmax(sums_rev))])
    # the final RFE stops at round r_k (sizes[r_k] == chosen): a feature eliminated at round
    # e < r_k was incremented in rounds e .. r_k - 1, like RFE.ranking_
    r_k = sizes.index(chosen)
    support = elim_round >= r_k
    ranking = np.where(support, 1, 1 + r_k - elim_round).astype(np.int64)

    if stats is not None:
        stats.update(solves=sum(r.solves for r in every),
                     newton_steps=sum(r.newton_steps for r in every),
                     seconds=seconds, threads=threads)
    bad = sum(run.unconverged for run in every)
    if bad:
        warnings.warn(f"the dual solver stopped before exact convergence in {bad} fits",
                      RuntimeWarning, stacklevel=3)
    return fold_scores, support, ranking, chosen


# ----------------------------------------------------------------------------------------------
# scikit-learn engine
# ----------------------------------------------------------------------------------------------

def make_sklearn_estimator(C: float = 1.0, scale: bool = True, random_state=42):
    """The reference pipeline: ``StandardScaler`` (optional) + ``LinearSVC(C, squared hinge,
    l2, max_iter=5000)``; importance getter ``"named_steps.svc.coef_"``."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    steps = [("scale", StandardScaler())] if scale else []
    steps.append(("svc", LinearSVC(C=C, loss="squared_hinge", penalty="l2", max_iter=5000,
                                   random_state=random_state)))
    return Pipeline(steps)


def _sklearn_rfecv(X, labels, folds, *, C, step, scoring, min_features, scale, random_state,
                   const, progress):
    from sklearn.feature_selection import RFECV

    # float64 like the reference (pandas): StandardScaler keeps float32 input in float32,
    # whose rounding alone perturbs the elimination path
    X64 = np.asarray(X, dtype=np.float64)
    if const.any():
        if np.shares_memory(X64, X):
            X64 = X64.copy()
        X64[:, const] = 0.0
    selector = RFECV(make_sklearn_estimator(C, scale, random_state), step=step,
                     cv=[(tr, te) for tr, te in folds], scoring=scoring,
                     min_features_to_select=min_features,
                     importance_getter="named_steps.svc.coef_")
    with step_bar("RFE-CV (scikit-learn)", 1, progress=progress) as advance:
        selector.fit(X64, labels)
        advance(1)
    res = selector.cv_results_
    k = len(folds)
    # cv_results_ lists sizes ascending; return largest first like the fast engine
    fold_scores = np.array([res[f"split{i}_test_score"] for i in range(k)])[:, ::-1]
    return (fold_scores, selector.support_, selector.ranking_, int(selector.n_features_),
            np.asarray(res["n_features"])[::-1])
