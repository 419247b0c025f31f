"""Linear probes: accuracy on separable / noise data, inner validation never sees held-out labels."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mirror_model import eval as ev
from mirror_model.eval import EvaluationError


def subtyping(n=96, d=8, shift=4.0, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[np.arange(n), y] += shift              # class c moves along feature c
    patients = np.array([f"TCGA-AB-{i:04d}" for i in range(n)])
    return X, patients, np.array(["IDC", "ILC", "MIX"])[y]


def folds_of(patients, labels, n_folds=3):
    from mirror_genes.splits import make_splits, splits_to_patients

    return splits_to_patients(make_splits(labels, patients, n_folds, random_state=1), patients)


@pytest.fixture(scope="module")
def data():
    X, pats, lab = subtyping()
    return X, pats, lab, folds_of(pats, lab)


def test_separable_probe_is_accurate_and_reports_every_validation_patient(data):
    X, pats, lab, folds = data
    res = ev.linear_probe(X, pats, folds, labels=lab, epochs=30, batch_size=7)   # 7: uneven batches
    acc = res.metrics.query("metric == 'accuracy'")["value"]
    assert len(acc) == 3 and acc.min() > 0.9
    assert res.metrics.query("metric == 'auc'")["value"].min() > 0.95
    assert len(res.predictions) == len(pats)       # no validation case dropped
    assert ev.check_predictions(res.predictions, folds) == 1
    assert set(res.predictions["protocol"]) == {"linear"}
    runs = res.runs
    assert ((runs["n_inner_val"] - 0.2 * runs["n_train"]).abs() <= 1).all()   # rounded per class
    assert runs["selected_epoch"].between(1, 30).all()


def test_noise_probe_is_near_chance():
    X, pats, lab = subtyping(n=120, shift=0.0, seed=3)
    res = ev.linear_probe(X, pats, folds_of(pats, lab), labels=lab, epochs=20)
    assert 0.3 < res.metrics.query("metric == 'accuracy'")["value"].mean() < 0.7


def test_inner_selection_never_looks_at_heldout_labels_but_reference_does():
    X, pats, lab = subtyping(n=90, shift=0.6, seed=5)
    folds = folds_of(pats, lab)
    rng = np.random.default_rng(0)
    permuted = lab.copy()
    for _, val in folds:                          # shuffle labels inside each held-out fold only
        rows = np.flatnonzero(np.isin(pats, val))
        permuted[rows] = rng.permutation(lab[rows])
    kw = dict(epochs=25, seed=11)
    inner_a = ev.linear_probe(X, pats, folds, labels=lab, **kw)
    # fold k's held-out labels are training labels of the other folds: check fold by fold
    for k, (_, val) in enumerate(folds):
        one = lab.copy()
        rows = np.flatnonzero(np.isin(pats, val))
        one[rows] = permuted[rows]
        inner_b = ev.linear_probe(X, pats, folds, labels=one, **kw)
        assert inner_a.runs["selected_epoch"][k] == inner_b.runs["selected_epoch"][k]
        same = inner_a.predictions["fold"] == k
        assert (inner_a.predictions.loc[same, "prediction"] == inner_b.predictions.loc[same, "prediction"]).all()
    ref_a = ev.linear_probe(X, pats, folds, labels=lab, reference_protocol=True, **kw)
    ref_b = ev.linear_probe(X, pats, folds, labels=permuted, reference_protocol=True, **kw)
    assert set(ref_a.predictions["protocol"]) == {"linear-reference"}
    assert (ref_a.runs["selection"] == "reference").all()
    assert ref_a.runs["selected_epoch"].tolist() != ref_b.runs["selected_epoch"].tolist()


def test_probe_is_seeded_and_invariant_to_feature_scale(data):
    X, pats, lab, folds = data
    a = ev.linear_probe(X, pats, folds, labels=lab, epochs=8, seed=3)
    b = ev.linear_probe(X, pats, folds, labels=lab, epochs=8, seed=3)
    assert a.predictions.equals(b.predictions)
    c = ev.linear_probe(X * 1000 + 50, pats, folds, labels=lab, epochs=8, seed=3)   # standardised per fold
    assert (a.predictions["prediction"] == c.predictions["prediction"]).mean() > 0.97


def test_standardisation_uses_the_training_fold_only(data):
    X, pats, lab, folds = data
    a = ev.linear_probe(X, pats, folds, labels=lab, epochs=8)
    outlier = pats.tolist().index(folds[0][1][0])
    X2 = X.copy()
    X2[outlier] += 1e4                            # one held-out patient of fold 0 changes
    b = ev.linear_probe(X2, pats, folds, labels=lab, epochs=8)
    rows = (a.predictions["fold"] == 0) & (a.predictions["patient_id"] != pats[outlier])
    assert (a.predictions.loc[rows, "risk"] == b.predictions.loc[rows, "risk"]).all()


def test_three_classes_use_one_vs_rest_macro_auc():
    X, pats, lab = subtyping(n=90, shift=1.0, n_classes=3, seed=2)
    res = ev.linear_probe(X, pats, folds_of(pats, lab), labels=lab, epochs=10)
    fold0 = res.predictions[res.predictions["fold"] == 0]
    proba = ev.class_probabilities(fold0)
    expect = roc_auc_score(fold0["label"], proba.to_numpy() / proba.to_numpy().sum(1, keepdims=True),
                           multi_class="ovr", labels=list(proba.columns))
    got = res.metrics.query("fold == 0 and metric == 'auc'")["value"].item()
    assert got == pytest.approx(expect) and list(proba.columns) == ["IDC", "ILC", "MIX"]


def test_logistic_regression_probe_chooses_C_by_inner_cv(data):
    X, pats, lab, folds = data
    res = ev.logreg_probe(X, pats, folds, labels=lab, Cs=(0.01, 1.0), inner_folds=3)
    assert res.metrics.query("metric == 'accuracy'")["value"].min() > 0.9
    assert set(res.predictions["protocol"]) == {"logreg"}
    assert set(res.runs["C"]) <= {0.01, 1.0} and (res.runs["inner_folds"] == 3).all()
    noise = ev.logreg_probe(np.random.default_rng(9).normal(size=X.shape), pats, folds, labels=lab,
                            Cs=(0.01, 1.0), inner_folds=3)
    assert 0.25 < noise.metrics.query("metric == 'accuracy'")["value"].mean() < 0.75


def test_bad_inputs_raise_one_line_typed_errors(data):
    X, pats, lab, folds = data
    one_class = [(sorted(pats[lab == "IDC"][:30]), sorted(pats[lab == "ILC"][:10]))]
    with pytest.raises(EvaluationError, match="fold 0: the training part holds one class only") as err:
        ev.linear_probe(X, pats, one_class, labels=lab, epochs=2)
    assert "\n" not in str(err.value)
    ghosts = [(folds[0][0] + ["TCGA-ZZ-0001", "TCGA-ZZ-0002", "TCGA-ZZ-0003", "TCGA-ZZ-0004"], folds[0][1])]
    listed = r"\(e.g. TCGA-ZZ-0001, TCGA-ZZ-0002, TCGA-ZZ-0003, \.\.\. \(4 in all\)\)"
    with pytest.raises(EvaluationError, match=r"fold 0: 4 split patient\(s\) have no embedding " + listed):
        ev.logreg_probe(X, pats, ghosts, labels=lab)
    with pytest.raises(EvaluationError, match="several embedding rows"):
        ev.linear_probe(X, np.r_[pats[:-1], pats[:1]], folds, labels=lab)
    with pytest.raises(EvaluationError, match="give either labels"):
        ev.linear_probe(X, pats, folds)
    with pytest.raises(EvaluationError, match="both sides"):
        ev.linear_probe(X, pats, [(folds[0][0], folds[0][1] + folds[0][0][:1])], labels=lab)
    with pytest.raises(EvaluationError, match="NaN"):
        ev.linear_probe(np.full_like(X, np.nan), pats, folds, labels=lab)
