"""Survival evaluation: bins, the hazard NLL, risk, Harrell's C (vs lifelines and sksurv), KM."""

import warnings

import numpy as np
import pytest
import torch
from lifelines.utils import concordance_index as lifelines_cindex
from sksurv.metrics import concordance_index_censored

from mirror_model import eval as ev
from mirror_model.eval import EvaluationError


def cohort(n=90, d=6, signal=1.5, seed=0, event_rate=0.7):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    time = np.round(rng.exponential(100 * np.exp(-signal * X[:, 0])), 1) + 0.1
    event = (rng.random(n) < event_rate).astype(int)
    patients = np.array([f"TCGA-AA-{i:04d}" for i in range(n)])
    return X, patients, time, event


def folds_of(patients, n_folds=3, seed=0):
    order = np.random.default_rng(seed).permutation(len(patients))
    parts = np.array_split(order, n_folds)
    return [(sorted(patients[np.concatenate([p for j, p in enumerate(parts) if j != k])]),
             sorted(patients[parts[k]])) for k in range(n_folds)]


def test_bins_are_quantiles_of_uncensored_times_widened_to_the_range():
    time = np.array([1.0, 2, 3, 4, 5, 100, 0.5])
    event = np.array([1, 1, 1, 1, 1, 0, 0])
    edges = ev.survival_bins(time, event)
    np.testing.assert_allclose(edges[1:-1], np.quantile([1, 2, 3, 4, 5], [0.25, 0.5, 0.75]))
    assert edges[0] == pytest.approx(0.5 - 1e-6) and edges[-1] == pytest.approx(100 + 1e-6)
    assert ev.assign_bins([0.5, 2.0, 2.9999, 3.0, 99, 1e9, -5], edges).tolist() == [0, 1, 1, 2, 3, 3, 0]
    with pytest.raises(EvaluationError, match="no events"):
        ev.survival_bins(time, np.zeros(7))


