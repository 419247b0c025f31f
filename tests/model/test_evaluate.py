"""``mirror-model evaluate`` and its embedding cache: encoders run once per checkpoint, patient-level
rows, the outputs, and every bad input as one ``error:`` line with nothing left behind."""

from __future__ import annotations

import json
import shutil
import types

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _train_data import TINY_TOML, patient, write_cohort
from typer.testing import CliRunner

from mirror_genes.splits import write_splits
from mirror_model import _evaluate
from mirror_model import constants as C
from mirror_model._evaluate import ProbeSettings, aggregate_by_patient, evaluate
from mirror_model.cli import app
from mirror_model.eval import check_predictions

N = 16
FAST = ProbeSettings(shots=(2,), n_repeats=1, epochs=2, logreg=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(args, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    slides, rna = write_cohort(root, n_patients=N, second_slide=(1, 4))
    adata = ad.read_h5ad(rna)  # events on every side of every fold, whatever the draw
    adata.obs["event"] = [float(i % 3 != 0) for i in range(adata.n_obs)]
    adata.write_h5ad(rna)
    (root / "tiny.toml").write_text(TINY_TOML)
    folds = [([patient(i) for i in range(N) if i % 4 < 2], [patient(i) for i in range(N) if i % 4 >= 2]),
             ([patient(i) for i in range(N) if i % 4 >= 2], [patient(i) for i in range(N) if i % 4 < 2])]
    splits = root / "splits"
    write_splits(folds, splits)
    run = root / "run"
    invoke(["pretrain", "--slides", slides, "--rna", rna, "--config", root / "tiny.toml", "--out", run,
            "--splits", splits, "--all-folds"])
    return types.SimpleNamespace(root=root, slides=slides, rna=rna, splits=splits, folds=folds, run=run)


def eval_args(env, out, *extra, task="subtyping", protocol="linear", shots=2):
    return ["evaluate", "--task", task, "--protocol", protocol, "--run", env.run, "--slides", env.slides,
            "--rna", env.rna, "--out", out, "--probe-epochs", 2, "--n-repeats", 1, "--shots", shots, "--no-umap",
            "--cache-dir", out.parent / "cache", *extra]


@pytest.fixture
def counted(monkeypatch):
    """Counts encoder passes (the cache's only way to run the frozen encoders)."""
    calls = []
    real = _evaluate._encode

    def counting(model, pairing, **kw):
        calls.append(model.source)
        return real(model, pairing, **kw)

    monkeypatch.setattr(_evaluate, "_encode", counting)
    return calls


# ---------------------------------------------------------------------------------- the cache
def test_encoders_run_once_per_checkpoint(env, tmp_path, counted):
    cache = tmp_path / "cache"
    kw = dict(slides=env.slides, rna=env.rna, cache_dir=cache, settings=FAST, progress=False)
    first = evaluate(env.run, task="subtyping", protocol="linear", **kw)
    assert len(counted) == 2  # one pass per fold checkpoint
    assert not any(e["cache_hit"] for e in first.info["embeddings"])
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == 2
    mtimes = [p.stat().st_mtime_ns for p in entries]
    # every later probe (tasks x protocols x modality settings) reads the cache
    for task in ("subtyping", "survival"):
        for protocol in ("linear", "fewshot"):
            for modalities in ("wsi+rna", "wsi", "rna"):
                again = evaluate(env.run, task=task, protocol=protocol, modalities=modalities, **kw)
                assert all(e["cache_hit"] for e in again.info["embeddings"])
    assert len(counted) == 2
    assert [p.stat().st_mtime_ns for p in sorted(cache.rglob("*.npz"))] == mtimes
    # another patch sampling is another entry
    evaluate(env.run, task="subtyping", protocol="linear", n_patches=5, **kw)
    assert len(counted) == 4 and len(list(cache.rglob("*.npz"))) == 4


def test_cache_entry_is_keyed_by_checkpoint_content(env, tmp_path, counted):
    from mirror_genes.utils import sha256_file

    cache = tmp_path / "cache"
    evaluate(env.run, slides=env.slides, rna=env.rna, cache_dir=cache, settings=FAST, progress=False)
    for k in range(2):
        sha = sha256_file(env.run / f"fold_{k}" / C.CHECKPOINT_LAST)
        (entry,) = (cache / sha[:16]).glob("*.npz")
        with np.load(entry) as z:
            meta = json.loads(str(z["meta"]))
            assert meta["checkpoint_sha256"] == sha and meta["sampling"] == "all"
            assert z["slide"].shape[0] == len(z["slide_ids"])  # per-slide rows


def test_patient_rows_are_the_mean_of_their_slides():
    patients, means, counts = aggregate_by_patient(["P2", "P1", "P2"], {"x": np.array([[1.0], [5.0], [3.0]])})
    assert list(patients) == ["P1", "P2"] and list(counts) == [1, 2]
    assert means["x"][:, 0].tolist() == [5.0, 2.0]


# ---------------------------------------------------------------------------------- the command
def test_evaluate_writes_tables_figures_and_provenance(env, tmp_path):
    out = tmp_path / "sub"
    result = invoke(eval_args(env, out))
    assert "encoders ran for 2 checkpoint(s)" in result.output
    for name in ("predictions.csv", "metrics_per_fold.csv", "summary.csv", "summary.md", "runs.csv",
                 "evaluation.json", "commands.txt", "figures/probe_accuracy.png"):
        assert (out / name).is_file(), name
    from mirror_model.eval import read_predictions

    pred = read_predictions(out / "predictions.csv")
    assert set(pred["protocol"]) == {"linear", "logreg"} and set(pred["fold"]) == {0, 1}
    assert check_predictions(pred, env.folds) == 2  # one row per patient and run
    info = json.loads((out / "evaluation.json").read_text())
    assert info["embeddings"][0]["sampling"] == "all" and "mean" in info["aggregation"]
    assert info["splits"] == str(env.splits)  # recorded by pretrain --all-folds
    assert (out / "commands.txt").read_text().startswith("mirror-model evaluate --task subtyping")
    again = invoke(eval_args(env, tmp_path / "surv", "--umap", task="survival", protocol="fewshot"))
    assert "2 read from the cache" in again.output
    assert (tmp_path / "surv" / "figures" / "umap.png").is_file()
    assert list((tmp_path / "surv" / "figures").glob("km_MIRROR_linear-2shot.png"))


def test_reference_protocol_is_labelled(env, tmp_path):
    out = tmp_path / "ref"
    invoke(eval_args(env, out, "--reference-protocol", task="survival"))
    assert set(pd.read_csv(out / "predictions.csv")["protocol"]) == {"linear-reference"}


def test_single_checkpoint_serves_every_fold_with_a_warning(env, tmp_path, counted):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = evaluate(env.run / "fold_0", splits=env.splits, slides=env.slides, rna=env.rna,
                       cache_dir=tmp_path / "c", settings=FAST, progress=False)
    assert len(counted) == 1 and set(res.result.predictions["fold"]) == {0, 1}
    assert any("was pretrained on" in str(w.message) and "fold(s) 1" in str(w.message) for w in caught)


def test_report_command(env, tmp_path):
    out = tmp_path / "sub"
    invoke(eval_args(env, out))
    invoke(["report", out])
    assert (out / "report.html").read_text().count("data:image/png;base64") >= 1


# ---------------------------------------------------------------------------------- bad input
def _splits(tmp_path, folds):
    folder = tmp_path / "badsplits"
    write_splits(folds, folder)
    return folder


def _no_ckpt(env, tmp_path):
    run = tmp_path / "nockpt"
    run.mkdir()
    (run / "run.json").write_text("{}")
    return ["--run", run, "--splits", env.splits]


def _other_size(env, tmp_path):
    folder = tmp_path / "slides9"
    folder.mkdir()
    write_cohort(tmp_path / "c9", n_patients=N, patch_dim=9)
    for f in (tmp_path / "c9" / "slides").iterdir():
        shutil.copy(f, folder / f.name)
    return ["--slides", folder]


def _other_config(env, tmp_path):
    run = tmp_path / "mixed"
    shutil.copytree(env.run, run)
    (tmp_path / "wide.toml").write_text(TINY_TOML.replace("dim = 16", "dim = 8"))
    shutil.rmtree(run / "fold_1")
    invoke(["pretrain", "--slides", env.slides, "--rna", env.rna, "--config", tmp_path / "wide.toml",
            "--out", run / "fold_1", "--splits", env.splits, "--fold", 1])
    return ["--run", run]


def _no_rna(env, tmp_path):
    labels = tmp_path / "labels.csv"
    ad.read_h5ad(env.rna).obs.to_csv(labels)
    return ["--modalities", "rna", "--labels", labels, "--rna", None]  # None: drop the option


def _one_class(env, tmp_path):
    adata = ad.read_h5ad(env.rna)
    adata.obs["label"] = np.where([p in env.folds[0][0] for p in adata.obs["patient_id"]], "A",
                                  adata.obs["label"].astype(str))
    path = tmp_path / "oneclass.h5ad"
    adata.write_h5ad(path)
    return ["--rna", path]


def _no_events(env, tmp_path):
    adata = ad.read_h5ad(env.rna)
    adata.obs["event"] = np.where([p in env.folds[1][0] for p in adata.obs["patient_id"]], 0.0, adata.obs["event"])
    path = tmp_path / "noevents.h5ad"
    adata.write_h5ad(path)
    return ["--rna", path]


ERRORS = {
    "unknown split patients": (lambda e, t: ["--splits", _splits(t, [(e.folds[0][0] + ["TCGA-ZZ-9999"], e.folds[0][1]),
                                                                     e.folds[1]])],
                               "subtyping", "fold 0: 1 split patient(s) are unknown (in neither the slides, the RNA "
                                            "nor the labels): TCGA-ZZ-9999"),
    "one class in a training part": (_one_class, "subtyping",
                                     "fold 0: the training part holds one class only (A); a probe needs at least two"),
    "survival fold without events": (_no_events, "survival", "fold 1: no events (deaths) in the training part"),
    "checkpoint of another input size": (_other_size, "subtyping",
                                         "checkpoint_last.pt: the model was built for 8-d patch features, the slides "
                                         "have 9-d"),
    "fold checkpoints of another configuration": (_other_config, "subtyping",
                                                  "fold_1/checkpoint_last.pt: checkpoint has model.dim = 8, fold 0's"),
    "run without a checkpoint": (_no_ckpt, "subtyping", "no checkpoint_last.pt in this folder"),
    "rna modality without RNA": (_no_rna, "subtyping", "--modalities rna: the data have no RNA (slides only)"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_one_line_and_leaves_nothing(env, tmp_path, case):
    make, task, message = ERRORS[case]
    out = tmp_path / "out"
    args = eval_args(env, out, task=task)
    extra = make(env, tmp_path)
    for opt in ("--run", "--slides", "--rna"):  # an option given again replaces the default one
        if opt in extra:
            i = args.index(opt)
            del args[i:i + 2]
    keep = [i for i in range(len(extra)) if extra[i] is not None and (i + 1 == len(extra) or extra[i + 1] is not None)]
    result = invoke(args + [extra[i] for i in keep], code=1)
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not out.exists()


def test_fewer_cases_than_k_falls_back_with_a_warning(env, tmp_path):
    out = tmp_path / "few"
    result = invoke(eval_args(env, out, task="subtyping", protocol="fewshot", shots=50))
    assert "warning: fold 0: class A has" in result.output and "fewer than k=50; taking all of them" in result.output
    runs = pd.read_csv(out / "runs.csv")
    assert (runs["shots"] == 50).all() and (runs["n_train"] <= len(env.folds[0][0])).all()
