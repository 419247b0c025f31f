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
from ._version import __version__
from ._errors import CohortError, InputFileError, LabelError
from ._labels import assign_labels, label_categories
from ._provenance import file_record, now_utc, versions
from .cohorts import CohortPreset, get_preset
from .io._clinical import read_phenotype
from .io._matrix import read_matrix_header, read_xena_matrix
from .io._probemap import read_probemap
from .io._survival import read_survival, survival_from_table

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
            "label": label.to_numpy(), "member": member.to_numpy(),
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
    """Decide which matrix columns to read, before reading any values."""
    rows = []
    counts = {"n_matrix_samples": 0, "n_not_in_phenotype": 0}
    for i, path in enumerate(expr_paths):
        header = read_matrix_header(path)
        keys = _barcode.sample_id(header)
        found = pd.Index(keys).isin(pheno.index)
        counts["n_matrix_samples"] += len(header)
        if not found.any():
            raise InputFileError(
                path, f"none of its {len(header)} samples (e.g. {header[0]}) are in the phenotype "
                f"file(s) (e.g. {pheno.index[0]})")
        counts["n_not_in_phenotype"] += int((~found).sum())
        rows.append(pd.DataFrame({"column": header, "file_index": i, "sample_key": keys,
                                  "in_phenotype": found}))
    cols = pd.concat(rows, ignore_index=True)
    cols = cols[cols["in_phenotype"]].copy()
    if len(cols) == 0:
        raise InputFileError(expr_paths[0], "no expression sample is in the phenotype file(s)")
    cols["patient_id"] = _barcode.patient_id(cols["column"])
    cols["sample_type_code"] = _barcode.sample_type_code(cols["column"])
    cols["label"] = pheno.loc[cols["sample_key"], "label"].to_numpy()
    cols["member"] = pheno.loc[cols["sample_key"], "member"].to_numpy()
    keep_type = cols["sample_type_code"].isin(list(sample_types))
    counts["n_other_sample_type"] = int((~keep_type).sum())
    cols = cols[keep_type]
    labelled = cols["label"] != ""
    counts["n_unlabelled"] = int((~labelled).sum())
    cols = cols[labelled]
    if one_per_patient:
        # tie rule: the lexicographically first barcode of a patient (01A before 01B, 01 before 06)
        cols = cols.sort_values(["patient_id", "column", "file_index"], kind="stable")
        dup = cols["patient_id"].duplicated(keep="first")
        counts["n_extra_patient_samples"] = int(dup.sum())
        cols = cols[~dup]
    cols = cols.sort_values(["file_index", "column"], kind="stable")
    class_counts = cols["label"].value_counts()
    for cls in preset.classes:
        if class_counts.get(cls, 0) == 0:
            raise LabelError(
                f"cohort {preset.name}: class {cls!r} has no samples after filtering "
                f"(sample types {','.join(sample_types)}, one per patient); counts: "
                + ", ".join(f"{c}={class_counts.get(c, 0)}" for c in preset.classes))
    return cols, counts


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

    With no file given, the cohort's Xena datasets are fetched through the cache.

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
    AnnData, float32 ``X``; ``obs`` has ``patient_id``, ``sample_type``, ``cohort``,
    ``label``, ``time`` (days), ``event`` (1 = died, 0 = censored); provenance in
    ``uns["mirror_genes"]``.
    """
    preset = get_preset(cohort)
    expr_paths, pheno_paths = _as_list(expression), _as_list(phenotype)
    surv_paths = _as_list(survival)
    fetched = not (expr_paths or pheno_paths or surv_paths)
    if fetched:
        from ._fetch import fetch

        files = fetch(preset.name, hub=hub, cache_dir=cache_dir, base_url=base_url,
                      toil_level=toil_level, progress=progress)
        expr_paths, pheno_paths, surv_paths = files["expression"], files["phenotype"], files["survival"]
        probemap = probemap or (files["probemap"][0] if files.get("probemap") else None)
    if not expr_paths or not pheno_paths:
        raise CohortError("pass both --expression and --phenotype (or neither, to fetch them)")
    n_members = len(preset.members)
    if len(pheno_paths) != n_members and not (len(pheno_paths) == 1 and n_members > 1):
        raise CohortError(f"cohort {preset.name} has {n_members} member project(s) "
                          f"({', '.join(m.project for m in preset.members)}); got "
                          f"{len(pheno_paths)} phenotype files")
    pheno = _phenotypes(pheno_paths, preset)
    cols, counts = _select_columns(expr_paths, pheno, preset, sample_types, one_per_patient)
    pm = read_probemap(probemap) if probemap is not None else None

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
    adata.uns.pop("xena_matrix", None)
    adata.X = np.asarray(adata.X, dtype=np.float32)

    meta = cols.set_index("column").loc[adata.obs_names]
    surv = _survival(surv_paths, endpoint)
    keys = meta["sample_key"].to_numpy()
    if surv is not None:
        time = surv["time"].reindex(keys).to_numpy(dtype=float)
        event = surv["event"].reindex(keys).to_numpy(dtype=float)
        survival_source = "survival file"
    elif "time" in pheno.columns:
        time = pheno["time"].reindex(keys).to_numpy(dtype=float)
        event = pheno["event"].reindex(keys).to_numpy(dtype=float)
        survival_source = "phenotype"
    else:
        time = event = np.full(len(keys), np.nan)
        survival_source = "none"
        warnings.warn(f"cohort {preset.name}: no survival table and no OS columns in the "
                      "phenotype; time/event are empty", stacklevel=2)
    obs = pd.DataFrame(index=adata.obs_names)
    obs["patient_id"] = meta["patient_id"].to_numpy()
    obs["sample_id"] = keys
    obs["sample_type"] = _barcode.sample_type(adata.obs_names)
    obs["cohort"] = pd.Categorical(meta["member"].to_numpy(),
                                   categories=[m.project for m in preset.members])
    obs["label"] = label_categories(preset, meta["label"].to_numpy())
    obs["time"] = time
    obs["event"] = event
    adata.obs = obs
    n_no_surv = int(np.sum(np.isnan(time) | np.isnan(event)))
    if n_no_surv and survival_source != "none":
        warnings.warn(f"cohort {preset.name}: {n_no_surv} of {len(time)} samples have no "
                      f"{endpoint} time/event", stacklevel=2)
    counts.update({
        "n_samples": int(adata.n_obs),
        "n_features": int(adata.n_vars),
        "n_missing_survival": n_no_surv,
        "classes": {c: int((obs["label"] == c).sum()) for c in preset.classes},
    })
    if counts["n_not_in_phenotype"]:
        warnings.warn(f"{counts['n_not_in_phenotype']} expression samples are not in the "
                      "phenotype file(s) and were dropped", stacklevel=2)
    inputs = {}
    for role, paths in (("expression", expr_paths), ("phenotype", pheno_paths),
                        ("survival", surv_paths), ("probemap", _as_list(probemap))):
        for i, p in enumerate(paths):
            inputs[f"{role}_{i}"] = file_record(p, role)
    adata.uns["mirror_genes"] = {
        "version": __version__,
        "created": now_utc(),
        "versions": versions(),
        "params": {
            "cohort": preset.name, "hub": hub, "fetched": fetched, "endpoint": endpoint,
            "sample_types": list(sample_types), "one_per_patient": one_per_patient,
            "tie_rule": "first barcode in sort order per patient",
            "label_source": sorted(set(pheno["label_source"]) - {""}),
            "survival_source": survival_source,
            **({"base_url": base_url} if base_url else {}),
        },
        "inputs": inputs,
        "counts": counts,
        "features": {"per_file": feature_counts, "n_common": int(adata.n_vars)},
    }
    return adata


def write_h5ad(adata: ad.AnnData, path: PathLike) -> Path:
    """Write atomically (temporary file, then rename)."""
    from ._atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path
