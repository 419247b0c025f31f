"""The Moore-Penrose pseudo-inverse iteration of Nystrom attention, and ``pinv(A) @ R`` with a
backward written for its symmetric iterates.

Facts (DESIGN.md section 2): 6 iterations of ``Z <- Z f(A Z)``, ``f(P) = (13 I - P (15 I - P
(7 I - P))) / 4``, from ``Z0 = c A'`` with ``c = 1 / (max column sum * max row sum)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import PINV_METHODS
from ._pinv_spectral import PinvApplySpectral

__all__ = ["PINV_METHODS", "iterative_pinv"]

PINV_CHUNK = 8   # kernels per pseudo-inverse task (one bag's heads at the reference size)


def _start(a: Tensor) -> Tensor:
    """1 / (max column sum * max row sum) of each (m, m) matrix of a (b, m, m) batch.

    Per matrix, not over the whole batch as in the reference: a bag's result must not depend on
    which other bags share its batch.
    """
    abs_a = a.abs()
    return 1.0 / (abs_a.sum(-1).amax(-1) * abs_a.sum(-2).amax(-1))[:, None, None]


def _horner(p: Tensor, r: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``f(P) R = (13 I - P (15 I - P (7 I - P))) R / 4`` with fused multiply-adds (``R = I``
    when None), with its intermediates: ``(t1, t2, f(P) R)``, ``t1 = 7 R - P R``, ``t2 = 15 R - P t1``."""
    if r is None:
        r = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device).expand_as(p)
        t1 = 7 * r - p
    else:
        t1 = (7 * r).baddbmm_(p, r, alpha=-1)
    t2 = (15 * r).baddbmm_(p, t1, alpha=-1)
    return t1, t2, (13 * r).baddbmm_(p, t2, alpha=-1).mul_(0.25)


def _times_f(r: Tensor, u: Tensor, q: Tensor) -> Tensor:
    """``f(P) r = 3.25 r - 3.75 u + Q (1.75 r - 0.25 u)`` for ``u = P r``, ``Q = P^2``, written
    ``3.25 (r - 15/13 u) + 1.75 Q (r - u/7)`` so that the scalings ride in the product."""
    return torch.add(r, u, alpha=-15 / 13).baddbmm_(q, torch.add(r, u, alpha=-1 / 7), beta=3.25, alpha=1.75)


def iterative_pinv(a: Tensor, iterations: int = 6, rhs: Tensor | None = None, *,
                   method: str = "auto") -> Tensor:
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
    method
        How ``pinv(a) @ rhs`` evaluates the iteration (same function, up to rounding):
        ``"iterate"`` (matrix products, :class:`_PinvApply`), ``"spectral"`` (one eigendecomposition,
        ``_pinv_spectral``) or ``"auto"``: spectral on a CPU, iterate elsewhere. Without ``rhs``
        the iteration always runs.

    Returns
    -------
    (..., m, m) approximate pseudo-inverses, or (..., m, k) when ``rhs`` is given.

    Notes
    -----
    ``Z <- Z f(A Z)`` with ``f(P) = (13 I - P (15 I - P (7 I - P))) / 4``, from
    ``Z0 = c A'``, ``c = 1 / (max column sum * max row sum)`` (per matrix, see :func:`_start`).
    With ``rhs`` (see :class:`_PinvApply`) the same iterate is reached through ``P = A Z``.
    """
    if method not in PINV_METHODS:
        raise ValueError(f"method must be one of {PINV_METHODS}, got {method!r}")
    lead, m = a.shape[:-2], a.shape[-1]
    a = a.reshape(-1, m, m)
    if rhs is not None:
        r = rhs.reshape(-1, m, rhs.shape[-1]).to(a.dtype)
        c = _start(a)
        if iterations == 0:
            out = c * a.transpose(-1, -2) @ r
        elif method == "spectral" or (method == "auto" and a.device.type == "cpu"):
            out = PinvApplySpectral.apply(a, c, r, iterations)
        else:
            # a few matrices at a time: the iteration's working set stays in cache (at batch 16,
            # all 128 kernels at once ran ~20 % slower per matrix than 8 at a time)
            out = torch.cat([_PinvApply.apply(*part, iterations)
                             for part in zip(a.split(PINV_CHUNK), c.split(PINV_CHUNK), r.split(PINV_CHUNK))])
        return out.reshape(*lead, m, -1)
    z = _start(a) * a.transpose(-1, -2)
    for _ in range(iterations):
        z = torch.bmm(z, _horner(torch.bmm(a, z))[2])
    return z.reshape(*lead, m, m)


def _sym_twice(half: Tensor) -> Tensor:
    """``half + half'``: twice the symmetric part (the gradients below are built as halves)."""
    return torch.add(half, half.mT)


def _iterates(a: Tensor, c: Tensor, iterations: int) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """``P_0 = c A A'`` and ``P_{k+1} = P_k f(P_k)`` (k < n), with ``Q_k = P_k^2`` and
    ``X_k = Q_k - 3.5 P_k`` (k < n - 1).

    ``P f(P) = (13 P - 15 P^2 + 7 P^3 - P^4) / 4 = 3.25 P - 0.6875 Q - 0.25 X^2``: two squares
    per step instead of the 4 products of the ``Z`` form, and a backward of 2 products per
    step (a square's gradient is ``G X + X G``).
    """
    p = torch.bmm(a, a.transpose(-1, -2)).mul_(c)
    ps, qs, xs = [p], [], []
    for _ in range(iterations - 1):
        q = torch.bmm(p, p)
        x = torch.add(q, p, alpha=-3.5)
        p = torch.add(p, q, alpha=-0.6875 / 3.25).baddbmm_(x, x, beta=3.25, alpha=-0.25)
        ps.append(p)
        qs.append(q)
        xs.append(x)
    return ps, qs, xs


