"""Linear probes on frozen embeddings over patient-level folds: torch and logistic regression."""

from __future__ import annotations

import numpy as np

from mirror_genes.utils import step_bar

from .._errors import EvaluationError
from ._inputs import SUBTYPING, check_fold, fold_indices, make_cohort
from ._predictions import subtyping_rows
from ._result import EvalResult, finish, output_rows, protocol_name
from ._train import INNER, LR, REFERENCE, ProbeSpec, fit_predict

DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def make_spec(cohort, n_bins: int, epochs: int, batch_size: int, lr: float | None,
              label_smoothing: float) -> ProbeSpec:
    """Probe settings, task defaults filled in (lr 2e-3 subtyping, 3e-3 survival)."""
    if epochs < 1 or batch_size < 1:
        raise EvaluationError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    n_out = len(cohort.classes) if cohort.task == SUBTYPING else n_bins
    return ProbeSpec(cohort.task, n_out, int(epochs), int(batch_size),
                     float(LR[cohort.task] if lr is None else lr), float(label_smoothing))


def linear_probe(X, patients, folds, *, labels=None, time=None, event=None, method: str = "MIRROR",
                 modalities: str = "wsi+rna", epochs: int = 100, batch_size: int = 16,
                 lr: float | None = None, label_smoothing: float = 0.1, inner_fraction: float = 0.2,
                 reference_protocol: bool = False, n_bins: int = 4, seed: int = 42,
                 progress: bool | None = None) -> EvalResult:
    """Torch linear probe (subtyping or 4-bin survival) over patient-level folds.

    Parameters
    ----------
    X
        Embeddings (n_patients, d), one row per patient.
    patients
        Patient ID of each row.
    folds
        (train patients, val patients) per fold, as ``mirror_genes.splits.read_splits`` returns.
    labels
        Class per row (subtyping). Give either this or ``time`` and ``event``.
    time
        Follow-up time per row (survival).
    event
        1 where the event (death) was observed, 0 where censored (survival).
    method
        Name written in the ``method`` column (e.g. ``MIRROR``, ``MIRROR-align``).
    modalities
        Modalities the embeddings come from, written in the ``modalities`` column.
    epochs
        Maximum epochs (reference 100).
    batch_size
        Mini-batch size (reference 16); every case is used, no batch is dropped.
    lr
        Adam learning rate; None: 2e-3 subtyping, 3e-3 survival.
    label_smoothing
        Cross-entropy label smoothing (subtyping; reference 0.1).
    inner_fraction
        Share of the training fold (stratified by class, or by time bin and event) held out
        to choose the epoch.
    reference_protocol
        Choose the epoch on the reported held-out fold, as the reference does (optimistic);
        outputs are labelled ``linear-reference``.
    n_bins
        Survival time bins (reference 4), fitted on each training fold.
    seed
        Seed of initialisation, shuffling and the inner split.
    progress
        Show a progress bar (None: unless ``MIRROR_NO_PROGRESS`` is set).

    Returns
    -------
    :class:`EvalResult`; ``runs`` records the selected epoch of every fold.
    """
    cohort = make_cohort(X, patients, labels, time, event)
    idx = fold_indices(cohort, folds)
    spec = make_spec(cohort, n_bins, epochs, batch_size, lr, label_smoothing)
    protocol = protocol_name("linear", None, reference_protocol)
    selection = REFERENCE if reference_protocol else INNER
    rows, runs = [], []
    with step_bar(f"{cohort.task} probe ({method})", len(idx), progress=progress) as advance:
        for k, (tr, va) in enumerate(idx):
            edges = check_fold(cohort, k, tr, va, n_bins)
            keys = dict(method=method, task=cohort.task, protocol=protocol, modalities=modalities, fold=k, seed=seed)
            out = fit_predict(cohort, tr, va, edges, spec, seed, selection, inner_fraction=inner_fraction)
            rows.append(output_rows(cohort, keys, va, edges, out))
            runs.append({**keys, "selection": selection, "n_train": len(tr), "n_val": len(va),
                         "n_inner_val": out.n_inner_val, "selected_epoch": out.selected_epoch})
            advance()
    return finish(rows, runs)


def logreg_probe(X, patients, folds, *, labels, method: str = "MIRROR", modalities: str = "wsi+rna",
                 Cs=DEFAULT_CS, inner_folds: int = 5, seed: int = 42, progress: bool | None = None) -> EvalResult:
    """Logistic-regression probe (subtyping) with C chosen by inner cross-validation.

    Parameters
    ----------
    X
        Embeddings (n_patients, d), one row per patient.
    patients
        Patient ID of each row.
    folds
        (train patients, val patients) per fold.
    labels
        Class per row.
    method
        Name written in the ``method`` column.
    modalities
        Modalities the embeddings come from.
    Cs
        Inverse regularisation strengths tried.
    inner_folds
        Inner stratified folds over the training fold's patients (fewer when the smallest
        class is smaller); the scaler is refitted inside every inner fold.
    seed
        Seed of the inner folds.
    progress
        Show a progress bar.

    Returns
    -------
    :class:`EvalResult` with protocol ``logreg``; ``runs`` records the chosen C.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cohort = make_cohort(X, patients, labels)
    idx = fold_indices(cohort, folds)
    rows, runs = [], []
    with step_bar(f"logistic probe ({method})", len(idx), progress=progress) as advance:
        for k, (tr, va) in enumerate(idx):
            check_fold(cohort, k, tr, va)
            n_inner = min(int(inner_folds), int(np.unique(cohort.labels[tr], return_counts=True)[1].min()))
            if n_inner < 2:
                raise EvaluationError(f"fold {k}: a class has one training patient; inner CV for C needs two")
            pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
            search = GridSearchCV(pipe, {"logisticregression__C": list(Cs)}, scoring="neg_log_loss",
                                  cv=StratifiedKFold(n_inner, shuffle=True, random_state=seed))
            search.fit(cohort.X[tr], cohort.labels[tr])
            proba = np.zeros((len(va), len(cohort.classes)))
            cols = [cohort.classes.index(c) for c in search.classes_]
            proba[:, cols] = search.predict_proba(cohort.X[va])
            keys = dict(method=method, task=SUBTYPING, protocol=protocol_name("logreg"), modalities=modalities,
                        fold=k, seed=seed)
            rows.append(subtyping_rows(keys, cohort.patients[va], cohort.labels[va],
                                       search.predict(cohort.X[va]), proba, cohort.classes))
            runs.append({**keys, "selection": "inner-cv", "n_train": len(tr), "n_val": len(va),
                         "inner_folds": n_inner, "C": float(search.best_params_["logisticregression__C"])})
            advance()
    return finish(rows, runs)
