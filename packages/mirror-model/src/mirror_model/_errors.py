"""Typed exceptions: one line each, naming the file (or run, or option) and the problem.

All derive from :class:`mirror_genes.utils.MirrorGenesError`, so one ``except`` (and the CLI's
one-line error handler) covers both packages.
"""

from __future__ import annotations

import os

from mirror_genes.utils import InputFileError, MirrorGenesError

__all__ = [
    "CheckpointError", "ConfigError", "EvaluationError", "InputFileError", "MirrorModelError", "NonFiniteLossError",
    "PairingError", "RunDirError", "SlideFileError",
]


class MirrorModelError(MirrorGenesError):
    """Base class of every error mirror-model raises on bad input or environment."""


class SlideFileError(MirrorModelError, InputFileError):
    """A slide patch-feature file is unreadable or malformed (no features, NaN, zero patches...)."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        InputFileError.__init__(self, path, problem)


class PairingError(MirrorModelError):
    """Slides, RNA samples and splits cannot be paired (nothing matches, unknown patients...)."""


class ConfigError(MirrorModelError):
    """A configuration value or option is invalid, or does not match the data or checkpoint."""


class CheckpointError(MirrorModelError):
    """A checkpoint is missing, unreadable, or does not fit the model or the data."""


class RunDirError(MirrorModelError):
    """A run directory cannot be created, resumed or read as asked."""


class NonFiniteLossError(MirrorModelError):
    """Training produced a NaN/Inf loss; the last good checkpoint is kept."""


class EvaluationError(MirrorModelError):
    """Evaluation inputs do not fit (unknown split patients, one-class folds, no events...)."""
