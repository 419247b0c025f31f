"""Cohort ingestion: Xena expression + phenotype + survival -> labelled, provenance-carrying AnnData."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from . import _barcode
from . import constants as K
from ._errors import CohortError, InputFileError, LabelError
from ._labels import assign_labels, label_categories
from ._provenance import file_record, now_utc, versions
from ._version import __version__
from .cohorts import CohortPreset, get_preset
from .io._clinical import read_phenotype
from .io._matrix import read_matrix_header, read_xena_matrix
from .io._probemap import read_probemap
from .io._survival import read_survival, survival_from_table
from .pp._filter import impute_median

PathLike = str | os.PathLike


def _as_list(value) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value]


def _phenotypes(paths: list[Path], preset: CohortPreset) -> pd.DataFrame:
    """Concatenated phenotype rows keyed by 15-char sample ID, with label/member columns."""
    frames = []
    for p in paths:
        df = read_phenotype(p)
        label, member, source = assign_labels(df, preset)
        if preset.multi_member and source is None:
            raise CohortError(
                f"{p}: cannot tell which of {', '.join(m.project for m in preset.members)} "
                "each sample belongs to (no '_cohort', '_primary_disease', 'project_id' or "
                "'Oncotree Code' column)")
        frames.append(pd.DataFrame({
            "sample_key": _barcode.sample_id(df.index),
            K.LABEL: label.to_numpy(), "member": member.to_numpy(),
            "label_source": source or "", "phenotype_file": str(p),
            "_PATIENT": df["_PATIENT"].to_numpy(),
        }, index=df.index))
        surv = survival_from_table(df, path=p)
        if surv is not None:
            frames[-1]["time"] = surv["time"].to_numpy()
            frames[-1]["event"] = surv["event"].to_numpy()
    pheno = pd.concat(frames)
    # several aliquots (GDC 01A/01B) may share a 15-char key: keep the first by barcode
    pheno = pheno.sort_index(kind="stable")
    dup = pheno.index.duplicated()
    if dup.any():
        raise InputFileError(paths[0] if len(paths) == 1 else ", ".join(map(str, paths)),
                             f"sample {pheno.index[dup][0]} appears in more than one phenotype row")
    return pheno.drop_duplicates("sample_key", keep="first").set_index("sample_key")


def _survival(paths: list[Path], endpoint: str) -> pd.DataFrame | None:
    if not paths:
        return None
    frames = [read_survival(p, endpoint=endpoint) for p in paths]
    surv = pd.concat(frames).sort_index(kind="stable")
    surv.index = _barcode.sample_id(surv.index)
    return surv[~surv.index.duplicated(keep="first")]


def _select_columns(expr_paths: list[Path], pheno: pd.DataFrame, preset: CohortPreset,
                    sample_types: Sequence[str], one_per_patient: bool) -> tuple[pd.DataFrame, dict]:
    """Decide which matrix columns to read, before reading any values.

    Returns the kept columns and, per reason, the matrix columns dropped (by name).
    """
    cols = _matrix_columns(expr_paths, pheno)
    dropped = {"not_in_phenotype": cols.loc[~cols["in_phenotype"], "column"].tolist()}
    cols = cols[cols["in_phenotype"]].copy()
    if len(cols) == 0:
        raise InputFileError(expr_paths[0], "no expression sample is in the phenotype file(s)")
    cols[K.PATIENT_ID] = _barcode.patient_id(cols["column"])
    cols["sample_type_code"] = _barcode.sample_type_code(cols["column"])
    cols[K.LABEL] = pheno.loc[cols["sample_key"], K.LABEL].to_numpy()
    cols["member"] = pheno.loc[cols["sample_key"], "member"].to_numpy()
    keep_type = cols["sample_type_code"].isin(list(sample_types))
    dropped["other_sample_type"] = cols.loc[~keep_type, "column"].tolist()
    cols = cols[keep_type]
    labelled = cols[K.LABEL] != ""
    dropped["unlabelled"] = cols.loc[~labelled, "column"].tolist()
    cols = cols[labelled]
    dropped["extra_patient_samples"] = []
    if one_per_patient:
        # tie rule: the lexicographically first barcode of a patient (01A before 01B, 01 before 06)
        cols = cols.sort_values([K.PATIENT_ID, "column", "file_index"], kind="stable")
        dup = cols[K.PATIENT_ID].duplicated(keep="first")
        dropped["extra_patient_samples"] = cols.loc[dup, "column"].tolist()
        cols = cols[~dup]
    cols = cols.sort_values(["file_index", "column"], kind="stable")
    _check_classes(cols, preset, sample_types)
    return cols, dropped


def _matrix_columns(expr_paths: list[Path], pheno: pd.DataFrame) -> pd.DataFrame:
    """Every sample column of the expression headers, and whether the phenotype knows it."""
    rows = []
    for i, path in enumerate(expr_paths):
        header = read_matrix_header(path)
        keys = _barcode.sample_id(header)
        found = pd.Index(keys).isin(pheno.index)
        if not found.any():
            raise InputFileError(
                path, f"none of its {len(header)} samples (e.g. {header[0]}) are in the phenotype "
                f"file(s) (e.g. {pheno.index[0]})")
        rows.append(pd.DataFrame({"column": header, "file_index": i, "sample_key": keys,
                                  "in_phenotype": found}))
    return pd.concat(rows, ignore_index=True)


def _check_classes(cols: pd.DataFrame, preset: CohortPreset, sample_types: Sequence[str]) -> None:
    class_counts = cols[K.LABEL].value_counts()
    for cls in preset.classes:
        if class_counts.get(cls, 0) == 0:
            raise LabelError(
                f"cohort {preset.name}: class {cls!r} has no samples after filtering "
                f"(sample types {','.join(sample_types)}, one per patient); counts: "
                + ", ".join(f"{c}={class_counts.get(c, 0)}" for c in preset.classes))


def _input_files(preset: CohortPreset, expression, phenotype, survival, probemap, *, hub: str,
                 cache_dir, base_url, toil_level: str, progress) -> tuple[dict, bool]:
    """Local files by role, or the preset's Xena files fetched through the cache."""
    files = {"expression": _as_list(expression), "phenotype": _as_list(phenotype),
             "survival": _as_list(survival), "probemap": _as_list(probemap)}
    fetched = not (files["expression"] or files["phenotype"] or files["survival"])
    if fetched:
        from ._fetch import fetch

        got = fetch(preset.name, hub=hub, cache_dir=cache_dir, base_url=base_url,
                    toil_level=toil_level, progress=progress)
        files.update({role: list(got[role]) for role in ("expression", "phenotype", "survival")})
        files["probemap"] = files["probemap"] or list(got.get("probemap") or [])[:1]
    if not files["expression"] or not files["phenotype"]:
        raise CohortError("pass both --expression and --phenotype (or neither, to fetch them)")
    n_members, n_pheno = len(preset.members), len(files["phenotype"])
    if n_pheno != n_members and not (n_pheno == 1 and n_members > 1):
        raise CohortError(f"cohort {preset.name} has {n_members} member project(s) "
                          f"({', '.join(m.project for m in preset.members)}); got "
                          f"{n_pheno} phenotype files")
    return files, fetched


