"""Run directories: the ``run.json`` marker, resume checks, data fingerprints.

A folder is a mirror-model run when it holds ``run.json`` (``constants.RUN_MANIFEST``). A
fresh run needs an absent or empty folder; ``--resume`` needs a run of the same configuration
(epochs, device, precision and workers may change: they do not define the model or the
sequence of batches).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from mirror_genes.utils import atomic_path, now_utc

from .. import constants as C
from .._errors import RunDirError

RUN_KIND = "mirror-model-run"
FOLDS_KIND = "mirror-model-folds"
# Train settings that define the sequence of batches and updates; the others may change on resume.
RUN_DEFINING_TRAIN_KEYS = ("batch_size", "lr", "weight_decay", "seed", "n_patches")


def slides_fingerprint(paths: Iterable[str | os.PathLike]) -> dict:
    """Hash of the sorted slide list with sizes and modification times.

    Parameters
    ----------
    paths
        Slide feature files.

    Returns
    -------
    ``{"n_files", "sha256"}``: sha256 over lines ``<file name>\\t<size bytes>\\t<mtime ns>\\n``
    in sorted name order (cheap for thousands of large files; contents are not read).
    """
    rows = []
    for p in paths:
        st = Path(p).stat()
        rows.append(f"{Path(p).name}\t{st.st_size}\t{st.st_mtime_ns}\n")
    h = hashlib.sha256("".join(sorted(rows)).encode())
    return {"n_files": len(rows), "sha256": h.hexdigest()}


def read_manifest(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``run.json`` (None when absent)."""
    path = Path(run_dir) / C.RUN_MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise RunDirError(f"{path}: unreadable run manifest ({str(err).splitlines()[0]})") from None


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write a JSON file atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def update_manifest(run_dir: str | os.PathLike, **fields) -> dict:
    """Merge ``fields`` into ``run.json`` (stamped with the time) and write it back."""
    manifest = read_manifest(run_dir) or {}
    manifest.update(fields, updated=now_utc())
    write_json(Path(run_dir) / C.RUN_MANIFEST, manifest)
    return manifest


def check_new_or_resumable(out: str | os.PathLike, *, resume: bool, kind: str = RUN_KIND) -> dict | None:
    """Say whether ``out`` may take a fresh run, or holds the run to resume.

    Parameters
    ----------
    out
        The output folder.
    resume
        Whether ``--resume`` was given.
    kind
        ``RUN_KIND`` (one run) or ``FOLDS_KIND`` (a folder of per-fold runs).

    Returns
    -------
    The manifest of the run to resume, or None for a fresh run; :class:`RunDirError` when
    ``out`` is a file, a non-empty folder that is not a run, a run of another kind, a run
    while ``--resume`` is off, or no run while ``--resume`` is on.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: is a file, not a run folder")
    manifest = read_manifest(out) if out.is_dir() else None
    if manifest is None:
        if out.is_dir() and any(out.iterdir()):
            raise RunDirError(f"{out}: folder exists and is not a mirror-model run (no {C.RUN_MANIFEST}); "
                              "choose a new --out")
        if resume:
            raise RunDirError(f"{out}: --resume given but there is no run to resume here")
        return None
    if manifest.get("kind") != kind:
        want = "an --all-folds run" if kind == FOLDS_KIND else "a single run"
        raise RunDirError(f"{out}: holds a {manifest.get('kind', 'unknown')!r} run, not {want}")
    if not resume:
        raise RunDirError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    return manifest


def check_same_config(out: str | os.PathLike, saved: dict, wanted: dict) -> None:
    """Refuse to resume a run whose configuration differs, naming the first differing value.

    Parameters
    ----------
    out
        The run folder (for the message).
    saved
        ``{"model": {...}, "train": {...}}`` from the run's ``config.json``.
    wanted
        The configuration asked for now, same layout.
    """
    for section, keys in (("model", None), ("train", RUN_DEFINING_TRAIN_KEYS)):
        a, b = saved.get(section, {}), wanted.get(section, {})
        names = sorted(set(a) | set(b)) if keys is None else keys
        for key in names:
            if key == "activation_checkpointing":  # memory lever only
                continue
            if a.get(key) != b.get(key):
                raise RunDirError(f"{out}: holds another configuration ({section}.{key} is {a.get(key)!r} "
                                  f"there, {b.get(key)!r} now); choose another --out")
