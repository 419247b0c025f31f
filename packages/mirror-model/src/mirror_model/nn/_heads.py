"""The three MIRROR modules on top of the encoders: alignment, retention, style clustering."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig
from ._losses import gaussian_kl, masked_mse, noise_mask, symmetric_kl
from ._nystrom import row_index
from ._rna import TransformerBlock
from ._slide import TransLayer

__all__ = ["AlignmentHeads", "RNARetention", "SlideRetention", "StyleClustering"]


class AlignmentHeads(nn.Module):
    """Per-modality linear heads on L2-normalised encoder outputs, and the learnable logit scale.

    Parameters
    ----------
    cfg
        Model configuration (``dim``, ``temperature_init``, ``max_logit_scale``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.wsi = nn.Linear(cfg.dim, cfg.dim)
        self.rna = nn.Linear(cfg.dim, cfg.dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature_init)))
        self.max_log_scale = math.log(cfg.max_logit_scale)

    def project_wsi(self, cls: Tensor) -> Tensor:
        """(B, dim) slide [CLS] -> (B, dim) unit vectors."""
        return F.normalize(self.wsi(F.normalize(cls, dim=-1)), dim=-1)

    def project_rna(self, z: Tensor) -> Tensor:
        """(B, dim) RNA embedding -> (B, dim) unit vectors."""
        return F.normalize(self.rna(F.normalize(z, dim=-1)), dim=-1)

    def scale(self) -> Tensor:
        """``exp(min(s, log(max_logit_scale)))``: the multiplier of the cosine logits."""
        return self.logit_scale.clamp(max=self.max_log_scale).exp()


class SlideRetention(nn.Module):
    """Masked reconstruction of the slide patch tokens.

    Linear -> replace masked patch tokens by a learned mask token -> one attention layer over
    [CLS] + patch tokens -> LayerNorm -> Linear; MSE on the masked tokens.

    Parameters
    ----------
    cfg
        Model configuration (``dim``, attention settings, ``slide_mask_ratio``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Linear(cfg.dim, cfg.dim)
        self.mask_token = nn.Parameter(torch.empty(cfg.dim))
        self.layer = TransLayer(cfg)
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.dim)
        self.ratio = cfg.slide_mask_ratio
        self.checkpointing = cfg.activation_checkpointing
        nn.init.normal_(self.mask_token, std=0.02)

    def mask(self, noise: Tensor, patch_mask: Tensor | None = None) -> Tensor:
        """Bool (B, N), True at the tokens to mask: in each bag the ``slide_mask_ratio`` share of
        its real tokens with the smallest ``noise``."""
        return noise_mask(noise, self.ratio, patch_mask)

    def forward(self, cls: Tensor, tokens: Tensor, masked: Tensor, patch_mask: Tensor | None = None) -> Tensor:
        """Retention loss.

        Parameters
        ----------
        cls
            (B, dim) encoder [CLS].
        tokens
            (B, N, dim) encoder patch tokens (real patches; padding at the end of a row).
        masked
            Bool (B, N), True at the real tokens to mask (:meth:`mask`).
        patch_mask
            Optional bool (B, N), True at real patches.

        Returns
        -------
        Scalar MSE over the masked tokens' units.
        """
        distinct, index = self._decoder_input(cls, tokens, masked, patch_mask)
        b = len(cls)
        seq_mask = None if patch_mask is None else torch.cat([patch_mask.new_ones(b, 1), patch_mask], 1)
        rows = row_index(masked, offset=1)     # only the masked rows are scored: compute just those
        if self.checkpointing and self.training and torch.is_grad_enabled():
            x = checkpoint(self.layer, distinct, seq_mask, rows, index, use_reentrant=False)
        else:
            x = self.layer(distinct, seq_mask, rows, index)
        pred = self.head(self.norm(x[:, 1:][masked] if rows is None else x.flatten(0, 1)))
        # The target is detached: its gradient would pull the encoder towards outputs that are
        # easy to predict from a mask token (e.g. constant tokens) instead of teaching the
        # decoder to recover them; the encoder still learns through the visible tokens.
        return masked_mse(pred, tokens.detach()[masked])

    def _decoder_input(self, cls: Tensor, tokens: Tensor, masked: Tensor,
                       patch_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """The decoder's sequence ``[embed(cls), embed(token) or mask token...]`` as its distinct rows.

        Returns the (B + visible + 1, dim) distinct rows (each bag's [CLS], the visible tokens in
        order, the mask token last) and the (B, 1 + N) index that lays them out. Three tokens in
        four are the same mask token: embedding, normalising, projecting and attending it once
        instead of per position (see :class:`NystromAttention`) gives the same result with ~12 %
        less of a training step's arithmetic.
        Padded positions point at the mask token; attention masks them out.
        """
        visible = ~masked if patch_mask is None else ~masked & patch_mask
        b, n = visible.shape
        embedded = self.embed(torch.cat([cls, tokens[visible]]))
        distinct = torch.cat([embedded, self.mask_token.to(embedded.dtype)[None]])
        index = torch.full((b, n), len(embedded), dtype=torch.long, device=tokens.device)
        index[visible] = torch.arange(b, len(embedded), device=tokens.device)
        return distinct, torch.cat([torch.arange(b, device=tokens.device)[:, None], index], 1)


class RNARetention(nn.Module):
    """Masked reconstruction of the units of the RNA embedding.

    Linear -> replace the masked units by the learned mask token's units -> one Transformer
    block -> LayerNorm -> Linear; MSE on the masked units.

    Parameters
    ----------
    cfg
        Model configuration (``dim``, ``rna_heads``, ``rna_mlp_ratio``, ``dropout``, ``rna_mask_ratio``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Linear(cfg.dim, cfg.dim)
        self.mask_token = nn.Parameter(torch.empty(cfg.dim))
        self.block = TransformerBlock(cfg.dim, cfg.rna_heads, cfg.rna_mlp_ratio, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.dim)
        self.ratio = cfg.rna_mask_ratio
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, z: Tensor, noise: Tensor) -> Tensor:
        """Retention loss of (B, dim) RNA embeddings given (B, dim) noise (smallest masked)."""
        masked = noise_mask(noise, self.ratio)
        x = torch.where(masked, self.mask_token.to(z.dtype), self.embed(z))
        pred = self.head(self.norm(self.block(x[:, None])[:, 0]))
        # detached target: see SlideRetention.forward
        return masked_mse(pred, z.detach(), masked)


