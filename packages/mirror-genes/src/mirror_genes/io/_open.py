"""Opening user files: gzip detected by magic bytes (not by name), with byte-level progress."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from isal import igzip, igzip_threaded

from .._errors import InputFileError

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
TEXT_TABLE = "a tab-separated text table"

# Leading bytes of files users mistake for tables (or servers send instead of them).
_SIGNATURES = (
    (b"PK\x03\x04", "an Excel workbook (.xlsx) or other zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (an .h5ad?)"),
    (b"%PDF", "a PDF document"),
    (b"PAR1", "a Parquet file"),
)
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title", b"<!--")


def describe_content(head: bytes) -> str | None:
    """What the first bytes of a (decompressed) file are, when they are not plain text.

    Returns a phrase such as ``"an HTML page"`` for messages of the form "looks like
    <phrase>, not <expected>", or None for text that may be a table.
    """
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    text = head.removeprefix(UTF8_BOM).lstrip().lower()
    if text.startswith(_HTML_STARTS):
        return "an HTML page"
    if text.startswith(b"<?xml"):
        return "an XML document (a server error message?)"
    if b"\x00" in head[:4096]:
        return "binary data"
    return None


def check_readable(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such file")
    if p.is_dir():
        raise InputFileError(p, "is a directory, expected a file")
    try:
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as err:
        raise InputFileError(p, f"cannot be read ({err.strerror or err})") from None
    if p.stat().st_size == 0:
        raise InputFileError(p, "file is empty")
    return p


def is_gzip(path: str | os.PathLike) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


class _CountingReader(io.RawIOBase):
    """Wraps a binary file and reports compressed bytes consumed (for progress bars)."""

    def __init__(self, fh, callback) -> None:
        self._fh = fh
        self._callback = callback

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._fh.readinto(buffer)
        if n and self._callback is not None:
            self._callback(n)
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


@contextlib.contextmanager
def open_binary(path: str | os.PathLike, *, on_bytes=None, threaded: bool = True) -> Iterator:
    """Binary stream of the decompressed content of ``path`` (gzip or plain); closes all layers."""
    p = check_readable(path)
    raw = open(p, "rb")
    try:
        src = _CountingReader(raw, on_bytes) if on_bytes is not None else raw
        if is_gzip(p):
            # threads=1: decompression runs beside the parser (ISA-L, faster than zlib)
            stream = (igzip_threaded.open(src, "rb", threads=1) if threaded
                      else igzip.IGzipFile(fileobj=src, mode="rb"))
        else:
            stream = io.BufferedReader(src) if on_bytes is not None else src
        with stream:
            yield stream
    finally:
        raw.close()


def read_first_line(path: str | os.PathLike, *, expected: str = TEXT_TABLE) -> str:
    """The first line, decoded, without a UTF-8 byte-order mark.

    Raises InputFileError for empty, undecodable or non-text files (HTML pages, Excel
    workbooks, ... are named as such; ``expected`` says what the file should have been).
    """
    p = check_readable(path)
    try:
        with open_binary(p, threaded=False) as fh:
            # bounded: a binary file may hold no newline for gigabytes
            line = fh.readline(1 << 26)
            # sniff 4 KiB, not the line: magic numbers hold newlines, HTML may open blank
            head = line[:4096] if len(line) >= 4096 else line + fh.read(4096 - len(line))
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise InputFileError(p, f"corrupt or truncated gzip ({err})") from None
    what = describe_content(head)
    if what is not None:
        raise InputFileError(p, f"looks like {what}, not {expected}")
    line = line.removeprefix(UTF8_BOM)
    if not line.strip():
        raise InputFileError(p, "file is empty (no header line)")
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputFileError(p, "header is not UTF-8 text (binary file?)") from None


def verify_gzip(path: str | os.PathLike) -> int:
    """Decode a whole gzip file; return its uncompressed size or raise InputFileError."""
    p = Path(path)
    total = 0
    try:
        with igzip.open(p, "rb") as fh:
            while block := fh.read(1 << 22):
                total += len(block)
    except (OSError, EOFError, zlib.error) as err:
        raise InputFileError(p, f"corrupt or truncated gzip ({err})") from None
    return total