def _read_expression(expr_paths: list[Path], cols: pd.DataFrame, probemap: list[Path],
                     progress) -> tuple[ad.AnnData, dict]:
    """The wanted columns of every matrix, joined on the features all matrices share."""
    pm = read_probemap(probemap[0]) if probemap else None
    parts, feature_counts = [], {}
    for i, path in enumerate(expr_paths):
        wanted = cols.loc[cols["file_index"] == i, "column"].tolist()
        if not wanted:
            continue
        parts.append(read_xena_matrix(path, samples=wanted, probemap=pm, progress=progress))
        feature_counts[f"expression_{i}"] = int(parts[-1].n_vars)
    if len(parts) > 1:
        common = parts[0].var_names
        for part in parts[1:]:
            common = common.intersection(part.var_names, sort=False)
        if len(common) == 0:
            raise InputFileError(expr_paths[1], "shares no feature IDs with " + str(expr_paths[0]))
        adata = ad.concat([p[:, common] for p in parts], axis=0, merge="first")
        adata.var = parts[0].var.loc[common].copy()
    else:
        adata = parts[0]
    adata.uns.pop(K.UNS_XENA_MATRIX, None)
    adata.X = np.asarray(adata.X, dtype=np.float32)
    return adata, feature_counts


def _survival_columns(keys: np.ndarray, pheno: pd.DataFrame, surv_paths: list[Path],
                      endpoint: str, preset: CohortPreset) -> tuple[np.ndarray, np.ndarray, str]:
    """time (days), event and where they came from, for the samples ``keys``."""
    surv = _survival(surv_paths, endpoint)
    if surv is not None:
        return (surv["time"].reindex(keys).to_numpy(dtype=float),
                surv["event"].reindex(keys).to_numpy(dtype=float), "survival file")
    if "time" in pheno.columns:
        return (pheno["time"].reindex(keys).to_numpy(dtype=float),
                pheno["event"].reindex(keys).to_numpy(dtype=float), "phenotype")
    warnings.warn(f"cohort {preset.name}: no survival table and no OS columns in the "
                  "phenotype; time/event are empty", stacklevel=3)
    empty = np.full(len(keys), np.nan)
    return empty, empty.copy(), "none"


