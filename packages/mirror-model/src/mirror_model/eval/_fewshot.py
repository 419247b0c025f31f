"""Few-shot linear probes: k training cases per class (or survival bin), seeded repeats."""

from __future__ import annotations

import warnings

import numpy as np

from mirror_genes.utils import step_bar

from .._errors import EvaluationError
from ._inputs import SUBTYPING, Cohort, check_fold, fold_indices, make_cohort
from ._probe import make_spec
from ._result import EvalResult, finish, output_rows, protocol_name
from ._survival import assign_bins
from ._train import FIXED, REFERENCE, fit_predict


def shot_seed(seed: int, *, repeat: int, fold: int, shots: int) -> int:
    """Seed of one few-shot draw: every method drawing with it gets the same training cases.

    Parameters
    ----------
    seed
        Base seed.
    repeat
        Repeat number (0, 1, ...).
    fold
        Outer fold number.
    shots
        Cases per class or time bin.

    Returns
    -------
    The seed of that draw.
    """
    return seed + repeat + 1000 * fold + 100_000 * shots


def draw_per_group(groups: np.ndarray, positions: np.ndarray, *, shots: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``shots`` of ``positions`` per value of ``groups`` (aligned with them), without replacement.

    Parameters
    ----------
    groups
        Group of each position: the class (subtyping) or the survival time bin.
    positions
        Row positions to draw from (the training fold).
    shots
        Cases per group; a group with fewer gives all of them.
    seed
        Seed of the draw (see :func:`shot_seed`).

    Returns
    -------
    The sorted positions drawn, and a description of every group that had fewer than ``shots``.
    """
    groups, positions = np.asarray(groups).astype(str), np.asarray(positions)
    rng = np.random.default_rng(seed)
    chosen, short = [], []
    for g in sorted(set(groups)):
        members = positions[groups == g]
        if len(members) < shots:
            short.append(f"{g} has {len(members)}")
            chosen.append(members)
        else:
            chosen.append(rng.choice(members, size=shots, replace=False))
    return np.sort(np.concatenate(chosen)), short


def draw_shots(cohort: Cohort, tr: np.ndarray, edges, shots: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``shots`` training rows per class (or time bin) of ``cohort``; see :func:`draw_per_group`."""
    subtyping = cohort.task == SUBTYPING
    groups = cohort.labels[tr] if subtyping else assign_bins(cohort.time[tr], edges)
    picked, short = draw_per_group(groups, tr, shots=shots, seed=seed)
    return picked, [f"{'class' if subtyping else 'time bin'} {s}" for s in short]


def few_shot_probe(X, patients, folds, *, labels=None, time=None, event=None, shots=10, n_repeats: int = 5,
                   method: str = "MIRROR", modalities: str = "wsi+rna", epochs: int = 100,
                   batch_size: int = 16, lr: float | None = None, label_smoothing: float = 0.1,
                   reference_protocol: bool = False, n_bins: int = 4, seed: int = 42,
                   progress: bool | None = None) -> EvalResult:
    """Linear probe trained on k cases per class (subtyping) or per time bin (survival).

    Parameters
    ----------
    X
        Embeddings (n_patients, d), one row per patient.
    patients
        Patient ID of each row.
    folds
        (train patients, val patients) per fold.
    labels
        Class per row (subtyping). Give either this or ``time`` and ``event``.
    time
        Follow-up time per row (survival).
    event
        1 where the event was observed, 0 where censored (survival).
    shots
        k, or a list of k (e.g. ``[1, 5, 10, 25]``); drawn from the training fold only. A
        class or bin with fewer training patients contributes all it has (warned once per
        fold and k).
    n_repeats
        Seeded draws per fold and k (repeat r uses seed ``seed + r``, written in ``seed``).
    method
        Name written in the ``method`` column.
    modalities
        Modalities the embeddings come from.
    epochs
        Fixed number of epochs (no inner validation: it is impossible with k = 1).
    batch_size
        Mini-batch size.
    lr
        Adam learning rate; None: 2e-3 subtyping, 3e-3 survival.
    label_smoothing
        Cross-entropy label smoothing (subtyping).
    reference_protocol
        Choose the epoch on the held-out fold instead (labelled ``-reference``).
    n_bins
        Survival time bins, fitted on the whole training fold.
    seed
        Base seed.
    progress
        Show a progress bar.

    Returns
    -------
    :class:`EvalResult` with protocol ``linear-<k>shot``; validation is the whole held-out fold.
    """
    cohort = make_cohort(X, patients, labels, time, event)
    idx = fold_indices(cohort, folds)
    ks = [int(s) for s in np.atleast_1d(shots)]
    if min(ks) < 1 or n_repeats < 1:
        raise EvaluationError(f"shots and n_repeats must be >= 1, got {ks}, {n_repeats}")
    spec = make_spec(cohort, n_bins, epochs, batch_size, lr, label_smoothing)
    selection = REFERENCE if reference_protocol else FIXED
    rows, runs = [], []
    with step_bar(f"{cohort.task} few-shot ({method})", len(idx) * len(ks) * n_repeats, progress=progress) as advance:
        for k, (tr, va) in enumerate(idx):
            edges = check_fold(cohort, k, tr, va, n_bins)
            for shot in ks:
                protocol = protocol_name("linear", shot, reference_protocol)
                for r in range(n_repeats):
                    picked, short = draw_shots(cohort, tr, edges, shot, shot_seed(seed, repeat=r, fold=k, shots=shot))
                    if short and r == 0:
                        warnings.warn(f"fold {k}: {'; '.join(short)} training patient(s), fewer than k={shot}; "
                                      "taking all of them", stacklevel=2)
                    keys = dict(method=method, task=cohort.task, protocol=protocol, modalities=modalities,
                                fold=k, seed=seed + r)
                    out = fit_predict(cohort, picked, va, edges, spec, seed + r, selection, scale_rows=tr)
                    rows.append(output_rows(cohort, keys, va, edges, out))
                    runs.append({**keys, "selection": selection, "shots": shot, "n_train": len(picked),
                                 "n_val": len(va), "selected_epoch": out.selected_epoch})
                    advance()
    return finish(rows, runs)
