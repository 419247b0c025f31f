"""MirrorModule: the encoders plus the switchable MIRROR modules, returning named losses
(contract: docs/model-internals.md)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import constants as C
from ..config import ModelConfig
from ..constants import LOGIT_SCALE
from ._heads import AlignmentHeads, RNARetention, SlideRetention, StyleClustering
from ._losses import Gather, contrastive_loss
from ._rna import RNAEncoder
from ._slide import SlideEncoder

__all__ = ["LOGIT_SCALE", "MirrorModule"]



class MirrorModule(nn.Module):
    """MIRROR pretraining module.

    Parameters
    ----------
    cfg
        Model configuration. A module switched off (``use_*``) is not built: its parameters are
        absent and its loss is not computed. The style encoder is built when either the style or
        the cluster term is on (clustering assigns its latent); the latent decoder and prototypes
        only with the cluster term.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.slide_encoder = SlideEncoder(cfg)
        self.rna_encoder = RNAEncoder(cfg)
        self.alignment = AlignmentHeads(cfg) if cfg.use_alignment else None
        self.slide_retention = SlideRetention(cfg) if cfg.use_wsi_retention else None
        self.rna_retention = RNARetention(cfg) if cfg.use_rna_retention else None
        use_sc = cfg.use_style or cfg.use_cluster
        self.style = StyleClustering(cfg, cfg.use_style, cfg.use_cluster) if use_sc else None
        self._init_slide_linears()

    def _init_slide_linears(self) -> None:
        # reference initialisation of the slide side: Xavier-uniform weights, zero biases
        for part in (self.slide_encoder, self.slide_retention):
            for m in (part.modules() if part is not None else ()):
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def normalize_prototypes_(self) -> None:
        """L2-normalise the prototype rows in place (no-op without the cluster module)."""
        if self.style is not None:
            self.style.normalize_prototypes_()

    def forward(self, batch: dict, *, gather: Gather | None = None) -> dict[str, Tensor]:
        """Losses of one paired batch.

        Parameters
        ----------
        batch
            Batch dict (``C.PATCHES``, ``C.RNA``; optional ``C.PATCH_MASK`` and the noise tensors
            ``C.SLIDE_MASK_NOISE``, ``C.RNA_MASK_NOISE``, ``C.STYLE_EPS``, drawn when absent).
        gather
            Optional cross-rank gather for the contrastive loss (see :func:`contrastive_loss`).

        Returns
        -------
        ``C.LOSS`` (weighted total), one scalar per enabled term, and ``LOGIT_SCALE`` (detached)
        when alignment is on.
        """
        missing = [k for k in (C.PATCHES, C.RNA) if k not in batch]
        if missing:
            raise KeyError(f"MirrorModule.forward needs paired batches; missing {missing}")
        patch_mask = batch.get(C.PATCH_MASK)
        patches = batch[C.PATCHES]
        masked = None
        if self.slide_retention is not None:
            noise = _noise(batch, C.SLIDE_MASK_NOISE, patches.shape[:2], patches.device)
            masked = self.slide_retention.mask(noise, patch_mask)
        cls, tokens = self.slide_encoder(patches, patch_mask, tokens=masked is not None,
                                         grad_tokens=None if masked is None else ~masked)
        z = self.rna_encoder(batch[C.RNA])
        terms, extra = {}, {}
        if self.alignment is not None:
            scale = self.alignment.scale()
            a_wsi, a_rna = self.alignment.project_wsi(cls), self.alignment.project_rna(z)
            terms[C.LOSS_ALIGN] = contrastive_loss(a_wsi, a_rna, scale, gather)
            extra[LOGIT_SCALE] = scale.detach()
        if self.slide_retention is not None:
            terms[C.LOSS_WSI_RETENTION] = self.slide_retention(cls, tokens, masked, patch_mask)
        if self.rna_retention is not None:
            noise = _noise(batch, C.RNA_MASK_NOISE, z.shape, z.device)
            terms[C.LOSS_RNA_RETENTION] = self.rna_retention(z, noise)
        if self.style is not None:
            style, cluster = self.style(cls, z, batch.get(C.STYLE_EPS))
            if style is not None:
                terms[C.LOSS_STYLE] = style
            if cluster is not None:
                terms[C.LOSS_CLUSTER] = cluster
        weights = self.cfg.enabled_losses()
        total = sum(weights[name] * value for name, value in terms.items())
        return {C.LOSS: total, **terms, **extra}

    def encode(self, batch: dict) -> dict[str, Tensor]:
        """Embeddings of whichever modalities the batch holds (deterministic in eval mode).

        Parameters
        ----------
        batch
            Batch dict with ``C.PATCHES`` (and optional ``C.PATCH_MASK``) and/or ``C.RNA``.

        Returns
        -------
        ``C.KIND_SLIDE`` / ``C.KIND_RNA`` (B, dim) encoder outputs for the modalities present,
        and ``C.KIND_ALIGNED_SLIDE`` / ``C.KIND_ALIGNED_RNA`` when alignment is on.
        """
        if C.PATCHES not in batch and C.RNA not in batch:
            raise KeyError(f"MirrorModule.encode: the batch holds neither {C.PATCHES!r} nor {C.RNA!r}")
        out = {}
        if C.PATCHES in batch:
            out[C.KIND_SLIDE], _ = self.slide_encoder(batch[C.PATCHES], batch.get(C.PATCH_MASK), tokens=False)
            if self.alignment is not None:
                out[C.KIND_ALIGNED_SLIDE] = self.alignment.project_wsi(out[C.KIND_SLIDE])
        if C.RNA in batch:
            out[C.KIND_RNA] = self.rna_encoder(batch[C.RNA])
            if self.alignment is not None:
                out[C.KIND_ALIGNED_RNA] = self.alignment.project_rna(out[C.KIND_RNA])
        return out


def _noise(batch: dict, key: str, shape, device) -> Tensor:
    """The batch's noise tensor, or a uniform draw from torch's global RNG when absent."""
    noise = batch.get(key)
    return torch.rand(tuple(shape), device=device) if noise is None else noise
