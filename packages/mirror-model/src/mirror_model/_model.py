"""The user-facing model object, after scvi-tools: configure, train, embed, save, load.

    model = MIRROR.from_preset("small")                  # or MIRROR.from_config(model_cfg, train_cfg)
    model.train(pairing, run_dir="runs/demo")           # pairing: mirror_model.data.pair_slides(...)
    z = model.get_latent_representation(pairing, kind="slide")
    model.save("models/demo"); model = MIRROR.load("models/demo")

Input sizes (patch feature size, number of RNA features) come from the data the first time
the model sees it; later data must match (:class:`CheckpointError` names both sizes).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from . import constants as C
from ._errors import CheckpointError, ConfigError, RunDirError
from .config import (
    ModelConfig,
    TrainConfig,
    model_config_from_dict,
    resolve_config,
    to_dict,
    train_config_from_dict,
)

KINDS = (C.KIND_SLIDE, C.KIND_RNA, C.KIND_ALIGNED_SLIDE, C.KIND_ALIGNED_RNA)


def _build_module(cfg: ModelConfig):
    """The network for ``cfg`` (a seam the tests may replace)."""
    from .nn import MirrorModule

    return MirrorModule(cfg)


class MIRROR:
    """MIRROR pretraining model: slide and RNA encoders with alignment, retention and style clustering.

    Parameters
    ----------
    model_cfg
        Architecture (:class:`~mirror_model.config.ModelConfig`); its input sizes are replaced by
        the data's when the network is first built.
    train_cfg
        Training settings (:class:`~mirror_model.config.TrainConfig`).
    """

    def __init__(self, model_cfg: ModelConfig | None = None, train_cfg: TrainConfig | None = None) -> None:
        self.model_cfg = model_cfg if model_cfg is not None else ModelConfig()
        self.train_cfg = train_cfg if train_cfg is not None else TrainConfig()
        self.module = None             # built from the data's input sizes (or a checkpoint)
        self.standardizer = None       # RNA standardiser fitted on the training patients
        self.history: list[dict] = []  # per-epoch metrics of the training so far
        self.source: str | None = None  # checkpoint this model was loaded from

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, model_cfg: ModelConfig | dict | None = None,
                    train_cfg: TrainConfig | dict | None = None) -> MIRROR:
        """A model from configuration objects (or plain dicts of their fields).

        Parameters
        ----------
        model_cfg
            Architecture; default the MIRROR reference.
        train_cfg
            Training settings; default the reference.

        Returns
        -------
        An untrained MIRROR (the network is built when it first sees data).
        """
        if isinstance(model_cfg, dict):
            model_cfg = model_config_from_dict(model_cfg)
        if isinstance(train_cfg, dict):
            train_cfg = train_config_from_dict(train_cfg)
        return cls(model_cfg, train_cfg)

    @classmethod
    def from_preset(cls, preset: str = "reference", *, model: dict | None = None,
                    train: dict | None = None) -> MIRROR:
        """A model from a named preset (``reference`` or ``small``) plus overrides.

        Parameters
        ----------
        preset
            ``reference`` (the paper's hyperparameters) or ``small`` (CPUs, the demo).
        model
            Overrides of :class:`~mirror_model.config.ModelConfig` fields.
        train
            Overrides of :class:`~mirror_model.config.TrainConfig` fields.

        Returns
        -------
        An untrained MIRROR.
        """
        return cls(*resolve_config(preset=preset, model=model, train=train))

    def config_dict(self) -> dict:
        """``{"model": {...}, "train": {...}}`` of plain values (what ``config.json`` holds)."""
        return {"model": to_dict(self.model_cfg), "train": to_dict(self.train_cfg)}

    def _ensure_module(self, patch_dim: int | None, n_genes: int | None, where: str = "model"):
        """Build the network for the data's input sizes, or check them against the built one."""
        from .train import check_input_sizes, seed_everything

        if self.module is not None:
            check_input_sizes(self.model_cfg, patch_dim=patch_dim, n_genes=n_genes, where=where)
            return self.module
        sizes = {k: int(v) for k, v in (("patch_dim", patch_dim), ("n_genes", n_genes)) if v is not None}
        self.model_cfg = dataclasses.replace(self.model_cfg, **sizes)
        seed_everything(self.train_cfg.seed)  # same initial weights on every rank and every resume
        self.module = _build_module(self.model_cfg)
        return self.module

    # ------------------------------------------------------------------ training
    def train(self, data, *, train_patients=None, split_name: str = "train",
              run_dir: str | os.PathLike | None = None, resume: bool = False, epochs: int | None = None,
              progress: bool | None = None, run_info: dict | None = None) -> list[dict]:
        """Pretrain on paired slides and RNA and write a run folder.

        Parameters
        ----------
        data
            A :class:`~mirror_model.data.Pairing` (slides + RNA).
        train_patients
            Train on these patients only (a fold's training side); the RNA standardiser is
            fitted on them. None: every paired patient.
        split_name
            Name of that split in the pairing report.
        run_dir
            Folder for checkpoints, metrics and figures (a fresh or empty folder; with
            ``resume`` a run of the same configuration). None: nothing is written.
        resume
            Continue the run in ``run_dir`` from its last checkpoint.
        epochs
            Total epochs to reach (overrides ``train_cfg.epochs``; may extend a finished run).
        progress
            Progress bar (None: on unless ``MIRROR_NO_PROGRESS`` is set).
        run_info
            Extra plain values for the run manifest (fold, splits file, command line).

        Returns
        -------
        Per-epoch metrics (also in ``self.history``).
        """
        from .train._session import train_model

        if epochs is not None:
            self.train_cfg = dataclasses.replace(self.train_cfg, epochs=int(epochs))
        self.history = train_model(self, data, train_patients=train_patients, split_name=split_name,
                                   run_dir=run_dir, resume=resume, progress=progress, run_info=run_info or {})
        return self.history

    # ------------------------------------------------------------------ inference
    def get_latent_representation(self, data, kind: str = C.KIND_SLIDE, *, batch_size: int = 1,
                                  sampling: str = "all", n_patches: int | None = None, seed: int = 0,
                                  device: str | None = None, progress: bool | None = None) -> np.ndarray:
        """Encoder outputs per case (eval mode, deterministic).

        Parameters
        ----------
        data
            A :class:`~mirror_model.data.Pairing`, slide records, or a
            :class:`~mirror_model.data.MirrorDataset`.
        kind
            ``slide`` (slide CLS), ``rna`` (RNA token), ``aligned_slide`` or ``aligned_rna``
            (L2-normalised alignment-head outputs).
        batch_size
            Cases per forward pass (bags of different sizes are padded and masked).
        sampling
            ``all`` patches of each slide, or ``fixed``: a seeded sample of ``n_patches``.
        n_patches
            Patches per slide with ``sampling="fixed"``.
        seed
            Seed of the fixed sample.
        device
            ``auto``/``cpu``/``cuda`` (default: the training configuration's device).
        progress
            Progress bar.

        Returns
        -------
        float32 array (n_cases, dim), in the data's case order.
        """
        from ._embed import encode_dataset

        if kind not in KINDS:
            raise ConfigError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        reps = encode_dataset(self, data, kinds=(kind,), batch_size=batch_size, sampling=sampling,
                              n_patches=n_patches, seed=seed, device=device, progress=progress)
        return reps[kind]

    def embed(self, slides, rna=None, *, n_patches: int | None = None, seed: int = 0, batch_size: int = 1,
              device: str | None = None, progress: bool | None = None):
        """Embed slides (and their RNA) into an AnnData, one row per slide (what ``mirror-model embed`` writes).

        Parameters
        ----------
        slides
            Folder or files of patch features, or slide records.
        rna
            Refined RNA (``.h5ad`` path, AnnData or table); None embeds the slides alone.
        n_patches
            Embed a fixed seeded sample of this many patches per slide (default: every patch).
        seed
            Seed of that sample.
        batch_size
            Slides per forward pass.
        device
            ``auto``/``cpu``/``cuda`` (default: the training configuration's device).
        progress
            Progress bar.

        Returns
        -------
        AnnData with ``.obsm["X_mirror_slide"]`` (and with RNA ``X_mirror_rna``, ``X_mirror``),
        ``.obs`` from the RNA AnnData, ``.uns["mirror_embed"]``; see docs/model.md "Embedding".
        """
        from ._embed import embed

        return embed(self, slides, rna, sampling="fixed" if n_patches else "all", n_patches=n_patches, seed=seed,
                     batch_size=batch_size, device=device, progress=progress)

    # ------------------------------------------------------------------ persistence
    def _payload(self) -> dict:
        if self.module is None:
            raise CheckpointError("model: nothing to save, the network was never built (train it first)")
        return {"epoch": len(self.history), "model": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
                "model_config": to_dict(self.model_cfg), "train_config": to_dict(self.train_cfg),
                "standardizer": None if self.standardizer is None else self.standardizer.state_dict(),
                "history": [dict(r) for r in self.history], "versions": _versions()}

    def save(self, dir_path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the model as a folder (``run.json``, ``config.json``, ``checkpoint_last.pt``).

        Parameters
        ----------
        dir_path
            Target folder; built under a temporary name and renamed when complete.
        overwrite
            Replace a folder that holds a saved model or run.

        Returns
        -------
        The folder; :class:`RunDirError` when it exists and is not a run, or is one and
        ``overwrite`` is off.
        """
        from mirror_genes.utils import atomic_path, now_utc

        from .train import save_checkpoint
        from .train._rundir import RUN_KIND, read_manifest, write_json

        target = Path(dir_path)
        if target.exists():
            if not target.is_dir() or (read_manifest(target) is None and any(target.iterdir())):
                raise RunDirError(f"{target}: exists and is not a mirror-model model folder; choose another path")
            if read_manifest(target) is not None and not overwrite:
                raise RunDirError(f"{target}: already holds a model or run (pass overwrite=True to replace it)")
        payload = self._payload()
        with atomic_path(target, is_dir=True) as tmp:
            save_checkpoint(payload, tmp / C.CHECKPOINT_LAST)
            write_json(tmp / C.RUN_CONFIG, self.config_dict())
            if self.standardizer is not None:
                self.standardizer.save(tmp / C.STANDARDIZER)
            write_json(tmp / C.RUN_MANIFEST, {"kind": RUN_KIND, "status": "saved", "created": now_utc(),
                                              "epochs_completed": len(self.history), "versions": _versions()})
        return target

    @classmethod
    def load(cls, source: str | os.PathLike, *, device: str | None = None) -> MIRROR:
        """Read a saved model or a training run (its last checkpoint), with the safe loader.

        Parameters
        ----------
        source
            A folder written by :meth:`save` or by training, or a checkpoint file.
        device
            Where to put the network (default: CPU until used).

        Returns
        -------
        The model, in eval mode, with its standardiser and training history.
        """
        from .data import Standardizer
        from .train import checkpoint_model_config, load_checkpoint, resolve_device
        from .train._checkpoint import load_state

        ckpt = load_checkpoint(source)
        model = cls(checkpoint_model_config(ckpt), _train_cfg_of(ckpt))
        model.module = _build_module(model.model_cfg)
        load_state(model.module, ckpt["model"], ckpt["path"])
        if ckpt.get("standardizer"):
            model.standardizer = Standardizer.from_state_dict(ckpt["standardizer"])
        model.history = [dict(r) for r in ckpt.get("history", [])]
        model.source = ckpt["path"]
        if device is not None:
            model.module.to(resolve_device(device))
        model.module.eval()
        return model

    def __repr__(self) -> str:
        state = "untrained" if not self.history else f"trained {len(self.history)} epoch(s)"
        return (f"MIRROR(dim={self.model_cfg.dim}, patch_dim={self.model_cfg.patch_dim}, "
                f"n_genes={self.model_cfg.n_genes}, losses={list(self.model_cfg.enabled_losses())}, {state})")


def _train_cfg_of(ckpt: dict) -> TrainConfig:
    try:
        return train_config_from_dict(ckpt.get("train_config") or {})
    except ConfigError as err:
        raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: invalid training configuration ({err})") from None


def _versions() -> dict:
    """Package versions (mirror-genes' record plus torch and mirror-model)."""
    from importlib import metadata

    from mirror_genes.utils import versions

    out = dict(versions())
    for dist in ("mirror-model", "torch", "h5py", "scanpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out

