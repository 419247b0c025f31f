"""Shared CLI plumbing: one-line errors on stderr, warnings as one line, exit codes."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

import typer

from .._errors import MirrorGenesError


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {str(message).splitlines()[0]}", file=sys.stderr)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn package errors into ``error: <one line>`` on stderr and exit code 1."""
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
    typer.echo(message, err=True)
