"""``rfecv_array``: RFE-CV on a plain matrix (samples x features) and labels."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np

from .._errors import SelectionError
from .._provenance import versions
from . import _inputs as inp
from ._fast import fast_rfecv, n_threads_default
from ._layout import sample_layout
from ._sklearn import sklearn_rfecv

SOLVERS = {
    "fast": "exact dual (active-set Newton) over downdated fold Grams (float32 products), "
            "float64 coefficients certified by the duality gap",
    "sklearn": "scikit-learn RFECV + liblinear (tol=1e-4, max_iter=5000)",
}


@dataclass
class RFECVResult:
    """Outcome of one RFE-CV. Arrays follow the input's feature order; ``n_features`` and the
    score arrays list sizes ascending (``fold_scores`` is folds x sizes)."""

    support: np.ndarray
    ranking: np.ndarray
    n_features: np.ndarray
    mean_score: np.ndarray
    std_score: np.ndarray
    fold_scores: np.ndarray
    chosen_size: int
    classes: list
    n_constant: int
    params: dict
    stats: dict = field(default_factory=dict)

    def as_uns(self, **params) -> dict:
        """The ``adata.uns`` record (plain types and arrays, h5ad-safe); ``params`` are added
        in front of the run's own parameters."""
        return {"params": {**params, **self.params}, "n_features": self.n_features,
                "mean_score": self.mean_score, "std_score": self.std_score,
                "fold_scores": self.fold_scores, "chosen_size": int(self.chosen_size),
                "classes": list(self.classes), "n_constant": int(self.n_constant),
                "versions": versions()}


def _choose(fold_scores_desc: np.ndarray, sizes: list[int]) -> int:
    """scikit-learn: the smallest size among the best *summed* scores."""
    sums_rev = np.sum(fold_scores_desc, axis=0)[::-1]
    return int(np.asarray(sizes)[::-1][int(np.argmax(sums_rev))])


def _run_fast(X, codes, classes, folds, sizes, *, C, scoring, scale, progress, source,
              stacklevel, n_threads, precision, pipeline, stats):
    layout = sample_layout(folds, X.shape[0])
    Xt, const, center, dabs = inp.feature_major(X, layout.perm, source, n_threads or n_threads_default())
    inp.warn_constant(const, stacklevel=stacklevel + 1)
    fold_scores, elim_round = fast_rfecv(
        Xt, center, dabs, const, codes, classes.size, layout, C=C, sizes=sizes, scoring=scoring,
        scale=scale, progress=progress, n_threads=n_threads, precision=precision,
        pipeline=pipeline, stats=stats)
    chosen = _choose(fold_scores, sizes)
    # the final RFE stops at round r_k (sizes[r_k] == chosen): a feature eliminated at round
    # e < r_k was incremented in rounds e .. r_k - 1, like RFE.ranking_
    r_k = sizes.index(chosen)
    support = elim_round >= r_k
    ranking = np.where(support, 1, 1 + r_k - elim_round).astype(np.int64)
    return fold_scores, support, ranking, chosen, const


def rfecv_array(X, y, *, estimator: str = "linear_svc", C: float = 1.0,
                step: float | int = 0.05, cv=5, scoring: str = "accuracy",
                min_features: int = 1, scale: bool = True, engine: str = "fast",
                random_state: int | None = 42, progress: bool | None = None,
                label_name: str = "labels", source: str = "X", n_threads: int | None = None,
                precision: str = "float32", pipeline: bool = True,
                stats: dict | None = None, stacklevel: int = 1) -> RFECVResult:
    """RFE-CV (semantics of :func:`mirror_genes.tl.rfecv`) on ``X`` (samples x features,
    dense or sparse, finite) and labels ``y``; no AnnData involved.

    ``label_name``/``source`` name the labels and the matrix in error messages;
    ``precision="float64"`` builds the fast engine's Grams in float64 and
    ``pipeline=False`` certifies every round before its cut (both slower, same answer);
    ``stats`` (a dict) receives the fast engine's counters and phase times;
    ``stacklevel`` is that of the caller for warnings."""
    inp.check_params(estimator, C, step, scoring, min_features, engine)
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    labels, classes, codes = inp.encode_labels(y, label_name)
    X = inp.dense_matrix(X)
    n, p = X.shape
    if n != codes.size:
        raise SelectionError(f"{n} samples in the matrix but {codes.size} labels")
    if p < 2:
        raise SelectionError(f"rfecv needs at least 2 features, the matrix has {p}")
    folds, cv_desc = inp.make_folds(cv, codes, classes)
    sizes = inp.elimination_sizes(p, step, min_features)
    if min_features > p:
        warnings.warn(f"min_features={min_features} > {p} features: all features are kept",
                      UserWarning, stacklevel=stacklevel + 1)
    stats = {} if stats is None else stats
    if engine == "fast":
        fold_scores, support, ranking, chosen, const = _run_fast(
            X, codes, classes, folds, sizes, C=C, scoring=scoring, scale=scale,
            progress=progress, source=source, stacklevel=stacklevel + 1, n_threads=n_threads,
            precision=precision, pipeline=pipeline, stats=stats)
    else:
        const = inp.check_finite_and_constant(X, source)
        inp.warn_constant(const, stacklevel=stacklevel + 1)
        fold_scores, support, ranking, chosen, sk_sizes = sklearn_rfecv(
            X, labels, folds, C=C, step=step, scoring=scoring, min_features=min_features,
            scale=scale, random_state=random_state, const=const, progress=progress)
        if not np.array_equal(sk_sizes, sizes):  # pragma: no cover - a scikit-learn change
            raise RuntimeError(f"scikit-learn visited sizes {sk_sizes}, expected {sizes}")
    fold_scores = np.asarray(fold_scores, dtype=np.float64)[:, ::-1].copy()
    params = {"estimator": estimator, "C": float(C),
              "step": int(step) if isinstance(step, Integral) else float(step),
              "cv": cv_desc, "n_splits": int(len(folds)), "scoring": scoring,
              "min_features": int(min_features), "scale": bool(scale), "engine": engine,
              "random_state": "None" if random_state is None else int(random_state),
              "loss": "squared_hinge", "penalty": "l2", "intercept_scaling": 1.0,
              "solver": SOLVERS[engine]}
    return RFECVResult(
        support=np.asarray(support, dtype=bool), ranking=np.asarray(ranking, dtype=np.int64),
        n_features=np.asarray(sizes[::-1], dtype=np.int64),
        mean_score=np.mean(fold_scores, axis=0), std_score=np.std(fold_scores, axis=0),
        fold_scores=fold_scores, chosen_size=int(chosen),
        classes=[str(c) for c in classes], n_constant=int(const.sum()), params=params,
        stats=stats)
