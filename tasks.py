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
    """The main job on the built-in synthetic paired cohort, end to end (under 10 minutes on 2 CPU cores).

    synthetic cohort -> mirror-genes ingest + select (refined consensus h5ad, 5 patient-level
    folds) -> mirror-model benchmark (per fold: MIRROR and its ablations pretrained on the
    training patients, TANGLE, ABMIL, PORPOISE, Linear; tables, figures, report) -> evaluate on
    the benchmark's MIRROR runs (reads the embedding cache) -> report. A rerun resumes the
    benchmark (finished parts are kept).
    """
    import time

    setup()
    mg, mm = BIN / "mirror-genes", BIN / "mirror-model"
    syn, xena = DEMO_DIR / "synthetic", DEMO_DIR / "synthetic" / "xena"
    refined = DEMO_DIR / "selection" / "consensus" / "brca_refined.h5ad"
    splits, slides = DEMO_DIR / "selection" / "splits", syn / "slides"
    times: list[tuple[str, float]] = []

    def step(name: str, *cmd) -> None:
        t0 = time.perf_counter()
        run(*cmd)
        times.append((name, time.perf_counter() - t0))

    start = time.perf_counter()
    step("synthetic cohort", mm, "synthetic", "--out", syn, "--force")  # rerun: same files
    step("ingest", mg, "ingest", "--cohort", "brca", "--expression", xena / "TCGA.BRCA.sampleMap" / "HiSeqV2.gz",
         "--phenotype", xena / "TCGA.BRCA.sampleMap" / "BRCA_clinicalMatrix",
         "--survival", xena / "survival" / "BRCA_survival.txt", "--out", DEMO_DIR / "brca.h5ad", "--quiet", "--force")
    step("gene selection", mg, "select", "--input", DEMO_DIR / "brca.h5ad", "--cgc", xena / "cancer_gene_census.csv",
         "--folds", "5", "--out", DEMO_DIR / "selection", "--force")
    # The small preset, tuned for a 2-core CPU by options only (the model code is the paper's):
    # 5 pretraining epochs on 64 patches per slide; ABMIL/PORPOISE on 64-patch training bags,
    # 16 bags per step at lr 1e-3 for 10 epochs (PORPOISE's 5 M-parameter Adam step made batch-1
    # training cost minutes per fold); 3 few-shot repeats; one torch thread in each of two
    # processes (on a busy 2-core machine one thread was 6x faster than two).
    step("benchmark", mm, "benchmark", "--cohort", "BRCA", "--slides", slides, "--rna", refined, "--splits", splits,
         "--preset", "small", "--epochs", "5", "--n-patches", "64", "--baseline-epochs", "10",
         "--baseline-patches", "64", "--baseline-batch-size", "16", "--baseline-lr", "1e-3", "--n-repeats", "3",
         "--threads", "1", "--jobs", "2", "--out", DEMO_DIR / "benchmark")
    evaluated = DEMO_DIR / "evaluate-survival-fewshot"
    step("evaluate (cached embeddings)", mm, "evaluate", "--task", "survival", "--protocol", "fewshot",
         "--run", DEMO_DIR / "benchmark" / "pretrain" / "MIRROR", "--slides", slides, "--rna", refined,
         "--shots", "5", "--shots", "10", "--n-repeats", "3", "--threads", "1", "--no-umap",
         "--out", evaluated, "--force")
    step("report", mm, "report", evaluated)
    total = time.perf_counter() - start
    print("\n".join(f"  {name:<30} {secs:6.1f} s" for name, secs in times))
    print(f"demo finished in {total / 60:.1f} min; outputs in {DEMO_DIR}:\n"
          f"  benchmark/summary.md (tables I-IV, per-fold tables), benchmark/report.html,\n"
          f"  {evaluated.name}/report.html, selection/report.md")


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
