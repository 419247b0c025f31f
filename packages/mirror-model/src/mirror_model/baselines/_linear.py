"""The Linear baseline: linear models on concat(mean-pooled patch features, RNA).

Subtyping: logistic regression (scikit-learn), standardised on the training fold, C chosen by
inner stratified cross-validation on that fold. Survival: the same standardised features into
a linear discrete-time hazard model (4 bins, NLL), fitted to convergence with L-BFGS; its L2
strength is chosen by inner cross-validated C-index. The problem is convex, so the fit does not
depend on a learning rate, an epoch count or an initialisation.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .. import constants as C
from .._errors import ConfigError
from ..eval import concordance_index, discrete_hazard_nll, risk_from_logits
from ._result import SUBTYPING, SURVIVAL, BaselineResult

DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
DEFAULT_ALPHAS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)


def mean_pooled_features(data, *, with_rna: bool = True) -> np.ndarray:
    """Per-case mean of the real patch features, optionally followed by the RNA vector.

    Parameters
    ----------
    data
        Indexable of per-case dicts (``C.PATCHES`` (N_i, D), optional ``C.PATCH_MASK`` (N_i,),
        ``C.RNA`` (G,)); pass a dataset that returns every patch.
    with_rna
        Append ``C.RNA`` (the Linear baseline's input is concat(mean patches, RNA)).

    Returns
    -------
    Float64 array (n_cases, D [+ G]).
    """
    rows = []
    for i in range(len(data)):
        item = data[i]
        patches = torch.as_tensor(item[C.PATCHES], dtype=torch.float64)
        mask = item.get(C.PATCH_MASK)
        if mask is not None:
            patches = patches[torch.as_tensor(mask, dtype=torch.bool)]
        row = [patches.mean(0).numpy()]
        if with_rna:
            row.append(torch.as_tensor(item[C.RNA], dtype=torch.float64).numpy().ravel())
        rows.append(np.concatenate(row))
    return np.stack(rows)


FIXED_C = 1.0
FIXED_ALPHA = 1e-2


def inner_cv_possible(strata) -> bool:
    """Whether every stratum (class, or event / censored) has the 2 cases an inner CV needs.

    Parameters
    ----------
    strata
        Stratum of each training case.

    Returns
    -------
    True when inner cross-validation can run.
    """
    return len(strata) > 0 and int(np.unique(np.asarray(strata), return_counts=True)[1].min()) >= 2


def _inner_folds(strata: np.ndarray, inner_folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.unique(strata, return_counts=True)[1].min())
    k = min(inner_folds, smallest)
    if k < 2:
        raise ConfigError(f"inner cross-validation: a stratum has {smallest} training case(s); need >= 2")
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)


def linear_subtyping(features, labels, *, train_idx, test_idx, Cs=DEFAULT_CS, inner_folds: int = 5,
                     seed: int = 42, max_iter: int = 5000) -> BaselineResult:
    """Standardised logistic regression; C by inner stratified CV (log-loss) on the training fold.

    Parameters
    ----------
    features
        (n_cases, F) inputs, e.g. :func:`mean_pooled_features`.
    labels
        Class per case; entries at ``test_idx`` are never read.
    train_idx
        Training-fold positions (the scaler and the inner CV see only these).
    test_idx
        Held-out positions to predict.
    Cs
        Inverse regularisation strengths tried; a single one is used as is, without inner CV.
    inner_folds
        Inner CV folds (fewer when a class is small).
    seed
        Seed of the inner fold shuffle.
    max_iter
        L-BFGS iterations of each logistic fit.

    Returns
    -------
    :class:`BaselineResult`; ``logits`` are class scores (softmax = probabilities) over
    ``params["classes"]``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(features, dtype=np.float64)
    tr, te = np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)
    y = np.asarray(labels)[tr]
    # the scaler is inside the pipeline, so each inner fold is standardised on its own training part
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    # one C: nothing to choose, so no inner CV (it may be impossible, e.g. one case of a class)
    cv = _inner_folds(y, inner_folds, seed) if len(Cs) > 1 else [(np.arange(len(y)), np.arange(len(y)))]
    search = GridSearchCV(pipe, {"logisticregression__C": list(Cs)}, scoring="neg_log_loss", cv=cv, refit=True)
    search.fit(X[tr], y)
    # decision scores, not log-probabilities: they stay finite where a probability underflows to 0;
    # their softmax is predict_proba (multinomial; binary scores become [0, d])
    scores = search.decision_function(X[te])
    logits = np.stack([np.zeros_like(scores), scores], axis=1) if scores.ndim == 1 else scores
    params = {"C": float(search.best_params_["logisticregression__C"]), "Cs": list(Cs),
              "classes": search.classes_.tolist(), "inner_folds": search.n_splits_, "seed": seed}
    return BaselineResult(method=C.METHOD_LINEAR, task=SUBTYPING, test_idx=te, logits=logits, params=params)


