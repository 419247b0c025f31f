#!/usr/bin/env python3
"""One-command set-up and tasks for the MIRROR toolkit.

    python3 tasks.py demo    # main job on the built-in synthetic cohort
    python3 tasks.py test    # the whole test suite

Each task creates ``.venv`` (if needed) and installs the packages into it; the install is
skipped when nothing it depends on changed since the last one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".mirror-setup-stamp"
PACKAGES = ["packages/mirror-genes[test]", "packages/mirror-model[test]"]
# Installed before the packages so that pip does not pick a multi-GB CUDA build of PyTorch;
# package metadata itself keeps a range.
PINNED_FIRST: list[str] = ["torch==2.13.0"]
DEMO_DIR = ROOT / "demo-output"


def run(*cmd: str | os.PathLike, **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def _fingerprint() -> str:
    h = hashlib.sha256()
    for p in sorted(ROOT.glob("packages/*/pyproject.toml")) + [Path(__file__)]:
        h.update(p.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def setup() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"error: Python >= 3.11 is needed, this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    fingerprint = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if PINNED_FIRST:
        run(*pip, *PINNED_FIRST)
    run(*pip, *[arg for pkg in PACKAGES for arg in ("-e", pkg)])
    STAMP.write_text(fingerprint)


def demo() -> None:
    setup()
    cli = BIN / "mirror-genes"
    syn = DEMO_DIR / "synthetic"
    run(cli, "synthetic", "--cohort", "brca", "--out", syn, "--force")  # rerun: same files
    run(cli, "ingest", "--cohort", "brca",
        "--expression", syn / "TCGA.BRCA.sampleMap" / "HiSeqV2.gz",
        "--phenotype", syn / "TCGA.BRCA.sampleMap" / "BRCA_clinicalMatrix",
        "--survival", syn / "survival" / "BRCA_survival.txt",
        "--out", DEMO_DIR / "brca.h5ad", "--quiet", "--force")
    run(cli, "select", "--input", DEMO_DIR / "brca.h5ad",
        "--cgc", syn / "cancer_gene_census.csv", "--folds", "5",
        "--out", DEMO_DIR / "selection", "--force")
    print(f"demo outputs in {DEMO_DIR}: brca.h5ad, selection/report.md, selection/consensus/panel.gmt")


def test() -> None:
    setup()
    env = {**os.environ, "MIRROR_NO_PROGRESS": "1"}
    code = subprocess.run([str(PY), "-m", "pytest", *sys.argv[2:]], cwd=ROOT, env=env).returncode
    sys.exit(code)


TASKS = {"setup": setup, "demo": demo, "test": test}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(TASKS)}}} [pytest args]")
    TASKS[sys.argv[1]]()
