"""mirror-model: MIRROR pretraining on paired slide patch features and transcriptomics.

Layers after scvi-tools: ``data`` (slide bags, RNA, pairing), ``nn`` (pure modules that return
named losses), ``train`` (the loop, checkpoints, distributed), and the user-facing
:class:`MIRROR` object (``from_config``, ``train``, ``get_latent_representation``, ``save``,
``load``). Heavy parts (PyTorch) load on first use.
"""

from ._errors import (
    CheckpointError,
    ConfigError,
    EvaluationError,
    MirrorModelError,
    NonFiniteLossError,
    PairingError,
    RunDirError,
    SlideFileError,
)
from ._version import __version__

__all__ = [
    "MIRROR", "CheckpointError", "ConfigError", "EvaluationError", "MirrorModelError", "NonFiniteLossError",
    "PairingError", "RunDirError", "SlideFileError", "__version__", "baselines", "config", "constants", "data",
    "datasets", "eval",
    "nn", "pl", "report", "train",
]

_LAZY_MODULES = ("baselines", "config", "constants", "data", "datasets", "eval", "nn", "pl", "report", "train")


def __getattr__(name: str):
    import importlib

    if name in _LAZY_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name == "MIRROR":
        from ._model import MIRROR

        return MIRROR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES) | {"MIRROR"})