def test_nll_matches_the_product_formula_and_risk_is_minus_sum_of_survival():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.1], [1.2, 0.4, -0.3, -2.0], [-0.5, 0.5, 0.0, 1.0]])
    bins, event = torch.tensor([2, 0, 3]), torch.tensor([1.0, 0.0, 0.0])
    h = torch.sigmoid(logits).double().numpy()
    s = np.cumprod(1 - h, axis=1)
    expect = np.mean([-np.log(s[0, 1] * h[0, 2]), -np.log(s[1, 0]), -np.log(s[2, 3])])
    assert float(ev.discrete_hazard_nll(logits, bins, event)) == pytest.approx(expect, rel=1e-5)
    np.testing.assert_allclose(ev.risk_from_logits(logits.numpy()), -s.sum(axis=1), rtol=1e-6)
    big = torch.tensor([[60.0, -60.0, 60.0, 60.0]], requires_grad=True)
    loss = ev.discrete_hazard_nll(big, torch.tensor([3]), torch.tensor([0.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()


@pytest.mark.parametrize("seed", range(6))
def test_cindex_equals_lifelines_and_sksurv_with_ties_and_censoring(seed):
    rng = np.random.default_rng(seed)
    n = 150
    time = rng.integers(1, 25, n).astype(float)          # many tied times
    event = (rng.random(n) < 0.6).astype(int)
    risk = np.round(rng.normal(size=n) - 0.05 * time, 1)  # many tied risks
    ours = ev.concordance_index(time, event, risk)
    assert ours == pytest.approx(lifelines_cindex(time, -risk, event), abs=1e-12)
    assert ours == pytest.approx(concordance_index_censored(event.astype(bool), time, risk, tied_tol=1e-8)[0],
                                 abs=1e-12)


def test_cindex_extremes_and_undefined():
    time = np.arange(1.0, 11.0)
    event = np.ones(10, dtype=int)
    assert ev.concordance_index(time, event, -time) == 1.0      # perfect risk
    assert ev.concordance_index(time, event, time) == 0.0
    assert ev.concordance_index(time, event, np.zeros(10)) == 0.5
    with pytest.warns(UserWarning, match="no comparable pairs"):
        assert np.isnan(ev.concordance_index(time, np.zeros(10), -time))


def test_survival_probe_ranks_risk_and_noise_is_near_half():
    X, pats, time, event = cohort(seed=1)
    folds = folds_of(pats)
    res = ev.linear_probe(X, pats, folds, time=time, event=event, epochs=40)
    cidx = res.metrics.query("metric == 'c_index'")["value"]
    assert len(cidx) == 3 and cidx.mean() > 0.7
    noise = ev.linear_probe(np.random.default_rng(5).normal(size=X.shape), pats, folds, time=time,
                            event=event, epochs=40)
    assert 0.3 < noise.metrics["value"].mean() < 0.7
    pred = res.predictions
    assert set(pred["prediction"]) == {"high", "low"} and set(pred["label"]) <= {"0", "1", "2", "3"}
    assert pred["risk"].astype(float).lt(0).all() and pred["event"].isin([0, 1]).all()


def test_heldout_times_do_not_change_the_model():
    """Bins, standardisation and epoch come from the training fold: held-out times are only scored."""
    X, pats, time, event = cohort(seed=2)
    folds = folds_of(pats)
    a = ev.linear_probe(X, pats, folds, time=time, event=event, epochs=15)
    val0 = np.isin(pats, folds[0][1])
    time2, event2 = time.copy(), event.copy()
    time2[val0] = time2[val0][::-1] * 7
    event2[val0] = 1 - event2[val0]
    b = ev.linear_probe(X, pats, folds, time=time2, event=event2, epochs=15)
    assert a.runs["selected_epoch"][0] == b.runs["selected_epoch"][0]
    fold0 = a.predictions["fold"] == 0      # (fold 0's held-out patients train folds 1 and 2)
    np.testing.assert_array_equal(a.predictions.loc[fold0, "risk"].astype(float),
                                  b.predictions.loc[fold0, "risk"].astype(float))
    assert (a.predictions.loc[fold0, "prediction"] == b.predictions.loc[fold0, "prediction"]).all()


def test_no_events_in_training_is_an_error_and_in_validation_a_nan_with_warning():
    X, pats, time, event = cohort(n=60, seed=3)
    folds = folds_of(pats)
    no_train = event.copy()
    no_train[np.isin(pats, folds[0][0])] = 0
    with pytest.raises(EvaluationError, match=r"fold 0: no events \(deaths\) in the training part"):
        ev.linear_probe(X, pats, folds, time=time, event=no_train, epochs=2)
    no_val = event.copy()
    no_val[np.isin(pats, folds[1][1])] = 0
    with pytest.warns(UserWarning, match="fold 1: no comparable pairs") as record:
        res = ev.linear_probe(X, pats, folds, time=time, event=no_val, epochs=2)
    assert len([w for w in record if "comparable" in str(w.message)]) == 1
    values = res.metrics.set_index("fold")["value"]
    assert np.isnan(values[1]) and np.isfinite(values[[0, 2]]).all()
    summary = ev.aggregate_metrics(res.metrics)
    assert summary["n_folds"].item() == 2
    assert summary["mean"].item() == pytest.approx(values[[0, 2]].mean())


def test_kaplan_meier_figure_and_logrank(tmp_path):
    X, pats, time, event = cohort(n=120, signal=2.0, seed=4)
    res = ev.linear_probe(X, pats, folds_of(pats), time=time, event=event, epochs=30)
    fig = ev.plot_kaplan_meier(res.predictions)
    fig.savefig(tmp_path / "km.png", dpi=80)
    assert (tmp_path / "km.png").stat().st_size > 5000
    assert "log-rank p = " in fig.axes[0].get_title()
    p = ev.logrank_p(time, event, res.predictions.set_index("patient_id").loc[pats, "prediction"])
    assert p < 1e-3
    both = ev.combine_results(res, ev.linear_probe(X, pats, folds_of(pats), time=time, event=event,
                                                   epochs=3, method="other"))
    with pytest.raises(EvaluationError, match="exactly one survival run"):
        ev.plot_kaplan_meier(both.predictions)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev.plot_kaplan_meier(both.predictions, method="other")
