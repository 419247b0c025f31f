"""PORPOISE-style late fusion of a slide bag and a transcriptome (supervised).

Written from the architecture description (DESIGN.md section 5): an ABMIL-style slide branch
(512-d patch embedding, gated attention, pooled 512 -> 256), a genomic branch of two
self-normalising blocks (Linear, ELU, AlphaDropout 0.25) to 256, and a gated bilinear fusion:
each side is gated by a bilinear function of both sides and reduced to 32, a constant 1 is
appended, the 33 x 33 = 1089 outer product is projected to 256, and a skip connection adds the
two gated unimodal vectors back before the output head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import constants as C
from ._abmil import AttentionPool
from ._common import patch_mask


class SNNBlock(nn.Sequential):
    """Linear -> ELU -> AlphaDropout, with LeCun-normal weights (what self-normalising nets assume)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.25) -> None:
        super().__init__(nn.Linear(in_dim, out_dim), nn.ELU(), nn.AlphaDropout(dropout))
        nn.init.normal_(self[0].weight, std=1.0 / math.sqrt(in_dim))
        nn.init.zeros_(self[0].bias)


class GatedBilinearFusion(nn.Module):
    """Gated bilinear fusion of two vectors through their (reduced + 1)^2 outer product.

    Parameters
    ----------
    dim
        Width of both inputs.
    reduced
        Width each side is reduced to before the outer product (32 -> 33 x 33 = 1089).
    out_dim
        Output width.
    dropout
        Dropout around the projection of the outer product.
    """

    def __init__(self, dim: int = 256, reduced: int = 32, out_dim: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.gate_slide = nn.Bilinear(dim, dim, reduced)
        self.gate_rna = nn.Bilinear(dim, dim, reduced)
        self.reduce_slide = nn.Sequential(nn.Linear(dim, reduced), nn.ReLU())
        self.reduce_rna = nn.Sequential(nn.Linear(dim, reduced), nn.ReLU())
        self.fusion_dim = (reduced + 1) ** 2
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.fusion_dim, out_dim), nn.ReLU(),
                                     nn.Dropout(dropout))
        # skip: the gated unimodal vectors join the fused one, so neither modality can be drowned
        self.skip = nn.Sequential(nn.Linear(out_dim + 2 * reduced, out_dim), nn.ReLU())

    def outer(self, h_slide: torch.Tensor, h_rna: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flattened outer product (B, fusion_dim) and the two gated reduced vectors (B, reduced)."""
        o_slide = torch.sigmoid(self.gate_slide(h_slide, h_rna)) * self.reduce_slide(h_slide)
        o_rna = torch.sigmoid(self.gate_rna(h_slide, h_rna)) * self.reduce_rna(h_rna)
        # the appended 1 keeps the unimodal terms inside the product next to the interactions
        one = o_slide.new_ones(o_slide.shape[0], 1)
        a, b = torch.cat([o_slide, one], 1), torch.cat([o_rna, one], 1)
        return (a.unsqueeze(2) * b.unsqueeze(1)).flatten(1), o_slide, o_rna

    def forward(self, h_slide: torch.Tensor, h_rna: torch.Tensor) -> torch.Tensor:
        """(B, dim), (B, dim) -> fused (B, out_dim)."""
        prod, o_slide, o_rna = self.outer(h_slide, h_rna)
        return self.skip(torch.cat([self.project(prod), o_slide, o_rna], 1))


class PORPOISE(nn.Module):
    """Supervised slide + RNA fusion model; ``forward`` returns logits (classes or hazard bins).

    Parameters
    ----------
    in_dim
        Patch feature size.
    n_genes
        Transcriptomics vector length.
    n_outputs
        Number of classes, or of survival bins.
    hidden
        Slide patch embedding width (512).
    dim
        Width of both branches and of the fusion output (256).
    attn_dim
        Attention branch width (256).
    reduced
        Width of each side inside the bilinear fusion (32).
    dropout
        Dropout / AlphaDropout probability (0.25).
    """

    method = C.METHOD_PORPOISE
    uses_rna = True
    default_lr = 2e-4
    default_weight_decay = 1e-5

    def __init__(self, in_dim: int, n_genes: int, n_outputs: int, *, hidden: int = 512, dim: int = 256,
                 attn_dim: int = 256, reduced: int = 32, dropout: float = 0.25) -> None:
        super().__init__()
        self.slide = AttentionPool(in_dim, hidden, attn_dim, dropout)
        self.slide_rho = nn.Sequential(nn.Linear(hidden, dim), nn.ReLU(), nn.Dropout(dropout))
        self.genomic = nn.Sequential(SNNBlock(n_genes, dim, dropout), SNNBlock(dim, dim, dropout))
        self.fusion = GatedBilinearFusion(dim, reduced, dim, dropout)
        self.classifier = nn.Linear(dim, n_outputs)

    def attention(self, batch: dict) -> torch.Tensor:
        """Slide attention weights (B, N); exactly 0 at padded patches."""
        return self.slide(batch[C.PATCHES], patch_mask(batch))[1]

    def encode(self, batch: dict) -> torch.Tensor:
        """Fused representation (B, dim) fed to the output head."""
        if batch.get(C.RNA) is None:
            raise ValueError("PORPOISE needs C.RNA in the batch (it fuses slide and transcriptome)")
        h_slide = self.slide_rho(self.slide(batch[C.PATCHES], patch_mask(batch))[0])
        return self.fusion(h_slide, self.genomic(batch[C.RNA]))

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits (B, n_outputs)."""
        return self.classifier(self.encode(batch))
