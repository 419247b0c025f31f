"""The ``mirror-genes`` command line: thin commands over the Python API."""

from __future__ import annotations

from typing import Annotated

import typer

from .._version import __version__
from ._common import MirrorCommand, MirrorGroup
from ._ingest import fetch_command, ingest_command, synthetic_command
from ._select import export_panel_command, select_command

app = typer.Typer(
    name="mirror-genes",
    cls=MirrorGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mirror-genes {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          callback=_print_version, is_eager=True,
                                          metavar="")] = False,
) -> None:
    """TCGA transcriptomics from UCSC Xena into AnnData, and leak-free gene selection.

    Errors are one line on stderr (error: ...). Exit codes: 0 success, 1 bad input or environment, 2 invalid command line, 130 interrupted.
    """


app.command("fetch", cls=MirrorCommand)(fetch_command)
app.command("ingest", cls=MirrorCommand)(ingest_command)
app.command("synthetic", cls=MirrorCommand)(synthetic_command)
app.command("select", cls=MirrorCommand)(select_command)
app.command("export-panel", cls=MirrorCommand)(export_panel_command)


def main() -> None:
    app()
