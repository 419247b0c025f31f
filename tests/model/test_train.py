"""The training loop and the MIRROR object: run folder, checkpoints, metrics, precision, folds, errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from _train_data import load_pairing, patient, tiny_config, write_cohort

from mirror_genes.utils import sha256_file
from mirror_model import MIRROR, CheckpointError, ConfigError, NonFiniteLossError, RunDirError
from mirror_model import constants as C
from mirror_model.nn import MirrorModule
from mirror_model.train import (
    DistInfo,
    ShardedBatchSampler,
    get_rng_state,
    load_checkpoint,
    resolve_device,
    resolve_precision,
    set_rng_state,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    """One 2-epoch run shared by the read-only tests."""
    run = tmp_path_factory.mktemp("runs") / "run"
    model = MIRROR.from_config(*tiny_config())
    model.train(load_pairing(*cohort), run_dir=run, progress=False)
    return model, run


def test_run_folder_holds_config_fingerprints_metrics_and_figures(trained, cohort):
    model, run = trained
    assert {p.name for p in run.iterdir()} >= {C.RUN_MANIFEST, C.RUN_CONFIG, C.CHECKPOINT_LAST, C.METRICS_CSV,
                                               C.METRICS_JSONL, C.PAIRING_REPORT, C.STANDARDIZER, "figures"}
    manifest = json.loads((run / C.RUN_MANIFEST).read_text())
    assert manifest["status"] == "finished" and manifest["epochs_completed"] == 2
    assert manifest["data"]["rna"]["sha256"] == sha256_file(cohort[1])
    assert manifest["data"]["slides"]["n_files"] == 11 and len(manifest["data"]["slides"]["sha256"]) == 64
    assert {"torch", "mirror-model", "mirror-genes", "numpy"} <= set(manifest["versions"])
    config = json.loads((run / C.RUN_CONFIG).read_text())
    assert config["model"]["patch_dim"] == 8 and config["model"]["n_genes"] == 12  # from the data
    assert config["model"]["dim"] == 16 and config["train"]["epochs"] == 2
    rows = [json.loads(line) for line in (run / C.METRICS_JSONL).read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows == model.history
    assert all(np.isfinite(r[t]) for r in rows for t in (C.LOSS, *C.LOSS_TERMS, "samples_per_s"))
    header = (run / C.METRICS_CSV).read_text().splitlines()[0].split(",")
    assert header[:4] == ["epoch", "steps", "samples", C.LOSS] and set(C.LOSS_TERMS) <= set(header)
    for term in (C.LOSS, *C.LOSS_TERMS):
        png = run / "figures" / f"loss_{term}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_is_safe_and_complete(trained):
    _, run = trained
    ckpt = torch.load(run / C.CHECKPOINT_LAST, weights_only=True)  # plain types only
    assert ckpt["epoch"] == 2 and ckpt["format"] == "mirror-model-checkpoint"
    assert {"model", "optimizer", "scaler", "rng", "model_config", "train_config", "standardizer",
            "history"} <= set(ckpt)
    assert set(ckpt["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert len(ckpt["standardizer"]["mean"]) == 12 and ckpt["optimizer"]["state"]


def test_prototypes_normalised_before_every_step(cohort, monkeypatch):
    calls = []
    real = MirrorModule.normalize_prototypes_

    def counted(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(MirrorModule, "normalize_prototypes_", counted)
    model = MIRROR.from_config(*tiny_config(train=dict(epochs=1)))
    history = model.train(load_pairing(*cohort), progress=False)
    assert len(calls) == history[0]["steps"] == 3  # 11 cases, batch 4


class _NanAfter(MirrorModule):
    """Forward turns the alignment loss into NaN at the N-th call."""

    bad_call = 5
    calls = 0

    def forward(self, batch, *, gather=None):
        out = super().forward(batch, gather=gather)
        type(self).calls += 1
        if type(self).calls == self.bad_call:
            out = dict(out, **{C.LOSS_ALIGN: out[C.LOSS_ALIGN] * float("nan")})
            out[C.LOSS] = out[C.LOSS] + out[C.LOSS_ALIGN]
        return out


@pytest.mark.parametrize(("bad_call", "where", "kept"), [(5, "epoch 2, step 2", 1), (2, "epoch 1, step 2", 0)])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(cohort, tmp_path, monkeypatch, bad_call, where, kept):
    monkeypatch.setattr(_NanAfter, "bad_call", bad_call)
    monkeypatch.setattr(_NanAfter, "calls", 0)
    monkeypatch.setattr("mirror_model._model._build_module", _NanAfter)
    model = MIRROR.from_config(*tiny_config(train=dict(epochs=3)))
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err:
        model.train(load_pairing(*cohort), run_dir=run, progress=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{where}: loss term 'align' is nan")
    if kept:
        assert "last good checkpoint (epoch 1) is kept" in message
        assert load_checkpoint(run)["epoch"] == 1
        assert json.loads((run / C.RUN_MANIFEST).read_text())["status"] == "failed"
    else:  # nothing good to keep: a fresh run leaves nothing behind
        assert "no checkpoint had been written yet" in message and not run.exists()


def test_device_and_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_device("cpu") == cpu
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="not one of auto, cpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            resolve_device("cuda")


def test_bf16_autocast_trains_on_cpu(cohort):
    model = MIRROR.from_config(*tiny_config(train=dict(epochs=1, precision="bf16")))
    history = model.train(load_pairing(*cohort), progress=False)
    assert np.isfinite(history[0][C.LOSS])


def test_fold_training_uses_training_patients_only(cohort, tmp_path):
    pairing = load_pairing(*cohort)
    train_patients = [patient(i) for i in range(6)]
    model = MIRROR.from_config(*tiny_config(train=dict(epochs=1)))
    model.train(pairing, train_patients=train_patients, split_name="fold 0 train", run_dir=tmp_path / "r",
                progress=False)
    report = json.loads((tmp_path / "r" / C.PAIRING_REPORT).read_text())
    assert report["split"] == "fold 0 train" and report["matched"]["patients"] == train_patients
    assert model.history[0]["samples"] == 7  # 6 patients, one with two slides
    rows = [i for i, p in enumerate(pairing.rna.patient_ids) if p in train_patients]
    np.testing.assert_allclose(model.standardizer.mean, pairing.rna.values[rows].mean(0), rtol=1e-5, atol=1e-6)
    assert model.standardizer.n_fit == 6


def test_sharded_batches_cover_the_single_process_batches():
    single = list(ShardedBatchSampler(11, 4, seed=7))
    assert sorted(i for b in single for i in b) == list(range(11))
    shards = [list(ShardedBatchSampler(11, 4, seed=7, info=DistInfo(rank=r, world_size=2))) for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == single  # rank 0's rows first, as the gather orders them
    epoch1 = ShardedBatchSampler(11, 4, seed=7)
    epoch1.set_epoch(1)
    assert list(epoch1) != single
    three = ShardedBatchSampler(9, 4, seed=0, info=DistInfo(rank=0, world_size=2))
    assert len(three) == 2  # the last global batch (1 case) cannot feed 2 ranks: dropped
    with pytest.raises(ConfigError, match="smaller than the 4 processes"):
        ShardedBatchSampler(10, 2, seed=0, info=DistInfo(rank=0, world_size=4))


def test_rng_states_round_trip_through_a_safe_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = get_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(1))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand()) == first[:2] and torch.equal(torch.rand(1), first[2])


def test_latent_representations_and_save_load(trained, cohort, tmp_path):
    model, _ = trained
    pairing = load_pairing(*cohort)
    reps = {k: model.get_latent_representation(pairing, kind=k)
            for k in ("slide", "rna", "aligned_slide", "aligned_rna")}
    assert all(v.shape == (11, 16) and v.dtype == np.float32 for v in reps.values())
    np.testing.assert_allclose(np.linalg.norm(reps["aligned_rna"], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.get_latent_representation(pairing, kind="slide"), reps["slide"])
    with pytest.raises(ConfigError, match="not one of slide, rna"):
        model.get_latent_representation(pairing, kind="joint")
    saved = model.save(tmp_path / "saved")
    loaded = MIRROR.load(saved)
    assert loaded.history == model.history and loaded.model_cfg == model.model_cfg
    np.testing.assert_array_equal(loaded.get_latent_representation(pairing, kind="rna"), reps["rna"])
    with pytest.raises(RunDirError, match="already holds a model or run"):
        model.save(saved)
    model.save(saved, overwrite=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(RunDirError, match="exists and is not a mirror-model model folder"):
        model.save(tmp_path / "other")


def test_data_must_match_the_built_model(trained, tmp_path):
    model, _ = trained
    other = load_pairing(*write_cohort(tmp_path, patch_dim=6))
    with pytest.raises(CheckpointError, match="was built for 8-d patch features, the slides have 6-d"):
        model.get_latent_representation(other, kind="slide")


def test_untrained_model_refuses_to_save(tmp_path):
    with pytest.raises(CheckpointError, match="never built"):
        MIRROR.from_preset("small").save(tmp_path / "m")


def test_training_needs_rna(cohort):
    from mirror_model.data import discover_slides, pair_slides

    slides_only = pair_slides(discover_slides(cohort[0], progress=False))
    with pytest.raises(ConfigError, match="pretraining needs RNA"):
        MIRROR.from_config(*tiny_config()).train(slides_only)


def test_checkpoint_of_another_architecture_is_refused(trained):
    import dataclasses

    from mirror_model.train import check_model_config

    model, run = trained
    ckpt = load_checkpoint(run)
    check_model_config(ckpt, model.model_cfg)  # its own: fine
    with pytest.raises(CheckpointError, match=r"checkpoint has model.dim = 16, the model has 32"):
        check_model_config(ckpt, dataclasses.replace(model.model_cfg, dim=32))