class StyleClustering(nn.Module):
    """Shared VAE-style encoder of both modalities, and prototype assignment of the decoded latent.

    Parameters
    ----------
    cfg
        Model configuration (``dim``, ``style_hidden``, ``latent_dim``, ``n_prototypes``).
    style
        Compute the KL ("style") loss.
    cluster
        Build the latent decoder and prototypes and compute the cluster loss.
    """

    def __init__(self, cfg: ModelConfig, style: bool = True, cluster: bool = True) -> None:
        super().__init__()
        h0, h1 = cfg.style_hidden
        self.style, self.cluster = style, cluster
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, h0), nn.GELU(), nn.Linear(h0, h1))
        self.mu = nn.Linear(h1, cfg.latent_dim)
        self.logvar = nn.Linear(h1, cfg.latent_dim)
        if cluster:
            self.decoder = nn.Linear(cfg.latent_dim, cfg.dim)
            self.prototypes = nn.Linear(cfg.dim, cfg.n_prototypes, bias=False)
            nn.init.orthogonal_(self.prototypes.weight)
            self.normalize_prototypes_()

    @torch.no_grad()
    def normalize_prototypes_(self) -> None:
        """L2-normalise the prototype rows in place (no-op without prototypes)."""
        if self.cluster:
            w = self.prototypes.weight
            w.copy_(F.normalize(w, dim=1))

    def forward(self, wsi: Tensor, rna: Tensor, eps: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
        """Style and cluster losses.

        Parameters
        ----------
        wsi, rna
            (B, dim) slide [CLS] and RNA embedding.
        eps
            Optional (B, 2, latent) standard-normal draws (0 slide, 1 RNA); drawn when absent.

        Returns
        -------
        (style loss or None, cluster loss or None). Style = mean over the two modalities of the
        batch-mean KL summed over latent dims; cluster = symmetric KL of the assignments.
        """
        b = wsi.shape[0]
        h = self.mlp(torch.cat([wsi, rna], 0))          # one pass for both modalities
        mu, logvar = self.mu(h), self.logvar(h)
        style = gaussian_kl(mu, logvar).mean() if self.style else None   # equal B: mean of means
        if not self.cluster:
            return style, None
        if eps is None:
            eps = torch.randn(b, 2, mu.shape[-1], device=mu.device, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps.transpose(0, 1).flatten(0, 1).to(mu.dtype)
        scores = self.prototypes(self.decoder(z))
        return style, symmetric_kl(scores[:b], scores[b:])
