"""``select`` and ``export-panel`` commands."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from ._common import check_choice, check_range, cli_errors, given, info, usage
from ._ingest import (
    BaseUrlOpt,
    CacheOpt,
    ExpressionOpt,
    ForceOpt,
    HubOpt,
    PhenotypeOpt,
    ProbemapOpt,
    QuietOpt,
    SurvivalOpt,
    ToilOpt,
    check_source_options,
    fetch_context,
)

# Options that describe how to ingest: meaningless with an already ingested --input.
INGEST_PARAMS = ("cohort", "expression", "phenotype", "survival", "probemap", "hub",
                 "cache_dir", "base_url", "toil_level")


def _check_selection(folds: int, step: float, inner_cv: int, min_frequency: float,
                     max_missing: float, scoring: str, engine: str, formats: str,
                     tiers: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Validate the selection options; returns the parsed tiers and formats."""
    from .._select import FORMATS
    from ..tl._rfecv import ENGINES, SCORINGS

    if folds < 1:
        raise usage(f"--folds must be >= 2 outer folds, or 1 for one selection on all samples "
                    f"without held-out evaluation; got {folds}")
    check_range("--step", step, low=0, high=1, low_open=True, high_open=True,
                what="fraction of the starting features removed per RFE round")
    check_range("--inner-cv", inner_cv, low=2, what="inner RFE-CV folds")
    check_range("--min-frequency", min_frequency, low=0, high=1, low_open=True,
                what="fraction of the outer folds")
    check_range("--max-missing", max_missing, low=0, high=1, what="fraction of the samples")
    check_choice("--scoring", scoring, SCORINGS)
    check_choice("--engine", engine, ENGINES)
    format_list = tuple(f.strip() for f in formats.split(",") if f.strip())
    for fmt in format_list or ("",):
        check_choice("--formats", fmt, FORMATS)
    try:
        tier_values = tuple(int(t) for t in tiers.split(",") if t.strip())
    except ValueError:
        raise usage(f"--tiers must be integers like 1,2; got {tiers!r}") from None
    return tier_values, format_list


def _check_source(ctx: typer.Context, cohort: str | None, hub: str, input_h5ad: Path | None,
                  local: bool) -> None:
    """Either an ingested --input alone, or a --cohort to ingest (files or downloads)."""
    if input_h5ad is not None:
        clash = given(ctx, INGEST_PARAMS)
        if clash:
            raise usage(f"--input cannot be combined with {', '.join(clash)}: the .h5ad "
                        "is already ingested (its cohort is read from it)")
    elif cohort is None:
        raise usage("Missing option '--cohort' / '-c' (or pass an ingested cohort with --input)")
    else:
        check_source_options(ctx, cohort, hub, local)


def _read_input(path: Path):
    """An ingested cohort, or a one-line InputFileError naming what the file is instead."""
    import anndata as ad

    from .._errors import InputFileError
    from ..io._open import check_readable, describe_content

    check_readable(path)
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head.startswith(b"\x89HDF\r\n\x1a\n"):
        what = describe_content(head) or "a text file"
        raise InputFileError(path, f"looks like {what}, not an .h5ad file")
    try:
        return ad.read_h5ad(path)
    except Exception as err:  # h5py/anndata raise many types on bad files
        raise InputFileError(path, f"cannot read h5ad ({str(err).splitlines()[0]})") from None


