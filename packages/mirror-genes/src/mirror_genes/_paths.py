"""Output paths checked before any work begins, with one overwrite policy for every command.

A run that ingests for minutes and then finds that ``--out`` is a directory, lies under a
file or would replace its own input wastes the user's time and may destroy data; these
checks run first and raise :class:`OutputPathError` with a one-line message.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ._errors import OutputPathError

FORCE_HINT = "use --force to replace it"


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError as err:  # e.g. a parent folder without search permission
        raise OutputPathError(path, f"cannot be checked ({_reason(err)})") from None


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links too); False when either is absent."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _inside(child: Path, folder: Path) -> bool:
    child, folder = child.resolve(), folder.resolve()
    return child == folder or folder in child.parents


def _nearest_existing(folder: Path) -> Path:
    while not _exists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_writable(path: Path, folder: Path) -> None:
    """Create and delete a probe file in ``folder``: the only test that also catches
    read-only file systems and ACLs, and root running without permission bits."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".mirror-write-check.", dir=folder)
    except OSError as err:
        raise OutputPathError(path, f"cannot write in {folder} ({_reason(err)})") from None
    os.close(fd)
    os.unlink(probe)


def check_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                 force: bool = False, kind: str = "file",
                 force_hint: str = FORCE_HINT) -> Path:
    """Check that an output can be written, before the work that produces it.

    Parameters
    ----------
    path
        Output file (``kind="file"``) or folder (``kind="dir"``).
    inputs
        Input paths of the same run (``None`` entries are skipped): the output may never
        be one of them, nor (for a folder, which ``force`` replaces whole) contain one.
    force
        Allow replacing an existing file, or a non-empty folder.
    kind
        ``"file"`` or ``"dir"``.
    force_hint
        How the message tells the user to allow overwriting.

    Returns
    -------
    ``path`` as a Path.

    Raises
    ------
    OutputPathError
        The output is an input (or holds one), exists and ``force`` is off, is a folder
        where a file is expected (or the reverse), lies under a file, or its folder cannot
        be written.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    out = Path(path).expanduser()
    for given in inputs:
        if given is None or not str(given):
            continue
        src = Path(given).expanduser()
        if _same(out, src):
            raise OutputPathError(out, "is also an input file; choose another output")
        if kind == "dir" and _exists(src) and _exists(out) and _inside(src, out):
            raise OutputPathError(out, f"holds the input file {src}; choose another output folder")
    if _exists(out):
        if kind == "file" and out.is_dir():
            raise OutputPathError(out, "is a directory; give a file name for the output")
        if kind == "dir" and not out.is_dir():
            raise OutputPathError(out, "is a file, expected an output folder")
        if kind == "file" and not force:
            raise OutputPathError(out, f"already exists ({force_hint})")
        if kind == "dir" and not force and any(out.iterdir()):
            raise OutputPathError(out, f"output folder is not empty ({force_hint})")
    parent = _nearest_existing(out.parent)
    if not parent.is_dir():
        raise OutputPathError(out, f"cannot be created: {parent} is a file, not a folder")
    _check_writable(out, parent)
    return out


def ensure_dir(path: str | os.PathLike, *, what: str = "folder") -> Path:
    """Create a folder (and its parents) or say in one line why it cannot be.

    Parameters
    ----------
    path
        Folder to create; an existing folder is fine.
    what
        Its name in messages (``"cache folder"``).

    Returns
    -------
    ``path`` as a Path.
    """
    folder = Path(path).expanduser()
    if _exists(folder) and not folder.is_dir():
        raise OutputPathError(folder, f"{what} is a file, not a folder")
    parent = _nearest_existing(folder)
    if not parent.is_dir():
        raise OutputPathError(folder, f"cannot create the {what}: {parent} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(folder, f"cannot create the {what} ({_reason(err)})") from None
    return folder


__all__ = ["FORCE_HINT", "OutputPathError", "check_output", "ensure_dir"]
