"""``mirror-model report``: one self-contained HTML page of a run, evaluation or benchmark folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import cli_errors, info


def report_command(
    folder: Annotated[Path, typer.Argument(help="Run, evaluation or benchmark folder.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report file (.html; default FOLDER/report.html).")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Page title (default: the folder's name).")] = None,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Rows shown per CSV table (the rest linked).")] = 200,
) -> None:
    """Write a self-contained HTML report of FOLDER (figures inline, no external loads)."""
    from ..report import write_report

    with cli_errors():
        path = write_report(folder, out=out, title=title, max_rows=max_rows)
        info(f"wrote {path}")
