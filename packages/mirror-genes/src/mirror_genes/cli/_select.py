"""``select`` and ``export-panel`` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import cli_errors, info
from ._ingest import (
    BaseUrlOpt,
    CacheOpt,
    CohortOpt,
    ExpressionOpt,
    HubOpt,
    PhenotypeOpt,
    ProbemapOpt,
    QuietOpt,
    SurvivalOpt,
    ToilOpt,
)


def select_command(
    cohort: CohortOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (absent or empty).")],
    expression: ExpressionOpt = None,
    phenotype: PhenotypeOpt = None,
    survival: SurvivalOpt = None,
    probemap: ProbemapOpt = None,
    input_h5ad: Annotated[Path | None, typer.Option("--input", help="An already ingested cohort (.h5ad) instead of Xena files.")] = None,
    cgc: Annotated[Path | None, typer.Option("--cgc", help="COSMIC Cancer Gene Census CSV (cancer_gene_census.csv).")] = None,
    tumour_types: Annotated[list[str] | None, typer.Option("--tumour-type", help="CGC tumour-type keyword (repeat; default: the cohort preset's).")] = None,
    tiers: Annotated[str, typer.Option("--tiers", help="CGC tiers to keep, comma-separated.")] = "1,2",
    folds: Annotated[int, typer.Option("--folds", help="Outer patient-level CV folds; 1 = one selection on all samples.")] = 5,
    splits: Annotated[Path | None, typer.Option("--splits", help="Folder of reference splits_<k>.csv files (train/val patient columns).")] = None,
    step: Annotated[float, typer.Option("--step", help="RFE step: fraction of the starting features removed per round.")] = 0.05,
    inner_cv: Annotated[int, typer.Option("--inner-cv", help="Inner RFE-CV folds.")] = 5,
    scoring: Annotated[str, typer.Option("--scoring", help="accuracy, balanced_accuracy or f1_macro.")] = "accuracy",
    engine: Annotated[str, typer.Option("--engine", help="fast (exact, Gram-based) or sklearn.")] = "fast",
    min_frequency: Annotated[float, typer.Option("--min-frequency", help="Consensus: selected in at least this fraction of folds.")] = 0.5,
    max_missing: Annotated[float, typer.Option("--max-missing", help="Drop features missing in more than this fraction of samples.")] = 0.2,
    formats: Annotated[str, typer.Option("--formats", help="Refined dataset formats: h5ad,csv,parquet.")] = "h5ad,csv,parquet",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (folds, random panels).")] = 42,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty output folder.")] = False,
    hub: HubOpt = "tcga",
    cache_dir: CacheOpt = None,
    base_url: BaseUrlOpt = None,
    toil_level: ToilOpt = "isoform",
    quiet: QuietOpt = False,
) -> None:
    """Ingest a cohort, select genes (nested RFE-CV + COSMIC CGC), write refined datasets, panels and a report."""
    import anndata as ad

    from .._errors import InputFileError
    from .._ingest import ingest
    from .._select import select
    from .._splits import read_splits

    with cli_errors():
        progress = False if quiet else None
        if input_h5ad is not None:
            try:
                adata = ad.read_h5ad(input_h5ad)
            except Exception as err:  # h5py/anndata raise many types on bad files
                raise InputFileError(input_h5ad, f"cannot read h5ad ({str(err).splitlines()[0]})") from None
        else:
            adata = ingest(cohort, expression=expression or None, phenotype=phenotype or None,
                           survival=survival or None, probemap=probemap, hub=hub,
                           cache_dir=cache_dir, base_url=base_url, toil_level=toil_level,
                           progress=progress)
        try:
            tier_values = tuple(int(t) for t in tiers.split(",") if t.strip())
        except ValueError:
            raise typer.BadParameter(f"--tiers must be integers like 1,2, got {tiers!r}") from None
        select(adata, out, cgc=cgc, tumour_types=tumour_types or None, tiers=tier_values,
               folds=folds, splits=read_splits(splits) if splits else None, step=step,
               inner_cv=inner_cv, scoring=scoring, engine=engine, min_frequency=min_frequency,
               max_missing=max_missing, formats=tuple(f.strip() for f in formats.split(",")),
               random_state=seed, force=force, progress=progress)
        n_panel = int(adata.var["mirror_panel"].sum())
        info(f"wrote {out}: panel of {n_panel} features (consensus/panel.gmt|tsv|json), "
             f"refined datasets, report.md")


def export_panel_command(
    src: Annotated[Path, typer.Argument(help="Panel file (.json, .gmt, .tsv).")],
    dst: Annotated[Path, typer.Argument(help="Output panel file; format from the suffix.")],
    format: Annotated[str | None, typer.Option("--format", help="gmt, tsv or json (default: from the suffix).")] = None,
) -> None:
    """Convert a gene panel between JSON (with provenance), GMT and TSV."""
    from ..panels import convert

    with cli_errors():
        convert(src, dst, format=format)
        info(f"wrote {dst}")
