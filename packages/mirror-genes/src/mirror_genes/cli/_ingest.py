"""``fetch``, ``ingest`` and ``synthetic`` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import cli_errors, info

CohortOpt = Annotated[str, typer.Option("--cohort", "-c", help="Cohort preset: brca, nsclc, rcc, coadread.")]
HubOpt = Annotated[str, typer.Option("--hub", help="Xena hub: tcga, gdc or toil.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Download cache (default: $MIRROR_GENES_CACHE or the user cache directory).")]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="Mirror of the hub(s) to download from.")]
ToilOpt = Annotated[str, typer.Option("--toil-level", help="toil hub matrix: isoform or gene.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
ExpressionOpt = Annotated[list[Path] | None, typer.Option("--expression", "-e", help="Xena expression matrix (repeat per member cohort).")]
PhenotypeOpt = Annotated[list[Path] | None, typer.Option("--phenotype", "-p", help="Phenotype: clinicalMatrix, GDC clinical or cBioPortal export (repeat per member cohort).")]
SurvivalOpt = Annotated[list[Path] | None, typer.Option("--survival", "-s", help="Xena survival table (repeat per member cohort).")]
ProbemapOpt = Annotated[Path | None, typer.Option("--probemap", help="Xena probemap for Ensembl / transcript IDs.")]


def fetch_command(
    cohort: CohortOpt,
    hub: HubOpt = "tcga",
    cache_dir: CacheOpt = None,
    base_url: BaseUrlOpt = None,
    toil_level: ToilOpt = "isoform",
    quiet: QuietOpt = False,
) -> None:
    """Download a cohort's Xena files into the cache (resumable, verified)."""
    from .._fetch import fetch

    with cli_errors():
        files = fetch(cohort, hub=hub, cache_dir=cache_dir, base_url=base_url,
                      toil_level=toil_level, progress=False if quiet else None)
        for role, paths in files.items():
            for p in paths:
                typer.echo(f"{role}\t{p}")


def ingest_command(
    cohort: CohortOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .h5ad file.")],
    expression: ExpressionOpt = None,
    phenotype: PhenotypeOpt = None,
    survival: SurvivalOpt = None,
    probemap: ProbemapOpt = None,
    endpoint: Annotated[str, typer.Option("--endpoint", help="Survival endpoint: OS, DSS, DFI, PFI.")] = "OS",
    all_sample_types: Annotated[bool, typer.Option("--all-sample-types", help="Keep every sample type, not only primary tumours (01).")] = False,
    keep_all_samples: Annotated[bool, typer.Option("--keep-all-samples", help="Keep every sample of a patient, not one per patient.")] = False,
    hub: HubOpt = "tcga",
    cache_dir: CacheOpt = None,
    base_url: BaseUrlOpt = None,
    toil_level: ToilOpt = "isoform",
    quiet: QuietOpt = False,
) -> None:
    """Build a labelled AnnData (.h5ad) from local Xena files, or fetch them through the cache."""
    from .._barcode import SAMPLE_TYPES
    from .._ingest import ingest, write_h5ad

    with cli_errors():
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
        info(f"wrote {out}: {adata.n_obs} samples ({classes}) x {adata.n_vars} features; "
             f"{adata.n_obs - counts['n_missing_survival']} with time/event")


def synthetic_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the synthetic Xena files.")],
    cohort: CohortOpt = "brca",
    hub: HubOpt = "tcga",
    n_patients: Annotated[int, typer.Option("--n-patients", help="Patients to simulate.")] = 300,
    n_genes: Annotated[int, typer.Option("--n-genes", help="Genes to simulate.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Write a synthetic cohort in the real Xena layouts (plus a COSMIC-format CSV)."""
    from ..datasets import synthetic_cohort

    with cli_errors():
        syn = synthetic_cohort(out, cohort=cohort, hub=hub, n_patients=n_patients,
                               n_genes=n_genes, seed=seed)
        for p in syn.files():
            typer.echo(str(p))
