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
from .._errors import LabelError
from .._splits import make_splits, splits_to_indices, splits_to_patients
from ..pp._filter import fill_nan, nan_medians

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
    label_key: str = "label",
    *,
    folds: int = 5,
    splits=None,
    group_key: str = "patient_id",
    cgc_key: str | None = "cgc_member",
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
    ``uns["rfecv_folds"]`` (each fold's CV curve) and ``uns["mirror_select"]``.
    """
    from ._rfecv import rfecv

    adata = adata.copy() if copy else adata
    if label_key not in adata.obs:
        raise LabelError(f"obs has no {label_key!r} column")
    labels = adata.obs[label_key]
    if labels.isna().any():
        raise LabelError(f"{int(labels.isna().sum())} samples have no {label_key!r}; drop them first")
    y = labels.astype(str).to_numpy()
    patients = (adata.obs[group_key].astype(str).to_numpy() if group_key in adata.obs
                else adata.obs_names.to_numpy())
    if splits is None:
        fold_idx = make_splits(y, patients, folds, random_state=random_state)
    else:
        fold_idx = splits_to_indices(splits, patients)
    patient_splits = splits_to_patients(fold_idx, patients)
    cgc = (adata.var[cgc_key].to_numpy(dtype=bool) if cgc_key and cgc_key in adata.var
           else np.zeros(adata.n_vars, dtype=bool))
    X = np.asarray(adata.X, dtype=np.float32)
    k = len(fold_idx)
    support = np.zeros((adata.n_vars, k), dtype=bool)
    panels = np.zeros((adata.n_vars, k), dtype=bool)
    curves, records = {}, {}
    rng = np.random.default_rng(random_state)
    with _progress.step_bar("outer folds", k, progress=progress) as advance:
        for f, (tr, va) in enumerate(fold_idx):
            med = nan_medians(X[tr])
            train = ad.AnnData(fill_nan(X[tr], med), obs=pd.DataFrame({label_key: y[tr]},
                               index=adata.obs_names[tr]), var=pd.DataFrame(index=adata.var_names))
            with warnings.catch_warnings():
                # constant-in-this-fold features: rfecv warns once per fold; not news here
                warnings.filterwarnings("ignore", message=".*constant.*")
                rfecv(train, label_key, step=step, cv=inner_cv, scoring=scoring, engine=engine,
                      random_state=random_state, progress=False)
            support[:, f] = train.var["rfecv_support"].to_numpy(dtype=bool)
            panels[:, f] = support[:, f] | cgc
            curves[f"fold_{f}"] = dict(train.uns["rfecv"])
            rec = {"n_train": len(tr), "n_val": len(va),
                   "chosen_size": int(train.uns["rfecv"]["chosen_size"]),
                   "n_panel": int(panels[:, f].sum()), "n_cgc_added": int((cgc & ~support[:, f]).sum())}
            if evaluate:
                X_val = fill_nan(X[va], med)
                Xtr = train.X
                random_panel = np.sort(rng.choice(adata.n_vars, size=rec["n_panel"], replace=False))
                sets = {"panel": np.flatnonzero(panels[:, f]), "rfe": np.flatnonzero(support[:, f]),
                        "all": np.arange(adata.n_vars), "random": random_panel}
                for name in FEATURE_SETS:
                    cols = sets[name]
                    scores = _linear_probe(Xtr[:, cols], y[tr], X_val[:, cols], y[va],
                                           seed=random_state)
                    for metric, value in scores.items():
                        rec[f"{name}_{metric}"] = value
            records[f"fold_{f}"] = rec
            advance()
    frequency = support.mean(axis=1)
    consensus = frequency >= min_frequency
    adata.varm["fold_support"] = support
    adata.varm["fold_panel"] = panels
    adata.var["selection_frequency"] = frequency
    adata.var["rfe_consensus"] = consensus
    adata.var["mirror_panel"] = consensus | cgc
    adata.uns["rfecv_folds"] = curves
    adata.uns["mirror_select"] = {
        "params": {"label_key": label_key, "folds": k, "splits_given": splits is not None,
                   "group_key": group_key, "cgc_key": cgc_key or "", "min_frequency": min_frequency,
                   "step": step, "inner_cv": inner_cv, "scoring": scoring, "engine": engine,
                   "evaluate": evaluate, "random_state": random_state,
                   "imputation": "training-fold median", "probe": "LogisticRegression(C=1) on "
                   "training-fold standard scaling"},
        "folds": records,
        "splits": {f"fold_{f}": {"train": tr, "val": va} for f, (tr, va) in enumerate(patient_splits)},
        "n_consensus": int(consensus.sum()),
        "n_panel": int((consensus | cgc).sum()),
    }
    return adata if copy else None
