"""mirror_genes.splits: patient-level folds whatever the label dtype."""

import numpy as np
import pytest

from mirror_genes.splits import make_splits, read_splits, splits_to_patients, write_splits


@pytest.mark.parametrize("labels", [np.arange(60) % 3, np.array(["a", "b", "c"] * 20),
                                    np.array([0.0, 1.0, 2.0] * 20)])
def test_make_splits_accepts_any_label_dtype_and_keeps_patients_together(labels):
    patients = np.array([f"TCGA-AA-{i // 2:04d}" for i in range(60)])  # two samples per patient
    folds = make_splits(labels, patients, 5)
    assert len(folds) == 5
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen) == list(range(60))  # every sample held out exactly once
    for tr, va in folds:
        assert not set(patients[tr]) & set(patients[va])


def test_splits_round_trip_through_reference_files(tmp_path):
    labels = np.array(["x", "y"] * 20)
    patients = np.array([f"TCGA-AA-{i:04d}" for i in range(40)])
    pairs = splits_to_patients(make_splits(labels, patients, 4), patients)
    write_splits(pairs, tmp_path)
    assert read_splits(tmp_path) == pairs