def _obs(adata: ad.AnnData, meta: pd.DataFrame, preset: CohortPreset, time: np.ndarray,
         event: np.ndarray) -> pd.DataFrame:
    obs = pd.DataFrame(index=adata.obs_names)
    obs[K.PATIENT_ID] = meta[K.PATIENT_ID].to_numpy()
    obs[K.SAMPLE_ID] = meta["sample_key"].to_numpy()
    obs[K.SAMPLE_TYPE] = _barcode.sample_type(adata.obs_names)
    obs[K.PROJECT] = pd.Categorical(meta["member"].to_numpy(),
                                    categories=[m.project for m in preset.members])
    obs[K.LABEL] = label_categories(preset, meta[K.LABEL].to_numpy())
    obs[K.TIME] = time
    obs[K.EVENT] = event
    return obs


def ingest(
    cohort: str,
    *,
    expression: PathLike | Sequence[PathLike] | None = None,
    phenotype: PathLike | Sequence[PathLike] | None = None,
    survival: PathLike | Sequence[PathLike] | None = None,
    probemap: PathLike | None = None,
    hub: str = "tcga",
    cache_dir: PathLike | None = None,
    base_url: str | None = None,
    endpoint: str = "OS",
    sample_types: Sequence[str] = ("01",),
    one_per_patient: bool = True,
    toil_level: str = "isoform",
    progress: bool | None = None,
) -> ad.AnnData:
    """Build a labelled samples x features AnnData for a cohort preset.

    With no file given, the cohort's Xena datasets are fetched through the cache. Missing
    expression cells are imputed with their feature's median over all samples (there is no
    split yet), so ``X`` is finite and scanpy-ready; ``layers["missing"]`` keeps which cells
    were missing, so that selection can refit the imputation on training samples only.

    Parameters
    ----------
    cohort
        Preset name (``brca``, ``nsclc``, ``rcc``, ``coadread``).
    expression
        Xena expression matrices: one per member project, or one pan-cancer (toil) matrix.
    phenotype
        Phenotype tables (clinicalMatrix, GDC clinical or cBioPortal export), one per member.
    survival
        Survival tables; without them the phenotype's own survival columns are used if any.
    probemap
        Xena probemap for Ensembl/transcript IDs (GDC and toil hubs).
    hub
        Hub to fetch from when no files are given: ``tcga``, ``gdc`` or ``toil``.
    cache_dir
        Download cache (default: ``MIRROR_GENES_CACHE`` or the user cache directory).
    base_url
        Mirror of the hub(s) to fetch from.
    endpoint
        Survival endpoint (``OS``, ``DSS``, ``DFI``, ``PFI``).
    sample_types
        TCGA sample-type codes to keep (``01`` = primary tumour).
    one_per_patient
        Keep one sample per patient: the first barcode in sort order.
    toil_level
        ``isoform`` (transcripts) or ``gene`` for the toil hub.
    progress
        Show progress bars.

    Returns
    -------
    AnnData, finite float32 ``X``; ``layers["missing"]`` (sparse bool); ``obs`` has
    ``patient_id``, ``sample_id``, ``sample_type``, ``tcga_project``, ``label``, ``time``
    (days), ``event`` (1 = died, 0 = censored); provenance, counts and the dropped samples
    by name (``dropped``) in ``uns["mirror_genes"]``; the imputation in
    ``uns["impute_median"]``.
    """
    preset = get_preset(cohort)
    files, fetched = _input_files(preset, expression, phenotype, survival, probemap, hub=hub,
                                  cache_dir=cache_dir, base_url=base_url, toil_level=toil_level,
                                  progress=progress)
    pheno = _phenotypes(files["phenotype"], preset)
    cols, dropped = _select_columns(files["expression"], pheno, preset, sample_types,
                                    one_per_patient)
    adata, feature_counts = _read_expression(files["expression"], cols, files["probemap"],
                                             progress)
    meta = cols.set_index("column").loc[adata.obs_names]
    time, event, survival_source = _survival_columns(
        meta["sample_key"].to_numpy(), pheno, files["survival"], endpoint, preset)
    adata.obs = _obs(adata, meta, preset, time, event)
    impute_median(adata)
    no_survival = np.isnan(time) | np.isnan(event)
    dropped["no_survival_kept"] = adata.obs_names[no_survival].tolist()
    all_missing = adata.layers[K.MISSING].sum(axis=0).A1 == adata.n_obs
    params = {
        "cohort": preset.name, "hub": hub, "fetched": fetched, "endpoint": endpoint,
        "sample_types": list(sample_types), "one_per_patient": one_per_patient,
        "tie_rule": "first barcode in sort order per patient",
        "label_source": sorted(set(pheno["label_source"]) - {""}),
        "survival_source": survival_source, **({"base_url": base_url} if base_url else {}),
    }
    adata.uns[K.UNS_INGEST] = {
        "version": __version__, "created": now_utc(), "versions": versions(),
        "params": params,
        "inputs": {f"{role}_{i}": file_record(p, role) for role, paths in files.items()
                   for i, p in enumerate(paths)},
        "counts": _counts(adata, preset, dropped, no_survival),
        "dropped": dropped,
        "features": {"per_file": feature_counts, "n_common": int(adata.n_vars),
                     "all_missing": adata.var_names[all_missing].tolist()},
    }
    _warn_dropped(preset, dropped, survival_source, endpoint, adata.n_obs)
    return adata