class _PinvApply(torch.autograd.Function):
    """``Z_n @ r = c A' f(P_0) ... f(P_{n-1}) r`` for (b, m, m) ``a``, (b, 1, 1) ``c``, (b, m, k) ``r``.

    Every ``P_k = A Z_k`` is a polynomial of the symmetric ``P_0 = c A A'``, so the ``f(P_k)``
    commute and are applied to the thin ``r`` (``f(P) r = 3.25 r - 3.75 P r + Q (1.75 r - 0.25
    P r)``). The backward is autograd's chain rule written out by hand, using that every iterate
    is symmetric: only the symmetric part of a gradient with respect to an iterate reaches ``A``
    (``P_0`` moves only along symmetric directions, and each step maps symmetric matrices to
    symmetric ones), and for symmetric ``K`` and ``X`` the gradient ``K X + X K`` of ``X^2`` is
    ``Y + Y'`` with ``Y = K X``. With the step written as two squares (:func:`_iterates`) that
    is 2 cubic products per step instead of autograd's 4, and 1 instead of 2 for ``P_0``: the
    same gradient up to rounding. Runs in the inputs' dtype with autocast off (the iteration is
    fragile in half precision).
    """

    @staticmethod
    def forward(ctx, a: Tensor, c: Tensor, r: Tensor, iterations: int) -> Tensor:
        with torch.autocast(a.device.type, enabled=False):
            ps, qs, xs = _iterates(a, c, iterations)
            t1, t2, applied = _horner(ps[-1], r)
            rs, us = [r, applied], []
            for k in reversed(range(iterations - 1)):
                u = torch.bmm(ps[k], rs[-1])
                rs.append(_times_f(rs[-1], u, qs[k]))
                us.append(u)
            y = torch.bmm(a.transpose(-1, -2), rs[-1])
        ctx.iterations = iterations
        ctx.save_for_backward(a, c, y, t1, t2, *ps, *qs, *xs, *rs, *us)
        return c * y

    @staticmethod
    def backward(ctx, g: Tensor):
        n = ctx.iterations
        a, c, y, t1, t2, *rest = ctx.saved_tensors
        ps, qs, xs = rest[:n], rest[n: 2 * n - 1], rest[2 * n - 1: 3 * n - 2]
        rs, us = rest[3 * n - 2: 4 * n - 1], rest[4 * n - 1:]
        with torch.autocast(a.device.type, enabled=False):
            dc = (g * y).sum((-2, -1), keepdim=True)
            gy = c * g
            da = torch.bmm(rs[-1], gy.transpose(-1, -2))
            dr = torch.bmm(a, gy)
            thin = [None] * (n - 1)       # gradient of P_k and Q_k as thin outer products
            for k in range(n - 1):                        # the thin steps, last applied first
                r_in, u = rs[n - 1 - k], us[n - 2 - k]
                v = torch.add(1.75 * r_in, u, alpha=-0.25)
                dv = torch.bmm(qs[k].mT, dr)
                du = torch.add(-3.75 * dr, dv, alpha=-0.25)
                thin[k] = (dr, v.mT, du, r_in.mT)      # dQ_k = dr v', dP_k = du r_in'
                dr = torch.add(3.25 * dr, dv, alpha=1.75).baddbmm_(ps[k].mT, du)
            dr, gp_last = _horner_backward(ps[n - 1], rs[0], t1, t2, dr)
            h = _sym_twice(gp_last.mul_(0.5))
            for k in reversed(range(n - 1)):              # P_{k+1} = P_k f(P_k), back to P_0
                dr_k, v_t, du_k, r_t = thin[k]
                # S = X^2 enters with -0.25: dX = dxh + dxh', dxh = -0.25 H X
                dxh = torch.bmm(h, xs[k]).mul_(-0.25)
                # dQ = sym(dr v') - 0.6875 H + dX   (halves built in)
                half = torch.add(dxh, h, alpha=-0.34375).baddbmm_(dr_k, v_t, alpha=0.5)
                dq = _sym_twice(half)
                # dP = sym(du r_in') + 3.25 H - 3.5 dX + dQ P + P dQ
                half = torch.add(dxh, h, alpha=-1.625 / 3.5).mul_(-3.5).baddbmm_(dq, ps[k]).baddbmm_(
                    du_k, r_t, alpha=0.5)
                h = _sym_twice(half)
            dc = dc + (h * ps[0]).sum((-2, -1), keepdim=True) / c
            da = da + 2.0 * c * torch.bmm(h, a)
        return da, dc, dr, None


def _horner_backward(p: Tensor, r: Tensor, t1: Tensor, t2: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients with respect to ``r`` and ``p`` of ``f(P) r`` (see :func:`_horner`), given
    its intermediates ``t1 = 7 r - P r`` and ``t2 = 15 r - P t1``."""
    ds3 = -0.25 * g
    gp = torch.bmm(ds3, t2.transpose(-1, -2))
    dt2 = torch.bmm(p.mT, ds3)
    gp.baddbmm_(dt2, t1.mT, alpha=-1)
    dt1 = torch.bmm(p.mT, -dt2)
    gp.baddbmm_(dt1, r.mT, alpha=-1)
    dr = 3.25 * g + 15 * dt2 + 7 * dt1 - torch.bmm(p.mT, dt1)
    return dr, gp
