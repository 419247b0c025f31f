"""``mirror-model benchmark``: every method on the same folds, exact method names, tables I-IV,
resume (finished parts skipped), bad input, and ``mirror-model synthetic``."""

from __future__ import annotations

import json
import types

import anndata as ad
import pandas as pd
import pytest
from _train_data import patient, write_cohort
from typer.testing import CliRunner

from mirror_genes.splits import write_splits
from mirror_model import _benchmark, _evaluate
from mirror_model import constants as C
from mirror_model._benchmark import BenchmarkSettings, run_benchmark
from mirror_model._errors import EvaluationError, RunDirError
from mirror_model.cli import app
from mirror_model.eval import check_predictions, read_predictions

N = 16
METHODS = {"MIRROR", "ABMIL", "PORPOISE", "Linear", "TANGLE", "MIRROR-align", "MIRROR-align+retention",
           "MIRROR-align+clustering"}


def tiny(**kw) -> BenchmarkSettings:
    base = dict(cohort="TINY", preset="small", epochs=1, n_patches=16, shots=2, n_repeats=1, probe_epochs=2,
                baseline_epochs=1, umap=False, device="cpu")
    return BenchmarkSettings(**{**base, **kw})


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark")
    slides, rna = write_cohort(root, n_patients=N, second_slide=(1, 4))
    adata = ad.read_h5ad(rna)
    adata.obs["event"] = [float(i % 3 != 0) for i in range(adata.n_obs)]
    adata.write_h5ad(rna)
    folds = [([patient(i) for i in range(N) if i % 4 < 2], [patient(i) for i in range(N) if i % 4 >= 2]),
             ([patient(i) for i in range(N) if i % 4 >= 2], [patient(i) for i in range(N) if i % 4 < 2])]
    splits = root / "splits"
    write_splits(folds, splits)
    out = root / "bench"
    report = run_benchmark(slides, rna, splits, out, tiny(), command="mirror-model benchmark ...", progress=False)
    return types.SimpleNamespace(root=root, slides=slides, rna=rna, splits=splits, folds=folds, out=out,
                                 report=report)


def test_every_method_on_the_same_folds(env):
    pred = read_predictions(env.out / C.PREDICTIONS_CSV)
    assert set(pred["method"]) == METHODS
    assert check_predictions(pred, env.folds) > 0  # each held-out patient once per run, same folds for all
    mirror = pred[pred["method"] == "MIRROR"]
    assert set(mirror["modalities"]) == {"wsi+rna", "wsi", "rna"}  # single-modality probes of the same encoders
    assert set(mirror["protocol"]) == {"linear", "linear-2shot"}
    protocols = pred.groupby("method")["protocol"].agg(set)
    assert protocols["ABMIL"] == protocols["PORPOISE"] == {"supervised", "supervised-2shot"}
    assert protocols["Linear"] == {"logreg", "hazard", "logreg-2shot", "hazard-2shot"}
    runs = pd.read_csv(env.out / C.RUNS_CSV)
    assert runs.loc[runs["method"] == "PORPOISE", "selected_epoch"].notna().all()


def test_baselines_few_shot_rows_fill_the_k_shot_columns(env):
    runs = pd.read_csv(env.out / C.RUNS_CSV)
    few = runs[runs["protocol"].isin(["supervised-2shot", "logreg-2shot"]) & (runs["task"] == "subtyping")]
    assert set(few["method"]) == {"ABMIL", "PORPOISE", "Linear"}
    assert (few["n_train"] == 4).all()  # 2 per class, 2 classes
    survival = runs[runs["protocol"].isin(["supervised-2shot", "hazard-2shot"]) & (runs["task"] == "survival")]
    assert len(survival) == 3 * 2 and (survival["n_train"] <= 8).all()  # 2 per time bin (or all a bin has)
    assert (runs.loc[runs["protocol"] == "supervised-2shot", "selection"] == "last-epoch").all()
    table1 = pd.read_csv(env.out / "tables" / "table_i.csv", index_col=0)
    for method in ("ABMIL", "PORPOISE", "Linear", "MIRROR", "TANGLE"):
        assert table1.loc[method, "Accuracy (2-shot)"] != "–", method


def test_baseline_few_shot_draws_are_the_probes_draws():
    import numpy as np

    from mirror_model._benchmark_units import shot_draws
    from mirror_model.eval._fewshot import draw_shots, shot_seed
    from mirror_model.eval._inputs import fold_indices, make_cohort

    rng = np.random.default_rng(3)
    patients = [f"P{i:03d}" for i in range(40)]
    labels = np.asarray(["IDC" if i % 3 else "ILC" for i in range(40)])
    train, val = patients[:30], patients[30:]
    cohort = make_cohort(rng.normal(size=(40, 3)), patients, labels, None, None)
    (tr, _), = fold_indices(cohort, [(train, val)])
    # the benchmark holds the fold's patients in another order (training part first, shuffled)
    order = rng.permutation(30).tolist() + list(range(30, 40))
    a = {"patients": [patients[i] for i in order], "train": np.arange(30), "labels": labels[order]}
    ctx = types.SimpleNamespace(settings=tiny(shots=4, n_repeats=3, seed=7))
    for r, (seed, picked) in enumerate(shot_draws(ctx, a, 1)):
        probe, _ = draw_shots(cohort, tr, None, 4, shot_seed(7, repeat=r, fold=1, shots=4))
        assert seed == 7 + r
        assert sorted(a["patients"][i] for i in picked) == sorted(patients[i] for i in probe)
        assert len(picked) == 8


