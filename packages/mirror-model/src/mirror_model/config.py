"""Model and training configuration: the reference hyperparameters, presets, TOML and overrides.

``ModelConfig`` fixes the architecture (what a checkpoint must match); ``TrainConfig`` holds
how it is trained (epochs are not part of the model, so a finished run can be extended).
Input sizes (``patch_dim``, ``n_genes``) come from the data and are filled in by the caller.
Reference values: DESIGN.md section 2.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigError

__all__ = ["PINV_METHODS", "PRESETS", "ModelConfig", "TrainConfig", "load_config", "resolve_config"]

PINV_METHODS = ("auto", "iterate", "spectral")   # how Nystrom's pseudo-inverse is evaluated


@dataclass
class ModelConfig:
    """Architecture. Defaults are the MIRROR reference (DESIGN.md section 2)."""

    patch_dim: int = 768            # from the data
    n_genes: int = 10234            # from the data
    dim: int = 768
    # slide encoder (TransMIL)
    slide_heads: int = 8
    slide_head_dim: int = 96
    landmarks: int = 384
    pinv_iterations: int = 6
    pinv_method: str = "auto"       # "auto" | "iterate" | "spectral": how the iteration is evaluated
    residual_conv_kernel: int = 33
    attention: str = "nystrom"      # "nystrom" (reference) | "exact" (scaled_dot_product_attention)
    dropout: float = 0.1
    # RNA encoder
    rna_hidden: int = 1536
    rna_heads: int = 12
    rna_mlp_ratio: float = 4.0
    rna_depth: int = 2
    # alignment
    temperature_init: float = 0.07
    max_logit_scale: float = 100.0
    # retention
    slide_mask_ratio: float = 0.75
    rna_mask_ratio: float = 0.75
    # style clustering
    style_hidden: tuple[int, int] = (512, 256)
    latent_dim: int = 128
    n_prototypes: int = 3000
    # modules (the paper's ablation, Table III) and loss weights
    use_alignment: bool = True
    use_wsi_retention: bool = True
    use_rna_retention: bool = True
    use_style: bool = True
    use_cluster: bool = True
    w_align: float = 0.5
    w_wsi_retention: float = 0.15
    w_rna_retention: float = 0.15
    w_style: float = 0.1
    w_cluster: float = 0.1
    # memory lever: recompute encoder activations in backward
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.style_hidden = tuple(int(v) for v in self.style_hidden)
        if self.attention not in ("nystrom", "exact"):
            raise ConfigError(f"model.attention: {self.attention!r} is not one of 'nystrom', 'exact'")
        if self.pinv_method not in PINV_METHODS:
            known = ", ".join(map(repr, PINV_METHODS))
            raise ConfigError(f"model.pinv_method: {self.pinv_method!r} is not one of {known}")
        for name in ("patch_dim", "n_genes", "dim", "slide_heads", "slide_head_dim", "landmarks",
                     "rna_heads", "rna_depth", "latent_dim", "n_prototypes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("slide_mask_ratio", "rna_mask_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name}: must lie in (0, 1), got {getattr(self, name)}")
        if self.dim % self.rna_heads:
            raise ConfigError(f"model.dim {self.dim} is not divisible by model.rna_heads {self.rna_heads}")
        if not any(self.enabled_losses()):
            raise ConfigError("model: every module is switched off; nothing to train")

    def enabled_losses(self) -> dict[str, float]:
        """Loss term name -> weight for the modules that are on."""
        from . import constants as C

        terms = {C.LOSS_ALIGN: (self.use_alignment, self.w_align),
                 C.LOSS_WSI_RETENTION: (self.use_wsi_retention, self.w_wsi_retention),
                 C.LOSS_RNA_RETENTION: (self.use_rna_retention, self.w_rna_retention),
                 C.LOSS_STYLE: (self.use_style, self.w_style),
                 C.LOSS_CLUSTER: (self.use_cluster, self.w_cluster)}
        return {name: float(w) for name, (on, w) in terms.items() if on}


@dataclass
class TrainConfig:
    """Optimisation and data sampling. Defaults are the reference (DESIGN.md section 2)."""

    epochs: int = 100
    batch_size: int = 16
    lr: float = 2e-5
    weight_decay: float = 0.0
    seed: int = 42
    n_patches: int = 2048           # patches sampled per slide per step
    num_workers: int = 0
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    precision: str = "auto"         # auto (fp16 on CUDA as the reference, fp32 on CPU) | fp32 | bf16 | fp16
    checkpoint_every: int = 1       # epochs between per-epoch checkpoints

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"train.precision: {self.precision!r} is not one of auto, fp32, bf16, fp16")
        for name in ("epochs", "batch_size", "n_patches", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"train.num_workers: must be >= 0, got {self.num_workers}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr: must be > 0, got {self.lr}")


# A small configuration for CPUs, tests and the demo: same architecture, smaller widths.
_SMALL_MODEL = dict(dim=64, slide_heads=4, slide_head_dim=16, landmarks=32, residual_conv_kernel=9,
                    rna_hidden=128, rna_heads=4, style_hidden=(64, 32), latent_dim=16, n_prototypes=32,
                    dropout=0.1)
_SMALL_TRAIN = dict(epochs=10, batch_size=16, lr=1e-3, n_patches=128)

PRESETS: dict[str, tuple[dict, dict]] = {
    "reference": ({}, {}),
    "small": (_SMALL_MODEL, _SMALL_TRAIN),
}


def _build(cls, values: dict, section: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"[{section}]: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"[{section}]: {err}") from None


def load_config(path: str | os.PathLike) -> dict[str, dict]:
    """Read a TOML file with optional ``[model]`` and ``[train]`` tables (and ``preset = "..."``)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: not valid TOML ({err})") from None
    extra = sorted(set(data) - {"model", "train", "preset"})
    if extra:
        raise ConfigError(f"{p}: unknown table(s) {extra}; use [model] and [train]")
    return data


def resolve_config(*, preset: str = "reference", file: dict | None = None,
                   model: dict[str, Any] | None = None,
                   train: dict[str, Any] | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Preset, then the TOML file's tables, then explicit overrides (CLI), in that order."""
    file = file or {}
    preset = file.get("preset", preset) if preset == "reference" else preset
    if preset not in PRESETS:
        raise ConfigError(f"--preset: {preset!r} is not one of {sorted(PRESETS)}")
    base_model, base_train = PRESETS[preset]
    mvals = {**base_model, **file.get("model", {}), **{k: v for k, v in (model or {}).items() if v is not None}}
    tvals = {**base_train, **file.get("train", {}), **{k: v for k, v in (train or {}).items() if v is not None}}
    return _build(ModelConfig, mvals, "model"), _build(TrainConfig, tvals, "train")


def to_dict(cfg) -> dict:
    """Plain-Python dict of a config (JSON- and ``weights_only``-safe)."""
    out = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def model_config_from_dict(values: dict) -> ModelConfig:
    return _build(ModelConfig, dict(values), "model")


def train_config_from_dict(values: dict) -> TrainConfig:
    return _build(TrainConfig, dict(values), "train")
