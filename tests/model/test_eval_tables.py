"""predictions.csv reproduces every reported number; aggregation, paper tables, figures, API form."""

import inspect
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sksurv.metrics import concordance_index_censored

from mirror_model import eval as ev
from mirror_model.eval import EvaluationError


@pytest.fixture(scope="module")
def combined():
    rng = np.random.default_rng(0)
    n = 72
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 5)).astype(np.float32)
    X[:, 0] += 2.5 * y
    pats = np.array([f"TCGA-GH-{i:04d}" for i in range(n)])
    lab = np.array(["IDC", "ILC"])[y]
    time = rng.exponential(100 * np.exp(-X[:, 1])) + 0.1
    event = (rng.random(n) < 0.7).astype(int)
    order = rng.permutation(n)
    parts = np.array_split(order, 3)
    folds = [(sorted(pats[np.setdiff1d(order, p)]), sorted(pats[p])) for p in parts]
    results = [ev.linear_probe(X, pats, folds, labels=lab, epochs=6, method=m) for m in ev.ABLATION_METHODS[:2]]
    results += [ev.linear_probe(X, pats, folds, time=time, event=event, epochs=6),
                ev.linear_probe(X, pats, folds, labels=lab, epochs=6, reference_protocol=True),
                ev.logreg_probe(X, pats, folds, labels=lab, Cs=(0.1, 1.0), inner_folds=2, method="Linear"),
                ev.few_shot_probe(X, pats, folds, labels=lab, shots=[2, 10], n_repeats=2, epochs=4),
                ev.few_shot_probe(X, pats, folds, time=time, event=event, shots=5, n_repeats=2, epochs=4)]
    return ev.combine_results(*results), folds


def test_predictions_csv_has_exact_columns_and_recomputes_every_metric(combined, tmp_path):
    result, folds = combined
    path = ev.write_predictions(result.predictions, tmp_path / ev.PREDICTIONS_CSV)
    header = path.read_text().splitlines()[0]
    assert header == "method,task,protocol,modalities,fold,seed,patient_id,label,prediction,risk,time,event"
    back = ev.read_predictions(path)
    recomputed = ev.metrics_from_predictions(back)
    pd.testing.assert_frame_equal(recomputed, result.metrics, check_exact=False, rtol=1e-12, atol=0)
    assert ev.check_predictions(back, folds) == 2 + 1 + 1 + 1 + 4 + 2
    subtyping = back[back["task"] == "subtyping"]
    assert subtyping["time"].isna().all() and subtyping["event"].isna().all()
    assert subtyping["risk"].str.fullmatch(r"IDC=[0-9.e-]+;ILC=[0-9.e-]+").all()
    survival = back[back["task"] == "survival"]
    assert survival[["time", "event", "risk"]].notna().all().all()
    assert set(survival["prediction"]) == {"high", "low"}
    # independent checks of the reported numbers from the CSV alone
    reported = result.metrics.set_index(["method", "protocol", "fold", "seed", "metric"])["value"]
    for (m, p, f, s), g in subtyping.groupby(["method", "protocol", "fold", "seed"]):
        assert reported[(m, p, f, s, "accuracy")] == pytest.approx((g["label"] == g["prediction"]).mean())
        score = g["risk"].str.extract(r"ILC=([0-9.e-]+)")[0].astype(float)
        assert reported[(m, p, f, s, "auc")] == pytest.approx(roc_auc_score(g["label"] == "ILC", score))
    for (m, p, f, s), g in survival.groupby(["method", "protocol", "fold", "seed"]):
        expect = concordance_index_censored(g["event"].astype(bool), g["time"], g["risk"].astype(float))[0]
        assert reported[(m, p, f, s, "c_index")] == pytest.approx(expect)


def test_check_predictions_catches_missing_and_repeated_patients(combined):
    result, folds = combined
    pred = result.predictions
    with pytest.raises(EvaluationError, match="missing"):
        ev.check_predictions(pred.drop(index=pred.index[0]), folds)
    with pytest.raises(EvaluationError, match="repeated"):
        ev.check_predictions(pd.concat([pred, pred.iloc[[5]]]), folds)


