"""``mirror-model benchmark`` (MIRROR, ablations and baselines on the same folds) and
``mirror-model synthetic`` (the built-in synthetic paired cohort the demo runs on)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import cli_errors, info
from ._evaluate import torch_threads


def _names(text: str | None, default) -> tuple[str, ...]:
    if text is None:
        return tuple(default)
    return tuple(t.strip() for t in text.split(",") if t.strip())


def benchmark_command(
    cohort: Annotated[str, typer.Option("--cohort", help="Cohort name for the tables (e.g. BRCA).")],
    slides: Annotated[Path, typer.Option("--slides", help="Folder of patch-feature files.")],
    rna: Annotated[Path, typer.Option("--rna", help="Refined transcriptomics .h5ad (labels, survival, RNA input).")],
    splits: Annotated[Path, typer.Option("--splits", help="Folder of splits_<k>.csv (patient-level folds).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Benchmark folder (new, or the same benchmark to resume).")],
    preset: Annotated[str, typer.Option("--preset", help="reference (the paper's sizes) or small (CPUs, demo), for MIRROR and TANGLE.")] = "reference",
    epochs: Annotated[int | None, typer.Option("--epochs", help="Pretraining epochs of MIRROR, its ablations and TANGLE (default: the preset's).")] = None,
    n_patches: Annotated[int | None, typer.Option("--n-patches", help="Patches per slide in pretraining (default: the preset's).")] = None,
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated: subtyping, survival.")] = "subtyping,survival",
    methods: Annotated[str | None, typer.Option("--methods", help="Comma-separated subset of MIRROR, MIRROR-align, MIRROR-align+retention, MIRROR-align+clustering, TANGLE, ABMIL, PORPOISE, Linear (default: all).")] = None,
    shots: Annotated[int, typer.Option("--shots", help="Few-shot k (cases per class or survival bin).")] = 10,
    n_repeats: Annotated[int, typer.Option("--n-repeats", help="Seeded few-shot draws per fold.")] = 5,
    probe_epochs: Annotated[int, typer.Option("--probe-epochs", help="Linear-probe epochs (reference 100).")] = 100,
    baseline_epochs: Annotated[int, typer.Option("--baseline-epochs", help="ABMIL / PORPOISE training epochs (best chosen on inner validation).")] = 20,
    baseline_patches: Annotated[int | None, typer.Option("--baseline-patches", help="Subsample ABMIL / PORPOISE training bags to N patches (default: all).")] = None,
    baseline_batch_size: Annotated[int, typer.Option("--baseline-batch-size", help="ABMIL / PORPOISE bags per optimiser step (default 1: whole bags, as MIL is usually trained).")] = 1,
    baseline_lr: Annotated[float | None, typer.Option("--baseline-lr", help="ABMIL / PORPOISE Adam learning rate (default: the paper's, 1e-4 / 2e-4).")] = None,
    embed_patches: Annotated[int | None, typer.Option("--embed-patches", help="Embed a fixed seeded sample of N patches per slide (default: all).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every method.")] = 42,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads (default: torch's; 1 is fastest on a small shared CPU).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Units (method x fold) run at once, in worker processes.")] = 1,
    umap: Annotated[bool, typer.Option("--umap/--no-umap", help="UMAP of MIRROR's fold-0 embeddings.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Start over in an --out that holds something else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Benchmark MIRROR, its ablations, TANGLE, ABMIL, PORPOISE and Linear on the same folds (resumable)."""
    from .._benchmark import BenchmarkSettings, run_benchmark
    from .._benchmark_units import METHODS
    from .._evaluate import command_line

    given = dict(locals())
    with cli_errors():
        settings = BenchmarkSettings(
            cohort=cohort, preset=preset, epochs=epochs, n_patches=n_patches, tasks=_names(tasks, ()),
            methods=_names(methods, METHODS), shots=shots, n_repeats=n_repeats, probe_epochs=probe_epochs,
            baseline_epochs=baseline_epochs, baseline_patches=baseline_patches,
            baseline_batch_size=baseline_batch_size, baseline_lr=baseline_lr, embed_patches=embed_patches,
            seed=seed, device=device, umap=umap)
        with torch_threads(threads):
            report = run_benchmark(slides, rna, splits, out, settings, command=command_line(benchmark_command, given),
                                   force=force, jobs=jobs, threads=threads, progress=False if quiet else None)
        info(f"wrote {out}: summary.md, tables/, figures/, predictions.csv; report {report}")


def synthetic_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (xena/, slides/, truth.csv).")],
    cohort: Annotated[str, typer.Option("--cohort", help="brca, nsclc, rcc or coadread.")] = "brca",
    n_patients: Annotated[int, typer.Option("--n-patients", help="Patients in the phenotype tables.")] = 200,
    n_genes: Annotated[int, typer.Option("--n-genes", help="Genes in the expression files.")] = 500,
    patch_dim: Annotated[int, typer.Option("--patch-dim", help="Patch feature size.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seed of everything random.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out.")] = False,
) -> None:
    """Write the built-in synthetic paired cohort: Xena files, TRIDENT-layout slide features, planted truth."""
    from mirror_genes.utils import atomic_path, check_output

    from ..datasets import synthetic_paired_cohort
    from ..datasets._synthetic import SLIDE_SUBDIR

    with cli_errors():
        check_output(out, force=force, kind="dir")
        with atomic_path(out, is_dir=True) as tmp:
            try:
                cohort_ = synthetic_paired_cohort(tmp, cohort=cohort, n_patients=n_patients, n_genes=n_genes,
                                                  patch_dim=patch_dim, seed=seed)
            except ValueError as err:  # out-of-range sizes
                from .._errors import ConfigError

                raise ConfigError(str(err)) from None
            cohort_.patients.to_csv(tmp / "truth.csv")  # planted factors: what a model could find
        info(f"wrote {out}: {len(cohort_.slide_files)} slides under {out / SLIDE_SUBDIR}, Xena files under "
             f"{out / 'xena'}, planted truth in {out / 'truth.csv'}")


def semi_synthetic_command(
    rna: Annotated[Path, typer.Option("--rna", help="Real cohort .h5ad from mirror-genes ingest or select (labels, time, event in .obs).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (slides/, truth.tsv, slides.tsv, semi_synthetic.json).")],
    label_key: Annotated[str, typer.Option("--label-key", help="Label column of .obs.")] = "label",
    patch_dim: Annotated[int, typer.Option("--patch-dim", help="Patch feature size.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seed of everything random.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out.")] = False,
) -> None:
    """Synthetic slide features for a REAL transcriptomics cohort, planted from its real labels and survival."""
    from mirror_genes.utils import check_output

    from ..datasets import write_semi_synthetic

    with cli_errors():
        check_output(out, inputs=(rna,), force=force, kind="dir")
        result = write_semi_synthetic(rna, out, label_key=label_key, patch_dim=patch_dim, seed=seed, force=force)
        info(result.summary())
