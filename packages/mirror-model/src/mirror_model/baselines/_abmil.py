"""ABMIL: gated-attention multiple-instance learning on a bag of patch features (slide only).

Written from the architecture description (DESIGN.md section 5): Linear(in, 512) + ReLU +
Dropout 0.25; gated attention with tanh and sigmoid branches 512 -> 256 (dropout 0.25) and a
Linear(256, 1) score; softmax over the real patches; a linear classifier on the pooled vector.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import constants as C
from ._common import masked_softmax, patch_mask


class GatedAttention(nn.Module):
    """Gated attention weights ``softmax(w^T (tanh(V h) * sigmoid(U h)))`` over real patches.

    Parameters
    ----------
    dim
        Width of the patch embeddings ``h``.
    hidden
        Width of the tanh and sigmoid branches.
    dropout
        Dropout after each branch.
    """

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.tanh_branch = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.sigmoid_branch = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) embeddings and (B, N) mask -> (B, N) weights summing to 1 over real patches."""
        scores = self.score(self.tanh_branch(h) * self.sigmoid_branch(h)).squeeze(-1)
        return masked_softmax(scores, mask)


class AttentionPool(nn.Module):
    """ABMIL slide encoder: patch embedding, gated attention, attention-weighted sum.

    Parameters
    ----------
    in_dim
        Patch feature size.
    hidden
        Patch embedding width (= pooled vector width).
    attn_dim
        Width of the attention branches.
    dropout
        Dropout after the embedding and inside the attention.
    """

    def __init__(self, in_dim: int, hidden: int = 512, attn_dim: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention = GatedAttention(hidden, attn_dim, dropout)
        self.out_dim = hidden

    def forward(self, patches: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, in_dim), (B, N) -> pooled (B, hidden) and attention weights (B, N)."""
        # zero padded rows so that whatever the padding holds (even NaN) cannot leak through 0 * x
        h = self.embed(patches).masked_fill(~mask.unsqueeze(-1), 0.0)
        weights = self.attention(h, mask)
        return torch.bmm(weights.unsqueeze(1), h).squeeze(1), weights


class ABMIL(nn.Module):
    """Supervised gated-attention MIL on slides; ``forward`` returns logits.

    For subtyping the logits are class scores; for survival they are the 4 discrete-time hazard
    logits. Missing ``C.PATCH_MASK`` means every patch is real.

    Parameters
    ----------
    in_dim
        Patch feature size (768 for Phikon).
    n_outputs
        Number of classes, or of survival bins.
    hidden
        Patch embedding and pooled width (512).
    attn_dim
        Attention branch width (256).
    dropout
        Dropout probability (0.25).
    """

    method = C.METHOD_ABMIL
    uses_rna = False
    default_lr = 1e-4
    default_weight_decay = 1e-5

    def __init__(self, in_dim: int, n_outputs: int, *, hidden: int = 512, attn_dim: int = 256,
                 dropout: float = 0.25) -> None:
        super().__init__()
        self.slide = AttentionPool(in_dim, hidden, attn_dim, dropout)
        self.classifier = nn.Linear(hidden, n_outputs)

    def attention(self, batch: dict) -> torch.Tensor:
        """Attention weights (B, N); exactly 0 at padded patches (for heatmaps)."""
        return self.slide(batch[C.PATCHES], patch_mask(batch))[1]

    def encode(self, batch: dict) -> torch.Tensor:
        """Pooled slide vector (B, hidden)."""
        return self.slide(batch[C.PATCHES], patch_mask(batch))[0]

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits (B, n_outputs)."""
        return self.classifier(self.encode(batch))