def test_aggregate_averages_repeats_within_a_fold_then_folds():
    rows = [("m", "subtyping", "linear-10shot", "wsi+rna", fold, seed, "accuracy", v)
            for fold, vals in enumerate([(0.6, 0.8), (0.9, 0.9), (0.5, np.nan)]) for seed, v in zip((1, 2), vals)]
    columns = ["method", "task", "protocol", "modalities", "fold", "seed", "metric", "value"]
    metrics = pd.DataFrame(rows, columns=columns)
    out = ev.aggregate_metrics(metrics).iloc[0]
    assert out["mean"] == pytest.approx(np.mean([0.7, 0.9, 0.5]))
    assert out["std"] == pytest.approx(np.std([0.7, 0.9, 0.5], ddof=1))
    assert (out["n_folds"], out["n_runs"]) == (3, 6)
    assert ev.format_cell(out["mean"], out["std"]) == "0.700 ± 0.200"
    assert ev.format_cell(0.5, float("nan")) == "0.500" and ev.format_cell(float("nan"), 0.1) == "–"


def test_paper_tables(combined):
    result, _ = combined
    summary = ev.aggregate_metrics(result.metrics)
    tables = ev.paper_tables(summary)
    t1, t2, t3 = tables["Table I"], tables["Table II"], tables["Table III"]
    assert list(t1.columns) == ["Accuracy (10-shot)", "F1 (10-shot)", "Accuracy (all)", "F1 (all)"]
    assert list(t1.index) == ["MIRROR-align", "MIRROR-align+retention", "MIRROR", "Linear"]
    acc = summary.query("method == 'MIRROR-align' and protocol == 'linear' and metric == 'accuracy'").iloc[0]
    assert t1.loc["MIRROR-align", "Accuracy (all)"] == f"{acc['mean']:.3f} ± {acc['std']:.3f}"
    assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", t1.loc["MIRROR", "F1 (10-shot)"])
    assert t1.loc["Linear", "Accuracy (10-shot)"] == "–" and t1.loc["Linear", "F1 (all)"] != "–"   # logreg
    assert list(t2.columns) == ["C-index (10-shot)", "C-index (all)"] and list(t2.index) == ["MIRROR"]
    assert list(t3.index) == list(ev.ABLATION_METHODS)
    assert t3.loc["MIRROR-align+clustering"].eq("–").all() and t3.loc["MIRROR", "C-index"] != "–"
    ref = ev.paper_tables(summary, reference=True)["Table I"]
    assert ref.loc["MIRROR", "Accuracy (all)"] != t1.loc["MIRROR", "Accuracy (all)"]
    md = ev.to_markdown(t3)
    assert md.splitlines()[0] == "| method | Accuracy | F1 | C-index |" and md.count("\n") == 6
    two = ev.paper_tables(pd.concat([summary.assign(cohort="BRCA"), summary.assign(cohort="NSCLC")]))
    assert "NSCLC C-index (all)" in two["Table II"].columns


def test_write_results_and_bar_chart(combined, tmp_path):
    result, _ = combined
    paths = ev.write_results(result, tmp_path / "eval")
    assert sorted(paths) == sorted(["predictions.csv", "metrics_per_fold.csv", "runs.csv", "summary.csv", "summary.md"])
    text = paths["summary.md"].read_text()
    assert "## Table I" in text and "## Table III" in text and " ± " in text
    assert pd.read_csv(paths["metrics_per_fold.csv"]).shape == result.metrics.shape
    fig = ev.plot_probe_metrics(result.metrics, "accuracy")
    fig.savefig(tmp_path / "bars.png", dpi=80)
    assert (tmp_path / "bars.png").stat().st_size > 5000
    ax = fig.axes[0]
    from matplotlib.collections import PathCollection

    n_points = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    per_fold = result.metrics.query("metric == 'accuracy'").groupby(["method", "protocol", "fold"]).ngroups
    assert n_points == per_fold
    with pytest.raises(EvaluationError, match="no 'nope' rows"):
        ev.plot_probe_metrics(result.metrics, "nope")


@pytest.mark.parametrize("name", [n for n in ev.__all__ if inspect.isfunction(getattr(ev, n))])
def test_public_functions_follow_the_conventions(name):
    fn = getattr(ev, name)
    assert fn.__module__.startswith("mirror_model.eval._")
    positional = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) <= 3
    doc = inspect.getdoc(fn)
    assert "Parameters\n----------" in doc and "Returns\n-------" in doc
    section = doc.split("Parameters\n----------")[1].split("Returns\n-------")[0]
    documented = set(re.findall(r"^(\w+)\s*$", section, flags=re.M))
    assert not re.findall(r"^(\w+) : ", section, flags=re.M)
    missing = [p for p in inspect.signature(fn).parameters if p not in documented and p not in ("args", "kwargs")]
    assert not missing, f"{name}: undocumented {missing}"
