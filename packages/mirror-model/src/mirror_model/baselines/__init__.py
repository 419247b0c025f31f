"""Baselines the MIRROR paper compares against: ABMIL, PORPOISE, Linear, TANGLE.

Pure modules return logits (supervised models) or named losses (TANGLE); every model accepts
ragged bags through ``C.PATCH_MASK`` (padded patches get zero attention). Training:
:func:`fit_supervised` (ABMIL, PORPOISE; epoch chosen on an inner validation split),
:func:`linear_subtyping` / :func:`linear_survival` (Linear), :func:`pretrain_tangle` then
:func:`tangle_embeddings` for the same linear probes as MIRROR. Method names:
``mirror_model.constants.METHOD_*``. Architectures and hyperparameters: docs/evaluation.md.
"""

from ._abmil import ABMIL, AttentionPool, GatedAttention
from ._common import pad_collate
from ._linear import (
    FIXED_ALPHA,
    FIXED_C,
    inner_cv_possible,
    linear_subtyping,
    linear_survival,
    mean_pooled_features,
)
from ._porpoise import PORPOISE, GatedBilinearFusion, SNNBlock
from ._result import SUBTYPING, SURVIVAL, BaselineResult, survival_curve
from ._supervised import fit_supervised
from ._tangle import TANGLE, TangleConfig, info_nce, pretrain_tangle, tangle_embeddings, warmup_cosine

__all__ = [
    "ABMIL", "FIXED_ALPHA", "FIXED_C", "PORPOISE", "SUBTYPING", "SURVIVAL", "TANGLE", "AttentionPool",
    "BaselineResult", "GatedAttention", "GatedBilinearFusion", "SNNBlock", "TangleConfig", "fit_supervised",
    "info_nce", "inner_cv_possible", "linear_subtyping", "linear_survival", "mean_pooled_features", "pad_collate",
    "pretrain_tangle", "survival_curve", "tangle_embeddings", "warmup_cosine",
]
