"""``fetch``, ``ingest`` and ``synthetic`` commands."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from ._common import check_choice, cli_errors, given, info, usage

CohortOpt = Annotated[str, typer.Option("--cohort", "-c", help="Cohort preset: brca, nsclc, rcc, coadread.")]
HubOpt = Annotated[str, typer.Option("--hub", help="Xena hub: tcga, gdc or toil.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Download cache (default: $MIRROR_GENES_CACHE or the user cache directory).")]
BaseUrlOpt = Annotated[str | None, typer.Option(
    "--base-url", help="Mirror of the hub(s): files are downloaded from "
    "<base-url>/download/<dataset path>, the hubs' own layout (e.g. a folder written by "
    "'mirror-genes synthetic --out <dir>/download' and served at <base-url>).")]
ToilOpt = Annotated[str, typer.Option("--toil-level", help="toil hub matrix: isoform or gene.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.", metavar="")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output (an input is never replaced).", metavar="")]
ExpressionOpt = Annotated[list[Path] | None, typer.Option("--expression", "-e", help="Xena expression matrix (repeat per member cohort).")]
PhenotypeOpt = Annotated[list[Path] | None, typer.Option("--phenotype", "-p", help="Phenotype: clinicalMatrix, GDC clinical or cBioPortal export (repeat per member cohort).")]
SurvivalOpt = Annotated[list[Path] | None, typer.Option("--survival", "-s", help="Xena survival table (repeat per member cohort).")]
ProbemapOpt = Annotated[Path | None, typer.Option("--probemap", help="Xena probemap for Ensembl / transcript IDs.")]

ENDPOINTS = ("OS", "DSS", "DFI", "PFI")
# Options that only steer downloads: meaningless once the files are given.
FETCH_PARAMS = ("cache_dir", "base_url", "toil_level")


def check_source_options(ctx: typer.Context, cohort: str, hub: str, local: bool) -> None:
    """Fail fast on an unknown cohort or hub, and on download options given with files."""
    from ..cohorts import HUBS, get_preset

    get_preset(cohort)  # CohortError (exit 1) names the known cohorts
    check_choice("--hub", hub, HUBS)
    ignored = given(ctx, FETCH_PARAMS)
    if local and ignored:
        verb = "applies" if len(ignored) == 1 else "apply"
        raise usage(f"{', '.join(ignored)} {verb} only when downloading, not with "
                    "--expression/--phenotype/--survival")


def fetch_context(local: bool, cohort: str, **where):
    """A context adding the ``fetch --refresh`` command to errors about cached files."""
    if local:
        return contextlib.nullcontext()
    from .._fetch import cache_hint

    return cache_hint(cohort, **where)


def fetch_command(
    cohort: CohortOpt,
    hub: HubOpt = "tcga",
    cache_dir: CacheOpt = None,
    base_url: BaseUrlOpt = None,
    toil_level: ToilOpt = "isoform",
    refresh: Annotated[bool, typer.Option("--refresh", help="Download again even if cached (replaces a cached copy once the new one passed its checks).", metavar="")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Download a cohort's Xena files into the cache (resumable, verified)."""
    from .._fetch import fetch

    with cli_errors():
        files = fetch(cohort, hub=hub, cache_dir=cache_dir, base_url=base_url,
                      toil_level=toil_level, progress=False if quiet else None, refresh=refresh)
        for role, paths in files.items():
            for p in paths:
                typer.echo(f"{role}\t{p}")


