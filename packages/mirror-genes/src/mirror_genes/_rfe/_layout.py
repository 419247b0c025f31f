"""Sample order of the fast engine.

The runs (CV folds, then the final fit on all samples) train on different subsets of the
samples. Samples are reordered once so that samples with the same training membership
("atoms": for k-fold CV, the k test blocks) are contiguous. A run's training set is then a
few contiguous column ranges ("segments") of the features-major matrix, so its Gram is
built from strided views (no gather of columns), and the per-run scaling statistics are
sums of per-atom sums (one pass over each feature for all runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_SEGMENTS = 16  # more training segments than this: gather the training columns instead


@dataclass
class RunLayout:
    """Positions (in the reordered sample order) of one run's training and test samples."""

    train: np.ndarray                 # sorted
    test: np.ndarray                  # sorted
    segments: list[tuple[int, int]] | None = field(default=None)  # column ranges of train
    atoms: np.ndarray | None = field(default=None)   # 0/1 weight of each atom in train


@dataclass
class SampleLayout:
    perm: np.ndarray                  # position -> original sample index
    atom_starts: np.ndarray           # first position of each atom
    runs: list[RunLayout]             # final fit first, then the folds in order


def _segments(train: np.ndarray) -> list[tuple[int, int]] | None:
    if train.size == 0:
        return []
    cut = np.flatnonzero(np.diff(train) != 1) + 1
    starts = np.concatenate(([0], cut))
    stops = np.concatenate((cut, [train.size]))
    if starts.size > MAX_SEGMENTS:
        return None
    return [(int(train[a]), int(train[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


def sample_layout(folds, n: int) -> SampleLayout:
    """Reorder samples by training membership over the folds; the final run trains on all."""
    member = np.zeros((n, len(folds)), dtype=np.uint8)
    for f, (tr, _te) in enumerate(folds):
        member[tr, f] = 1
    # samples of one atom share a membership row (atoms sorted lexicographically, samples
    # within an atom by index); for k-fold CV each fold trains on all atoms but one
    _, atom_of = np.unique(member, axis=0, return_inverse=True)
    atom_of = atom_of.ravel()
    perm = np.argsort(atom_of, kind="stable")
    pos = np.empty(n, dtype=np.int64)
    pos[perm] = np.arange(n)
    sorted_atoms = atom_of[perm]
    atom_starts = np.flatnonzero(np.concatenate(([True], sorted_atoms[1:] != sorted_atoms[:-1])))
    runs = [RunLayout(np.arange(n), np.zeros(0, dtype=np.int64), [(0, n)],
                      np.ones(atom_starts.size))]
    for tr, te in folds:
        train = np.sort(pos[tr])
        weights = member[perm[atom_starts], len(runs) - 1].astype(np.float64)
        runs.append(RunLayout(train, np.sort(pos[te]), _segments(train), weights))
    return SampleLayout(perm, atom_starts, runs)
