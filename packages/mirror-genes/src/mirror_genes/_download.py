"""Resumable, verified downloads of Xena hub files into a local cache.

Only ``urllib.request`` is used. A download writes ``<dest>.part``, resumes it with HTTP
``Range`` requests after a cut connection, checks its size (and gzip content) and only then
renames it onto ``<dest>``: a file at ``dest`` is therefore always complete, which makes its
mere presence the cache hit. Because a cached file is never fetched again, a file is only
accepted when it looks like what it claims to be (a Xena matrix, phenotype, survival table
or probemap, by its header): an HTML error page served with status 200 must never poison
the cache. A lock file (``<dest>.lock``) keeps two processes from writing one ``.part``.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from isal import igzip

from ._errors import DownloadError, InputFileError, NotFoundError, OfflineError
from ._paths import ensure_dir
from ._progress import byte_bar
from ._version import __version__
from .io._open import GZIP_MAGIC, UTF8_BOM, describe_content, verify_gzip

try:  # POSIX; elsewhere downloads run unlocked (one process per cache is then the rule)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

USER_AGENT = f"mirror-genes/{__version__}"
CACHE_ENV = "MIRROR_GENES_CACHE"

_CHUNK = 1 << 20
_MAX_SLEEP = 60.0
# Statuses worth another try: the server is overloaded or briefly broken, not refusing us.
_TRANSIENT_STATUS = {408, 425, 429}
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Directory of downloaded hub files; created if missing.

    Parameters
    ----------
    override
        Used as is when given; otherwise ``$MIRROR_GENES_CACHE``, then
        ``$XDG_CACHE_HOME/mirror-genes``, then ``~/.cache/mirror-genes``.

    Returns
    -------
    The cache directory (absolute, user ``~`` expanded).
    """
    if override is not None and str(override):
        path = Path(override)
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV])
    elif os.environ.get("XDG_CACHE_HOME"):
        path = Path(os.environ["XDG_CACHE_HOME"]) / "mirror-genes"
    else:
        path = Path.home() / ".cache" / "mirror-genes"
    return ensure_dir(path.expanduser().absolute(), what="cache folder")


def dataset_url(base_url: str, dataset: str) -> str:
    """Download URL of a Xena dataset: ``<base>/download/<dataset>``.

    The S3-hosted hubs (``gdc-hub``, ``toil-xena-hub``) store each dataset as one object
    whose key contains the slashes, so there ``/`` must be sent as ``%2F``; the classic
    hubs (``tcga.xenahubs.net``) serve the path with literal slashes.

    Parameters
    ----------
    base_url
        Hub URL such as ``https://tcga.xenahubs.net`` (trailing slashes ignored).
    dataset
        Dataset path such as ``TCGA.BRCA.sampleMap/HiSeqV2.gz``.
    """
    base = base_url.rstrip("/")
    host = urllib.parse.urlsplit(base).netloc.lower()
    safe = "" if "s3." in host else "/"
    return f"{base}/download/{urllib.parse.quote(dataset.lstrip('/'), safe=safe)}"


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _reason(err: BaseException | str) -> str:
    """Short human reason of a network error (``Connection refused``, not a repr)."""
    if isinstance(err, str):
        return _one_line(err) or "unknown error"
    if isinstance(err, (TimeoutError, ssl.SSLError)) and not getattr(err, "strerror", None):
        return _one_line(str(err) or "timed out")
    if isinstance(err, OSError) and err.strerror:
        return _one_line(err.strerror)
    text = _one_line(str(err))
    return text or type(err).__name__


def offline_message(url: str, reason: str) -> str:
    """The one-line advice given when a hub cannot be reached."""
    return (f"cannot reach {_origin(url)} ({_one_line(reason)}); download the files by hand and "
            "pass them with --expression/--phenotype/--survival, or set --base-url to a mirror")