def test_tables_figures_report_and_commands(env):
    for name in ("table_i", "table_ii", "table_iii", "table_iv", "folds_subtyping", "folds_survival"):
        assert (env.out / "tables" / f"{name}.csv").is_file() and (env.out / "tables" / f"{name}.md").is_file()
    table4 = pd.read_csv(env.out / "tables" / "table_iv.csv", index_col=0)
    assert list(table4.index) == ["MIRROR [wsi]", "MIRROR [rna]", "MIRROR"]
    table3 = pd.read_csv(env.out / "tables" / "table_iii.csv", index_col=0)
    assert list(table3.index) == ["MIRROR-align", "MIRROR-align+retention", "MIRROR-align+clustering", "MIRROR"]
    assert "±" in table3.loc["MIRROR", "Accuracy"]  # mean ± std over the two folds
    summary = (env.out / "summary.md").read_text()
    assert "## Table I" in summary and "## Folds subtyping" in summary
    assert (env.out / "commands.txt").read_text().strip() == "mirror-model benchmark ..."
    assert env.report == env.out / "report.html" and env.report.is_file()
    assert (env.out / "figures" / "probe_accuracy.png").is_file()
    assert json.loads((env.out / "benchmark.json").read_text())["status"] == "finished"


def test_mirror_runs_are_all_folds_runs_that_evaluate_reads_from_the_cache(env, tmp_path, monkeypatch):
    run = env.out / "pretrain" / "MIRROR"
    assert json.loads((run / C.RUN_MANIFEST).read_text())["kind"] == "mirror-model-folds"
    calls = []
    monkeypatch.setattr(_evaluate, "_encode", lambda *a, **k: calls.append(1))
    res = _evaluate.evaluate(run, slides=env.slides, rna=env.rna, task="survival", protocol="linear",
                             settings=_evaluate.ProbeSettings(epochs=2), progress=False)
    assert not calls and all(e["cache_hit"] for e in res.info["embeddings"])


def test_rerun_skips_finished_parts_and_redoes_missing_ones(env, monkeypatch):
    import shutil

    ran = []
    real = _benchmark.run_unit
    monkeypatch.setattr(_benchmark, "run_unit", lambda ctx, m, k, step: ran.append((m, k)) or real(ctx, m, k, step))
    pretrain = []
    monkeypatch.setattr("mirror_model._model.MIRROR.train", lambda *a, **k: pretrain.append(1))
    before = (env.out / C.PREDICTIONS_CSV).read_text()
    shutil.rmtree(env.out / ".parts" / "MIRROR-align" / "survival" / "fold_1")
    run_benchmark(env.slides, env.rna, env.splits, env.out, tiny(), command="mirror-model benchmark ...",
                  progress=False)
    assert len(ran) == 16 and not pretrain  # finished pretraining is reused
    parts = sorted((env.out / ".parts").rglob(C.PREDICTIONS_CSV))
    assert len(parts) == 8 * 2 * 2
    assert (env.out / C.PREDICTIONS_CSV).read_text() == before  # the same numbers again


def test_other_settings_in_the_same_folder_are_refused(env):
    with pytest.raises(RunDirError, match="holds a benchmark with other settings \\(epochs is 1 there, 2 now\\)"):
        run_benchmark(env.slides, env.rna, env.splits, env.out, tiny(epochs=2), progress=False)


def test_bad_splits_fail_before_anything_is_written(env, tmp_path):
    bad = tmp_path / "splits"
    write_splits([(env.folds[0][0] + ["TCGA-ZZ-0001"], env.folds[0][1]), env.folds[1]], bad)
    out = tmp_path / "out"
    with pytest.raises(EvaluationError, match="fold 0: 1 split patient\\(s\\) are unknown"):
        run_benchmark(env.slides, env.rna, bad, out, tiny(methods=("Linear",)), progress=False)
    assert not out.exists()


def test_cli_benchmark_and_synthetic(env, tmp_path):
    runner = CliRunner()
    out = tmp_path / "b"
    args = ["benchmark", "--cohort", "TINY", "--slides", env.slides, "--rna", env.rna, "--splits", env.splits,
            "--out", out, "--preset", "small", "--epochs", 1, "--methods", "Linear,ABMIL", "--tasks", "subtyping",
            "--baseline-epochs", 1, "--no-umap", "--quiet"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(out / C.PREDICTIONS_CSV)["method"]) == {"Linear", "ABMIL"}
    assert (out / "commands.txt").read_text().startswith("mirror-model benchmark --cohort TINY")
    bad = runner.invoke(app, [str(a) for a in args[:-4]] + ["--methods", "MIRROR,Net", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 1 and "error: --methods: 'Net' is not one of" in bad.output
    syn = tmp_path / "syn"
    result = runner.invoke(app, ["synthetic", "--out", str(syn), "--n-patients", "40", "--n-genes", "150"])
    assert result.exit_code == 0, result.output
    assert (syn / "xena" / "TCGA.BRCA.sampleMap" / "HiSeqV2.gz").is_file() and (syn / "truth.csv").is_file()
    assert list((syn / "slides").rglob("*.h5"))


def test_worker_processes_give_the_same_numbers(env, tmp_path):
    settings = tiny(methods=("MIRROR-align", "ABMIL"), tasks=("subtyping",))
    one = run_benchmark(env.slides, env.rna, env.splits, tmp_path / "one", settings, progress=False).parent
    two = run_benchmark(env.slides, env.rna, env.splits, tmp_path / "two", settings, jobs=2, threads=1,
                        progress=False).parent
    assert (one / C.PREDICTIONS_CSV).read_text() == (two / C.PREDICTIONS_CSV).read_text()