def ingest_command(
    ctx: typer.Context,
    cohort: CohortOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5ad file.")],
    expression: ExpressionOpt = None,
    phenotype: PhenotypeOpt = None,
    survival: SurvivalOpt = None,
    probemap: ProbemapOpt = None,
    endpoint: Annotated[str, typer.Option("--endpoint", help="Survival endpoint: OS, DSS, DFI, PFI.")] = "OS",
    all_sample_types: Annotated[bool, typer.Option("--all-sample-types", help="Keep every sample type, not only primary tumours (01).", metavar="")] = False,
    keep_all_samples: Annotated[bool, typer.Option("--keep-all-samples", help="Keep every sample of a patient, not one per patient.", metavar="")] = False,
    force: ForceOpt = False,
    hub: HubOpt = "tcga",
    cache_dir: CacheOpt = None,
    base_url: BaseUrlOpt = None,
    toil_level: ToilOpt = "isoform",
    quiet: QuietOpt = False,
) -> None:
    """Build a labelled AnnData (.h5ad) from local Xena files, or fetch them through the cache."""
    from .._barcode import SAMPLE_TYPES
    from .._ingest import ingest, write_h5ad
    from .._paths import check_output

    with cli_errors():
        local = bool(expression or phenotype or survival)
        check_source_options(ctx, cohort, hub, local)
        check_choice("--endpoint", endpoint, ENDPOINTS)
        check_output(out, inputs=[*(expression or ()), *(phenotype or ()), *(survival or ()),
                                  probemap], force=force)
        with fetch_context(local, cohort, hub=hub, cache_dir=cache_dir, base_url=base_url,
                           toil_level=toil_level):
            adata = ingest(
                cohort, expression=expression or None, phenotype=phenotype or None,
                survival=survival or None, probemap=probemap, hub=hub, cache_dir=cache_dir,
                base_url=base_url, endpoint=endpoint,
                sample_types=tuple(SAMPLE_TYPES) if all_sample_types else ("01",),
                one_per_patient=not keep_all_samples, toil_level=toil_level,
                progress=False if quiet else None,
            )
        write_h5ad(adata, out)
        counts = adata.uns["mirror_genes"]["counts"]
        classes = ", ".join(f"{k} {v}" for k, v in counts["classes"].items())
        per_file = adata.uns["mirror_genes"]["features"]["per_file"]
        if len(per_file) > 1:
            info(f"features: {adata.n_vars} common to all expression files "
                 f"({', '.join(str(n) for n in per_file.values())} per file)")
        from .._dropped import LOSSES, dropped_lines

        for line in dropped_lines(adata, keys=LOSSES):
            info(f"left out: {line}")
        info(f"wrote {out}: {adata.n_obs} samples ({classes}) x {adata.n_vars} features; "
             f"{adata.n_obs - counts['n_missing_survival']} with time/event; "
             f"{counts['n_missing_cells']} missing cells imputed (per-feature median, "
             "layers['missing'] keeps them)")


# API argument names in the synthetic generator's messages -> the options users typed
_SYNTHETIC_WORDS = {"n_patients": "--n-patients", "n_genes": "--n-genes"}


def synthetic_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the synthetic Xena files (absent or empty; files land at the hubs' dataset paths, so '<dir>/download' served over HTTP is a --base-url mirror).")],
    cohort: CohortOpt = "brca",
    hub: HubOpt = "tcga",
    n_patients: Annotated[int, typer.Option("--n-patients", help="Patients to simulate.")] = 300,
    n_genes: Annotated[int, typer.Option("--n-genes", help="Genes to simulate.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder, replacing files of the same names.", metavar="")] = False,
) -> None:
    """Write a synthetic cohort in the real Xena layouts (plus a COSMIC-format CSV)."""
    from .._paths import check_output
    from ..cohorts import HUBS, get_preset
    from ..datasets import synthetic_cohort

    with cli_errors():
        get_preset(cohort)
        check_choice("--hub", hub, HUBS)
        check_output(out, kind="dir", force=force,
                     force_hint="use --force to write into it anyway")
        try:
            syn = synthetic_cohort(out, cohort=cohort, hub=hub, n_patients=n_patients,
                                   n_genes=n_genes, seed=seed)
        except ValueError as err:  # documented: sizes out of range
            message = str(err)
            for word, option in _SYNTHETIC_WORDS.items():
                message = message.replace(word, option)
            raise usage(message) from None
        for p in syn.files():
            typer.echo(str(p))