def _standardise(X_train: np.ndarray, X_other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = X_train.mean(0), X_train.std(0)
    std = np.where(std > 0, std, 1.0)  # constant features stay 0 instead of dividing by zero
    return (X_train - mean) / std, (X_other - mean) / std


def _fit_hazard(X: np.ndarray, bins: np.ndarray, event: np.ndarray, alpha: float, n_bins: int,
                max_iter: int) -> torch.nn.Linear:
    """Linear hazard logits minimising mean NLL + alpha/2 ||W||^2 (bias unpenalised)."""
    Xt = torch.as_tensor(X, dtype=torch.float64)
    bt, et = torch.as_tensor(bins, dtype=torch.long), torch.as_tensor(event, dtype=torch.float64)
    lin = torch.nn.Linear(X.shape[1], n_bins).double()
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = discrete_hazard_nll(lin(Xt), bt, et) + 0.5 * alpha * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


@torch.no_grad()
def _hazard_logits(lin: torch.nn.Linear, X: np.ndarray) -> np.ndarray:
    return lin(torch.as_tensor(X, dtype=torch.float64)).numpy()


def _choose_alpha(X, bins, event, time, alphas, n_bins, inner_folds, seed, max_iter) -> tuple[float, list[dict]]:
    cv = _inner_folds(event.astype(int), inner_folds, seed)
    scores = []
    for alpha in alphas:
        per_fold = []
        for a, b in cv.split(X, event.astype(int)):
            Xa, Xb = _standardise(X[a], X[b])
            lin = _fit_hazard(Xa, bins[a], event[a], alpha, n_bins, max_iter)
            with warnings.catch_warnings():  # an inner fold without comparable pairs is NaN, left out below
                warnings.filterwarnings("ignore", message="C-index undefined")
                per_fold.append(concordance_index(time[b], event[b], risk_from_logits(_hazard_logits(lin, Xb))))
        scores.append({"alpha": float(alpha), "c_index": float(np.nanmean(per_fold))})
    # strict improvement over the alphas in the given order (strongest first by default) keeps
    # the more regularised model on ties
    best = scores[0]
    for s in scores[1:]:
        if s["c_index"] > best["c_index"]:
            best = s
    return best["alpha"], scores


def linear_survival(features, bins, *, event, time, train_idx, test_idx, alphas=DEFAULT_ALPHAS,
                    n_bins: int = 4, inner_folds: int = 5, seed: int = 42, max_iter: int = 500) -> BaselineResult:
    """Standardised linear discrete-time hazard model; L2 strength by inner-CV C-index.

    Parameters
    ----------
    features
        (n_cases, F) inputs, e.g. :func:`mean_pooled_features`.
    bins
        Survival-time bin per case (0..n_bins-1); entries at ``test_idx`` are never read.
    event
        1 when death was observed, per case.
    time
        Survival time per case (inner-CV C-index).
    train_idx
        Training-fold positions.
    test_idx
        Held-out positions to predict.
    alphas
        L2 strengths tried on the mean NLL (ties keep the earlier one: list strongest first); a
        single one is used as is, without inner CV.
    n_bins
        Number of hazard bins (4).
    inner_folds
        Inner CV folds, stratified by event (fewer when events or censorings are rare).
    seed
        Seed of the inner fold shuffle.
    max_iter
        L-BFGS iterations per fit.

    Returns
    -------
    :class:`BaselineResult` with hazard logits; ``params["alpha"]`` and the inner-CV scores.
    """
    X = np.asarray(features, dtype=np.float64)
    tr, te = np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)
    b, e, t = (np.asarray(bins)[tr].astype(np.int64), np.asarray(event, dtype=np.float64)[tr],
               np.asarray(time, dtype=np.float64)[tr])
    if b.min() < 0 or b.max() >= n_bins:
        raise ConfigError(f"bins: training values must lie in [0, {n_bins})")
    if len(alphas) > 1:
        alpha, scores = _choose_alpha(X[tr], b, e, t, list(alphas), n_bins, inner_folds, seed, max_iter)
    else:  # one alpha: nothing to choose, so no inner CV (it may be impossible, e.g. one event)
        alpha, scores = float(alphas[0]), []
    Xtr, Xte = _standardise(X[tr], X[te])
    lin = _fit_hazard(Xtr, b, e, alpha, n_bins, max_iter)
    logits = _hazard_logits(lin, Xte)
    params = {"alpha": alpha, "alphas": [float(a) for a in alphas], "inner_cv": scores, "n_bins": n_bins,
              "inner_folds": inner_folds, "seed": seed,
              "train_median_risk": float(np.median(risk_from_logits(_hazard_logits(lin, Xtr))))}
    return BaselineResult(method=C.METHOD_LINEAR, task=SURVIVAL, test_idx=te, logits=logits, params=params)
