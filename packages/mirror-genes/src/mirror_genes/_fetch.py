"""Which Xena files make a cohort on each hub, fetched through the download cache."""

from __future__ import annotations

import os

from ._download import cache_dir as resolve_cache_dir
from ._download import fetch_files
from ._errors import CohortError, NotFoundError
from .cohorts import HUBS, TCGA_HUB, TOIL_DATASETS, TOIL_HUB, get_preset


def cohort_datasets(cohort: str, *, hub: str = "tcga", toil_level: str = "isoform",
                    base_url: str | None = None) -> list[tuple[str, str, str]]:
    """(role, base URL, dataset path) for every file of a cohort on a hub.

    ``base_url`` replaces every hub's address (a mirror holding all the files).
    """
    preset = get_preset(cohort)
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


def fetch(cohort: str, *, hub: str = "tcga", cache_dir: str | os.PathLike | None = None,
          base_url: str | None = None, toil_level: str = "isoform",
          progress: bool | None = None) -> dict[str, list]:
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
        A mirror to use instead of the hubs.
    toil_level
        ``isoform`` or ``gene`` matrix on the toil hub.
    progress
        Show progress bars.

    Returns
    -------
    Role (``expression``, ``phenotype``, ``survival``, ``probemap``) -> local paths, in
    member order.
    """
    cache = resolve_cache_dir(cache_dir)
    files: dict[str, list] = {"expression": [], "phenotype": [], "survival": [], "probemap": []}
    for role, base, path in cohort_datasets(cohort, hub=hub, toil_level=toil_level,
                                            base_url=base_url):
        try:
            local = fetch_files(base, {role: path}, cache=cache, progress=progress)[role]
        except NotFoundError:
            # hubs serve most datasets both plain and gzipped; try the other name once
            if path.endswith(".gz"):
                raise
            local = fetch_files(base, {role: path + ".gz"}, cache=cache, progress=progress)[role]
        files[role].append(local)
    return files
