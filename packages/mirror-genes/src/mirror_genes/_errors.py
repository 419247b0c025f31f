"""Typed exceptions. Every message is one line that names the file (or cohort) and the problem."""

from __future__ import annotations

import os


class MirrorGenesError(Exception):
    """Base class of every error this package raises on bad input or environment."""


class InputFileError(MirrorGenesError):
    """A user-supplied file is unreadable or malformed."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OutputPathError(MirrorGenesError):
    """An output (file, folder or cache) cannot be written where asked, or would overwrite."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CohortError(MirrorGenesError):
    """Unknown cohort preset, or a cohort that cannot be labelled as asked."""


class LabelError(MirrorGenesError):
    """Labels are unusable for the asked task (a class empty, one class only, ...)."""


class DownloadError(MirrorGenesError):
    """A download failed (network, integrity check, server answer)."""


class NotFoundError(DownloadError):
    """The server answered that the file does not exist (HTTP 404/410)."""


class OfflineError(DownloadError):
    """The hub cannot be reached; the message says how to pass local files instead."""


class SelectionError(MirrorGenesError):
    """Gene selection cannot run on the given data."""


class PanelError(MirrorGenesError):
    """A gene panel file is malformed or cannot be applied."""
