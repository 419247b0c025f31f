"""TransMIL slide encoder: patch projection, square layout, [CLS], two attention layers around
a PPEG, final LayerNorm (DESIGN.md section 2). No feed-forward blocks, as in the reference.

Ragged bags (``patch_mask``) are laid out per bag exactly as each bag alone would be (its own
square side and repeated first tokens), attention masks the batch padding, and the PPEG runs
per bag on its own grid; so a padded bag's outputs equal the bag's outputs when encoded alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig
from ._nystrom import NystromAttention, Rows, row_index, take_rows

__all__ = ["PPEG", "SlideEncoder", "TransLayer"]


class TransLayer(nn.Module):
    """Pre-norm residual attention: ``x + Attention(LayerNorm(x))``.

    Parameters
    ----------
    cfg
        Model configuration (attention kind, heads, landmarks, dropout...).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim)
        self.attn = NystromAttention(cfg.dim, cfg.slide_heads, cfg.slide_head_dim, cfg.landmarks,
                                     cfg.pinv_iterations, cfg.residual_conv_kernel, cfg.dropout,
                                     exact=cfg.attention == "exact", pinv_method=cfg.pinv_method)

    def forward(self, x: Tensor, mask: Tensor | None = None, rows: Rows = None,
                index: Tensor | None = None, frozen: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """(B, N, dim) -> (B, rows or N, dim); see :meth:`NystromAttention.forward`.

        With ``index`` (B, N), ``x`` holds the (U, dim) distinct tokens: each is normalised and
        projected once, then the sequence ``x[index]`` is attended. With ``frozen``, also the
        rows ``frozen`` computed outside autograd.
        """
        out = self.attn(self.norm(x), mask, rows, index, frozen)
        if index is not None:
            x = x[index]
        if frozen is None:
            return out + take_rows(x, rows, 1)
        out, out_frozen = out
        return out + take_rows(x, rows, 1), out_frozen + take_rows(x.detach(), frozen, 1)


class PPEG(nn.Module):
    """Pyramid position encoding: depthwise 7x7 + 5x5 + 3x3 convolutions plus identity over the
    square grid of patch tokens; the [CLS] token (row 0) passes through.

    The three convolutions (and the identity) are summed into one 7x7 depthwise kernel before
    use: the same linear map with one pass over the grid instead of three.

    Parameters
    ----------
    dim
        Token width (channels).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj7 = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.proj5 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.proj3 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        delta = torch.zeros(1, 1, 7, 7)
        delta[..., 3, 3] = 1.0
        self.register_buffer("_delta", delta, persistent=False)

    def _kernel(self) -> tuple[Tensor, Tensor]:
        w = (self.proj7.weight + F.pad(self.proj5.weight, (1, 1, 1, 1))
             + F.pad(self.proj3.weight, (2, 2, 2, 2)) + self._delta)
        return w, self.proj7.bias + self.proj5.bias + self.proj3.bias

    def _grid(self, tokens: Tensor, side: int, w: Tensor, b: Tensor) -> Tensor:
        """(B, side*side, C) tokens -> convolved tokens, via a channels-last view (no copy in)."""
        grid = tokens.unflatten(1, (side, side)).permute(0, 3, 1, 2)
        out = F.conv2d(grid, w.to(grid.dtype), b.to(grid.dtype), padding=3, groups=grid.shape[1])
        return out.permute(0, 2, 3, 1).flatten(1, 2)

    def forward(self, x: Tensor, sides: int | list[int]) -> Tensor:
        """Apply to (B, 1 + L, C).

        Parameters
        ----------
        x
            [CLS] then the square-laid patch tokens (possibly followed by batch padding).
        sides
            One grid side for the whole batch, or one per bag (ragged batches).

        Returns
        -------
        Tensor like ``x``; rows after each bag's grid are passed through.
        """
        w, b = self._kernel()
        if isinstance(sides, int):
            out = self._grid(x[:, 1: 1 + sides * sides], sides, w, b)
            return torch.cat([x[:, :1], out, x[:, 1 + sides * sides:]], 1)
        rows = []
        for i, s in enumerate(sides):   # each bag on its own grid (evaluation of ragged bags)
            out = self._grid(x[i: i + 1, 1: 1 + s * s], s, w, b)
            rows.append(torch.cat([x[i: i + 1, :1], out, x[i: i + 1, 1 + s * s:]], 1))
        return torch.cat(rows, 0)


class SlideEncoder(nn.Module):
    """TransMIL over a bag of patch features.

    Parameters
    ----------
    cfg
        Model configuration (``patch_dim``, ``dim``, attention settings, ``activation_checkpointing``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.patch_dim, cfg.dim)
        self.cls_token = nn.Parameter(torch.empty(1, 1, cfg.dim))
        self.layer1 = TransLayer(cfg)
        self.ppeg = PPEG(cfg.dim)
        self.layer2 = TransLayer(cfg)
        self.norm = nn.LayerNorm(cfg.dim)
        self.checkpointing = cfg.activation_checkpointing
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, patches: Tensor, patch_mask: Tensor | None = None,
                tokens: bool = True, grad_tokens: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Encode bags.

        Parameters
        ----------
        patches
            (B, N, patch_dim) patch features.
        patch_mask
            Optional bool (B, N), True at real patches (any positions; at least one per bag).
        tokens
            Also return the patch tokens; without them the second layer computes only the
            [CLS] row (same [CLS], less work: used by ``encode``).
        grad_tokens
            Optional bool (B, N), True at the patch tokens a loss differentiates through (the
            retention decoder's visible tokens); the others (its detached targets) are computed
            outside autograd, which skips their share of the last layer's backward. Used when
            the bags are unpadded and each has the same number of such tokens.

        Returns
        -------
        [CLS] (B, dim) and patch tokens (B, N, dim) at the input's positions (zeros at padded
        positions), both after the final LayerNorm; tokens is None when not asked for.
        """
        h = F.relu(self.fc(patches))
        if patch_mask is not None:
            if not bool(patch_mask.any(1).all()):
                raise ValueError("patch_mask: every bag needs at least one real patch")
            if bool(patch_mask.all()):
                patch_mask = None
        if patch_mask is None:
            return self._dense(h, tokens, grad_tokens)
        return self._ragged(h, patch_mask, tokens)

    def _layer(self, layer: TransLayer, x: Tensor, mask: Tensor | None, rows: Rows = None,
               frozen: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            # recompute this layer's activations in backward instead of keeping them
            return checkpoint(layer, x, mask, rows, None, frozen, use_reentrant=False)
        return layer(x, mask, rows, frozen=frozen)

    def _dense(self, h: Tensor, tokens: bool, grad_tokens: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Equal-size bags: one square side, first tokens repeated (reference layout)."""
        b, n, _ = h.shape
        side = math.isqrt(n - 1) + 1
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(h.dtype), h, h[:, : side * side - n]], 1)
        x = self._layer(self.layer1, x, None)
        x = self.ppeg(x, side)
        if not tokens:
            return self.norm(self._layer(self.layer2, x, None, rows=1)[:, 0]), None
        live = None if grad_tokens is None or not torch.is_grad_enabled() else row_index(grad_tokens, 1)
        if live is not None:
            return self._split_tokens(x, live, row_index(~grad_tokens, 1))
        x = self.norm(self._layer(self.layer2, x, None)[:, : 1 + n])
        return x[:, 0], x[:, 1:]

    def _split_tokens(self, x: Tensor, live: Tensor, rest: Tensor) -> tuple[Tensor, Tensor]:
        """Last layer with the [CLS] and the ``live`` rows in autograd, the ``rest`` outside
        (both (B, R) layout rows of patch tokens, 1-based: row 0 is the [CLS])."""
        b = len(live)
        n = live.shape[1] + rest.shape[1]
        live = torch.cat([live.new_zeros(b, 1), live], 1)
        out, frozen = self._layer(self.layer2, x, None, rows=live, frozen=rest)
        out = self.norm(out)
        with torch.no_grad():
            frozen = self.norm(frozen)
        d = out.shape[-1]
        base = frozen.new_zeros(b, n, d).scatter(1, (rest - 1)[..., None].expand(-1, -1, d), frozen)
        tokens = base.scatter(1, (live[:, 1:] - 1)[..., None].expand(-1, -1, d), out[:, 1:])
        return out[:, 0], tokens

    def _ragged(self, h: Tensor, mask: Tensor, tokens: bool) -> tuple[Tensor, Tensor | None]:
        """Per-bag square layouts: real patches first, then that bag's first patches repeated."""
        b, n, d = h.shape
        counts = mask.sum(1)
        sides = [math.isqrt(int(c) - 1) + 1 for c in counts.tolist()]
        length = max(s * s for s in sides)
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)   # real positions first
        j = torch.arange(length, device=h.device)
        src = order.gather(1, j[None, :] % counts[:, None])
        x = h.gather(1, src[..., None].expand(b, length, d))
        grid = torch.tensor([s * s for s in sides], device=h.device)
        seq_mask = torch.cat([mask.new_ones(b, 1), j[None, :] < grid[:, None]], 1)
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(h.dtype), x], 1)
        x = self._layer(self.layer1, x, seq_mask)
        x = self.ppeg(x, sides)
        if not tokens:
            return self.norm(self._layer(self.layer2, x, seq_mask, rows=1)[:, 0]), None
        x = self.norm(self._layer(self.layer2, x, seq_mask))
        rank = (mask.cumsum(1) - 1).clamp(min=0)        # layout row of each real input position
        out = x[:, 1:].gather(1, rank[..., None].expand(b, n, d)).masked_fill(~mask[..., None], 0.0)
        return x[:, 0], out
