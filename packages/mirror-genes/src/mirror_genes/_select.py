"""The ``select`` pipeline: filter -> CGC curation -> nested RFE-CV -> refined datasets,
panels, splits and a report, written atomically into one output folder."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ._version import __version__
from ._atomic import atomic_path
from ._errors import SelectionError
from ._provenance import now_utc, versions
from ._splits import write_splits
from .panels import Panel
from .panels import save as save_panel
from .pp._filter import fill_nan, filter_features, nan_medians

FORMATS = ("h5ad", "csv", "parquet")


def _plain(value):
    """JSON/h5ad-safe plain types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def refined_table(adata: ad.AnnData, mask: np.ndarray) -> pd.DataFrame:
    """Samples x selected features, deterministic (original) feature order."""
    cols = np.flatnonzero(mask)
    return pd.DataFrame(np.asarray(adata.X)[:, cols], index=adata.obs_names.rename("sample"),
                        columns=adata.var_names[cols])


def _write_refined(adata: ad.AnnData, mask: np.ndarray, folder: Path, cohort: str,
                   formats: Sequence[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    table = refined_table(adata, mask)
    if "csv" in formats:
        table.to_csv(folder / f"{cohort}_pruned_rna.csv", float_format="%.6g")
    if "parquet" in formats:
        table.reset_index().to_parquet(folder / f"{cohort}_pruned_rna.parquet", index=False)
    if "h5ad" in formats:
        sub = adata[:, mask].copy()
        for key in ("fold_support", "fold_panel"):
            sub.varm.pop(key, None)
        sub.write_h5ad(folder / f"{cohort}_refined.h5ad")


def _panel(adata: ad.AnnData, mask: np.ndarray, name: str, provenance: dict) -> Panel:
    cols = np.flatnonzero(mask)
    symbols = adata.var["gene_symbol"].to_numpy()[cols] if "gene_symbol" in adata.var else adata.var_names[cols]
    features = tuple(adata.var_names[cols])
    symbols = tuple(s if s else f for s, f in zip(map(str, symbols), features, strict=True))
    return Panel(name=name, features=features, gene_symbols=symbols, provenance=provenance)


def _provenance(adata: ad.AnnData, scope: str, curve: dict | None) -> dict:
    ingest = adata.uns.get("mirror_genes", {})
    record = {
        "tool": "mirror-genes select", "version": __version__, "created": now_utc(),
        "scope": scope, "versions": versions(),
        "inputs": ingest.get("inputs", {}), "ingest_params": ingest.get("params", {}),
        "filter": adata.uns.get("filter_features", {}),
        "select_params": adata.uns.get("mirror_select", {}).get("params", {}),
    }
    if "cgc" in adata.uns:
        record["cgc"] = {k: adata.uns["cgc"][k] for k in adata.uns["cgc"]
                         if k not in ("matched_genes", "unmatched_genes")}
        record["cgc"]["matched_genes"] = list(adata.uns["cgc"].get("matched_genes", []))
    if curve is not None:
        record["cv_curve"] = {k: curve[k] for k in ("n_features", "mean_score", "std_score", "chosen_size")
                              if k in curve}
    return _plain(record)


def select(
    adata: ad.AnnData,
    out_dir: str | os.PathLike,
    *,
    cgc=None,
    tumour_types: Sequence[str] | None = None,
    tiers: Sequence[int] = (1, 2),
    folds: int = 5,
    splits=None,
    max_missing: float = 0.2,
    min_frequency: float = 0.5,
    step: float = 0.05,
    inner_cv: int = 5,
    scoring: str = "accuracy",
    engine: str = "fast",
    formats: Sequence[str] = FORMATS,
    random_state: int = 42,
    force: bool = False,
    report: bool = True,
    progress: bool | None = None,
) -> Path:
    """Run the full selection on an ingested cohort and write every output into ``out_dir``.

    Parameters
    ----------
    adata
        Ingested cohort (``mirror_genes.ingest``); modified in place with the annotations.
    out_dir
        Output folder; must be absent or empty unless ``force``.
    cgc
        COSMIC Cancer Gene Census file or table; None selects by RFE alone (with a warning).
    tumour_types
        CGC tumour-type keywords (default: the cohort preset's).
    tiers
        CGC tiers to keep.
    folds
        Outer folds (>= 2); 1 runs one RFE-CV on all samples (no held-out evaluation).
    splits
        Outer folds as (train patients, val patients), e.g. from ``splits_<k>.csv`` files.
    max_missing
        Features missing in more than this fraction of samples are dropped first.
    min_frequency
        Consensus panel: selected in at least this fraction of folds.
    step
        RFE step.
    inner_cv
        Inner CV folds of RFE-CV.
    scoring
        RFE-CV scoring.
    engine
        ``fast`` or ``sklearn``.
    formats
        Refined dataset formats among ``h5ad``, ``csv``, ``parquet``.
    random_state
        Seed.
    force
        Replace a non-empty ``out_dir``.
    report
        Write figures and ``report.md``.
    progress
        Show progress bars.

    Returns
    -------
    The output folder.
    """
    from .tl import cgc_curate, nested_select, rfecv

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise SelectionError(f"{out}: output folder is not empty (use --force to replace it)")
    bad = set(formats) - set(FORMATS)
    if bad:
        raise SelectionError(f"unknown format(s) {sorted(bad)}; choose from {', '.join(FORMATS)}")
    cohort = adata.uns.get("mirror_genes", {}).get("params", {}).get("cohort", "cohort")
    filter_features(adata, max_missing=max_missing)
    if cgc is not None:
        cgc_curate(adata, cgc, tumour_types=tumour_types, tiers=tuple(tiers))
        cgc_key = "cgc_member"
    else:
        warnings.warn("no COSMIC Cancer Gene Census file given (--cgc): selecting by RFE alone",
                      stacklevel=2)
        cgc_key = None
    if splits is not None or folds >= 2:
        nested_select(adata, folds=folds, splits=splits, cgc_key=cgc_key,
                      min_frequency=min_frequency, step=step, inner_cv=inner_cv, scoring=scoring,
                      engine=engine, random_state=random_state, progress=progress)
    else:
        full = adata.copy()
        full.X = fill_nan(np.asarray(full.X, dtype=np.float32), nan_medians(np.asarray(full.X)))
        rfecv(full, "label", step=step, cv=inner_cv, scoring=scoring, engine=engine,
              random_state=random_state, progress=progress)
        for key in ("rfecv_support", "rfecv_ranking"):
            adata.var[key] = full.var[key]
        adata.uns["rfecv"] = full.uns["rfecv"]
        cgc_mask = adata.var[cgc_key].to_numpy(bool) if cgc_key else np.zeros(adata.n_vars, bool)
        adata.var["mirror_panel"] = adata.var["rfecv_support"].to_numpy(bool) | cgc_mask
    mask = adata.var["mirror_panel"].to_numpy(dtype=bool)
    if not mask.any():
        raise SelectionError("the selection produced an empty panel")

    with atomic_path(out, is_dir=True) as tmp:
        _write_all(adata, tmp, cohort=cohort, formats=formats, report=report)
    return out


def _write_all(adata: ad.AnnData, tmp: Path, *, cohort: str, formats: Sequence[str],
               report: bool) -> None:
    mask = adata.var["mirror_panel"].to_numpy(dtype=bool)
    nested = "mirror_select" in adata.uns
    consensus_curve = None if nested else adata.uns.get("rfecv")
    prov = _provenance(adata, "consensus" if nested else "all samples", consensus_curve)
    _write_refined(adata, mask, tmp / "consensus", cohort, formats)
    panel = _panel(adata, mask, f"mirror_{cohort}_consensus", prov)
    for ext in ("gmt", "tsv", "json"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GMT drops weights: expected for a panel of 1.0s
            save_panel(panel, tmp / "consensus" / f"panel.{ext}")
    if nested:
        select_record = adata.uns["mirror_select"]
        splits = [(v["train"], v["val"]) for v in select_record["splits"].values()]
        write_splits(splits, tmp / "splits")
        for f in range(adata.varm["fold_panel"].shape[1]):
            fold_mask = adata.varm["fold_panel"][:, f]
            folder = tmp / f"fold_{f}"
            _write_refined(adata, fold_mask, folder, cohort, formats)
            fold_prov = _provenance(adata, f"fold {f}", adata.uns["rfecv_folds"][f"fold_{f}"])
            fold_prov["fold"] = {"index": f, "train_patients": len(splits[f][0]),
                                 "val_patients": len(splits[f][1]),
                                 **_plain(select_record["folds"][f"fold_{f}"])}
            save_panel(_panel(adata, fold_mask, f"mirror_{cohort}_fold{f}", fold_prov),
                       folder / "panel.json")
        metrics = pd.DataFrame(select_record["folds"]).T
        metrics.index.name = "fold"
        counts = [c for c in metrics.columns if c.startswith("n_") or c == "chosen_size"]
        metrics[counts] = metrics[counts].astype(int)
        metrics.to_csv(tmp / "metrics.tsv", sep="\t", float_format="%.4f")
    full = adata.copy()
    full.uns["mirror_select_json"] = json.dumps(_plain(adata.uns.get("mirror_select", {})))
    full.uns.pop("mirror_select", None)  # nested lists of patients: kept as JSON above
    full.write_h5ad(tmp / "selection.h5ad")
    if report:
        from ._report import write_report

        write_report(adata, tmp, cohort=cohort)
