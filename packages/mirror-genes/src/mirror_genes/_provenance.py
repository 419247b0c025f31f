"""Provenance records: file checksums and versions, kept to plain types that h5ad can store."""

from __future__ import annotations

import hashlib
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | os.PathLike, role: str) -> dict:
    p = Path(path)
    return {
        "role": role,
        "path": str(p.resolve()),
        "name": p.name,
        "size": int(p.stat().st_size),
        "sha256": sha256_file(p),
    }


def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("mirror-genes", "numpy", "pandas", "anndata", "scikit-learn", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
