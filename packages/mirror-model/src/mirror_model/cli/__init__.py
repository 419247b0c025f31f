"""The ``mirror-model`` command line: thin commands over the Python API.

Under ``torchrun`` run it as a module: ``torchrun --nproc_per_node N -m mirror_model.cli pretrain ...``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ._benchmark import benchmark_command, semi_synthetic_command, synthetic_command
from ._embed import embed_command
from ._evaluate import evaluate_command
from ._pretrain import pretrain_command
from ._report import report_command

app = typer.Typer(
    name="mirror-model",
    help="MIRROR pretraining on paired slide patch features and transcriptomics, and embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"mirror-model {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)] = False) -> None:
    """MIRROR pretraining on paired slide patch features and transcriptomics, and embeddings."""


app.command("pretrain")(pretrain_command)
app.command("embed")(embed_command)
app.command("evaluate")(evaluate_command)
app.command("benchmark")(benchmark_command)
app.command("report")(report_command)
app.command("synthetic")(synthetic_command)
app.command("semi-synthetic")(semi_synthetic_command)


def main() -> None:
    app()