def select_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (absent or empty; --force replaces it).")],
    cohort: Annotated[str | None, typer.Option("--cohort", "-c", help="Cohort preset: brca, nsclc, rcc, coadread (not with --input).")] = None,
    expression: ExpressionOpt = None,
    phenotype: PhenotypeOpt = None,
    survival: SurvivalOpt = None,
    probemap: ProbemapOpt = None,
    input_h5ad: Annotated[Path | None, typer.Option("--input", help="An already ingested cohort (.h5ad) instead of Xena files; excludes --cohort and the ingest options.")] = None,
    cgc: Annotated[Path | None, typer.Option("--cgc", help="COSMIC Cancer Gene Census CSV (cancer_gene_census.csv).")] = None,
    tumour_types: Annotated[list[str] | None, typer.Option("--tumour-type", help="CGC tumour-type keyword (repeat; default: the cohort preset's).")] = None,
    tiers: Annotated[str, typer.Option("--tiers", help="CGC tiers to keep, comma-separated.")] = "1,2",
    folds: Annotated[int, typer.Option("--folds", help="Outer patient-level CV folds (>= 2); 1 = one RFE-CV selection on all samples, with no held-out evaluation (no fold_*/, splits/ or metrics.tsv).")] = 5,
    splits: Annotated[Path | None, typer.Option("--splits", help="Folder of reference splits_<k>.csv files (train/val patient columns); they give the outer folds (a --folds given too must agree).")] = None,
    step: Annotated[float, typer.Option("--step", help="RFE step: fraction (0 < step < 1) of the starting features removed per round.")] = 0.05,
    inner_cv: Annotated[int, typer.Option("--inner-cv", help="Inner RFE-CV folds (>= 2).")] = 5,
    scoring: Annotated[str, typer.Option("--scoring", help="balanced_accuracy (default: TCGA subtypes are imbalanced), accuracy (the reference configuration) or f1_macro.")] = "balanced_accuracy",
    engine: Annotated[str, typer.Option("--engine", help="fast (exact, Gram-based) or sklearn.")] = "fast",
    min_frequency: Annotated[float, typer.Option("--min-frequency", help="Consensus: selected in at least this fraction of folds.")] = 0.5,
    max_missing: Annotated[float, typer.Option("--max-missing", help="Drop features missing in more than this fraction of samples.")] = 0.2,
    formats: Annotated[str, typer.Option("--formats", help="Refined dataset formats: h5ad,csv,parquet.")] = "h5ad,csv,parquet",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (folds, random panels).")] = 42,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty output folder (never one holding an input).", metavar="")] = False,
    hub: HubOpt = "tcga",
    cache_dir: CacheOpt = None,
    base_url: BaseUrlOpt = None,
    toil_level: ToilOpt = "isoform",
    quiet: QuietOpt = False,
) -> None:
    """Ingest a cohort, select genes (nested RFE-CV + COSMIC CGC), write refined datasets, panels and a report."""
    from .._ingest import ingest
    from .._paths import check_output
    from .._select import select
    from .._splits import read_splits

    with cli_errors():
        local = bool(expression or phenotype or survival)
        _check_source(ctx, cohort, hub, input_h5ad, local)
        tier_values, format_list = _check_selection(folds, step, inner_cv, min_frequency,
                                                    max_missing, scoring, engine, formats, tiers)
        check_output(out, kind="dir", force=force,
                     inputs=[input_h5ad, cgc, splits, probemap, *(expression or ()),
                             *(phenotype or ()), *(survival or ())])
        fold_splits = read_splits(splits) if splits else None
        if fold_splits is not None and given(ctx, ["folds"]) and len(fold_splits) != folds:
            # the splits files decide; a --folds that disagrees would be silently ignored
            raise usage(f"--folds {folds} does not match the {len(fold_splits)} folds in "
                        f"--splits {splits}; drop --folds or make them agree")
        progress = False if quiet else None
        if input_h5ad is not None:
            adata = _read_input(input_h5ad)
        else:
            with fetch_context(local, cohort, hub=hub, cache_dir=cache_dir, base_url=base_url,
                               toil_level=toil_level):
                adata = ingest(cohort, expression=expression or None,
                               phenotype=phenotype or None, survival=survival or None,
                               probemap=probemap, hub=hub, cache_dir=cache_dir,
                               base_url=base_url, toil_level=toil_level, progress=progress)
        select(adata, out, cgc=cgc, tumour_types=tumour_types or None, tiers=tier_values,
               folds=folds, splits=fold_splits, step=step, inner_cv=inner_cv, scoring=scoring,
               engine=engine, min_frequency=min_frequency, max_missing=max_missing,
               formats=format_list, random_state=seed, force=force, progress=progress)
        from .._dropped import LOSSES, dropped_lines

        for line in dropped_lines(adata, keys=LOSSES):
            info(f"left out: {line}")
        n_panel = int(adata.var["mirror_panel"].sum())
        info(f"wrote {out}: panel of {n_panel} features (consensus/panel.gmt|tsv|json), "
             f"refined datasets, report.md")


# API argument names in panel messages -> the options of export-panel
_PANEL_WORDS = {"set_name=": "--set-name", "format=": "--format"}


@contextlib.contextmanager
def _cli_words() -> Iterator[None]:
    """Panel errors name API arguments; a CLI user needs the option to type instead."""
    from .._errors import PanelError

    try:
        yield
    except PanelError as err:
        message = str(err)
        for word, option in _PANEL_WORDS.items():
            message = message.replace(word, option)
        raise PanelError(message) from None


def export_panel_command(
    src: Annotated[Path, typer.Argument(help="Panel file (.json, .gmt, .tsv) or packaged panel name.")],
    dst: Annotated[Path, typer.Argument(help="Output panel file; format from the suffix.")],
    format: Annotated[str | None, typer.Option("--format", help="gmt, tsv or json (default: from the suffix).")] = None,
    set_name: Annotated[str | None, typer.Option("--set-name", help="Gene set to export from a GMT/TSV file holding several.")] = None,
    force: ForceOpt = False,
) -> None:
    """Convert a gene panel between JSON (with provenance), GMT and TSV."""
    from .._paths import check_output
    from ..panels import load, save
    from ..panels._panel import FORMATS

    with cli_errors():
        if format is not None:
            check_choice("--format", format.lower(), FORMATS)
        elif dst.suffix.lower().lstrip(".") not in FORMATS:
            raise usage(f"{dst}: cannot tell the panel format from the suffix "
                        f"{dst.suffix!r}; use .gmt, .tsv or .json, or pass --format")
        check_output(dst, inputs=[src], force=force)
        with _cli_words():
            save(load(src, set_name=set_name), dst, format=format)
        info(f"wrote {dst}")
