"""Pure PyTorch modules of MIRROR: encoders, the three MIRROR modules, and their losses.

:class:`MirrorModule` is the entry point (contract: docs/model-internals.md); the parts are
public for tests, ablations and reuse. Architecture and deviations: docs/model.md.
"""

from ._heads import AlignmentHeads, RNARetention, SlideRetention, StyleClustering
from ._losses import Gather, contrastive_loss, gaussian_kl, masked_mse, noise_mask, symmetric_kl
from ._mirror import LOGIT_SCALE, MirrorModule
from ._nystrom import NystromAttention, iterative_pinv, segment_plan
from ._rna import RNAEncoder, SelfAttention, TransformerBlock
from ._slide import PPEG, SlideEncoder, TransLayer

__all__ = [
    "LOGIT_SCALE", "PPEG", "AlignmentHeads", "Gather", "MirrorModule", "NystromAttention", "RNAEncoder",
    "RNARetention", "SelfAttention", "SlideEncoder", "SlideRetention", "StyleClustering", "TransLayer",
    "TransformerBlock", "contrastive_loss", "gaussian_kl", "iterative_pinv", "masked_mse", "noise_mask",
    "segment_plan", "symmetric_kl",
]
