"""TANGLE-style self-supervised slide/transcriptome alignment (the paper's SSL baseline).

Written from the description (DESIGN.md section 5): an ABMIL slide encoder with a 768-d
embedding, an MLP transcriptome encoder to 768-d, and a symmetric InfoNCE loss with a FIXED
temperature of 0.01 (no learnable logit scale, unlike MIRROR's alignment); AdamW 1e-4 with a
linear warm-up then cosine decay, batch 64, 2048 patches per slide. After pretraining, the
frozen encoders give slide and RNA embeddings for the same linear probes as MIRROR.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .. import constants as C
from .._errors import ConfigError, NonFiniteLossError
from ._abmil import AttentionPool
from ._common import pad_collate, patch_mask, resolve_device, to_device


@dataclass
class TangleConfig:
    """TANGLE architecture and pretraining settings (defaults: the paper's baseline).

    ``patch_dim`` and ``n_genes`` come from the data. ``TangleConfig.small()`` is the CPU/test
    preset (same architecture, smaller widths, fewer patches and epochs).
    """

    patch_dim: int = 768
    n_genes: int = 10234
    dim: int = 768                  # slide and RNA embedding size
    attn_dim: int = 256             # gated-attention branch width (ABMIL's)
    rna_hidden: int = 768           # hidden width of the RNA MLP
    dropout: float = 0.25
    temperature: float = 0.01       # fixed, not learned
    lr: float = 1e-4
    weight_decay: float = 0.01      # not stated for TANGLE: AdamW's customary default
    epochs: int = 100
    warmup_epochs: int = 5
    batch_size: int = 64
    n_patches: int = 2048
    seed: int = 42
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("patch_dim", "n_genes", "dim", "attn_dim", "rna_hidden", "epochs", "batch_size", "n_patches"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"tangle.{name}: must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError("tangle.temperature and tangle.lr must be > 0")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"tangle.warmup_epochs: must lie in [0, epochs], got {self.warmup_epochs}")

    @classmethod
    def small(cls, **overrides) -> TangleConfig:
        """CPU / test preset; keyword overrides win."""
        base = dict(dim=64, attn_dim=32, rna_hidden=64, dropout=0.1, lr=1e-3, epochs=10, warmup_epochs=1,
                    batch_size=16, n_patches=128)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON- and ``weights_only``-safe)."""
        return asdict(self)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between row-paired embeddings (row i of ``a`` matches row i of ``b``).

    Parameters
    ----------
    a
        (B, d) embeddings of one modality (L2-normalised here).
    b
        (B, d) embeddings of the other modality.
    temperature
        Divides the cosine similarities.

    Returns
    -------
    Scalar: mean of the a->b and b->a cross-entropies with targets ``arange(B)``.
    """
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0 at ``total_steps``.

    Parameters
    ----------
    step
        0-based optimiser step.
    total_steps
        Number of steps of the whole run.
    warmup_steps
        Steps of linear warm-up; step s < warmup_steps gets (s + 1) / warmup_steps, so the first
        step already moves the weights.

    Returns
    -------
    Factor in [0, 1] multiplying the base learning rate.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class TANGLE(nn.Module):
    """ABMIL slide encoder + MLP RNA encoder trained by symmetric InfoNCE at a fixed temperature.

    Parameters
    ----------
    cfg
        Architecture (``patch_dim``, ``n_genes``, ``dim``, ``attn_dim``, ``rna_hidden``,
        ``dropout``, ``temperature``).
    """

    method = C.METHOD_TANGLE

    def __init__(self, cfg: TangleConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.slide = AttentionPool(cfg.patch_dim, cfg.dim, cfg.attn_dim, cfg.dropout)
        self.slide_head = nn.Linear(cfg.dim, cfg.dim)  # post-attention projection of the pooled vector
        self.rna = nn.Sequential(nn.Linear(cfg.n_genes, cfg.rna_hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.rna_hidden, cfg.dim))
        # a plain float: neither a Parameter nor a buffer, so no optimiser or checkpoint can move it
        self.temperature = float(cfg.temperature)

    def encode_slide(self, batch: dict) -> torch.Tensor:
        """Slide embedding (B, dim)."""
        return self.slide_head(self.slide(batch[C.PATCHES], patch_mask(batch))[0])

    def encode_rna(self, batch: dict) -> torch.Tensor:
        """Transcriptome embedding (B, dim)."""
        return self.rna(batch[C.RNA])

    def attention(self, batch: dict) -> torch.Tensor:
        """Slide attention weights (B, N); exactly 0 at padded patches."""
        return self.slide(batch[C.PATCHES], patch_mask(batch))[1]

    def encode(self, batch: dict) -> dict[str, torch.Tensor]:
        """``C.KIND_SLIDE`` and/or ``C.KIND_RNA`` embeddings (B, dim), for the modalities present."""
        out = {}
        if batch.get(C.PATCHES) is not None:
            out[C.KIND_SLIDE] = self.encode_slide(batch)
        if batch.get(C.RNA) is not None:
            out[C.KIND_RNA] = self.encode_rna(batch)
        return out

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Named losses: ``C.LOSS`` (total) and ``C.LOSS_ALIGN`` (the InfoNCE, the only term)."""
        loss = info_nce(self.encode_slide(batch), self.encode_rna(batch), self.temperature)
        return {C.LOSS: loss, C.LOSS_ALIGN: loss}


def _tangle_loader(data, cfg: TangleConfig) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    gen = torch.Generator().manual_seed(cfg.seed)
    sub = torch.Generator().manual_seed(cfg.seed + 1)
    # a last batch of one case has no negatives (InfoNCE = 0): drop it, keep any larger remainder
    drop = len(data) % cfg.batch_size == 1
    return DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=drop,
                      collate_fn=partial(pad_collate, n_patches=cfg.n_patches, generator=sub))