def _counts(adata: ad.AnnData, preset: CohortPreset, dropped: dict, no_survival) -> dict:
    counts = {f"n_{reason}": len(names) for reason, names in dropped.items()
              if reason != "no_survival_kept"}
    counts.update({
        "n_matrix_samples": int(adata.n_obs) + sum(counts.values()),
        "n_samples": int(adata.n_obs),
        "n_features": int(adata.n_vars),
        "n_missing_survival": int(np.sum(no_survival)),
        "n_missing_cells": int(adata.uns[K.UNS_IMPUTE]["n_imputed"]),
        "classes": {c: int((adata.obs[K.LABEL] == c).sum()) for c in preset.classes},
    })
    return counts


def _warn_dropped(preset: CohortPreset, dropped: dict, survival_source: str, endpoint: str,
                  n_samples: int) -> None:
    n_no_surv = len(dropped["no_survival_kept"])
    if n_no_surv and survival_source != "none":
        warnings.warn(f"cohort {preset.name}: {n_no_surv} of {n_samples} samples have no "
                      f"{endpoint} time/event", stacklevel=3)
    n_unknown = len(dropped["not_in_phenotype"])
    if n_unknown:
        warnings.warn(f"{n_unknown} expression samples are not in the phenotype file(s) and "
                      "were dropped", stacklevel=3)


def write_h5ad(adata: ad.AnnData, path: PathLike) -> Path:
    """Write atomically (temporary file, then rename)."""
    from ._atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path
