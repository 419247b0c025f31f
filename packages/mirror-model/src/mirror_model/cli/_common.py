"""Shared CLI plumbing: one-line errors on stderr (exit 1), one-line warnings, rank-0 messages."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import typer

from mirror_genes.clitools import cli_errors as genes_cli_errors


def is_main_process() -> bool:
    """Rank 0 under ``torchrun`` (or a plain process): the one that talks to the user."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """mirror-genes' one-line error handling (exit 1; 130 on Ctrl-C); other ranks stay quiet."""
    with genes_cli_errors():
        if not is_main_process():  # one rank speaks, or every warning prints once per GPU
            warnings.showwarning = lambda *args, **kwargs: None
        yield


def info(message: str) -> None:
    """A message on stderr from rank 0 only."""
    if is_main_process():
        typer.echo(message, err=True)
