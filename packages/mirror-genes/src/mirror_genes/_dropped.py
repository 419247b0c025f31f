"""What ingestion and selection left out, by name: samples, features and CGC genes.

Each step records its own drops in its ``uns`` record; this module gathers them into one
view for the CLI, the report and ``dropped.tsv``, so that a user who cares about a gene
(say CDH1) can see whether, and why, it vanished.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from . import constants as K

# key -> (what is listed, one-line description)
REASONS: dict[str, tuple[str, str]] = {
    "not_in_phenotype": ("sample", "expression samples not in the phenotype file(s)"),
    "unlabelled": ("sample", "samples without a class label"),
    "other_sample_type": ("sample", "samples of another sample type"),
    "extra_patient_samples": ("sample", "further samples of a patient (one kept per patient)"),
    "no_survival_kept": ("sample", "samples without survival time/event (kept; time/event empty)"),
    "features_all_missing": ("feature", "features missing in every sample (imputed as 0 at "
                             "ingest; select drops them)"),
    "features_missing": ("feature", "features missing in too many samples"),
    "features_constant": ("feature", "constant features"),
    "cgc_absent": ("CGC gene", "COSMIC CGC genes of the tumour types absent from the data"),
}


def _names(values) -> list[str]:
    """Plain strings from a list, or from the array that h5ad gives back for it."""
    if values is None:
        return []
    return [str(v) for v in np.asarray(values, dtype=object).reshape(-1)]


def _labelled(features: list[str], symbols: list[str]) -> list[str]:
    """``SYMBOL (feature)`` where the feature ID is not the symbol (Ensembl, transcripts)."""
    if len(symbols) != len(features):
        return features
    return [f if s in ("", f) else f"{s} ({f})" for f, s in zip(features, symbols)]


def dropped(adata: ad.AnnData) -> dict[str, list[str]]:
    """Everything left out so far, by reason (keys of :data:`REASONS`), names in order."""
    ingest = adata.uns.get(K.UNS_INGEST, {}).get("dropped", {})
    out = {key: _names(ingest.get(key)) for key in
           ("not_in_phenotype", "unlabelled", "other_sample_type", "extra_patient_samples",
            "no_survival_kept")}
    out["unlabelled"] += _names(adata.uns.get(K.UNS_DROPPED_SAMPLES, {}).get("no_label"))
    filt = adata.uns.get(K.UNS_FILTER, {})
    # once filtered, the all-missing features are among features_missing: not listed twice
    all_missing = adata.uns.get(K.UNS_INGEST, {}).get("features", {}).get("all_missing")
    out["features_all_missing"] = [] if filt else _names(all_missing)
    for kind in ("missing", "constant"):
        out[f"features_{kind}"] = _labelled(_names(filt.get(f"dropped_{kind}")),
                                            _names(filt.get(f"dropped_{kind}_symbols")))
    out["cgc_absent"] = _names(adata.uns.get(K.UNS_CGC, {}).get("unmatched_genes"))
    return out


def describe(adata: ad.AnnData, key: str) -> str:
    """The description of a reason, with the threshold that applied where there is one."""
    max_missing = adata.uns.get(K.UNS_FILTER, {}).get("params", {}).get("max_missing")
    if key == "features_missing" and max_missing is not None:
        return f"features missing in more than {float(max_missing):.0%} of samples"
    return REASONS[key][1]


# what the CLI prints: losses a user may not expect (sample-type and one-per-patient choices
# are the user's own options, so they are only in dropped.tsv and the report)
LOSSES = ("not_in_phenotype", "unlabelled", "no_survival_kept", "features_all_missing",
          "features_missing", "features_constant", "cgc_absent")


def dropped_lines(adata: ad.AnnData, *, keys=None, limit: int = 10) -> list[str]:
    """One line per non-empty reason: count, description and the first ``limit`` names."""
    lines = []
    for key, names in dropped(adata).items():
        if not names or (keys is not None and key not in keys):
            continue
        shown = ", ".join(names[:limit])
        more = f" and {len(names) - limit} more" if len(names) > limit else ""
        lines.append(f"{len(names)} {describe(adata, key)}: {shown}{more}")
    return lines


def dropped_table(adata: ad.AnnData) -> pd.DataFrame:
    """Long table (``reason``, ``kind``, ``name``) of everything :func:`dropped` lists."""
    rows = [(key, REASONS[key][0], name) for key, names in dropped(adata).items() for name in names]
    return pd.DataFrame(rows, columns=["reason", "kind", "name"])
