"""Rich progress bars on stderr; one place so every long step looks the same."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

_console = Console(stderr=True)


def enabled(progress: bool | None) -> bool:
    """Progress on unless asked off, or MIRROR_NO_PROGRESS is set (tests, logs)."""
    if progress is not None:
        return progress
    return not os.environ.get("MIRROR_NO_PROGRESS")


@contextlib.contextmanager
def byte_bar(description: str, total: int | None, *, progress: bool | None = None) -> Iterator:
    """Yields ``advance(n_bytes)``."""
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=_console, disable=not enabled(progress),
                  transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def step_bar(description: str, total: int | None, *, progress: bool | None = None) -> Iterator:
    """Yields ``advance(n_steps=1)``."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=_console, disable=not enabled(progress),
                  transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
