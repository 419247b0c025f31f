"""Nystrom self-attention with a residual depthwise convolution (the TransMIL attention).

Facts (DESIGN.md section 2): 8 heads of 96 dims, 384 landmarks built as segment means of the
queries and keys after front-padding the sequence to a multiple of the landmark count,
Moore-Penrose pseudo-inverse by 6 iterations, a residual depthwise convolution (kernel 33) over
the sequence on the values, dropout on the output projection.

Written for memory: the two softmax products over the whole sequence run through
``scaled_dot_product_attention`` (on CPU and GPU a fused kernel that never materialises the
N x landmarks attention matrices), only the small landmark kernel is built explicitly, and the
product is ordered ``A1 @ (pinv(A2) @ (A3 @ V))`` so no N x m x m product is formed.

Written for work, with the same result up to rounding: only the requested output rows are
computed (``rows``), rows no loss differentiates through are computed outside autograd
(``frozen``), and a sequence laid out from distinct tokens (``index``: the retention decoder's
mask token fills 3 positions in 4) projects each distinct token once, attends to a repeated key
once with weight ``log(count)`` added to its logit, and computes a repeated query's output once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._pinv import iterative_pinv

__all__ = ["NystromAttention", "Rows", "iterative_pinv", "row_index", "segment_plan", "take_rows"]


Rows = int | Tensor | None


class _Sequence(NamedTuple):
    """A projected sequence: q, k, v (B, H, N, d), the (B, N, dim) tokens, the padding mask, and,
    for an unpadded sequence laid out from distinct rows, (distinct qkv, index)."""

    q: Tensor | None
    k: Tensor
    v: Tensor
    x: Tensor
    mask: Tensor | None
    repeats: tuple[Tensor, Tensor] | None


def _distinct(ids: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """Per row of (B, L) ids: the sorted distinct ids (B, U), how often each occurs (B, U), and
    where each entry sits among them (B, L); None unless every row has the same U."""
    s, order = ids.sort(1)
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    n_new = new.sum(1)
    if not bool((n_new == n_new[0]).all()):
        return None
    slot = new.cumsum(1) - 1
    where = torch.empty_like(slot).scatter_(1, order, slot)
    counts = torch.zeros(s.shape[0], int(n_new[0]), dtype=torch.long, device=ids.device)
    counts.scatter_add_(1, slot, torch.ones_like(slot))
    return s[new].view(s.shape[0], -1), counts, where


def take_rows(t: Tensor, rows: Rows, dim: int) -> Tensor:
    """Rows of ``t`` along ``dim``: all (None), the first ``rows`` (int), or a (B, R) index per bag."""
    if rows is None:
        return t
    if isinstance(rows, int):
        return t.narrow(dim, 0, rows)
    shape = [rows.shape[0]] + [1] * (dim - 1) + [rows.shape[1]] + [1] * (t.dim() - dim - 1)
    size = list(t.shape)
    size[dim] = rows.shape[1]
    return t.gather(dim, rows.reshape(shape).expand(size))


def row_index(selected: Tensor, offset: int = 0) -> Tensor | None:
    """(B, R) positions (plus ``offset``) of the True entries of a bool (B, N), in order; None
    unless every bag has the same number R of them (a per-bag index needs equal lengths)."""
    counts = selected.sum(1)
    if not bool((counts == counts[0]).all()):
        return None
    return selected.nonzero()[:, 1].view(len(selected), int(counts[0])) + offset


def segment_plan(n: int, landmarks: int) -> tuple[int, int]:
    """Segment length and landmark count for ``n`` tokens.

    Parameters
    ----------
    n
        Number of real tokens.
    landmarks
        Configured landmark count.

    Returns
    -------
    (segment length l, effective landmark count m).

    Notes
    -----
    The reference pads the sequence at the front to ``landmarks * l`` tokens with
    ``l = ceil(n / landmarks)``; segments made only of that padding carry no information, so they
    are dropped: ``m = ceil(n / l)`` landmarks remain and only the first one is partial. With
    ``n <= landmarks`` every token is its own landmark (``l = 1``).
    """
    seg = -(-n // landmarks)
    return seg, -(-n // seg)


def _dense_landmarks(x: Tensor, seg: int, m: int) -> Tensor:
    """Segment means over dim 1 of (B, n, C) with a partial first segment.

    The sequence is zero-padded at the front to ``m * seg`` and each segment sum divided by its
    real size: one pass, and a backward without zero-filled full-size gradients.
    """
    b, n, c = x.shape
    sums = F.pad(x, (0, 0, m * seg - n, 0)).view(b, m, seg, c).sum(2)
    size = torch.full((m, 1), float(seg), dtype=x.dtype, device=x.device)
    size[0] = n - (m - 1) * seg
    return sums / size


def _masked_landmarks(x: Tensor, mask: Tensor, landmarks: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bag segment means over the real tokens of (B, N, C).

    Each bag is cut exactly as if it were alone (same rule as :func:`segment_plan` on its own
    real-token count), so ragged bags in one batch give the same landmarks as unbatched ones.

    Returns
    -------
    landmarks (B, m_max, C), landmark validity (B, m_max) and whether each bag has ``l == 1``.
    """
    counts = mask.sum(1)
    seg = torch.div(counts + landmarks - 1, landmarks, rounding_mode="floor").clamp(min=1)
    m_bag = torch.div(counts + seg - 1, seg, rounding_mode="floor")
    m_max = int(m_bag.max())
    pad = m_bag * seg - counts                      # the front padding each bag alone would get
    rank = mask.cumsum(1) - 1
    bucket = torch.div(rank + pad[:, None], seg[:, None], rounding_mode="floor")
    bucket = bucket.masked_fill(~mask, m_max)       # padded tokens go to a dropped extra bucket
    b, n, c = x.shape
    sums = x.new_zeros(b, m_max + 1, c).scatter_add(1, bucket[..., None].expand(b, n, c), x)
    size = mask.new_zeros(b, m_max + 1, dtype=x.dtype).scatter_add(1, bucket, mask.to(x.dtype))
    size = size[:, :m_max]
    return sums[:, :m_max] / size.clamp(min=1)[..., None], size > 0, seg == 1


