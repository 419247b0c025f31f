"""The ``mirror-model`` command line: pretrain (one run, a fold, all folds), --version, and every
bad-input error as one ``error:`` line with exit code 1 and nothing partial left behind."""

from __future__ import annotations

import json
import pickle
import types

import h5py
import numpy as np
import pytest
import torch
from _train_data import TINY_TOML, patient, write_cohort
from typer.testing import CliRunner

from mirror_genes.splits import write_splits
from mirror_model import MIRROR
from mirror_model import constants as C
from mirror_model.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    slides, rna = write_cohort(root)
    config = root / "tiny.toml"
    config.write_text(TINY_TOML)
    splits = root / "splits"
    folds = [([patient(i) for i in range(10) if i % 2 != k], [patient(i) for i in range(10) if i % 2 == k])
             for k in range(2)]
    write_splits(folds, splits)
    run = root / "run"
    invoke(["pretrain", "--slides", str(slides), "--rna", str(rna), "--config", str(config), "--out", str(run)])
    return types.SimpleNamespace(root=root, slides=slides, rna=rna, config=config, splits=splits, folds=folds, run=run)


def invoke(args, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def pretrain_args(env, out, *extra):
    return ["pretrain", "--slides", env.slides, "--rna", env.rna, "--config", env.config, "--out", out, *extra]


def test_version():
    from mirror_model import __version__

    assert invoke(["--version"]).output.strip() == f"mirror-model {__version__}"


def test_pretrain_writes_a_run(env):
    manifest = json.loads((env.run / C.RUN_MANIFEST).read_text())
    assert manifest["kind"] == "mirror-model-run" and manifest["status"] == "finished"
    assert manifest["command"] == "mirror-model pretrain" and manifest["options"]["slides"] == str(env.slides)
    assert torch.load(env.run / C.CHECKPOINT_LAST, weights_only=True)["epoch"] == 1


def test_fold_pretrains_on_its_training_patients(env, tmp_path):
    result = invoke(pretrain_args(env, tmp_path / "f1", "--splits", env.splits, "--fold", 1))
    assert "paired 11 slides" in result.output
    report = json.loads((tmp_path / "f1" / C.PAIRING_REPORT).read_text())
    assert report["split"] == "fold 1 train" and report["matched"]["patients"] == env.folds[1][0]
    assert json.loads((tmp_path / "f1" / C.RUN_MANIFEST).read_text())["fold"] == 1


def test_all_folds_run_in_turn(env, tmp_path):
    out = tmp_path / "folds"
    invoke(pretrain_args(env, out, "--splits", env.splits, "--all-folds"))
    assert json.loads((out / C.RUN_MANIFEST).read_text())["kind"] == "mirror-model-folds"
    for k in range(2):
        report = json.loads((out / f"fold_{k}" / C.PAIRING_REPORT).read_text())
        assert report["matched"]["patients"] == env.folds[k][0]
    # extend every fold by one epoch
    invoke(pretrain_args(env, out, "--splits", env.splits, "--all-folds", "--resume", "--epochs", 2))
    assert all(torch.load(out / f"fold_{k}" / C.CHECKPOINT_LAST, weights_only=True)["epoch"] == 2 for k in range(2))


# ---------------------------------------------------------------------------------- bad input
def _slides_copy(env, tmp_path, edit) -> list:
    """A copy of the cohort's slides with one file changed by ``edit(folder)``."""
    import shutil

    folder = tmp_path / "slides"
    shutil.copytree(env.slides, folder)
    edit(folder)
    return ["pretrain", "--slides", folder, "--rna", env.rna, "--config", env.config, "--out", tmp_path / "out"]


def _h5(folder, name, **datasets):
    with h5py.File(folder / f"{name}.h5", "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)


PRETRAIN_ERRORS = {
    "fold and all folds": (lambda e, t: pretrain_args(e, t / "o", "--splits", e.splits, "--fold", 0, "--all-folds"),
                           "--fold and --all-folds exclude each other"),
    "fold without splits": (lambda e, t: pretrain_args(e, t / "o", "--fold", 0),
                            "--fold needs --splits DIR (splits_<k>.csv files)"),
    "splits without fold": (lambda e, t: pretrain_args(e, t / "o", "--splits", e.splits),
                            "--splits needs --fold K or --all-folds"),
    "fold out of range": (lambda e, t: pretrain_args(e, t / "o", "--splits", e.splits, "--fold", 7),
                          "has 2 fold(s), numbered 0 to 1"),
    "unknown preset": (lambda e, t: pretrain_args(e, t / "o", "--preset", "huge"),
                       "--preset: 'huge' is not one of ['reference', 'small']"),
    "invalid toml": (lambda e, t: (t / "bad.toml").write_text("[model\n") and
                     ["pretrain", "--slides", e.slides, "--rna", e.rna, "--config", t / "bad.toml", "--out", t / "o"],
                     "bad.toml: not valid TOML"),
    "unknown config key": (lambda e, t: (t / "k.toml").write_text("[model]\ndepth = 3\n") and
                           ["pretrain", "--slides", e.slides, "--rna", e.rna, "--config", t / "k.toml",
                            "--out", t / "o"],
                           "[model]: unknown key(s) ['depth']"),
    "batch size 0": (lambda e, t: pretrain_args(e, t / "o", "--batch-size", 0),
                     "train.batch_size: must be >= 1, got 0"),
    "fp16 on cpu": (lambda e, t: pretrain_args(e, t / "o", "--precision", "fp16", "--device", "cpu"),
                    "--precision fp16 needs a CUDA device; on the CPU use fp32 or bf16"),
    "out is a file": (lambda e, t: (t / "o").write_text("x") and pretrain_args(e, t / "o"),
                      "is a file, not a run folder"),
    "out is not a run": (lambda e, t: ((t / "o").mkdir(), (t / "o" / "a.txt").write_text("x"))
                         and pretrain_args(e, t / "o"),
                         "folder exists and is not a mirror-model run (no run.json); choose a new --out"),
    "out holds a run": (lambda e, t: pretrain_args(e, e.run), "already holds a run; pass --resume to continue it"),
    "single run as folds": (lambda e, t: pretrain_args(e, e.run, "--splits", e.splits, "--all-folds", "--resume"),
                            "holds a 'mirror-model-run' run, not an --all-folds run"),
    "split with unknown patient": (lambda e, t: write_splits([(["TCGA-ZZ-9999"], [patient(0)])], t / "s") and
                                   pretrain_args(e, t / "o", "--splits", t / "s", "--fold", 0),
                                   "split 'fold 0 train' names 1 patient(s) absent from the slides and the RNA: "
                                   "TCGA-ZZ-9999"),
    "no slides folder": (lambda e, t: ["pretrain", "--slides", t / "none", "--rna", e.rna, "--out", t / "o"],
                         "none: no such file or folder"),
    "empty slides folder": (lambda e, t: (t / "empty").mkdir() or
                            ["pretrain", "--slides", t / "empty", "--rna", e.rna, "--out", t / "o"],
                            "no slide feature files (.h5, .hdf5, .pt, .pth) under this folder"),
    "h5 without features": (lambda e, t: _slides_copy(e, t, lambda f: _h5(f, "TCGA-T0-0077-01Z-00-DX1.x",
                                                                          coords=np.zeros((3, 2), np.int64))),
                            "no 'features' dataset (found: coords)"),
    "mixed feature dims": (lambda e, t: _slides_copy(e, t, lambda f: _h5(f, "TCGA-T0-0077-01Z-00-DX1.x",
                                                                         features=np.zeros((3, 5), np.float32))),
                           "features are 5-d but 11 other slide(s)"),
    "zero patches": (lambda e, t: _slides_copy(e, t, lambda f: _h5(f, "TCGA-T0-0077-01Z-00-DX1.x",
                                                                   features=np.zeros((0, 8), np.float32))),
                     "zero patches (features has 0 rows)"),
    "NaN features": (lambda e, t: _slides_copy(e, t, lambda f: _h5(f, "TCGA-T0-0077-01Z-00-DX1.x",
                                                                   features=np.full((3, 8), np.nan, np.float32))),
                     "features hold 24 NaN/Inf value(s) (first in patch row 0)"),
    "corrupt pt": (lambda e, t: _slides_copy(e, t, lambda f: (f / "TCGA-T0-0077-01Z-00-DX1.x.pt").write_bytes(b"junk")),
                   "cannot be loaded with torch.load(weights_only=True)"),
    "no RNA file": (lambda e, t: ["pretrain", "--slides", e.slides, "--rna", t / "r.h5ad", "--out", t / "o"],
                    "r.h5ad: no such file"),
    "RNA with NaN": (lambda e, t: _bad_rna(e, t, nan=True), "1 NaN/Inf cell(s) in the RNA table"),
    "RNA matches no slide": (lambda e, t: _bad_rna(e, t, rename=True), "matches an RNA sample of"),
}


def _bad_rna(env, tmp_path, *, nan=False, rename=False):
    import anndata as ad

    adata = ad.read_h5ad(env.rna)
    if nan:
        adata.X[0, 0] = np.nan
    if rename:
        adata.obs_names = [f"TCGA-ZZ-{i:04d}-01" for i in range(adata.n_obs)]
        adata.obs["patient_id"] = [s[:12] for s in adata.obs_names]
    adata.write_h5ad(tmp_path / "bad.h5ad")
    return ["pretrain", "--slides", env.slides, "--rna", tmp_path / "bad.h5ad", "--config", env.config,
            "--out", tmp_path / "o"]


def assert_one_line_error(result, expected: str) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]
    print(f"\nERRLINE {lines[0]}")  # shown with -s: the messages docs/model.md lists
    return lines[0]


@pytest.mark.parametrize("case", sorted(PRETRAIN_ERRORS))
def test_pretrain_bad_input_is_one_line_and_leaves_nothing(env, tmp_path, case):
    make_args, expected = PRETRAIN_ERRORS[case]
    before = {p.name for p in tmp_path.iterdir()}
    args = make_args(env, tmp_path)
    made = {p.name for p in tmp_path.iterdir()} - before  # inputs the case wrote
    result = invoke(args, code=1)
    assert_one_line_error(result, expected)
    assert {p.name for p in tmp_path.iterdir()} - before == made  # no run folder was left behind


def test_cuda_refused_without_a_gpu(env, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = invoke(pretrain_args(env, tmp_path / "o", "--device", "cuda"), code=1)
    assert_one_line_error(result, "--device cuda: PyTorch sees no CUDA GPU here; use --device cpu or auto")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------- embed errors
def _embed(env, tmp_path, checkpoint=None, slides=None, rna=None):
    args = ["embed", "--checkpoint", checkpoint or env.run, "--slides", slides or env.slides,
            "--out", tmp_path / "e.h5ad"]
    return args + (["--rna", rna] if rna is not None else [])


def _tampered(env, tmp_path):
    ckpt = torch.load(env.run / C.CHECKPOINT_LAST, weights_only=True)
    ckpt["model"].pop(next(iter(ckpt["model"])))
    torch.save(ckpt, tmp_path / "t.pt")
    return _embed(env, tmp_path, checkpoint=tmp_path / "t.pt")


def _rna_other(env, tmp_path, n_genes=None, rename=False):
    import anndata as ad

    adata = ad.read_h5ad(env.rna)
    if n_genes:
        adata = adata[:, :n_genes].copy()
    if rename:
        adata.var_names = [f"X{j}" for j in range(adata.n_vars)]
    adata.write_h5ad(tmp_path / "o.h5ad")
    return _embed(env, tmp_path, rna=tmp_path / "o.h5ad")


EMBED_ERRORS = {
    "no checkpoint": (lambda e, t: _embed(e, t, checkpoint=t / "nope"), "nope: no such checkpoint file or run folder"),
    "folder without checkpoint": (lambda e, t: (t / "d").mkdir() or _embed(e, t, checkpoint=t / "d"),
                                  "no checkpoint_last.pt in this folder"),
    "object pickled in": (lambda e, t: torch.save({"cfg": types.SimpleNamespace(a=1)}, t / "u.pt") or
                          _embed(e, t, checkpoint=t / "u.pt"),
                          "u.pt: refused by torch.load(weights_only=True): not only tensors and plain "
                          "values (Unsupported global: GLOBAL types.SimpleNamespace"),
    "plain pickle": (lambda e, t: (t / "p.pt").write_bytes(pickle.dumps([1, 2])) and
                     _embed(e, t, checkpoint=t / "p.pt"), "p.pt: refused by torch.load(weights_only=True)"),
    "junk bytes": (lambda e, t: (t / "j.pt").write_bytes(b"\x00junk") and _embed(e, t, checkpoint=t / "j.pt"),
                   "j.pt: "),
    "not ours": (lambda e, t: torch.save({"a": torch.ones(1)}, t / "n.pt") or _embed(e, t, checkpoint=t / "n.pt"),
                 "n.pt: not a mirror-model checkpoint"),
    "weights do not fit": (_tampered, "weights do not fit the model (Missing key(s) in state_dict"),
    "slides of another size": (lambda e, t: _embed(e, t, slides=write_cohort(t / "six", patch_dim=6)[0]),
                               "the model was built for 8-d patch features, the slides have 6-d"),
    "RNA of another size": (lambda e, t: _rna_other(e, t, n_genes=10),
                            "the model was built for 12 RNA features, the RNA has 10"),
    "RNA with other genes": (lambda e, t: _rna_other(e, t, rename=True),
                             "RNA features differ from the standardiser's (12 vs 12; first difference at column 0)"),
    "output exists": (lambda e, t: (t / "e.h5ad").write_text("x") and _embed(e, t),
                      "e.h5ad: already exists (use --force to replace it)"),
}


@pytest.mark.parametrize("case", sorted(EMBED_ERRORS))
def test_embed_bad_input_is_one_line(env, tmp_path, case):
    make_args, expected = EMBED_ERRORS[case]
    args = make_args(env, tmp_path)
    existed = (tmp_path / "e.h5ad").exists()
    result = invoke(args, code=1)
    line = assert_one_line_error(result, expected)
    if case == "junk bytes":
        assert "unreadable checkpoint" in line or "refused by torch.load" in line
    assert (tmp_path / "e.h5ad").exists() == existed


def test_model_load_error_is_typed(env, tmp_path):
    from mirror_model import CheckpointError

    with pytest.raises(CheckpointError, match="no such checkpoint file or run folder"):
        MIRROR.load(tmp_path / "missing")
