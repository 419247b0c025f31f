"""Which Xena files make a cohort on each hub, fetched through the download cache."""

from __future__ import annotations

import contextlib
import os
import shlex
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from ._download import CachedFileError, fetch_files
from ._download import cache_dir as resolve_cache_dir
from ._errors import CohortError, DownloadError, InputFileError, NotFoundError
from .cohorts import HUBS, TCGA_HUB, TOIL_DATASETS, TOIL_HUB, get_preset


def cohort_datasets(cohort: str, *, hub: str = "tcga", toil_level: str = "isoform",
                    base_url: str | None = None) -> list[tuple[str, str, str]]:
    """(role, base URL, dataset path) for every file of a cohort on a hub.

    ``base_url`` replaces every hub's address (a mirror holding all the files).
    """
    preset = get_preset(cohort)
    if base_url is not None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise DownloadError(f"{base_url!r}: not an http(s) URL; a mirror address looks "
                                "like http://host:port and serves each file at "
                                "http://host:port/download/ + its dataset path")
    if hub not in HUBS:
        raise CohortError(f"unknown hub {hub!r}; choose one of {', '.join(HUBS)}")
    if hub not in preset.hubs:
        raise CohortError(f"cohort {preset.name} is not available on the {hub} hub")
    out: list[tuple[str, str, str]] = []
    if hub == "toil":
        if toil_level not in TOIL_DATASETS:
            raise CohortError(f"unknown toil level {toil_level!r}; choose isoform or gene")
        matrix, probemap = TOIL_DATASETS[toil_level]
        out += [("expression", base_url or TOIL_HUB, matrix), ("probemap", base_url or TOIL_HUB, probemap)]
    probemap_added = False
    for member in preset.members:
        for role, path in member.datasets(hub).items():
            base = base_url or (TCGA_HUB if hub == "toil" else HUBS[hub])
            if role == "probemap":
                if probemap_added:
                    continue
                probemap_added = True
            out.append((role, base, path))
    return out


def refresh_command(cohort: str, *, hub: str = "tcga", cache_dir=None,
                    base_url: str | None = None, toil_level: str = "isoform") -> str:
    """The ``mirror-genes fetch --refresh`` command line that downloads a cohort again."""
    args = ["mirror-genes", "fetch", "--cohort", cohort]
    if hub != "tcga":
        args += ["--hub", hub]
    if hub == "toil" and toil_level != "isoform":
        args += ["--toil-level", toil_level]
    if base_url:
        args += ["--base-url", base_url]
    if cache_dir is not None and str(cache_dir):
        args += ["--cache-dir", str(cache_dir)]
    return shlex.join([*args, "--refresh"])


def _twin(path: str) -> str:
    return path.removesuffix(".gz") if path.endswith(".gz") else path + ".gz"


def _fetch_one(base: str, role: str, path: str, cache, *, refresh: bool,
               progress: bool | None):
    try:
        return fetch_files(base, {role: path}, cache=cache, progress=progress,
                           refresh=refresh)[role]
    except NotFoundError as first:
        # hubs (and mirrors) serve most datasets both plain and gzipped; try the other name
        # once, and report the name asked for if neither exists
        try:
            return fetch_files(base, {role: _twin(path)}, cache=cache, progress=progress,
                               refresh=refresh)[role]
        except NotFoundError:
            raise first from None


def fetch(cohort: str, *, hub: str = "tcga", cache_dir: str | os.PathLike | None = None,
          base_url: str | None = None, toil_level: str = "isoform",
          progress: bool | None = None, refresh: bool = False) -> dict[str, list]:
    """Download (or find in the cache) every file of a cohort.

    Parameters
    ----------
    cohort
        Preset name.
    hub
        ``tcga``, ``gdc`` or ``toil`` (toil: pan-cancer matrix cut to the cohort's samples;
        phenotype and survival from the TCGA hub).
    cache_dir
        Cache folder (default: ``MIRROR_GENES_CACHE`` or the user cache directory).
    base_url
        A mirror to use instead of the hubs: every file is read from
        ``<base_url>/download/<dataset path>`` (the hubs' own layout).
    toil_level
        ``isoform`` or ``gene`` matrix on the toil hub.
    progress
        Show progress bars.
    refresh
        Download every file again, replacing the cached copies once the new ones passed
        their checks.

    Returns
    -------
    Role (``expression``, ``phenotype``, ``survival``, ``probemap``) -> local paths, in
    member order.

    Raises
    ------
    CachedFileError
        A cached file no longer looks like what it should be; the message gives the
        ``mirror-genes fetch --refresh`` command that replaces it.
    """
    datasets = cohort_datasets(cohort, hub=hub, toil_level=toil_level, base_url=base_url)
    cache = resolve_cache_dir(cache_dir)
    files: dict[str, list] = {"expression": [], "phenotype": [], "survival": [], "probemap": []}
    for role, base, path in datasets:
        try:
            local = _fetch_one(base, role, path, cache, refresh=refresh, progress=progress)
        except CachedFileError as err:
            hint = "download it again with: " + refresh_command(
                cohort, hub=hub, cache_dir=cache_dir, base_url=base_url, toil_level=toil_level)
            raise CachedFileError(err.path, err.problem, hint) from None
        files[role].append(local)
    return files


@contextlib.contextmanager
def cache_hint(cohort: str, *, hub: str = "tcga", cache_dir=None, base_url: str | None = None,
               toil_level: str = "isoform") -> Iterator[None]:
    """Add the refresh command to an input error about a file of the download cache.

    A cached file passed its checks when it was downloaded; if reading it fails later
    (edited, truncated by a full disk, left by an older version), the fix is to download it
    again, which the plain "bad file" message would not say.
    """
    try:
        yield
    except InputFileError as err:
        try:
            root = resolve_cache_dir(cache_dir).resolve()
            in_cache = root in Path(err.path).resolve().parents
        except Exception:  # the hint is a courtesy: never mask the original error
            in_cache = False
        if not in_cache:
            raise
        command = refresh_command(cohort, hub=hub, cache_dir=cache_dir, base_url=base_url,
                                  toil_level=toil_level)
        raise InputFileError(err.path, f"{err.problem} (a cached download; fetch it again "
                                       f"with: {command})") from None