class NystromAttention(nn.Module):
    """Multi-head self-attention over a token sequence, Nystrom-approximated or exact.

    Parameters
    ----------
    dim
        Token width.
    heads
        Number of heads.
    head_dim
        Width of one head.
    landmarks
        Landmark count (segment means of queries and keys).
    pinv_iterations
        Iterations of the pseudo-inverse.
    kernel
        Length of the residual depthwise convolution over the sequence (on the values).
    dropout
        Dropout on the output projection.
    exact
        Use exact softmax attention (``scaled_dot_product_attention``) with the same projections
        and residual convolution instead of the Nystrom approximation.
    pinv_method
        How the pseudo-inverse iteration is evaluated (see :func:`iterative_pinv`).
    """

    def __init__(self, dim: int, heads: int = 8, head_dim: int = 96, landmarks: int = 384,
                 pinv_iterations: int = 6, kernel: int = 33, dropout: float = 0.1,
                 exact: bool = False, pinv_method: str = "auto") -> None:
        super().__init__()
        self.heads, self.head_dim, self.landmarks = heads, head_dim, landmarks
        self.pinv_iterations, self.exact, self.pinv_method = pinv_iterations, exact, pinv_method
        inner = heads * head_dim
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.drop = nn.Dropout(dropout)
        self.res_conv = nn.Conv2d(heads, heads, (kernel, 1), padding=(kernel // 2, 0), groups=heads, bias=False)

    def forward(self, x: Tensor, mask: Tensor | None = None, rows: Rows = None,
                index: Tensor | None = None, frozen: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Attend.

        Parameters
        ----------
        x
            (B, N, dim) tokens; with ``index``, the (U, dim) distinct tokens it picks from.
        mask
            Optional bool (B, N), True at real tokens; real tokens must come first in each row
            (padding at the end) for the residual convolution to see what the bag alone sees.
        rows
            Return only these output rows: the first ``rows`` (an int, e.g. 1 for a [CLS] token)
            or a (B, R) index; every token still serves as key and value.
        index
            Optional (B, N) rows of ``x`` making up the sequence: a token repeated in the sequence
            (the retention decoder's mask token, 3 of 4 tokens) is projected once.
        frozen
            Optional (B, R') index of further rows to return, computed outside autograd (rows
            that no loss differentiates through, such as detached targets: their backward work
            is skipped).

        Returns
        -------
        (B, rows or N, dim); with ``frozen``, that and the (B, R', dim) frozen rows. Rows at
        padded positions are finite but meaningless.
        """
        seq = self._project(x, mask, index, all_queries=rows is None)
        ctx = None if self.exact else self._landmarks(seq)
        out = self._rows(seq, ctx, rows)
        if frozen is None:
            return out
        with torch.no_grad():
            return out, self._rows(seq, ctx, frozen)

    def _project(self, x: Tensor, mask: Tensor | None, index: Tensor | None, all_queries: bool) -> _Sequence:
        """q, k, v as (B, H, N, d), the tokens the landmarks average, and the repeats.

        Without ``all_queries`` (only some output rows wanted) an unpadded sequence projects
        keys and values only; :meth:`_rows` projects the queries of the rows it computes.
        """
        hd = self.heads * self.head_dim
        if not all_queries and mask is None and index is None:
            k, v = (self._heads(t) for t in F.linear(x, self.to_qkv.weight[hd:]).chunk(2, -1))
            return _Sequence(None, k, v, x, None, None)
        distinct = self.to_qkv(x)                                  # (B, N, 3 * H * d) or (U, 3 * H * d)
        qkv = distinct if index is None else distinct[index]
        if mask is not None:
            # zero at padded tokens (as if the token were 0: no bias), as the bag alone's conv padding
            qkv = qkv.masked_fill(~mask[..., None], 0.0)
        q, k, v = (self._heads(t) for t in qkv.split(hd, -1))
        repeats = None if index is None or mask is not None else (distinct, index)
        return _Sequence(q, k, v, x if index is None else x[index], mask, repeats)

    def _heads(self, t: Tensor) -> Tensor:
        """(B, N, H * d) -> (B, H, N, d)."""
        return t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def _rows(self, seq: _Sequence, ctx: tuple | None, rows: Rows) -> Tensor:
        """Output rows ``rows``: attention, residual convolution, output projection.

        Rows that repeat one token (same query) get the same attention output: it is computed
        once per bag and copied.
        """
        q_out, where = self._queries(seq, rows)
        if ctx is None:
            key_mask = None if seq.mask is None else seq.mask[:, None, None, :]
            out = F.scaled_dot_product_attention(q_out, seq.k, seq.v, attn_mask=key_mask)
        else:
            out = self._nystrom(q_out, seq, ctx)
        out = take_rows(out, where, 2) + self._conv(seq.v, rows)
        out = out.transpose(1, 2).flatten(2)
        return self.drop(self.to_out(out))

    def _queries(self, seq: _Sequence, rows: Rows) -> tuple[Tensor, Tensor | None]:
        """(B, H, R, d) queries of the output rows, and where each row finds its query among them
        (None: one per row). Rows that repeat one token share one query."""
        hd = self.heads * self.head_dim
        if seq.repeats is not None:
            distinct, index = seq.repeats
            ids = take_rows(index, rows, 1)
            found = _distinct(ids)
            if found is not None and found[0].shape[1] < ids.shape[1]:
                return self._heads(distinct[found[0]][..., :hd]), found[2]
        if seq.q is None:
            return self._heads(F.linear(take_rows(seq.x, rows, 1), self.to_qkv.weight[:hd])), None
        return take_rows(seq.q, rows, 2), None

    def _conv(self, v: Tensor, rows: Rows) -> Tensor:
        """Residual depthwise convolution along the sequence, only as far as the kept rows need."""
        if isinstance(rows, int):
            v = v[:, :, : rows + self.res_conv.kernel_size[0] // 2]
        # (B, H, N, d) in channels-last memory: the depthwise (kernel, 1) convolution runs several
        # times faster on CPU than on the head-major layout, for one copy of v
        out = self.res_conv(v.contiguous(memory_format=torch.channels_last))
        return take_rows(out, rows, 2)

    def _landmarks(self, seq: _Sequence) -> tuple | None:
        """Landmark keys, ``pinv(A2) @ (A3 @ V)``, landmark validity and exact bags; None when
        every bag has no more tokens than landmarks (attention is then computed exactly)."""
        x, k, v, mask = seq.x, seq.k, seq.v, seq.mask
        lmask = exact_bags = None
        if mask is None:
            seg, m = segment_plan(x.shape[1], self.landmarks)
            if seg == 1:   # every token its own landmark: A pinv(A) A = A, computed exactly
                return None
            lm = _dense_landmarks(x, seg, m)
        else:
            lm, lmask, exact_bags = _masked_landmarks(x, mask, self.landmarks)
            if bool(exact_bags.all()):
                return None
        # segment means of the queries and keys, taken before the (bias-free) projection: the
        # same means, and no gradient through a full-size query-key slice
        lm = F.linear(lm, self.to_qkv.weight[: 2 * self.heads * self.head_dim])
        q_l, k_l = (self._heads(t) for t in lm.chunk(2, -1))     # (B, H, m, d)
        key_mask = None if mask is None else mask[:, None, None, :]
        found = None if seq.repeats is None else _distinct(seq.repeats[1])
        if found is not None and found[0].shape[1] < k.shape[2]:
            # a key repeated c times weighs c exp(s): attend to the distinct keys with log c added
            k, v = self._distinct_kv(seq.repeats[0], found[0])
            key_mask = found[1].to(q_l.dtype).log()[:, None, None, :]
        w = F.scaled_dot_product_attention(q_l, k, v, attn_mask=key_mask)          # A3 @ V
        w = self._pinv_apply(q_l, k_l, lmask, w).to(w.dtype)                         # pinv(A2) @ .
        return k_l, w, lmask, exact_bags

    def _distinct_kv(self, distinct: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values (B, H, U, d) of the (B, U) distinct rows ``ids`` of ``distinct``."""
        hd = self.heads * self.head_dim
        kv = distinct[ids]
        return self._heads(kv[..., hd: 2 * hd]), self._heads(kv[..., 2 * hd:])

    def _nystrom(self, q_out: Tensor, seq: _Sequence, ctx: tuple) -> Tensor:
        """softmax(Q Kl') pinv(softmax(Ql Kl')) softmax(Ql K') V with per-bag landmarks."""
        k, v, mask = seq.k, seq.v, seq.mask
        k_l, w, lmask, exact_bags = ctx
        lm_mask = None if lmask is None else lmask[:, None, None, :]
        out = F.scaled_dot_product_attention(q_out, k_l, w, attn_mask=lm_mask)     # A1 @ .
        if exact_bags is not None and bool(exact_bags.any()):
            # bags with no more tokens than landmarks: exact attention, as when encoded alone
            idx = exact_bags.nonzero().squeeze(1)
            exact = F.scaled_dot_product_attention(q_out[idx], k[idx], v[idx], attn_mask=mask[idx, None, None, :])
            out = out.index_put((idx,), exact)
        return out

    def _pinv_apply(self, q_l: Tensor, k_l: Tensor, lmask: Tensor | None, w: Tensor) -> Tensor:
        """pinv(softmax(Ql Kl' / sqrt(d))) @ w, in at least float32 (the iteration is fragile in fp16)."""
        dtype = torch.promote_types(q_l.dtype, torch.float32)
        a = (q_l.to(dtype) @ k_l.to(dtype).transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        if lmask is not None:
            # Empty landmarks of a short bag become an identity block: the iteration is
            # block-diagonal, so the real block's inverse is what the bag alone would get.
            a = a.masked_fill(~lmask[:, None, None, :], float("-inf")).softmax(-1)
            eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
            a = torch.where(lmask[:, None, :, None], a, eye)
        else:
            a = a.softmax(-1)
        return iterative_pinv(a, self.pinv_iterations, rhs=w.to(dtype), method=self.pinv_method)
