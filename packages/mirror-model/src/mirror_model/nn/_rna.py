"""RNA encoder: MLP embedding of the transcriptomics vector to one token, a learnable
gene-encoding vector, pre-norm Transformer blocks, final LayerNorm (DESIGN.md section 2).

Reference facts kept: the embedding MLP is Linear(G, hidden) -> GELU -> LayerNorm(hidden) ->
Linear(hidden, dim); LayerNorms use eps 1e-6; attention has a qkv bias; dropout 0.1 on the
attention projection and in the MLP, none on the attention weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig

__all__ = ["RNAEncoder", "SelfAttention", "TransformerBlock"]

_LN_EPS = 1e-6


class SelfAttention(nn.Module):
    """Multi-head self-attention (``scaled_dot_product_attention``).

    Parameters
    ----------
    dim
        Token width.
    heads
        Number of heads (must divide ``dim``).
    dropout
        Dropout after the output projection.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, dim) -> (B, L, dim)."""
        dim = x.shape[-1]
        if x.shape[1] == 1:
            # One token attends only to itself with weight 1: the output is its value. Only the
            # value rows of qkv are computed (the query/key rows get exactly zero gradient, as
            # they would through a softmax over a single key).
            bias = None if self.qkv.bias is None else self.qkv.bias[2 * dim:]
            out = F.linear(x, self.qkv.weight[2 * dim:], bias)
        else:
            q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.drop(self.proj(out))


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``.

    Parameters
    ----------
    dim
        Token width.
    heads
        Number of heads.
    mlp_ratio
        Hidden width of the MLP relative to ``dim``.
    dropout
        Dropout on the attention projection and inside the MLP.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, dim) -> (B, L, dim)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RNAEncoder(nn.Module):
    """Transcriptomics vector -> one ``dim``-wide embedding.

    Parameters
    ----------
    cfg
        Model configuration (``n_genes``, ``rna_hidden``, ``dim``, ``rna_depth``, ``rna_heads``,
        ``rna_mlp_ratio``, ``dropout``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(cfg.n_genes, cfg.rna_hidden), nn.GELU(),
                                   nn.LayerNorm(cfg.rna_hidden, eps=_LN_EPS), nn.Linear(cfg.rna_hidden, cfg.dim))
        self.gene_encoding = nn.Parameter(torch.empty(cfg.dim))
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.rna_heads, cfg.rna_mlp_ratio, cfg.dropout)
                                    for _ in range(cfg.rna_depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=_LN_EPS)
        nn.init.trunc_normal_(self.gene_encoding, std=0.02)

    def forward(self, rna: Tensor) -> Tensor:
        """(B, n_genes) -> (B, dim), after the final LayerNorm."""
        x = (self.embed(rna) + self.gene_encoding)[:, None]
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])
