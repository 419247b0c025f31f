"""Shared CLI plumbing: one-line errors on stderr, warnings as one line, exit codes.

Exit codes: 0 success, 1 bad input or environment (``error: <message>``), 2 a command line
that cannot be used (unknown or invalid option, options that exclude each other), 130
interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterable, Iterator

import typer
from typer.core import TyperCommand, TyperGroup

from .._errors import MirrorGenesError

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException, UsageError


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " ".join(lines)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {str(message).splitlines()[0]}", file=sys.stderr)


def error(message: str) -> None:
    """Print ``error: <message>`` (one line) on stderr."""
    typer.echo(f"error: {_one_line(message)}", err=True)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn package errors into ``error: <one line>`` on stderr and exit code 1."""
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        yield
    except MirrorGenesError as err:
        error(str(err).splitlines()[0])
        raise typer.Exit(1) from None
    except OSError as err:
        # disk full, permission lost mid-run, ...: the environment, not a bug to trace
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        error(f"{where}{err.strerror or err}")
        raise typer.Exit(1) from None
    except MemoryError:
        error("out of memory")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        error("interrupted")
        raise typer.Exit(130) from None
    finally:
        warnings.showwarning = previous


def info(message: str) -> None:
    typer.echo(message, err=True)


def usage(message: str) -> UsageError:
    """A command-line error (exit code 2), printed as ``error: <message>``."""
    return UsageError(message)


def given(ctx: typer.Context, names: Iterable[str]) -> list[str]:
    """The options among ``names`` (parameter names) set by the user, as ``--flags``."""
    out = []
    for param in ctx.command.params:
        if param.name not in names:
            continue
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            out.append(max(param.opts, key=len))
    return out


def check_range(name: str, value: float, *, low: float | None = None,
                high: float | None = None, low_open: bool = False, high_open: bool = False,
                what: str = "") -> None:
    """Raise a usage error unless ``value`` lies in the interval."""
    bad = ((low is not None and (value <= low if low_open else value < low))
           or (high is not None and (value >= high if high_open else value > high)))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        rule = " and ".join(p for p in (lo, hi) if p)
        raise usage(f"{name} must be {rule}{f' ({what})' if what else ''}; got {value:g}")


def check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise usage(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _flag_help(option):
    # typer labels the --help flag "<bool>" as if it took a value; it does not
    if option is not None:
        option.metavar = ""
    return option


class MirrorCommand(TyperCommand):
    """A command whose help shows ``--help`` as the flag it is."""

    def get_help_option(self, ctx):
        return _flag_help(super().get_help_option(ctx))


class MirrorGroup(TyperGroup):
    """The command group, printing every command-line error as one ``error:`` line.

    Typer's default draws a framed panel over several lines; the project's rule is one line
    on stderr for every error, which scripts can grep and tests can match.
    """

    command_class = MirrorCommand

    def get_help_option(self, ctx):
        return _flag_help(super().get_help_option(ctx))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # outside cli_errors: imports, option parsing
            error("interrupted")
            raise typer.Exit(130) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # bare command: help is the answer
                text = err.format_message()
                if text.strip():
                    typer.echo(text, err=True)
                sys.exit(err.exit_code)
            error(err.format_message())
            sys.exit(err.exit_code)
        except ClickException as err:
            error(err.format_message())
            sys.exit(err.exit_code)
        except typer.Abort:
            error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
