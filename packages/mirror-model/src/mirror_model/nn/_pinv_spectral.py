"""``pinv(A) @ R`` of Nystrom attention through one eigendecomposition (the CPU path).

The Razavi iteration ``Z <- Z f(A Z)`` from ``Z0 = c A'`` (see ``_pinv``) only ever multiplies
polynomials of the symmetric ``P_0 = c A A'``: after ``n`` iterations
``Z_n = c A' s(P_0)`` with the scalar polynomial ``s = f(p_0) f(p_1) ... f(p_{n-1})``,
``p_0(x) = x``, ``p_{k+1} = p_k f(p_k)``. With ``P_0 = V diag(lam) V'`` the same ``Z_n @ R``
is ``c A' V diag(s(lam)) V' R``: one symmetric eigendecomposition and thin products instead
of ~11 products of m x m matrices, and a backward of 3 instead of ~11 (Daleckii-Krein: the
gradient with respect to ``P_0`` is ``V (F o sym(V' G V)) V'`` with the divided differences
``F_ij = s[lam_i, lam_j]``). Exactly the function of ``A`` the iteration computes, evaluated
in another order: equal up to rounding (tested against autograd through the iteration).

The eigendecomposition runs in float64 (a float32 one loses an order of magnitude of accuracy
against the float32 iteration: its normwise backward error meets the steep ``s`` near 0) and, on
a CPU, splits the batch over the intra-op threads (LAPACK's batched call decomposes one matrix
at a time). On 2 CPU threads, forward and backward together then cost about 0.45x of the
iteration's; on a GPU batched products are cheap and eigendecompositions are not, so ``auto``
keeps the iteration there.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

CLOSE = 1e-10   # |lam_i - lam_j| below which the divided difference is taken as the derivative


def spectrum(lam: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """``s(lam)`` and ``s'(lam)`` elementwise (see the module docstring); float64 in, float64 out."""
    p, dp = lam, torch.ones_like(lam)
    s, ds = torch.ones_like(lam), torch.zeros_like(lam)
    for k in range(iterations):
        fv = (13.0 - p * (15.0 - p * (7.0 - p))) / 4.0
        fd = (-15.0 + p * (14.0 - 3.0 * p)) / 4.0
        ds = ds * fv + s * fd * dp
        s = s * fv
        if k + 1 < iterations:
            dp = dp * (fv + p * fd)
            p = p * fv
    return s, ds


def divided_differences(lam: Tensor, s: Tensor, ds: Tensor, scale: float = 1.0) -> Tensor:
    """(b, m, m) ``scale * s[lam_i, lam_j]``: the difference quotient, or the mean derivative
    where the eigenvalues nearly coincide (the diagonal among them). In float64: the quotient's
    cancellation costs at most ``eps * |s| / CLOSE``."""
    diff = lam[:, :, None] - lam[:, None, :]
    hs = scale * s
    out = (hs[:, :, None] - hs[:, None, :]).div_(diff)
    close = (diff.abs_() <= CLOSE).nonzero(as_tuple=True)
    b, i, j = close
    out[close] = (0.5 * scale) * (ds[b, i] + ds[b, j])
    return out


def eigh64(p: Tensor) -> tuple[Tensor, Tensor]:
    """float64 ``eigh`` of a (b, m, m) batch; on a CPU one batch slice per intra-op thread, each
    decomposed single-threaded (about 1.4x faster than the batched call on 2 threads)."""
    # a non-finite kernel (a diverging run) gets NaN eigenvalues, so NaN reaches the loss and
    # the loop's non-finite check, as with the iteration; LAPACK never sees it (some builds
    # raise "failed to converge" on NaN input). One sum per matrix finds it (entries are <= 1).
    bad = ~torch.isfinite(p.sum((-2, -1)))
    p = p.double()
    if bool(bad.any()):
        p = torch.where(bad[:, None, None], torch.eye(p.shape[-1], dtype=p.dtype, device=p.device), p)
    threads = torch.get_num_threads()
    if p.device.type != "cpu" or threads < 2 or p.shape[0] < 2:
        lam, v = torch.linalg.eigh(p)
    else:
        parts = p.tensor_split(min(threads, p.shape[0]))
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(len(parts)) as pool:
                out = list(pool.map(torch.linalg.eigh, parts))
        finally:
            torch.set_num_threads(threads)
        lam, v = torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])
    return lam.masked_fill(bad[:, None], float("nan")), v


class PinvApplySpectral(torch.autograd.Function):
    """``Z_n @ r = c A' V diag(s(lam)) V' r`` for (b, m, m) ``a``, (b, 1, 1) ``c``, (b, m, k)
    ``r``, with ``c A A' = V diag(lam) V'``. Runs in the inputs' dtype with autocast off."""

    @staticmethod
    def forward(ctx, a: Tensor, c: Tensor, r: Tensor, iterations: int) -> Tensor:
        with torch.autocast(a.device.type, enabled=False):
            lam, v = eigh64(torch.bmm(a, a.mT).mul_(c))
            s, ds = spectrum(lam, iterations)
            v = v.to(a.dtype)
            w = torch.bmm(v.mT, r)
            y = torch.bmm(v, w * s.to(w.dtype)[..., None])
            ya = torch.bmm(a.mT, y)
        ctx.save_for_backward(a, c, v, lam, s, ds, w, y, ya)
        return c * ya

    @staticmethod
    def backward(ctx, g: Tensor):
        a, c, v, lam, s, ds, w, y, ya = ctx.saved_tensors
        with torch.autocast(a.device.type, enabled=False):
            dc = (g * ya).sum((-2, -1), keepdim=True)
            gy = c * g
            da = torch.bmm(y, gy.mT)
            dy = torch.bmm(a, gy)
            wd = torch.bmm(v.mT, dy)
            dr = torch.bmm(v, wd * s.to(wd.dtype)[..., None])
            # gradient with respect to P_0, in the eigenbasis: F o sym(wd w')
            half = torch.bmm(wd, w.mT)
            x = torch.add(half, half.mT).mul_(divided_differences(lam, s, ds, 0.5).to(half.dtype))
            dc = dc + (x.diagonal(dim1=-2, dim2=-1) * lam.to(x.dtype)).sum(-1)[:, None, None] / c
            da = da + torch.bmm(v, torch.bmm(x, torch.bmm(v.mT, a))).mul_(2.0 * c)
        return da, dc, dr, None
