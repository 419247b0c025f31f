"""Recursive feature elimination with cross-validation (RFE-CV): the AnnData face.

``rfecv(adata, ...)`` reproduces ``RFECV(Pipeline(StandardScaler, LinearSVC(C, squared hinge,
l2)), step, cv=StratifiedKFold(cv), scoring, min_features_to_select)`` -- the MIRROR reference
gene selection -- and writes the result into ``adata.var`` / ``adata.uns``. The computation is
the array-level engine :func:`mirror_genes._rfe.rfecv_array` (``engine="fast"``: every
LinearSVC of the procedure solved exactly through its dual over per-fold Grams, see
``docs/rfecv.md``; ``engine="sklearn"``: scikit-learn itself on the same folds).
"""

from __future__ import annotations

from anndata import AnnData

from .._errors import LabelError, SelectionError
from .._rfe import elimination_sizes, make_sklearn_estimator, rfecv_array
from .._rfe._inputs import ENGINES, ESTIMATORS, SCORINGS, check_params

__all__ = ["rfecv", "elimination_sizes", "make_sklearn_estimator", "ENGINES", "ESTIMATORS",
           "SCORINGS"]


def rfecv(adata: AnnData, label_key: str = "label", *, estimator: str = "linear_svc", C: float = 1.0,
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
        ``"fast"`` (exact dual solver over downdated Grams, decisions certified in float64;
        ``docs/rfecv.md``) or ``"sklearn"`` (scikit-learn's ``RFECV`` on the same folds;
        ``LinearSVC(max_iter=5000, random_state=random_state)``).
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
    check_params(estimator, C, step, scoring, min_features, engine)
    if copy:
        adata = adata.copy()
    if label_key not in adata.obs.columns:
        raise LabelError(f"label column {label_key!r} not in adata.obs "
                         f"(columns: {', '.join(map(str, adata.obs.columns[:10]))})")
    X, source = _matrix(adata, layer)
    res = rfecv_array(X, adata.obs[label_key], estimator=estimator, C=C, step=step, cv=cv,
                      scoring=scoring, min_features=min_features, scale=scale,
                      engine=engine, random_state=random_state, progress=progress,
                      label_name=label_key, source=source, stacklevel=2)
    adata.var[f"{key_added}_support"] = res.support
    adata.var[f"{key_added}_ranking"] = res.ranking
    adata.uns[key_added] = res.as_uns(label_key=str(label_key),
                                      layer="X" if layer is None else str(layer))
    return adata if copy else None


def _matrix(adata, layer):
    """The matrix to select on and its name for error messages."""
    if layer is None:
        X, source = adata.X, "adata.X"
    else:
        if layer not in adata.layers:
            raise SelectionError(f"layer {layer!r} not in adata.layers "
                                 f"({', '.join(adata.layers.keys()) or 'none'})")
        X, source = adata.layers[layer], f"adata.layers[{layer!r}]"
    if X is None:
        raise SelectionError("adata.X is empty; pass layer= or set X")
    return X, source
