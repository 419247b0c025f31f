"""Resume: a run killed after epoch k (or mid-epoch) and resumed ends with the weights of an
uninterrupted run, bit for bit on the CPU, with DataLoader workers on; wrong resumes are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from _train_data import tiny_toml, write_cohort
from typer.testing import CliRunner

from mirror_model import constants as C
from mirror_model.cli import app
from mirror_model.train import KILL_AFTER_EPOCH_ENV, KILL_AT_STEP_ENV

TINY_TOML = tiny_toml(batch_size=4, n_patches=16, lr=1e-3)  # epochs: given per test
TIMING = ("samples_per_s", "epoch_s")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    slides, rna = write_cohort(root)
    (root / "tiny.toml").write_text(TINY_TOML)
    base = ["pretrain", "--slides", str(slides), "--rna", str(rna), "--config", str(root / "tiny.toml"),
            "--num-workers", "2", "--quiet"]
    full = root / "full"
    cli(base + ["--epochs", "3", "--out", str(full)])
    return root, base, torch.load(full / C.CHECKPOINT_LAST, weights_only=True)


def cli(args, code: int = 0):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def killed(args, hook: dict) -> None:
    """Run the CLI in a subprocess that SIGKILLs itself at the hook (no clean-up at all)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIRROR_NO_PROGRESS": "1", **hook}
    proc = subprocess.run([sys.executable, "-m", "mirror_model.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]


def assert_same_run(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pid, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][name]), (pid, name)
    strip = [{k: v for k, v in row.items() if k not in TIMING} for row in a["history"]]
    assert strip == [{k: v for k, v in row.items() if k not in TIMING} for row in b["history"]]


def test_killed_after_an_epoch_resumes_to_identical_weights(setup):
    root, base, full = setup
    out = root / "killed_after_2"
    killed(base + ["--epochs", "3", "--out", str(out)], {KILL_AFTER_EPOCH_ENV: "2"})
    assert torch.load(out / C.CHECKPOINT_LAST, weights_only=True)["epoch"] == 2
    assert json.loads((out / C.RUN_MANIFEST).read_text())["status"] == "running"
    cli(base + ["--epochs", "3", "--out", str(out), "--resume"])
    assert_same_run(torch.load(out / C.CHECKPOINT_LAST, weights_only=True), full)
    assert len((out / C.METRICS_CSV).read_text().splitlines()) == 4  # header + 3 epochs, none twice


def test_killed_mid_epoch_restarts_that_epoch(setup):
    root, base, full = setup
    out = root / "killed_in_2"
    killed(base + ["--epochs", "3", "--out", str(out)], {KILL_AT_STEP_ENV: "2:2"})
    assert torch.load(out / C.CHECKPOINT_LAST, weights_only=True)["epoch"] == 1
    cli(base + ["--out", str(out), "--resume"])  # epochs come from the run's saved configuration
    assert_same_run(torch.load(out / C.CHECKPOINT_LAST, weights_only=True), full)


def test_resume_extends_a_finished_run(setup):
    root, base, full = setup
    out = root / "extended"
    cli(base + ["--epochs", "2", "--out", str(out)])
    result = cli(base + ["--out", str(out), "--resume", "--epochs", "3"])
    assert "3 epoch(s) done" in result.output
    assert_same_run(torch.load(out / C.CHECKPOINT_LAST, weights_only=True), full)
    assert json.loads((out / C.RUN_CONFIG).read_text())["train"]["epochs"] == 3
    manifest = json.loads((out / C.RUN_MANIFEST).read_text())
    assert manifest["status"] == "finished" and manifest["epochs_completed"] == 3


def test_resume_refuses_another_configuration(setup):
    root, base, _ = setup
    result = cli(base + ["--out", str(root / "full"), "--resume", "--batch-size", "2"], code=1)
    assert result.output.strip().splitlines()[-1] == (
        f"error: {root / 'full'}: holds another configuration (train.batch_size is 4 there, 2 now); "
        "choose another --out")
    wider = root / "wider.toml"
    wider.write_text(TINY_TOML.replace("dim = 16", "dim = 32"))
    args = list(base)
    args[args.index("--config") + 1] = str(wider)
    result = cli(args + ["--out", str(root / "full"), "--resume"], code=1)
    assert "holds another configuration (model.dim is 16 there, 32 now)" in result.output
    assert torch.load(root / "full" / C.CHECKPOINT_LAST, weights_only=True)["epoch"] == 3  # untouched


def test_resume_refuses_data_of_other_sizes(setup, tmp_path):
    root, base, _ = setup
    slides, _ = write_cohort(tmp_path, patch_dim=6)
    args = list(base)
    args[args.index("--slides") + 1] = str(slides)
    result = cli(args + ["--out", str(root / "full"), "--resume"], code=1)
    assert "the model was built for 8-d patch features, the slides have 6-d" in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {root / 'full' / C.CHECKPOINT_LAST}")


def test_run_folder_rules(setup, tmp_path):
    root, base, _ = setup
    result = cli(base + ["--out", str(root / "full"), "--resume", "--epochs", "2"], code=1)
    assert f"--epochs 2: the run in {root / 'full'} has already completed 3 epochs" in result.output
    result = cli(base + ["--out", str(tmp_path / "none"), "--resume"], code=1)
    assert "--resume given but there is no run to resume here" in result.output
    result = cli(base + ["--out", str(root / "full")], code=1)
    assert "already holds a run; pass --resume to continue it" in result.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    result = cli(base + ["--out", str(tmp_path / "busy")], code=1)
    assert "folder exists and is not a mirror-model run (no run.json)" in result.output
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["x.txt"]
