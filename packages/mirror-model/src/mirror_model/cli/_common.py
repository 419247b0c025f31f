"""Shared CLI plumbing: one-line errors on stderr (exit 1), one-line warnings, rank-0 messages."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

import typer

from mirror_genes.utils import MirrorGenesError


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if is_main_process():
        print(f"warning: {str(message).splitlines()[0]}", file=sys.stderr)


def is_main_process() -> bool:
    """Rank 0 under ``torchrun`` (or a plain process): the one that talks to the user."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn package errors (mirror-model's and mirror-genes') into ``error: <one line>``, exit 1."""
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        yield
    except MirrorGenesError as err:
        typer.echo(f"error: {str(err).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None
    finally:
        warnings.showwarning = previous


def info(message: str) -> None:
    """A message on stderr from rank 0 only."""
    if is_main_process():
        typer.echo(message, err=True)
