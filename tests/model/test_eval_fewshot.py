"""Few-shot probes: k per class or per time bin from the training fold, seeded repeats."""

import warnings

import numpy as np
import pytest

from mirror_model import eval as ev
from mirror_model.eval import EvaluationError
from mirror_model.eval._fewshot import draw_shots
from mirror_model.eval._inputs import fold_indices, make_cohort


def subtyping(n=90, d=6, shift=4.0, seed=0, n_classes=2):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[np.arange(n), y] += shift
    return X, np.array([f"TCGA-CD-{i:04d}" for i in range(n)]), np.array(["LUAD", "LUSC", "X"])[y]


def folds_of(patients, labels, n_folds=3):
    from mirror_genes.splits import make_splits, splits_to_patients

    return splits_to_patients(make_splits(labels, patients, n_folds, random_state=2), patients)


def test_draws_k_per_class_from_the_training_fold_without_replacement():
    X, pats, lab = subtyping()
    folds = folds_of(pats, lab)
    cohort = make_cohort(X, pats, lab)
    tr, _ = fold_indices(cohort, folds)[0]
    picked, short = draw_shots(cohort, tr, None, 10, seed=1)
    assert short == [] and len(picked) == 20 and len(set(picked)) == 20
    assert set(cohort.patients[picked]) <= set(folds[0][0])
    assert sorted(np.unique(lab[picked], return_counts=True)[1]) == [10, 10]
    again, _ = draw_shots(cohort, tr, None, 10, seed=1)
    other, _ = draw_shots(cohort, tr, None, 10, seed=2)
    assert (again == picked).all() and set(other) != set(picked)


def test_few_shot_grid_of_k_and_repeats_covers_every_heldout_patient():
    X, pats, lab = subtyping()
    folds = folds_of(pats, lab)
    res = ev.few_shot_probe(X, pats, folds, labels=lab, shots=[1, 10], n_repeats=5, seed=42,
                            epochs=50, lr=2e-2)  # 10-shot: 2 steps an epoch; the reference lr under-trains
    assert set(res.predictions["protocol"]) == {"linear-1shot", "linear-10shot"}
    assert sorted(set(res.predictions["seed"])) == [42, 43, 44, 45, 46]
    assert ev.check_predictions(res.predictions, folds) == 10          # 2 k x 5 seeds
    assert len(res.predictions) == 10 * len(pats)                      # whole held-out fold each time
    runs = res.runs.set_index("protocol")
    assert (runs.loc["linear-1shot", "n_train"] == 2).all() and (runs.loc["linear-10shot", "n_train"] == 20).all()
    assert (res.runs["selected_epoch"] == 50).all() and (res.runs["selection"] == "fixed").all()
    acc = res.metrics.query("metric == 'accuracy' and protocol == 'linear-10shot'")["value"]
    assert len(acc) == 15 and acc.mean() > 0.85
    summary = ev.aggregate_metrics(res.metrics).set_index(["protocol", "metric"])
    assert summary.loc[("linear-10shot", "accuracy"), "n_runs"] == 15
    assert summary.loc[("linear-10shot", "accuracy"), "n_folds"] == 3
    fold_means = acc.groupby(res.metrics.loc[acc.index, "fold"]).mean()
    assert summary.loc[("linear-10shot", "accuracy"), "std"] == pytest.approx(fold_means.std(ddof=1))


def test_fewer_cases_than_k_takes_all_and_warns_once_per_fold():
    X, pats, lab = subtyping(n=60)
    keep = (lab == "LUAD") | (np.arange(60) < 18)          # LUSC: 9 patients in all
    X, pats, lab = X[keep], pats[keep], lab[keep]
    folds = folds_of(pats, lab)
    with pytest.warns(UserWarning, match=r"fold \d: class LUSC has \d training patient\(s\), fewer than "
                                         r"k=10; taking all of them") as record:
        res = ev.few_shot_probe(X, pats, folds, labels=lab, shots=10, n_repeats=3, epochs=3)
    assert len([w for w in record if "fewer than k" in str(w.message)]) == 3        # one per fold
    n_lusc = [sum(lab[np.isin(pats, tr)] == "LUSC") for tr, _ in folds]
    assert res.runs["n_train"].tolist() == [10 + n for n in n_lusc for _ in range(3)]


def test_survival_few_shot_draws_per_time_bin():
    rng = np.random.default_rng(4)
    n = 120
    X = rng.normal(size=(n, 5)).astype(np.float32)
    time = rng.exponential(100 * np.exp(-2.0 * X[:, 0])) + 0.1
    event = (rng.random(n) < 0.8).astype(int)
    pats = np.array([f"TCGA-EF-{i:04d}" for i in range(n)])
    order = rng.permutation(n)
    folds = [(sorted(pats[np.setdiff1d(order, part)]), sorted(pats[part])) for part in np.array_split(order, 3)]
    res = ev.few_shot_probe(X, pats, folds, time=time, event=event, shots=5, n_repeats=3, epochs=50,
                            lr=1e-2)
    assert (res.runs["n_train"] == 20).all()                            # 5 per bin x 4 bins
    assert res.metrics["value"].mean() > 0.65
    assert ev.check_predictions(res.predictions, folds) == 3


def test_reference_option_and_bad_values():
    X, pats, lab = subtyping(n=60)
    folds = folds_of(pats, lab)
    res = ev.few_shot_probe(X, pats, folds, labels=lab, shots=5, n_repeats=1, epochs=5, reference_protocol=True)
    assert set(res.predictions["protocol"]) == {"linear-5shot-reference"}
    assert ev.parse_protocol("linear-5shot-reference") == ("linear", 5, True)
    with pytest.raises(EvaluationError, match="shots and n_repeats must be >= 1"):
        ev.few_shot_probe(X, pats, folds, labels=lab, shots=[0, 5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev.few_shot_probe(X, pats, folds, labels=lab, shots=2, n_repeats=1, epochs=1)
