"""One pretraining run of a :class:`~mirror_model.MIRROR`: data, run folder, resume, the loop.

Everything that can fail on bad input (pairing, split, configuration, run folder) is checked
before the run folder is created; a fresh run that fails before its first checkpoint removes
its folder, so nothing partial is left behind. Rank 0 writes, every rank reads.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

from mirror_genes.utils import file_record, now_utc

from .. import constants as C
from .._errors import ConfigError, NonFiniteLossError, RunDirError
from ._checkpoint import check_input_sizes, check_model_config, checkpoint_model_config, load_checkpoint
from ._distributed import DistInfo, barrier, init_distributed
from ._loop import fit
from ._precision import resolve_device
from ._rundir import (
    RUN_KIND,
    check_new_or_resumable,
    check_same_config,
    slides_fingerprint,
    update_manifest,
    write_json,
)

FINGERPRINT_NOTE = ("rna.sha256: sha256 of the RNA file; slides.sha256: sha256 over the lines "
                    "'<file name>\\t<size bytes>\\t<mtime ns>\\n' of the run's slide files, sorted")


def training_pairing(data, train_patients, split_name: str):
    """The pairing to train on: ``data`` restricted to ``train_patients`` (when given)."""
    from ..data import Pairing

    if not isinstance(data, Pairing):
        raise ConfigError(f"train: expected a mirror_model.data.Pairing of slides and RNA, got {type(data).__name__}")
    if data.rna is None:
        raise ConfigError("train: pretraining needs RNA paired with the slides (slides-only data can be embedded, "
                          "not pretrained on)")
    return data.restrict(train_patients, name=split_name) if train_patients is not None else data


def data_record(pairing) -> dict:
    """Fingerprints of the inputs (see ``FINGERPRINT_NOTE``) and the case counts."""
    rna_source = pairing.rna.source
    rna = file_record(rna_source, "rna") if os.path.isfile(rna_source) else {"role": "rna", "source": rna_source}
    return {"rna": rna, "slides": slides_fingerprint(s.path for s in pairing.slides), "n_cases": len(pairing),
            "n_patients": len(pairing.patients), "patch_dim": int(pairing.slides[0].dim),
            "n_genes": int(pairing.rna.values.shape[1]), "note": FINGERPRINT_NOTE}


def _resume_state(model, run_dir: Path, record: dict):
    """Check the run matches this model and data; return its last checkpoint (None before epoch 1)."""
    ckpt = load_checkpoint(run_dir) if (run_dir / C.CHECKPOINT_LAST).is_file() else None
    if ckpt is not None:  # the data first: its sizes are named in a CheckpointError
        check_input_sizes(checkpoint_model_config(ckpt), patch_dim=record["patch_dim"],
                          n_genes=record["n_genes"], where=ckpt["path"])
    config_path = run_dir / C.RUN_CONFIG
    try:
        saved = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RunDirError(f"{config_path}: unreadable run configuration ({str(err).splitlines()[0]})") from None
    check_same_config(run_dir, saved, model.config_dict())
    manifest_data = (json.loads((run_dir / C.RUN_MANIFEST).read_text()).get("data") or {})
    for key in ("rna", "slides"):
        if manifest_data.get(key, {}).get("sha256") != record[key].get("sha256"):
            warnings.warn(f"{run_dir}: the {key} input differs from the one this run started with "
                          "(fingerprint changed); resuming anyway", stacklevel=3)
    if ckpt is None:
        return None
    check_model_config(ckpt, model.model_cfg)
    if "optimizer" not in ckpt:
        raise RunDirError(f"{run_dir}: holds a saved model, not a resumable training run")
    return ckpt


def _create_run(model, run_dir: Path, pairing, standardizer, record: dict, run_info: dict, info: DistInfo) -> None:
    from .._model import _versions

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / C.RUN_CONFIG, model.config_dict())
        pairing.report.save(run_dir / C.PAIRING_REPORT)
        standardizer.save(run_dir / C.STANDARDIZER)
        write_json(run_dir / C.RUN_MANIFEST, {
            "kind": RUN_KIND, "status": "running", "created": now_utc(), "updated": now_utc(),
            "epochs_completed": 0, "epochs_planned": model.train_cfg.epochs, "world_size": info.world_size,
            **run_info, "data": record, "versions": _versions()})
    barrier(info)


def _check_output(run_dir: Path, pairing) -> None:
    """The folder can be written and holds no input (mirror-genes' output checks)."""
    from mirror_genes.utils import check_output

    check_output(run_dir, inputs=[pairing.rna.source], kind="dir")


def train_model(model, data, *, train_patients=None, split_name: str = "train", run_dir=None,
                resume: bool = False, progress: bool | None = None, run_info: dict | None = None) -> list[dict]:
    """Train ``model`` (a MIRROR) on ``data``; see :meth:`mirror_model.MIRROR.train`.

    Returns
    -------
    The per-epoch metrics history.
    """
    from ..data import MirrorDataset, Standardizer, collate_bags

    cfg, mcfg = model.train_cfg, model.model_cfg
    info = init_distributed(resolve_device(cfg.device).type)
    pairing = training_pairing(data, train_patients, split_name)
    record = data_record(pairing)
    model._ensure_module(record["patch_dim"], record["n_genes"], where=model.source or "model")
    ckpt, created, manifest = None, False, None
    if run_dir is not None:
        run_dir = Path(run_dir)
        manifest = check_new_or_resumable(run_dir, resume=resume)
        ckpt = _resume_state(model, run_dir, record) if manifest is not None else None
        if ckpt is not None and int(ckpt["epoch"]) > cfg.epochs:
            raise ConfigError(f"--epochs {cfg.epochs}: the run in {run_dir} has already completed "
                              f"{int(ckpt['epoch'])} epochs")
        if manifest is None:
            _check_output(run_dir, pairing)
        barrier(info)  # every rank has looked before rank 0 creates anything
    elif resume:
        raise RunDirError("--resume needs the run folder to resume (run_dir)")
    std = (Standardizer.from_state_dict(ckpt["standardizer"]) if ckpt is not None and ckpt.get("standardizer")
           else Standardizer.fit(pairing.rna, patients=train_patients if train_patients is not None
                                 else pairing.patients))
    dataset = MirrorDataset(pairing, standardizer=std, n_patches=cfg.n_patches, sampling="random", seed=cfg.seed,
                            dim=mcfg.dim, latent_dim=mcfg.latent_dim)
    if run_dir is not None and manifest is None:
        _create_run(model, run_dir, pairing, std, record, run_info or {}, info)
        created = True
    elif run_dir is not None and info.is_main:  # resuming: epochs (and device...) may have changed
        write_json(run_dir / C.RUN_CONFIG, model.config_dict())
        update_manifest(run_dir, epochs_planned=cfg.epochs, status="running", resumed=now_utc())
    extra = {"model_config": model.config_dict()["model"], "standardizer": std.state_dict(), "data": record}
    try:
        history = fit(model.module, dataset, cfg, run_dir=run_dir, resume=ckpt, collate_fn=collate_bags,
                      checkpoint_extra=extra, progress=progress, info=info)
    except BaseException as err:
        _after_failure(run_dir, created, err, info)
        raise
    if run_dir is not None and info.is_main:
        update_manifest(run_dir, status="finished", epochs_completed=len(history))
    model.standardizer, model.history = std, history
    model.module.eval()
    return history


def _after_failure(run_dir: Path | None, created: bool, err: BaseException, info: DistInfo) -> None:
    """Remove a fresh run folder that has no checkpoint yet; otherwise record the failure."""
    if run_dir is None or not info.is_main or not run_dir.exists():
        return
    if created and not (run_dir / C.CHECKPOINT_LAST).exists():
        shutil.rmtree(run_dir, ignore_errors=True)
    elif isinstance(err, NonFiniteLossError):
        update_manifest(run_dir, status="failed", error=str(err))
    elif isinstance(err, KeyboardInterrupt):
        update_manifest(run_dir, status="interrupted")

