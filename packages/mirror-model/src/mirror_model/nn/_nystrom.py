"""Nystrom self-attention with a residual depthwise convolution (the TransMIL attention).

Facts (DESIGN.md section 2): 8 heads of 96 dims, 384 landmarks built as segment means of the
queries and keys after front-padding the sequence to a multiple of the landmark count,
Moore-Penrose pseudo-inverse by 6 iterations, a residual depthwise convolution (kernel 33) over
the sequence on the values, dropout on the output projection.

Written for memory: the two softmax products over the whole sequence run through
``scaled_dot_product_attention`` (on CPU and GPU a fused kernel that never materialises the
N x landmarks attention matrices), only the small landmark kernel is built explicitly, and the
product is ordered ``A1 @ (pinv(A2) @ (A3 @ V))`` so no N x m x m product is formed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NystromAttention", "iterative_pinv", "segment_plan"]


def _start(a: Tensor) -> Tensor:
    """1 / (max column sum * max row sum) of each (m, m) matrix of a (b, m, m) batch.

    Per matrix, not over the whole batch as in the reference: a bag's result must not depend on
    which other bags share its batch.
    """
    abs_a = a.abs()
    return 1.0 / (abs_a.sum(-1).amax(-1) * abs_a.sum(-2).amax(-1))[:, None, None]


def _horner(p: Tensor, r: Tensor | None = None) -> Tensor:
    """``f(P) R = (13 I - P (15 I - P (7 I - P))) R / 4`` with fused multiply-adds; ``R = I`` when None."""
    if r is None:
        r = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device)
        t = 7 * r - p
    else:
        t = torch.baddbmm(7 * r, p, r, alpha=-1)
    t = torch.baddbmm(15 * r, p, t, alpha=-1)
    return 0.25 * torch.baddbmm(13 * r, p, t, alpha=-1)


def iterative_pinv(a: Tensor, iterations: int = 6, rhs: Tensor | None = None) -> Tensor:
    """Moore-Penrose pseudo-inverse of a batch of square matrices by the Razavi iteration.

    Parameters
    ----------
    a
        (..., m, m) matrices (here row-stochastic landmark kernels).
    iterations
        Number of iterations (6 in the reference).
    rhs
        Optional (..., m, k): return ``pinv(a) @ rhs`` instead, computed without forming the
        pseudo-inverse (fewer m x m x m products, fewer saved tensors; same up to rounding).

    Returns
    -------
    (..., m, m) approximate pseudo-inverses, or (..., m, k) when ``rhs`` is given.

    Notes
    -----
    ``Z <- Z f(A Z)`` with ``f(P) = (13 I - P (15 I - P (7 I - P))) / 4``, from
    ``Z0 = c A'``, ``c = 1 / (max column sum * max row sum)`` (per matrix, see :func:`_start`).
    With ``rhs`` (see :func:`_pinv_rhs`) the same iterate is reached through ``P = A Z``.
    """
    lead, m = a.shape[:-2], a.shape[-1]
    a = a.reshape(-1, m, m)
    if rhs is not None:
        return _pinv_rhs(a, iterations, rhs.reshape(-1, m, rhs.shape[-1]).to(a.dtype)).reshape(*lead, m, -1)
    z = _start(a) * a.transpose(-1, -2)
    for _ in range(iterations):
        z = torch.bmm(z, _horner(torch.bmm(a, z)))
    return z.reshape(*lead, m, m)


def _pinv_rhs(a: Tensor, iterations: int, r: Tensor) -> Tensor:
    """``Z_n @ r`` for (b, m, m) ``a`` and (b, m, k) ``r`` via the commuting iterates ``P_k = A Z_k``.

    Every ``P_k`` is a polynomial of ``P_0 = c A A'``, so ``P_{k+1} = P_k f(P_k)`` and
    ``Z_n r = c A' f(P_0) ... f(P_{n-1}) r``. With ``Q = P^2``:
    ``P f(P) = 3.25 P - 3.75 Q + Q (1.75 P - 0.25 Q)`` (2 cubic products per step instead of the
    4 of the ``Z`` form) and ``f(P) r = 3.25 r - 3.75 P r + Q (1.75 r - 0.25 P r)`` (thin products).
    """
    at = _start(a) * a.transpose(-1, -2)                      # Z_0
    p = torch.bmm(a, at)
    steps = []
    for step in range(iterations):
        if step == iterations - 1:
            steps.append((p, None))
            break
        q = torch.bmm(p, p)
        steps.append((p, q))
        p = torch.baddbmm(torch.add(3.25 * p, q, alpha=-3.75), q, torch.add(1.75 * p, q, alpha=-0.25))
    for p, q in reversed(steps):       # the f(P_k) commute: apply them to the thin r in any order
        if q is None:
            r = _horner(p, r)
        else:
            u = torch.bmm(p, r)
            r = torch.baddbmm(torch.add(3.25 * r, u, alpha=-3.75), q, torch.add(1.75 * r, u, alpha=-0.25))
    return torch.bmm(at, r)


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
    """Segment means over dim 1 of (B, n, C) with a partial first segment."""
    first = x.shape[1] - (m - 1) * seg
    head = x[:, :first].mean(1, keepdim=True)
    if m == 1:
        return head
    return torch.cat([head, x[:, first:].unflatten(1, (m - 1, seg)).mean(2)], 1)


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
    """

    def __init__(self, dim: int, heads: int = 8, head_dim: int = 96, landmarks: int = 384,
                 pinv_iterations: int = 6, kernel: int = 33, dropout: float = 0.1,
                 exact: bool = False) -> None:
        super().__init__()
        self.heads, self.head_dim, self.landmarks = heads, head_dim, landmarks
        self.pinv_iterations, self.exact = pinv_iterations, exact
        inner = heads * head_dim
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.drop = nn.Dropout(dropout)
        self.res_conv = nn.Conv2d(heads, heads, (kernel, 1), padding=(kernel // 2, 0), groups=heads, bias=False)

    def forward(self, x: Tensor, mask: Tensor | None = None, rows: int | None = None) -> Tensor:
        """Attend.

        Parameters
        ----------
        x
            (B, N, dim) tokens.
        mask
            Optional bool (B, N), True at real tokens; real tokens must come first in each row
            (padding at the end) for the residual convolution to see what the bag alone sees.
        rows
            Return only the first ``rows`` output rows (e.g. 1 for a [CLS] token); every token
            still serves as key and value.

        Returns
        -------
        (B, rows or N, dim). Rows at padded positions are finite but meaningless.
        """
        if mask is not None:
            # zero padded tokens: q, k, v vanish there (no bias), as the bag alone's conv padding
            x = x.masked_fill(~mask[..., None], 0.0)
        b, n, _ = x.shape
        hd = self.heads * self.head_dim
        qkv = self.to_qkv(x)                                       # (B, N, 3 * H * d)
        q, k, v = (t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2) for t in qkv.split(hd, -1))
        q_out = q if rows is None else q[:, :, :rows]
        key_mask = None if mask is None else mask[:, None, None, :]
        if self.exact:
            out = F.scaled_dot_product_attention(q_out, k, v, attn_mask=key_mask)
        else:
            out = self._nystrom(qkv[..., : 2 * hd], q_out, k, v, mask)
        out = out + self._conv(v, rows)
        out = out.transpose(1, 2).flatten(2)
        return self.drop(self.to_out(out))

    def _conv(self, v: Tensor, rows: int | None) -> Tensor:
        """Residual depthwise convolution along the sequence, only as far as the kept rows need."""
        if rows is not None:
            v = v[:, :, : rows + self.res_conv.kernel_size[0] // 2]
        # (B, H, N, d) in channels-last memory: the depthwise (kernel, 1) convolution runs several
        # times faster on CPU than on the head-major layout, for one copy of v
        out = self.res_conv(v.contiguous(memory_format=torch.channels_last))
        return out if rows is None else out[:, :, :rows]

    def _nystrom(self, qk: Tensor, q_out: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """softmax(Q Kl') pinv(softmax(Ql Kl')) softmax(Ql K') V with per-bag landmarks."""
        lmask = exact_bags = None
        if mask is None:
            seg, m = segment_plan(qk.shape[1], self.landmarks)
            if seg == 1:   # every token its own landmark: A pinv(A) A = A, computed exactly
                return F.scaled_dot_product_attention(q_out, k, v)
            lm = _dense_landmarks(qk, seg, m)
        else:
            lm, lmask, exact_bags = _masked_landmarks(qk, mask, self.landmarks)
            if bool(exact_bags.all()):
                return F.scaled_dot_product_attention(q_out, k, v, attn_mask=mask[:, None, None, :])
        q_l, k_l = (t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)
                    for t in lm.chunk(2, -1))                      # (B, H, m, d)
        key_mask = None if mask is None else mask[:, None, None, :]
        lm_mask = None if lmask is None else lmask[:, None, None, :]
        w = F.scaled_dot_product_attention(q_l, k, v, attn_mask=key_mask)          # A3 @ V
        w = self._pinv_apply(q_l, k_l, lmask, w).to(w.dtype)                         # pinv(A2) @ .
        out = F.scaled_dot_product_attention(q_out, k_l, w, attn_mask=lm_mask)     # A1 @ .
        if exact_bags is not None and bool(exact_bags.any()):
            # bags with no more tokens than landmarks: exact attention, as when encoded alone
            idx = exact_bags.nonzero().squeeze(1)
            exact = F.scaled_dot_product_attention(q_out[idx], k[idx], v[idx], attn_mask=key_mask[idx])
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
        return iterative_pinv(a, self.pinv_iterations, rhs=w.to(dtype))