class _Retry(Exception):
    """A transient failure: try again, resuming from what ``.part`` holds."""

    def __init__(self, reason: str, *, unreachable: bool = False, wait: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable  # no HTTP answer at all (DNS, refused, connect timeout)
        self.wait = wait  # False when retrying at once is right (restart after a bad resume)


@dataclass
class _State:
    """What one download learnt from the server across its attempts."""

    total: int | None = None  # full size announced by the server
    validator: str | None = None  # strong ETag or Last-Modified, sent as If-Range on resume


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 10-99/100`` -> (10, 100); ``bytes */100`` -> (None, 100); unknown -> (None, None)."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return start, total


def _validator(headers) -> str | None:
    # A weak ETag may not be used in If-Range (RFC 9110 13.1.5); Last-Modified may.
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _http_error(url: str, part: Path, offset: int, err: urllib.error.HTTPError,
                state: _State) -> None:
    """Turn an HTTP error status into a retry, a finished part (416) or a DownloadError."""
    code = err.code
    if code == 416 and offset:
        # The part already reaches (or overshoots) the end of the file.
        _, total = _parse_content_range(err.headers.get("Content-Range") if err.headers else None)
        if total is not None and total == offset:
            state.total = total
            return
        part.unlink(missing_ok=True)
        raise _Retry(f"the partial file ({offset} bytes) does not fit the file on the server",
                     wait=False)
    if code in (404, 410):
        raise NotFoundError(f"{url}: not found on the server (HTTP {code})")
    if code >= 500 or code in _TRANSIENT_STATUS:
        raise _Retry(f"HTTP {code} {_one_line(err.reason or '')}".strip())
    reason = _one_line(err.reason or "")
    raise DownloadError(f"{url}: the server refused the download (HTTP {code} {reason})"
                        .replace(" )", ")"))


def _attempt(url: str, part: Path, state: _State, *, timeout: float,
             progress: bool | None) -> None:
    """One HTTP request; returns when the server says ``part`` is complete, else raises."""
    offset = _size(part)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if state.validator:
            # If the file changed on the server since our first bytes, get it whole (200).
            headers["If-Range"] = state.validator
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        with err:
            return _http_error(url, part, offset, err, state)
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise DownloadError(f"{url}: TLS certificate check failed ({_reason(reason)})") \
                from None
        # urllib wraps failures to connect or send: the host gave no HTTP answer.
        raise _Retry(_reason(reason), unreachable=True) from None
    except (OSError, http.client.HTTPException) as err:
        # Connected, but no usable answer (reset, timeout while waiting for headers).
        raise _Retry(_reason(err)) from None

    with response:
        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset or (state.total is not None and total != state.total):
                part.unlink(missing_ok=True)
                raise _Retry("the server resumed at the wrong place", wait=False)
            mode = "ab"
        else:
            # 200: a whole body, because ranges are not supported or the file changed.
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.strip().isdigit() else None
            offset = 0
            mode = "wb"
        state.total = total
        state.validator = _validator(response.headers) or state.validator

        with byte_bar(part.name.removesuffix(".part"), total, progress=progress) as advance, \
                open(part, mode) as out:
            advance(offset)
            while True:
                try:
                    # read1 returns what has arrived; read(n) would drop a partly filled
                    # buffer when the socket times out or resets.
                    chunk = response.read1(_CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    # IncompleteRead, ConnectionResetError, read timeout: keep what we have.
                    raise _Retry(_reason(err) or "connection lost") from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as err:
                    raise DownloadError(f"{part}: cannot write ({_reason(err)})") from None
                advance(len(chunk))

    size = _size(part)
    if total is not None and size < total:
        raise _Retry(f"connection closed after {size} of {total} bytes")


# What each role's file must be, named as in messages ("looks like an HTML page, not ...").
EXPECTED = {
    "expression": "a Xena matrix",
    "phenotype": "a Xena phenotype table",
    "survival": "a Xena survival table",
    "probemap": "a Xena probemap",
}


class CachedFileError(DownloadError):
    """A file in the download cache fails the check it passed when it was downloaded
    (or was put there by an older version, or by hand); ``hint`` says how to replace it."""

    def __init__(self, path: str | os.PathLike, problem: str,
                 hint: str = "delete it to download it again") -> None:
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        super().__init__(f"{self.path}: cached file {problem}; {hint}")


def _first_line(path: Path) -> tuple[bytes, bytes]:
    """(first line, first 4 KiB) of the decompressed content; gzip detected by magic."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == GZIP_MAGIC
    with (igzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        line = fh.readline(1 << 26)  # bounded: binary content may hold no newline
        # sniff 4 KiB, not the line: magic numbers hold newlines, HTML may open blank
        head = line[:4096] if len(line) >= 4096 else line + fh.read(4096 - len(line))
    return line, head


def _header_problem(cells: list[str], kind: str) -> str | None:
    from .io._clinical import SAMPLE_ID_COLUMNS
    from .io._matrix import MATRIX_HEADER_CELLS

    if kind == "expression" and (cells[0] not in MATRIX_HEADER_CELLS or len(cells) < 2):
        return (f"header starts {cells[:2]!r}; a Xena matrix starts with "
                f"{' or '.join(map(repr, MATRIX_HEADER_CELLS))} and sample columns")
    if kind == "probemap" and cells[:2] != ["id", "gene"]:
        return f"header starts {cells[:2]!r}; a Xena probemap starts with ['id', 'gene']"
    if kind in ("phenotype", "survival") and not set(cells) & set(SAMPLE_ID_COLUMNS):
        return (f"no sample-ID column ({', '.join(map(repr, SAMPLE_ID_COLUMNS))}) in a header "
                f"starting {cells[:3]!r}")
    return None


def content_problem(path: str | os.PathLike, kind: str | None) -> str | None:
    """Why a downloaded file is not the ``kind`` of Xena file it claims to be, or None.

    Only the start of the (decompressed) content is read: HTML pages, XML error
    documents, archives and binary data are named; a tabular header must fit ``kind``
    (``expression``, ``phenotype``, ``survival`` or ``probemap``; other kinds only get the
    text check).

    Returns
    -------
    A phrase to follow the file name in a message, or None when the file looks right.
    """
    expected = EXPECTED.get(kind or "", "a Xena table")
    try:
        line, head = _first_line(Path(path))
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        return f"failed the gzip check: corrupt or truncated gzip ({_reason(err)})"
    what = describe_content(head)
    if what is not None:
        return f"looks like {what}, not {expected}"
    line = line.removeprefix(UTF8_BOM)
    if not line.strip():
        return f"is empty, not {expected}"
    try:
        cells = [c.strip() for c in line.decode("utf-8").rstrip("\r\n").split("\t")]
    except UnicodeDecodeError:
        return f"is not UTF-8 text, not {expected}"
    problem = _header_problem(cells, kind) if kind in EXPECTED else None
    return f"does not look like {expected}: {problem}" if problem else None


@contextlib.contextmanager
def file_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``<target>.lock`` (blocking), removed on release.

    The lock file is deleted while still locked; a process that was waiting on the
    deleted file notices (its inode is no longer the one at the path) and locks afresh,
    so deleting never lets two holders in.
    """
    lock = Path(target).with_name(Path(target).name + ".lock")
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(lock)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _cached(dest: Path, kind: str | None) -> Path:
    if kind is not None:
        problem = content_problem(dest, kind)
        if problem:
            raise CachedFileError(dest, problem)
    return dest


def download(url: str, dest: str | os.PathLike, *, expected_size: int | None = None,
             verify_gzip_content: bool | None = None, kind: str | None = None,
             refresh: bool = False, retries: int = 5, backoff: float = 0.5,
             timeout: float = 60, progress: bool | None = None) -> Path:
    """Download ``url`` to ``dest``, resuming and verifying; no network if ``dest`` exists.

    Parameters
    ----------
    url
        HTTP(S) URL of the file.
    dest
        Final path. Bytes go to ``<dest>.part`` first, which a later call resumes; a lock
        on ``<dest>.lock`` makes a second process wait, then find the file in place.
    expected_size
        Size in bytes the file must have, checked on top of the server's announced size.
    verify_gzip_content
        Decode the whole file as gzip before accepting it. ``None``: when ``dest`` ends
        with ``.gz`` or the content starts with the gzip magic bytes.
    kind
        What the file must look like (:data:`EXPECTED` keys: ``expression``,
        ``phenotype``, ``survival``, ``probemap``), checked on the downloaded file before it
        is accepted and again on a cache hit; None: no content check.
    refresh
        Download again even if ``dest`` exists (replaced only once the new file passed).
    retries
        Attempts allowed after the first without any new byte received; an attempt that
        extends the partial file starts a fresh count, so a long file on a flaky link still
        completes.
    backoff
        First pause between attempts in seconds; it doubles with each failure in a row.
    timeout
        Socket timeout in seconds (connect and each read).
    progress
        Show a progress bar on stderr; ``None`` follows ``MIRROR_NO_PROGRESS``.

    Returns
    -------
    ``dest`` as a Path.

    Raises
    ------
    OfflineError
        The host could not be reached on any attempt.
    DownloadError
        The server refused (404, other 4xx), kept failing, or the file failed a check; a
        file failing a check is deleted, a ``.part`` of an interrupted transfer is kept.
    CachedFileError
        ``dest`` exists but fails the ``kind`` check.
    """
    dest = Path(dest)
    if dest.exists() and not refresh:
        return _cached(dest, kind)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"{dest.parent}: cannot create the cache folder "
                            f"({_reason(err)})") from None
    part = dest.with_name(dest.name + ".part")
    with file_lock(dest):
        if refresh:
            part.unlink(missing_ok=True)  # start over: the old bytes may be the bad ones
        elif dest.exists():  # another process completed it while we waited for the lock
            return _cached(dest, kind)
        total = _transfer(url, part, retries=retries, backoff=backoff, timeout=timeout,
                          progress=progress)
        problem = _check(part, dest, total, expected_size, verify_gzip_content, kind)
        if problem:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: {problem}")
        os.replace(part, dest)
    return dest


def _transfer(url: str, part: Path, *, retries: int, backoff: float, timeout: float,
              progress: bool | None) -> int | None:
    """Fill ``part`` with the whole file, retrying; returns the size the server announced."""
    state = _State()
    furthest = _size(part)
    failures = 0
    attempts = 0
    while True:
        attempts += 1
        try:
            _attempt(url, part, state, timeout=timeout, progress=progress)
            return state.total
        except _Retry as err:
            size = _size(part)
            if size > furthest:
                furthest, failures = size, 0
            else:
                failures += 1
            if failures > retries:
                if err.unreachable:
                    raise OfflineError(offline_message(url, err.reason)) from None
                raise DownloadError(f"{url}: download failed after {attempts} attempts "
                                    f"({err.reason})") from None
            if err.wait:
                time.sleep(min(backoff * 2 ** max(failures - 1, 0), _MAX_SLEEP))


def _check(part: Path, dest: Path, total: int | None, expected_size: int | None,
           verify_gzip_content: bool | None, kind: str | None = None) -> str | None:
    """The first problem of a finished part (size, content, gzip integrity), or None."""
    size = _size(part)
    if total is not None and size != total:
        return f"got {size} bytes but the server announced {total}"
    if expected_size is not None and size != expected_size:
        return f"got {size} bytes, expected {expected_size}"
    if kind is not None:
        # before the gzip check: an HTML page under a .gz name is named as HTML, not as
        # a corrupt gzip
        problem = content_problem(part, kind)
        if problem:
            return f"downloaded file {problem}"
    if verify_gzip_content is None:
        with open(part, "rb") as fh:
            verify_gzip_content = dest.name.endswith(".gz") or fh.read(2) == GZIP_MAGIC
    if verify_gzip_content:
        try:
            verify_gzip(part)
        except InputFileError as err:
            return f"downloaded file failed the gzip check: {err.problem}"
    return None


def _host_dir(base_url: str) -> str:
    # ':' of a port is not allowed in Windows folder names.
    netloc = urllib.parse.urlsplit(base_url).netloc or base_url
    return netloc.rsplit("@", 1)[-1].replace(":", "_")


def _local_parts(dataset: str) -> list[str]:
    parts = [p for p in dataset.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise DownloadError(f"{dataset!r}: not a valid dataset path")
    return parts


def fetch_files(base_url: str, datasets: dict[str, str], *, cache: Path,
                progress: bool | None = None, retries: int = 5,
                refresh: bool = False) -> dict[str, Path]:
    """Download the datasets of one hub into the cache (cached ones are not fetched again).

    Parameters
    ----------
    base_url
        Hub URL, e.g. ``cohorts.TCGA_HUB`` or a mirror: files are read from
        ``<base_url>/download/<dataset path>``.
    datasets
        Role (``expression``, ``phenotype``, ``survival``, ``probemap``) -> dataset path on
        the hub; the role is also the content each file is checked against.
    cache
        Cache root; files land in ``<cache>/<host>/<dataset path>``, with the dataset
        path's ``/`` kept as subfolders.
    progress
        Progress bars; ``None`` follows ``MIRROR_NO_PROGRESS``.
    retries
        Passed to :func:`download`.
    refresh
        Download again even when cached.

    Returns
    -------
    Role -> local path, in the order of ``datasets``.
    """
    root = Path(cache) / _host_dir(base_url)
    paths: dict[str, Path] = {}
    for role, dataset in datasets.items():
        dest = root.joinpath(*_local_parts(dataset))
        paths[role] = download(dataset_url(base_url, dataset), dest, kind=role,
                               refresh=refresh, progress=progress, retries=retries)
    return paths
