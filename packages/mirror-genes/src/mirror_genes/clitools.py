"""Public door to the command-line plumbing, for other packages' Typer apps (mirror-model).

``cli_errors()`` turns package errors into one ``error: <message>`` line on stderr and exit
code 1 (OSError and MemoryError too; Ctrl-C gives 130); warnings print as one line.
"""

from .cli._common import cli_errors, error, info

__all__ = ["cli_errors", "error", "info"]
