"""``mirror-model pretrain``: one run, one fold of a split, or every fold in turn."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer

from ._common import cli_errors, info, is_main_process

SlidesOpt = Annotated[Path, typer.Option("--slides", help="Folder of patch-feature files (.h5 TRIDENT/CLAM, or reference .pt).")]
RnaOpt = Annotated[Path, typer.Option("--rna", help="Refined transcriptomics: .h5ad (or the reference CSV).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder (created; with --all-folds it holds fold_<k>/).")]
SplitsOpt = Annotated[Path | None, typer.Option("--splits", help="Folder of reference splits_<k>.csv files (patient-level folds).")]
FoldOpt = Annotated[int | None, typer.Option("--fold", help="Pretrain on fold K's training patients only.")]
AllFoldsOpt = Annotated[bool, typer.Option("--all-folds", help="Pretrain every fold in turn, into OUT/fold_<k>.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML file with \\[model] and \\[train] tables.")]
PresetOpt = Annotated[str | None, typer.Option("--preset", help="reference (default: the paper's hyperparameters) or small (CPUs, demo).")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Epochs (with --resume: the total to reach; may extend a finished run).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Global batch size (all GPUs together).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[str | None, typer.Option("--precision", help="fp32, bf16 or fp16 (default: fp16 on CUDA, fp32 on CPU).")]
WorkersOpt = Annotated[int | None, typer.Option("--num-workers", help="DataLoader worker processes.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _overrides(slides_dim: int, n_genes: int, epochs, batch_size, device, precision, num_workers) -> tuple[dict, dict]:
    model = {"patch_dim": slides_dim, "n_genes": n_genes}  # input sizes come from the data
    train = {"epochs": epochs, "batch_size": batch_size, "device": device, "precision": precision,
             "num_workers": num_workers}
    return model, {k: v for k, v in train.items() if v is not None}


def resolve_run_config(out: Path, *, resume: bool, preset: str | None, file: dict, model: dict, train: dict):
    """The configuration of one run. Resuming without ``--preset``, the run's own saved
    configuration is the base (so ``--resume --epochs N`` needs nothing else); the TOML file
    and the CLI options apply on top, and a difference from the run is refused later."""
    from .. import constants as C
    from ..config import resolve_config

    saved_path = out / C.RUN_CONFIG
    if resume and preset is None and saved_path.is_file():
        saved = json.loads(saved_path.read_text())
        merged = {"model": {**saved.get("model", {}), **file.get("model", {})},
                  "train": {**saved.get("train", {}), **file.get("train", {})}}
        return resolve_config(preset="reference", file=merged, model=model, train=train)
    return resolve_config(preset=preset or "reference", file=file, model=model, train=train)


def _check_fold_options(splits, fold, all_folds) -> None:
    from .._errors import ConfigError

    if fold is not None and all_folds:
        raise ConfigError("--fold and --all-folds exclude each other")
    if (fold is not None or all_folds) and splits is None:
        raise ConfigError(f"{'--all-folds' if all_folds else '--fold'} needs --splits DIR (splits_<k>.csv files)")
    if splits is not None and fold is None and not all_folds:
        raise ConfigError("--splits needs --fold K or --all-folds")


def _load_folds(splits, fold):
    from mirror_genes.splits import read_splits

    from .._errors import ConfigError

    folds = read_splits(splits)
    if fold is not None and not 0 <= fold < len(folds):
        raise ConfigError(f"--fold {fold}: {splits} has {len(folds)} fold(s), numbered 0 to {len(folds) - 1}")
    return folds


def _train_one(pairing, out: Path, *, resume: bool, preset, file, model_over, train_over, train_patients=None,
               split_name="train", run_info=None, quiet=False):
    from .._model import MIRROR

    model_cfg, train_cfg = resolve_run_config(out, resume=resume, preset=preset, file=file, model=model_over,
                                              train=train_over)
    model = MIRROR.from_config(model_cfg, train_cfg)
    history = model.train(pairing, train_patients=train_patients, split_name=split_name, run_dir=out,
                          resume=resume, progress=False if quiet else None, run_info=run_info or {})
    last = history[-1] if history else {}
    info(f"{out}: {len(history)} epoch(s) done; last epoch mean loss {last.get('loss', float('nan')):.4f}")
    return history


def _all_folds(pairing, out: Path, folds, *, resume: bool, quiet: bool, run_info: dict, **cfg) -> None:
    """Every fold in turn into ``OUT/fold_<k>``; ``OUT/run.json`` marks the folder of folds."""
    from mirror_genes.utils import now_utc

    from .. import constants as C
    from ..train._rundir import FOLDS_KIND, check_new_or_resumable, write_json

    # Rank 0 alone checks and creates the folder of folds (another rank could otherwise see it
    # half-made); should it fail, torchrun stops the other ranks.
    created = is_main_process() and check_new_or_resumable(out, resume=resume, kind=FOLDS_KIND) is None
    if created:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / C.RUN_MANIFEST, {"kind": FOLDS_KIND, "created": now_utc(), "n_folds": len(folds),
                                          "folds": [f"fold_{k}" for k in range(len(folds))], **run_info})
    try:
        for k, (train_patients, _val) in enumerate(folds):
            fold_dir = out / f"fold_{k}"
            info(f"fold {k}: {len(train_patients)} training patients")
            _train_one(pairing, fold_dir, resume=resume and (fold_dir / C.RUN_MANIFEST).is_file(),
                       train_patients=train_patients, split_name=f"fold {k} train",
                       run_info={**run_info, "fold": k}, quiet=quiet, **cfg)
    except BaseException:
        if created and is_main_process() and not any(out.glob("fold_*")):
            shutil.rmtree(out, ignore_errors=True)  # nothing of the run survived: leave nothing behind
        raise


def pretrain_command(
    slides: SlidesOpt,
    rna: RnaOpt,
    out: OutOpt,
    splits: SplitsOpt = None,
    fold: FoldOpt = None,
    all_folds: AllFoldsOpt = False,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    num_workers: WorkersOpt = None,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pretrain MIRROR on paired slides and RNA; checkpoints, metrics and figures go to --out."""
    from ..config import load_config
    from ..data import discover_slides, pair_slides, read_rna

    with cli_errors():
        _check_fold_options(splits, fold, all_folds)
        file = load_config(config) if config is not None else {}
        folds = _load_folds(splits, fold) if splits is not None else None
        # validate: a NaN in any feature file fails the run now, not hours into an epoch
        records = discover_slides(slides, validate=True, progress=False if quiet else None)
        table = read_rna(rna)
        pairing = pair_slides(records, table)
        info(pairing.report.summary())
        model_over, train_over = _overrides(records[0].dim, table.values.shape[1], epochs, batch_size, device,
                                            precision, num_workers)
        cfg = dict(preset=preset, file=file, model_over=model_over, train_over=train_over)
        given = {"slides": str(slides), "rna": str(rna), "splits": str(splits) if splits else None,
                 "config": str(config) if config else None, "preset": preset, **train_over}
        run_info = {"command": "mirror-model pretrain", "options": given}
        if all_folds:
            _all_folds(pairing, out, folds, resume=resume, quiet=quiet, run_info=run_info, **cfg)
        elif fold is not None:
            _train_one(pairing, out, resume=resume, train_patients=folds[fold][0], split_name=f"fold {fold} train",
                       run_info={**run_info, "fold": fold}, quiet=quiet, **cfg)
        else:
            _train_one(pairing, out, resume=resume, run_info=run_info, quiet=quiet, **cfg)
