"""A rich progress bar for training: steps, running loss and samples per second."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mirror_genes.utils import progress_enabled

_console = Console(stderr=True)


@contextlib.contextmanager
def epoch_bar(description: str, total: int, *, progress: bool | None = None) -> Iterator:
    """Yields ``update(loss, samples_per_s)``, to call once per step.

    Off when ``progress`` is False or the environment sets ``MIRROR_NO_PROGRESS``.
    """
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} samples/s"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=_console, disable=not progress_enabled(progress), transient=False) as bar:
        task = bar.add_task(description, total=total, loss="-", speed="-")

        def update(loss: float, speed: float) -> None:
            bar.update(task, advance=1, loss=f"{loss:.4f}", speed=f"{speed:.1f}")

        yield update
