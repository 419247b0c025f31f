"""``engine="sklearn"``: scikit-learn's own ``RFECV`` on the same folds (the reference)."""

from __future__ import annotations

import numpy as np

from .._progress import step_bar


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


def sklearn_rfecv(X, labels, folds, *, C, step, scoring, min_features, scale, random_state,
                  const, progress):
    """Returns ``(fold_scores folds x sizes (largest first), support, ranking, chosen size,
    sizes (largest first))``."""
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
    fold_scores = np.array([res[f"split{i}_test_score"] for i in range(k)])[:, ::-1]
    return (fold_scores, selector.support_, selector.ranking_, int(selector.n_features_),
            np.asarray(res["n_features"])[::-1])
