"""The ``mirror-genes`` command line: thin commands over the Python API."""

from __future__ import annotations

import typer

from ._ingest import fetch_command, ingest_command, synthetic_command
from ._select import export_panel_command, select_command

app = typer.Typer(
    name="mirror-genes",
    help="TCGA transcriptomics from UCSC Xena into AnnData, and leak-free gene selection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("fetch")(fetch_command)
app.command("ingest")(ingest_command)
app.command("synthetic")(synthetic_command)
app.command("select")(select_command)
app.command("export-panel")(export_panel_command)


def main() -> None:
    app()
