"""The MIRROR loss terms as plain functions (no parameters)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Gather", "contrastive_loss", "gaussian_kl", "masked_mse", "noise_mask", "symmetric_kl"]

Gather = Callable[[Tensor], tuple[Tensor, int]]


def contrastive_loss(a_wsi: Tensor, a_rna: Tensor, logit_scale: Tensor, gather: Gather | None = None) -> Tensor:
    """Symmetric CLIP cross-entropy between matched slide and RNA embeddings.

    Parameters
    ----------
    a_wsi, a_rna
        (B, k) L2-normalised embeddings of this process's cases (row i of each is one case).
    logit_scale
        The multiplier ``exp(s)`` (already clamped).
    gather
        Optional ``x -> (rows of all ranks concatenated, with gradients; offset of this rank's
        rows)``. Local rows are scored against all gathered columns with targets
        ``offset + arange(B)``, so averaging the ranks' gradients gives the global-batch gradient.

    Returns
    -------
    Scalar: mean of the slide->RNA and RNA->slide cross-entropies over the local rows.
    """
    if gather is None:
        all_wsi, all_rna, offset = a_wsi, a_rna, 0
    else:
        all_wsi, offset = gather(a_wsi)
        all_rna, _ = gather(a_rna)
    target = torch.arange(a_wsi.shape[0], device=a_wsi.device) + offset
    per_wsi = F.cross_entropy(logit_scale * a_wsi @ all_rna.T, target)
    per_rna = F.cross_entropy(logit_scale * a_rna @ all_wsi.T, target)
    return 0.5 * (per_wsi + per_rna)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, summed over the latent dims.

    Parameters
    ----------
    mu, logvar
        (B, latent) posterior means and log-variances.

    Returns
    -------
    (B,) divergences.
    """
    mu, logvar = mu.float(), logvar.float()      # exp overflows in half precision
    return 0.5 * (logvar.exp() + mu.square() - 1.0 - logvar).sum(-1)


def symmetric_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """``(KL(p || q) + KL(q || p)) / 2`` of two softmax distributions, mean over rows.

    Parameters
    ----------
    logits_p, logits_q
        (B, K) unnormalised log-probabilities.

    Returns
    -------
    Scalar. Written as ``sum((p - q) (log p - log q)) / 2`` from log-softmax (no log of a
    possibly-underflowed probability).
    """
    log_p, log_q = logits_p.float().log_softmax(-1), logits_q.float().log_softmax(-1)
    return 0.5 * ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1).mean()


def noise_mask(noise: Tensor, ratio: float, valid: Tensor | None = None) -> Tensor:
    """Which units to mask: in each row the masked share of the valid units with the smallest noise.

    Parameters
    ----------
    noise
        (B, N) noise, e.g. uniform[0, 1).
    ratio
        Mask ratio; a row of ``n`` valid units masks ``n - floor(n * (1 - ratio))`` of them
        (the reference keeps ``int(n * (1 - ratio))``), so at least one.
    valid
        Optional bool (B, N); invalid units are never masked.

    Returns
    -------
    Bool (B, N), True where masked.
    """
    if valid is None:
        n = torch.full(noise.shape[:1], noise.shape[1], device=noise.device)
    else:
        noise = noise.masked_fill(~valid, float("inf"))
        n = valid.sum(1)
    n_mask = n - torch.floor(n.double() * (1.0 - ratio)).long()
    rank = noise.argsort(1).argsort(1)
    return rank < n_mask[:, None]


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over the masked units.

    Parameters
    ----------
    pred, target
        Predictions and targets (same shape).
    mask
        Optional bool selecting entries along the leading dims; all entries when None.

    Returns
    -------
    Scalar mean over every selected unit.
    """
    if mask is not None:
        pred, target = pred[mask], target[mask]
    dtype = torch.promote_types(pred.dtype, torch.float32)   # half precision up, float64 kept
    return F.mse_loss(pred.to(dtype), target.to(dtype))