def pretrain_tangle(data, cfg: TangleConfig | None = None, *, model: TANGLE | None = None,
                    device: str | None = None) -> tuple[TANGLE, list[dict]]:
    """Pretrain TANGLE on paired (slide bag, transcriptome) cases.

    Parameters
    ----------
    data
        A dataset of per-case dicts (``C.PATCHES`` (N_i, D), ``C.RNA`` (G,)), batched here with
        ``cfg.batch_size`` and bags subsampled to ``cfg.n_patches``; or a ready DataLoader of
        batch dicts, used as it is.
    cfg
        Settings; default :class:`TangleConfig` () (the paper's values).
    model
        A model to continue from; default a new ``TANGLE(cfg)`` built after seeding.
    device
        Overrides ``cfg.device`` (``"auto"``: CUDA when present).

    Returns
    -------
    The trained model (eval mode) and one dict per epoch (``epoch``, ``loss``, ``lr``).
    """
    cfg = cfg or TangleConfig()
    if device is not None:
        cfg = replace(cfg, device=device)
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = (model or TANGLE(cfg)).to(dev)
    loader = _tangle_loader(data, cfg)
    steps_per_epoch = max(1, len(loader))
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
    history = []
    for epoch in range(1, cfg.epochs + 1):
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):  # MirrorDataset: a fresh patch sample each epoch, still seeded
            dataset.set_epoch(epoch - 1)
        model.train()
        losses = []
        for batch in loader:
            lr = optimizer.param_groups[0]["lr"]
            loss = model(to_device(batch, dev))[C.LOSS]
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"TANGLE pretraining: non-finite loss at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"), "lr": lr})
    return model.eval(), history


@torch.no_grad()
def tangle_embeddings(model: TANGLE, data, *, batch_size: int = 1, device: str = "auto") -> dict[str, np.ndarray]:
    """Embed every case with all its patches, in dataset order (for the linear probes).

    Parameters
    ----------
    model
        A pretrained :class:`TANGLE`.
    data
        Indexable of per-case dicts (``C.PATCHES``; ``C.RNA`` when present).
    batch_size
        Cases per forward pass (ragged bags are padded and masked, so the value does not change
        the result).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``...

    Returns
    -------
    ``C.KIND_SLIDE`` and ``C.KIND_RNA`` arrays (n, dim) for the modalities present, and
    ``"joint"`` = concat(slide, rna) when both are.
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, drop_last=False, collate_fn=pad_collate)
    parts: dict[str, list] = {}
    for batch in loader:
        for kind, z in model.encode(to_device(batch, dev)).items():
            parts.setdefault(kind, []).append(z.float().cpu())
    out = {kind: torch.cat(v).numpy() for kind, v in parts.items()}
    if C.KIND_SLIDE in out and C.KIND_RNA in out:
        out["joint"] = np.concatenate([out[C.KIND_SLIDE], out[C.KIND_RNA]], axis=1)
    return out
