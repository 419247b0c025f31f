"""``mirror-model benchmark``: MIRROR, its ablations and the paper's baselines on the same folds.

Every method is run per fold (pretraining and supervised fits see the fold's training patients
only) and writes one *part* per (method, task, fold) under ``OUT/.parts``; a rerun of the same
command skips finished parts and reuses finished pretraining runs, so a killed benchmark
resumes where it stopped. The tables, figures and report are rebuilt from the parts at the end.
Layout and protocol: docs/evaluation.md ("Commands").
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import constants as C
from ._benchmark_units import (
    METHODS,
    MIRROR_VARIANTS,
    SUPERVISED,
    BagStore,
    linear_unit,
    mirror_unit,
    supervised_unit,
    tangle_unit,
)
from ._errors import ConfigError, RunDirError
from ._evaluate import TASKS, check_choice, check_fold_targets, prepare_folds, read_targets, task_targets

BENCHMARK_JSON = "benchmark.json"
BENCHMARK_KIND = "mirror-model-benchmark"
PARTS = ".parts"
# settings that do not change any number: they may differ on resume
_FREE_SETTINGS = ("device", "umap")


@dataclass
class BenchmarkSettings:
    """What a benchmark runs (every field is recorded in ``benchmark.json``).

    ``epochs`` and ``n_patches`` override the preset for MIRROR, its ablations and TANGLE
    (None: the preset's); ``baseline_*`` are for ABMIL and PORPOISE; ``embed_patches`` None
    embeds every patch.
    """

    cohort: str
    preset: str = "reference"
    epochs: int | None = None
    n_patches: int | None = None
    tasks: tuple[str, ...] = TASKS
    methods: tuple[str, ...] = METHODS
    shots: int = 10
    n_repeats: int = 5
    probe_epochs: int = 100
    baseline_epochs: int = 20
    baseline_patches: int | None = None
    baseline_batch_size: int = 1
    baseline_lr: float | None = None
    embed_patches: int | None = None
    seed: int = 42
    device: str = "auto"
    umap: bool = True

    def __post_init__(self) -> None:
        self.tasks = tuple(check_choice(t, TASKS, "--tasks") for t in self.tasks)
        self.methods = tuple(check_choice(m, METHODS, "--methods") for m in self.methods)
        if not self.tasks or not self.methods:
            raise ConfigError("--tasks and --methods must name at least one task and one method")
        for name in ("shots", "n_repeats", "probe_epochs", "baseline_epochs", "baseline_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass
class BenchmarkContext:
    """Inputs, folds and outputs shared by the units."""

    out: Path
    settings: BenchmarkSettings
    pairing: object
    raw_folds: list
    folds: dict            # task -> folds restricted to usable patients
    targets: dict          # task -> per-patient targets
    store: BagStore
    command: str | None
    options: dict
    linear: tuple | None = None
    embeddings: dict = field(default_factory=dict)

    @property
    def patch_dim(self) -> int:
        return int(self.pairing.slides[0].dim)

    @property
    def n_genes(self) -> int:
        return int(self.pairing.rna.values.shape[1])


def prepare(slides, rna, splits, settings: BenchmarkSettings, *, out, command=None) -> BenchmarkContext:
    """Read and check every input before anything is written (bad input fails here, in one line)."""
    from mirror_genes.splits import read_splits

    from .data import discover_slides, pair_slides, read_rna

    for method in settings.methods:  # an invalid ablation configuration fails now, not after hours
        if method in MIRROR_VARIANTS:
            from .config import resolve_config

            resolve_config(preset=settings.preset, model=MIRROR_VARIANTS[method],
                           train={"epochs": settings.epochs, "n_patches": settings.n_patches})
    raw_folds = read_splits(splits)
    pairing = pair_slides(discover_slides(slides, validate=True, progress=False), read_rna(rna))
    all_targets = read_targets(rna)
    folds, targets = {}, {}
    for task in settings.tasks:
        targets[task] = task_targets(all_targets, task)
        what = "no paired slide or no label" if task == "subtyping" else "no paired slide or no survival time/event"
        usable = set(pairing.patients) & set(targets[task].index)
        folds[task] = prepare_folds(raw_folds, pairing.known_patients | set(all_targets.index), usable, what)
        check_fold_targets(folds[task], targets[task], task)
    options = {"slides": str(Path(slides).resolve()), "rna": str(Path(rna).resolve()),
               "splits": str(Path(splits).resolve()), "preset": settings.preset, "epochs": settings.epochs,
               "n_patches": settings.n_patches}
    return BenchmarkContext(Path(out), settings, pairing, raw_folds, folds, targets, BagStore(pairing), command,
                            options)


def _splits_digest(raw_folds) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(raw_folds).encode()).hexdigest()


def open_out(ctx: BenchmarkContext, *, force: bool) -> bool:
    """Check ``OUT``: new (True), or a benchmark of the same settings to resume (False).

    A folder that is not a benchmark, or one with other settings or splits, is refused
    (``--force`` starts over).
    """
    from mirror_genes.utils import check_output

    out = ctx.out
    check_output(out, inputs=[ctx.options["rna"], ctx.options["splits"]], force=True, kind="dir")
    manifest_path = out / BENCHMARK_JSON
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    if out.is_dir() and any(out.iterdir()) and (force or manifest is None):
        if not force:
            raise RunDirError(f"{out}: folder exists and is not a benchmark (no {BENCHMARK_JSON}); choose a new "
                              "--out, or --force to replace it")
        shutil.rmtree(out)
        manifest = None
    if manifest is None:
        return True
    if manifest.get("kind") != BENCHMARK_KIND:
        raise RunDirError(f"{out}: {BENCHMARK_JSON} is not a mirror-model benchmark manifest")
    wanted, saved = ctx.settings.to_dict(), manifest.get("settings", {})
    for key in wanted:
        if key not in _FREE_SETTINGS and saved.get(key) != wanted[key]:
            raise RunDirError(f"{out}: holds a benchmark with other settings ({key} is {saved.get(key)!r} there, "
                              f"{wanted[key]!r} now); choose another --out, or --force to start over")
    if manifest.get("splits_sha256") != _splits_digest(ctx.raw_folds):
        raise RunDirError(f"{out}: holds a benchmark on other splits; choose another --out, or --force to start over")
    return False


def _write_manifests(ctx: BenchmarkContext, *, created: bool, status: str, error: str | None = None) -> None:
    """``OUT/benchmark.json``, and ``pretrain/<variant>/run.json`` marking each MIRROR variant's
    folder as an ``--all-folds`` run, so ``mirror-model evaluate --run OUT/pretrain/MIRROR``
    (and its embedding cache) work on it."""
    from mirror_genes.utils import now_utc

    from ._model import _versions
    from .train._rundir import FOLDS_KIND, write_json

    path = ctx.out / BENCHMARK_JSON
    manifest = json.loads(path.read_text()) if path.is_file() else {"kind": BENCHMARK_KIND, "created": now_utc()}
    manifest.update(status=status, updated=now_utc(), settings=ctx.settings.to_dict(), inputs=ctx.options,
                    splits_sha256=_splits_digest(ctx.raw_folds), n_folds=len(ctx.raw_folds), command=ctx.command,
                    versions=_versions())
    if error:
        manifest["error"] = error
    write_json(path, manifest)
    for method in ctx.settings.methods:
        folder = ctx.out / "pretrain" / method
        if method in MIRROR_VARIANTS and not (folder / C.RUN_MANIFEST).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / C.RUN_MANIFEST, {
                "kind": FOLDS_KIND, "created": now_utc(), "n_folds": len(ctx.raw_folds),
                "folds": [f"fold_{k}" for k in range(len(ctx.raw_folds))], "method": method,
                "command": ctx.command, "options": ctx.options})


def part_dir(ctx: BenchmarkContext, method: str, task: str, k: int) -> Path:
    return ctx.out / PARTS / method / task / f"fold_{k}"


def _save_part(ctx: BenchmarkContext, method: str, task: str, k: int, result) -> None:
    """One finished (method, task, fold): predictions and runs, written as one atomic folder."""
    from mirror_genes.utils import atomic_path

    from . import eval as ev

    with atomic_path(part_dir(ctx, method, task, k), is_dir=True) as tmp:
        ev.write_predictions(result.predictions, tmp / C.PREDICTIONS_CSV)
        result.runs.to_csv(tmp / C.RUNS_CSV, index=False)


def run_unit(ctx: BenchmarkContext, method: str, k: int, step) -> bool:
    """Run ``method`` on fold ``k`` for the tasks whose part is missing; False when all were done."""
    todo = [t for t in ctx.settings.tasks if not (part_dir(ctx, method, t, k) / C.PREDICTIONS_CSV).is_file()]
    if not todo:
        return False
    if method in MIRROR_VARIANTS:
        results = mirror_unit(ctx, method, k, todo, step)
    elif method == C.METHOD_TANGLE:
        results = tangle_unit(ctx, k, todo, step)
    elif method in SUPERVISED:
        results = supervised_unit(ctx, method, k, todo, step)
    else:
        results = linear_unit(ctx, k, todo, step)
    for task, result in results.items():
        _save_part(ctx, method, task, k, result)
    return True


class _Bar:
    """One rich progress bar over the units, its text naming the current step."""

    def __init__(self, total: int, progress: bool | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from mirror_genes.utils import progress_enabled

        self._progress = Progress(TextColumn("benchmark"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  TextColumn("{task.description}"), console=Console(stderr=True),
                                  disable=not progress_enabled(progress))
        self._task = self._progress.add_task("", total=total)

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def step(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    def advance(self) -> None:
        self._progress.advance(self._task)


def _worker_init(threads: int, parent: int) -> None:
    """A unit process: ``threads`` torch threads, warnings as one line each (as the CLI prints
    them), and an exit as soon as the benchmark process is gone (killed: no orphan keeps working)."""
    import os
    import sys
    import threading
    import time
    import warnings

    import torch

    torch.set_num_threads(threads)

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"warning: {str(message).splitlines()[0]}", file=sys.stderr)

    warnings.showwarning = one_line

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _unit_in_worker(ctx: BenchmarkContext, method: str, k: int) -> bool:
    """Run one unit in a worker process; errors come back as one picklable line."""
    from mirror_genes.utils import MirrorGenesError

    from ._errors import MirrorModelError

    try:
        return run_unit(ctx, method, k, lambda text: None)
    except MirrorGenesError as err:  # some typed errors do not unpickle (extra constructor arguments)
        raise MirrorModelError(f"fold {k}: {method}: {str(err).splitlines()[0]}") from None


def run_units(ctx: BenchmarkContext, progress: bool | None, jobs: int = 1, threads: int | None = None) -> int:
    """Every (method, fold), fold by fold (so early folds give a complete comparison); returns how many ran.

    With ``jobs > 1`` units run in that many worker processes (spawned: no state forked from a
    process that already ran torch), each with ``threads`` torch threads (default: the cores
    shared out); results are the same as one process's, unit for unit.
    """
    units = [(m, k) for k in range(len(ctx.raw_folds)) for m in ctx.settings.methods]
    ran = 0
    with _Bar(len(units), progress) as bar:
        if jobs <= 1:
            for method, k in units:
                bar.step(f"fold {k}: {method}")
                ran += run_unit(ctx, method, k, bar.step)
                bar.advance()
            return ran
        import multiprocessing
        import os
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        threads = threads or max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                                 initargs=(threads, os.getpid())) as pool:
            pending = {pool.submit(_unit_in_worker, ctx, m, k): (m, k) for m, k in units}
            try:
                while pending:
                    bar.step("running: " + ", ".join(f"fold {k} {m}" for m, k in list(pending.values())[:jobs]))
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        pending.pop(future)
                        ran += future.result()
                        bar.advance()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return ran


def _anything_kept(out: Path) -> bool:
    return any((out / PARTS).rglob(C.PREDICTIONS_CSV)) or any(out.glob(f"pretrain/*/fold_*/{C.CHECKPOINT_LAST}"))


def run_benchmark(slides, rna, splits, out, settings: BenchmarkSettings, *, command: str | None = None,
                  force: bool = False, jobs: int = 1, threads: int | None = None,
                  progress: bool | None = None) -> Path:
    """Run (or resume) a benchmark and write its tables, figures and report.

    Parameters
    ----------
    slides
        Folder of patch-feature files.
    rna
        Refined ``.h5ad`` (labels, survival and the RNA input).
    splits
        Folder of ``splits_<k>.csv`` (patient-level folds).
    out
        Benchmark folder: new, or one of the same settings to resume.
    settings
        :class:`BenchmarkSettings`.
    command
        The exact command (``commands.txt``).
    force
        Start over in a folder that holds something else.
    jobs
        Units (method x fold) run at once, in worker processes.
    threads
        Torch threads per worker (``jobs > 1``).
    progress
        Rich progress bar.

    Returns
    -------
    The report's path. A fresh benchmark that fails before finishing any part leaves nothing
    behind; otherwise ``benchmark.json`` records the failure and a rerun resumes.
    """
    ctx = prepare(slides, rna, splits, settings, out=out, command=command)
    created = open_out(ctx, force=force)
    try:
        _write_manifests(ctx, created=created, status="running")
        run_units(ctx, progress, jobs=jobs, threads=threads)
        from ._benchmark_report import assemble

        assemble(ctx)
        _write_manifests(ctx, created=False, status="finished")
        from .report import write_report

        return write_report(ctx.out, title=f"MIRROR benchmark: {settings.cohort}")
    except BaseException as err:
        if created and not _anything_kept(ctx.out):
            shutil.rmtree(ctx.out, ignore_errors=True)
        elif ctx.out.is_dir():
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            _write_manifests(ctx, created=False, status=status, error=str(err).splitlines()[0] if str(err) else None)
        raise
