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

from . import constants as K
from ._atomic import atomic_path
from ._dropped import dropped_table
from ._errors import CohortError, LabelError, SelectionError
from ._provenance import now_utc, versions
from ._splits import write_splits
from ._version import __version__
from .cohorts import CohortPreset, get_preset
from .panels import Panel
from .panels import save as save_panel
from .pp._filter import filter_features, impute_median

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
                   formats: Sequence[str], *, fit_on=None) -> None:
    """One refined dataset: the panel's features, missing cells imputed on ``fit_on`` samples.

    Every format holds the same finite values; the h5ad also keeps ``layers["missing"]``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    sub = adata[:, mask].copy()
    for key in (K.FOLD_SUPPORT, K.FOLD_PANEL):
        sub.varm.pop(key, None)
    impute_median(sub, fit_on=fit_on)
    table = refined_table(sub, np.ones(sub.n_vars, dtype=bool))
    if "csv" in formats:
        table.to_csv(folder / f"{cohort}_pruned_rna.csv", float_format="%.6g")
    if "parquet" in formats:
        table.reset_index().to_parquet(folder / f"{cohort}_pruned_rna.parquet", index=False)
    if "h5ad" in formats:
        sub.write_h5ad(folder / f"{cohort}_refined.h5ad")


def _panel(adata: ad.AnnData, mask: np.ndarray, name: str, provenance: dict) -> Panel:
    cols = np.flatnonzero(mask)
    features = tuple(adata.var_names[cols])
    symbols = (adata.var[K.GENE_SYMBOL].to_numpy()[cols] if K.GENE_SYMBOL in adata.var
               else features)
    symbols = tuple(s if s else f for s, f in zip(map(str, symbols), features, strict=True))
    return Panel(name=name, features=features, gene_symbols=symbols, provenance=provenance)


def _provenance(adata: ad.AnnData, scope: str, curve: dict | None) -> dict:
    ingest = adata.uns.get(K.UNS_INGEST, {})
    record = {
        "tool": "mirror-genes select", "version": __version__, "created": now_utc(),
        "scope": scope, "versions": versions(),
        "inputs": ingest.get("inputs", {}), "ingest_params": ingest.get("params", {}),
        "filter": {k: v for k, v in adata.uns.get(K.UNS_FILTER, {}).items()
                   if not k.startswith("dropped_")},  # names: in dropped.tsv
        "select_params": adata.uns.get(K.UNS_SELECT, {}).get("params", {}),
    }
    if K.UNS_CGC in adata.uns:
        cgc = adata.uns[K.UNS_CGC]
        record["cgc"] = {k: cgc[k] for k in cgc if k not in ("matched_genes", "unmatched_genes")}
        record["cgc"]["matched_genes"] = list(cgc.get("matched_genes", []))
    if curve is not None:
        record["cv_curve"] = {k: curve[k] for k in ("n_features", "mean_score", "std_score", "chosen_size")
                              if k in curve}
    return _plain(record)


def _drop_unlabelled(adata: ad.AnnData, label_key: str) -> None:
    """Drop samples without a label (in place), by name in ``uns["dropped_samples"]``."""
    if label_key not in adata.obs:
        raise LabelError(f"obs has no {label_key!r} column")
    labels = adata.obs[label_key]
    empty = labels.isna().to_numpy() | (labels.astype(str).str.strip() == "").to_numpy()
    adata.uns[K.UNS_DROPPED_SAMPLES] = {"no_label": adata.obs_names[empty].tolist()}
    if empty.all():
        raise LabelError(f"no sample has a {label_key!r} label")
    if empty.any():
        warnings.warn(f"{int(empty.sum())} samples have no {label_key!r} label and were dropped",
                      stacklevel=3)
        adata._inplace_subset_obs(~empty)
        if isinstance(adata.obs[label_key].dtype, pd.CategoricalDtype):
            adata.obs[label_key] = adata.obs[label_key].cat.remove_unused_categories()


def _single_rfecv(adata: ad.AnnData, label_key: str, cgc_key: str | None, **rfe_params) -> None:
    """``--folds 1``: one RFE-CV on all samples (imputed on all of them: there is no split)."""
    from .tl import rfecv
    from .tl._nested import check_inner_cv

    check_inner_cv(adata.obs[label_key].astype(str), rfe_params["cv"], "all samples (--folds 1)")
    full = adata.copy()
    impute_median(full)
    rfecv(full, label_key, **rfe_params)
    for key in (K.RFECV_SUPPORT, K.RFECV_RANKING):
        adata.var[key] = full.var[key]
    adata.uns[K.UNS_RFECV] = full.uns[K.UNS_RFECV]
    cgc_mask = (adata.var[cgc_key].to_numpy(bool) if cgc_key
                else np.zeros(adata.n_vars, dtype=bool))
    adata.var[K.PANEL] = adata.var[K.RFECV_SUPPORT].to_numpy(bool) | cgc_mask


def _warn_tiny_panels(adata: ad.AnnData) -> None:
    """One-feature datasets are valid, but PCA and most scanpy tools need two or more."""
    sizes = {"consensus": int(adata.var[K.PANEL].sum())}
    if K.FOLD_PANEL in adata.varm:
        sizes.update({f"fold_{f}": int(n) for f, n in enumerate(adata.varm[K.FOLD_PANEL].sum(axis=0))})
    tiny = [name for name, n in sizes.items() if n < 2]
    if tiny:
        warnings.warn(f"panel of a single feature in {', '.join(tiny)}: scanpy's PCA and most "
                      "multi-gene tools need at least 2 (add --cgc, or lower --step)", stacklevel=3)


def _preset(cohort: str) -> CohortPreset | None:
    try:
        return get_preset(cohort)
    except CohortError:
        return None  # a cohort outside the presets: CGC needs explicit tumour types


def select(
    adata: ad.AnnData,
    out_dir: str | os.PathLike,
    *,
    label_key: str = K.LABEL,
    cgc=None,
    tumour_types: Sequence[str] | None = None,
    tiers: Sequence[int] = (1, 2),
    folds: int = 5,
    splits=None,
    max_missing: float = 0.2,
    min_frequency: float = 0.5,
    step: float = 0.05,
    inner_cv: int = 5,
    scoring: str = "balanced_accuracy",
    engine: str = "fast",
    formats: Sequence[str] = FORMATS,
    random_state: int = 42,
    force: bool = False,
    report: bool = True,
    progress: bool | None = None,
) -> Path:
    """Run the full selection on an ingested cohort and write every output into ``out_dir``.

    Every h5ad written has a finite ``X``: missing cells are imputed with per-feature medians
    fitted on the training samples of the fold (``fold_<k>/``) or on all samples
    (``consensus/``, ``selection.h5ad``); ``layers["missing"]`` keeps which cells were
    missing and ``uns["impute_median"]`` the rule and counts. Selection itself never fits on
    values imputed from held-out samples (see :func:`mirror_genes.tl.nested_select`).

    Parameters
    ----------
    adata
        Ingested cohort (``mirror_genes.ingest``); modified in place with the annotations.
        Samples without a label are dropped (listed in ``uns["dropped_samples"]``).
    out_dir
        Output folder; must be absent or empty unless ``force``.
    label_key
        Class label column of ``obs``.
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
        RFE-CV scoring. ``balanced_accuracy`` by default, because TCGA subtypes are imbalanced
        (BRCA: 82 % IDC) and plain accuracy then rewards one-gene panels; ``accuracy`` is the
        reference configuration.
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
    The output folder; ``dropped.tsv`` there lists every sample, feature and CGC gene left out.
    """
    from .tl import cgc_curate, nested_select

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise SelectionError(f"{out}: output folder is not empty (use --force to replace it)")
    bad = set(formats) - set(FORMATS)
    if bad:
        raise SelectionError(f"unknown format(s) {sorted(bad)}; choose from {', '.join(FORMATS)}")
    if splits is None and folds < 1:  # 0 or negative once ran silently with no evaluation
        raise SelectionError(f"folds must be >= 2, or 1 for one selection on all samples; got {folds}")
    cohort = str(adata.uns.get(K.UNS_INGEST, {}).get("params", {}).get("cohort", "cohort"))
    _drop_unlabelled(adata, label_key)
    filter_features(adata, max_missing=max_missing)
    cgc_key = None
    if cgc is not None:
        cgc_curate(adata, cgc, tiers=tuple(tiers),
                   tumour_types=tumour_types if tumour_types is not None else _preset(cohort))
        cgc_key = K.CGC_MEMBER
    else:
        warnings.warn("no COSMIC Cancer Gene Census file given (--cgc): selecting by RFE alone",
                      stacklevel=2)
    rfe_params = {"step": step, "cv": inner_cv, "scoring": scoring, "engine": engine,
                  "random_state": random_state, "progress": progress}
    if splits is not None or folds >= 2:
        nested_select(adata, label_key, folds=folds, splits=splits, cgc_key=cgc_key,
                      min_frequency=min_frequency, step=step, inner_cv=inner_cv, scoring=scoring,
                      engine=engine, random_state=random_state, progress=progress)
    else:
        _single_rfecv(adata, label_key, cgc_key, **rfe_params)
    if not adata.var[K.PANEL].to_numpy(dtype=bool).any():
        raise SelectionError("the selection produced an empty panel")
    _warn_tiny_panels(adata)

    with atomic_path(out, is_dir=True) as tmp:
        _write_all(adata, tmp, cohort=cohort, formats=formats, report=report)
    return out


def _write_all(adata: ad.AnnData, tmp: Path, *, cohort: str, formats: Sequence[str],
               report: bool) -> None:
    mask = adata.var[K.PANEL].to_numpy(dtype=bool)
    nested = K.UNS_SELECT in adata.uns
    consensus_curve = None if nested else adata.uns.get(K.UNS_RFECV)
    prov = _provenance(adata, "consensus" if nested else "all samples", consensus_curve)
    _write_refined(adata, mask, tmp / "consensus", cohort, formats)
    panel = _panel(adata, mask, f"mirror_{cohort}_consensus", prov)
    for ext in ("gmt", "tsv", "json"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GMT drops weights: expected for a panel of 1.0s
            save_panel(panel, tmp / "consensus" / f"panel.{ext}")
    if nested:
        _write_folds(adata, tmp, cohort=cohort, formats=formats)
    dropped_table(adata).to_csv(tmp / "dropped.tsv", sep="\t", index=False)
    full = adata.copy()
    impute_median(full)
    full.uns[K.UNS_SELECT_JSON] = json.dumps(_plain(adata.uns.get(K.UNS_SELECT, {})))
    full.uns.pop(K.UNS_SELECT, None)  # nested lists of patients: kept as JSON above
    full.write_h5ad(tmp / "selection.h5ad")
    if report:
        from ._report import write_report

        write_report(adata, tmp, cohort=cohort)


def _write_folds(adata: ad.AnnData, tmp: Path, *, cohort: str, formats: Sequence[str]) -> None:
    """Per outer fold: refined dataset (imputed on its training samples), panel; splits, metrics."""
    select_record = adata.uns[K.UNS_SELECT]
    splits = [(v["train"], v["val"]) for v in select_record["splits"].values()]
    write_splits(splits, tmp / "splits")
    group_key = select_record["params"]["group_key"]
    patients = (adata.obs[group_key].astype(str) if group_key in adata.obs
                else pd.Series(adata.obs_names, index=adata.obs_names))
    for f in range(adata.varm[K.FOLD_PANEL].shape[1]):
        fold_mask = adata.varm[K.FOLD_PANEL][:, f]
        folder = tmp / f"fold_{f}"
        train = patients.isin([str(p) for p in splits[f][0]]).to_numpy()
        _write_refined(adata, fold_mask, folder, cohort, formats, fit_on=train)
        fold_prov = _provenance(adata, f"fold {f}", adata.uns[K.UNS_RFECV_FOLDS][f"fold_{f}"])
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
