"""Leak-free selection: RFE-CV inside each outer training fold, held-out evaluation, consensus."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.preprocessing import StandardScaler

from .. import _progress
from .. import constants as K
from .._errors import LabelError, SelectionError
from .._splits import make_splits, splits_to_indices, splits_to_patients
from ..pp._filter import fill_nan, nan_medians, values_with_nan

# held-out comparison: the fold's panel, its RFE support alone, all features, a random panel
FEATURE_SETS = ("panel", "rfe", "all", "random")


def _linear_probe(X_train, y_train, X_val, y_val, seed: int) -> dict:
    """Logistic regression (scaled on the training side) scored on the held-out samples."""
    scaler = StandardScaler().fit(X_train)
    clf = LogisticRegression(C=1.0, max_iter=5000, random_state=seed)
    clf.fit(scaler.transform(X_train), y_train)
    pred = clf.predict(scaler.transform(X_val))
    return {"balanced_accuracy": float(balanced_accuracy_score(y_val, pred)),
            "macro_f1": float(f1_score(y_val, pred, average="macro"))}


def nested_select(
    adata: ad.AnnData,
    label_key: str = K.LABEL,
    *,
    folds: int = 5,
    splits=None,
    group_key: str = K.PATIENT_ID,
    cgc_key: str | None = K.CGC_MEMBER,
    min_frequency: float = 0.5,
    step: float = 0.05,
    inner_cv: int = 5,
    scoring: str = "accuracy",
    engine: str = "fast",
    evaluate: bool = True,
    random_state: int = 42,
    progress: bool | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """RFE-CV nested inside patient-level outer folds, with a consensus panel.

    In every outer fold, missing cells are imputed with training-fold medians, RFE-CV
    (:func:`mirror_genes.tl.rfecv`) runs on the training samples only, and the fold's panel
    (its RFE support plus the COSMIC CGC features) is scored on the held-out samples with a
    logistic-regression probe, next to all features and a random panel of the same size.
    A cell is missing when it is NaN in ``X`` or flagged in ``layers["missing"]``: values an
    earlier all-sample imputation (``ingest``) filled are never fitted on.

    Parameters
    ----------
    adata
        Samples x features with labels in ``obs[label_key]``.
    label_key
        Class label column.
    folds
        Number of stratified, patient-level outer folds (ignored when ``splits`` is given).
    splits
        Outer folds as (train patients, val patients) pairs, e.g. from
        :func:`mirror_genes.splits.read_splits`.
    group_key
        Patient column: all samples of a patient fall on one side.
    cgc_key
        Boolean ``var`` column of CGC features added to every panel (None: RFE alone).
    min_frequency
        Consensus: features selected in at least this fraction of folds.
    step
        RFE step (fraction of the starting features removed per round).
    inner_cv
        Inner cross-validation folds of RFE-CV.
    scoring
        RFE-CV scoring.
    engine
        ``fast`` or ``sklearn``.
    evaluate
        Score the panels on each held-out fold.
    random_state
        Seed for folds and the random panels.
    progress
        Show a progress bar.
    copy
        Return an annotated copy instead of writing into ``adata``.

    Returns
    -------
    None or a copy. Writes ``varm["fold_support"]`` (features x folds), ``varm["fold_panel"]``,
    ``var["selection_frequency"]``, ``var["rfe_consensus"]``, ``var["mirror_panel"]``,
    ``uns["rfecv_folds"]`` (each fold's CV curve) and ``uns["mirror_select"]`` (``params``,
    per-fold ``folds`` records, patient ``splits``, ``n_consensus``, ``n_panel``). A fold
    record holds its sizes, the held-out scores of every feature set and
    ``rfe_jaccard_consensus``: how far its RFE support agrees with the consensus (1 = same).
    """
    adata = adata.copy() if copy else adata
    y = _labels(adata, label_key)
    patients = (adata.obs[group_key].astype(str).to_numpy() if group_key in adata.obs
                else adata.obs_names.to_numpy())
    if splits is None:
        fold_idx = make_splits(y, patients, folds, random_state=random_state)
    else:
        fold_idx = splits_to_indices(splits, patients)
    cgc = (adata.var[cgc_key].to_numpy(dtype=bool) if cgc_key and cgc_key in adata.var
           else np.zeros(adata.n_vars, dtype=bool))
    X = values_with_nan(adata)
    k = len(fold_idx)
    support = np.zeros((adata.n_vars, k), dtype=bool)
    curves, records = {}, {}
    rng = np.random.default_rng(random_state)
    rfe_params = {"step": step, "cv": inner_cv, "scoring": scoring, "engine": engine,
                  "random_state": random_state}
    with _progress.step_bar("outer folds", k, progress=progress) as advance:
        for f, (tr, va) in enumerate(fold_idx):
            med = nan_medians(X[tr])
            train_X = fill_nan(X[tr], med)
            support[:, f], curves[f"fold_{f}"] = _fold_rfecv(
                train_X, y[tr], adata.obs_names[tr], adata.var_names, label_key, rfe_params)
            panel = support[:, f] | cgc
            rec = {"n_train": len(tr), "n_val": len(va),
                   "chosen_size": int(curves[f"fold_{f}"]["chosen_size"]),
                   "n_panel": int(panel.sum()), "n_cgc_added": int((cgc & ~support[:, f]).sum())}
            if evaluate:
                random_panel = np.sort(rng.choice(adata.n_vars, size=rec["n_panel"], replace=False))
                sets = {"panel": np.flatnonzero(panel), "rfe": np.flatnonzero(support[:, f]),
                        "all": np.arange(adata.n_vars), "random": random_panel}
                rec.update(_evaluate(train_X, y[tr], fill_nan(X[va], med), y[va], sets,
                                     seed=random_state))
            records[f"fold_{f}"] = rec
            advance()
    consensus = support.mean(axis=1) >= min_frequency
    for f in range(k):
        records[f"fold_{f}"]["rfe_jaccard_consensus"] = _jaccard(support[:, f], consensus)
    _write_results(adata, support, cgc, consensus, curves)
    params = {"label_key": label_key, "folds": k, "splits_given": splits is not None,
              "group_key": group_key, "cgc_key": cgc_key or "", "min_frequency": min_frequency,
              "step": step, "inner_cv": inner_cv, "scoring": scoring, "engine": engine,
              "evaluate": evaluate, "random_state": random_state}
    adata.uns[K.UNS_SELECT] = _record(params, records, splits_to_patients(fold_idx, patients),
                                      consensus, cgc)
    return adata if copy else None


def _record(params: dict, records: dict, patient_splits: list, consensus: np.ndarray,
            cgc: np.ndarray) -> dict:
    return {
        "params": {**params, "imputation": "training-fold median",
                   "probe": "LogisticRegression(C=1) on training-fold standard scaling"},
        "folds": records,
        "splits": {f"fold_{f}": {"train": tr, "val": va} for f, (tr, va) in enumerate(patient_splits)},
        "n_consensus": int(consensus.sum()),
        "n_panel": int((consensus | cgc).sum()),
    }


def _labels(adata: ad.AnnData, label_key: str) -> np.ndarray:
    if label_key not in adata.obs:
        raise LabelError(f"obs has no {label_key!r} column")
    labels = adata.obs[label_key]
    if labels.isna().any():
        raise LabelError(f"{int(labels.isna().sum())} samples have no {label_key!r}; drop them first")
    return labels.astype(str).to_numpy()


def check_inner_cv(y, cv, where: str) -> None:
    """Name the inner CV (and its option) when a class is too small for it; rfecv's own
    message cannot tell inner from outer folds."""
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        counts = pd.Series(np.asarray(y)).value_counts()
        if len(counts) and counts.min() < cv:
            raise SelectionError(
                f"inner RFE-CV: {cv} inner folds need >= {cv} samples per class, but class "
                f"{counts.idxmin()!r} has {int(counts.min())} in {where}; lower --inner-cv")


def _fold_rfecv(X_train: np.ndarray, y_train: np.ndarray, obs_names, var_names, label_key: str,
                rfe_params: dict) -> tuple[np.ndarray, dict]:
    """RFE-CV on one outer fold's (imputed) training samples: support and CV curve."""
    from .._rfe import rfecv_array  # the array-level engine of tl.rfecv: no AnnData per fold

    check_inner_cv(y_train, rfe_params["cv"], "an outer fold's training samples")
    with warnings.catch_warnings():
        # constant-in-this-fold features: rfecv warns once per fold; not news here
        warnings.filterwarnings("ignore", message=".*constant.*")
        res = rfecv_array(X_train, y_train, step=rfe_params["step"], cv=rfe_params["cv"],
                          scoring=rfe_params["scoring"], engine=rfe_params["engine"],
                          random_state=rfe_params["random_state"], progress=False,
                          label_name=label_key)
    return res.support, res.as_uns(label_key=label_key, layer="X")


def _evaluate(X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
              sets: dict[str, np.ndarray], seed: int) -> dict:
    """Held-out scores of every feature set, as ``{set}_{metric}``."""
    out = {}
    for name in FEATURE_SETS:
        cols = sets[name]
        scores = _linear_probe(X_train[:, cols], y_train, X_val[:, cols], y_val, seed=seed)
        out.update({f"{name}_{metric}": value for metric, value in scores.items()})
    return out


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 1.0


def _write_results(adata: ad.AnnData, support: np.ndarray, cgc: np.ndarray,
                   consensus: np.ndarray, curves: dict) -> None:
    adata.varm[K.FOLD_SUPPORT] = support
    adata.varm[K.FOLD_PANEL] = support | cgc[:, None]
    adata.var[K.SELECTION_FREQUENCY] = support.mean(axis=1)
    adata.var[K.RFE_CONSENSUS] = consensus
    adata.var[K.PANEL] = consensus | cgc
    adata.uns[K.UNS_RFECV_FOLDS] = curves
