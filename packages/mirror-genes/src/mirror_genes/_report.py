"""Selection report: figures and a markdown summary with the numbers."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from . import constants as K
from ._dropped import describe, dropped
from .tl._nested import FEATURE_SETS

_MAX_NAMES = 50      # names listed per dropped reason (all of them are in dropped.tsv)
_MAX_PANEL_ROWS = 200  # panel rows in the report (all of them are in consensus/panel.tsv)


def _table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join([df.index.name or ""] + cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for idx, *row in df.itertuples(name=None):  # keeps each column's dtype (ints stay ints)
        cells = [f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(lines)


def _symbols(adata: ad.AnnData) -> pd.Series:
    if K.GENE_SYMBOL not in adata.var:
        return pd.Series(adata.var_names, index=adata.var_names)
    sym = adata.var[K.GENE_SYMBOL].astype(object).where(adata.var[K.GENE_SYMBOL].notna(), "")
    return sym.astype(str).where(sym.astype(str) != "", adata.var_names.to_series())


def _summary(adata: ad.AnnData, cohort: str) -> list[str]:
    counts = adata.uns.get(K.UNS_INGEST, {}).get("counts", {})
    filt = adata.uns.get(K.UNS_FILTER, {})
    classes = ", ".join(f"{k} {v}" for k, v in counts.get("classes", {}).items())
    lines = [f"# mirror-genes selection report: {cohort}", "",
             f"- samples: {adata.n_obs} ({classes})",
             f"- features after filtering: {adata.n_vars} (dropped: "
             f"{filt.get('n_dropped_missing', 0)} mostly missing, "
             f"{filt.get('n_dropped_constant', 0)} constant)"]
    impute = adata.uns.get(K.UNS_IMPUTE, {})
    if impute:
        lines.append(f"- missing expression cells: {int(impute.get('n_imputed', 0))} at ingest; "
                     "selection imputes them with training-fold medians, the refined datasets "
                     "with the medians of their own training samples (`layers['missing']` "
                     "keeps where they were)")
    if K.UNS_CGC in adata.uns:
        cgc = adata.uns[K.UNS_CGC]
        lines.append(f"- COSMIC CGC: {len(cgc.get('matched_genes', []))} genes matched "
                     f"({int(adata.var[K.CGC_MEMBER].sum())} features), "
                     f"{len(cgc.get('unmatched_genes', []))} CGC genes of the tumour types not "
                     f"in the data; tumour types {', '.join(map(str, cgc['params']['tumour_types']))}")
    else:
        lines.append("- COSMIC CGC: not used (no --cgc file); panel = RFE selection alone")
    lines.append(f"- final panel (`var['{K.PANEL}']`): {int(adata.var[K.PANEL].sum())} features")
    return lines


def _dropped_section(adata: ad.AnnData) -> list[str]:
    lines = ["## What was left out", ""]
    for key, names in dropped(adata).items():
        if not names:
            continue
        shown = ", ".join(names[:_MAX_NAMES])
        more = f", ... ({len(names) - _MAX_NAMES} more)" if len(names) > _MAX_NAMES else ""
        lines.append(f"- {len(names)} {describe(adata, key)}: {shown}{more}")
    if len(lines) == 2:
        lines.append("- nothing: every sample, feature and CGC gene of the tumour types was used")
    lines += ["", "Every name is in `dropped.tsv`.", ""]
    return lines


def _folds_section(adata: ad.AnnData) -> list[str]:
    sel = adata.uns[K.UNS_SELECT]
    params = sel["params"]
    folds = pd.DataFrame(sel["folds"]).T
    folds.index.name = "fold"
    cols = ["n_train", "n_val", "chosen_size", "n_panel"]
    cols += [f"{s}_balanced_accuracy" for s in FEATURE_SETS if f"{s}_balanced_accuracy" in folds]
    cols += ["rfe_jaccard_consensus"] if "rfe_jaccard_consensus" in folds else []
    folds = folds[cols]
    for c in cols[:4]:
        folds[c] = folds[c].astype(int)
    lines = [f"- outer folds: {params['folds']} (patient-level), inner RFE-CV: {params['inner_cv']} "
             f"folds, step {params['step']}, scoring {params['scoring']}, engine {params['engine']}",
             f"- consensus: features selected in >= {params['min_frequency']:.0%} of folds: "
             f"{sel['n_consensus']}", "", "## Per fold (held-out samples)", "",
             _table(folds.rename(columns=lambda c: c.replace("_balanced_accuracy", " bal. acc."))), ""]
    scores = folds[[c for c in cols if c.endswith("_balanced_accuracy")]].astype(float)
    if not scores.empty:
        mean = scores.mean()
        lines.append("Mean held-out balanced accuracy: " + ", ".join(
            f"{k.removesuffix('_balanced_accuracy')} {v:.3f}" for k, v in mean.items()))
        lines += ["", "`panel` = the fold's RFE support + CGC features; `rfe` = RFE support alone; "
                  "`all` = every feature; `random` = random features, as many as `panel`. Probe: "
                  "logistic regression on training-fold standard scaling, scored on the fold's "
                  "held-out patients. A panel worth keeping beats `random` clearly and matches or "
                  "beats `all`.", ""]
    if "rfe_jaccard_consensus" in folds and len(folds) > 1:
        worst = folds["rfe_jaccard_consensus"].astype(float).idxmin()
        lines += [f"`rfe_jaccard_consensus`: overlap of the fold's RFE support with the consensus "
                  f"(1 = the same features). The fold that disagrees most is {worst} (chosen size "
                  f"{int(folds.loc[worst, 'chosen_size'])}; median over folds "
                  f"{int(folds['chosen_size'].median())}): selection on a few hundred patients "
                  "varies, which is why the consensus keeps only features most folds agree on.", ""]
    return lines


def panel_origins(adata: ad.AnnData) -> pd.DataFrame:
    """Final panel features with their origin (RFE in k/K folds, CGC, both) and CGC tumour types."""
    panel = adata.var[K.PANEL].to_numpy(bool)
    var = adata.var[panel]
    in_cgc = (var[K.CGC_MEMBER].to_numpy(bool) if K.CGC_MEMBER in var
              else np.zeros(len(var), dtype=bool))
    if K.UNS_SELECT in adata.uns:
        k = int(adata.uns[K.UNS_SELECT]["params"]["folds"])
        n_sel = np.rint(var[K.SELECTION_FREQUENCY].to_numpy(float) * k).astype(int)
        in_rfe = var[K.RFE_CONSENSUS].to_numpy(bool)
        folds_text = [f"{n}/{k}" for n in n_sel]
    else:
        n_sel = var[K.RFECV_SUPPORT].to_numpy(bool).astype(int)
        in_rfe = n_sel.astype(bool)
        folds_text = ["all samples" if s else "-" for s in in_rfe]
    origin = np.where(in_rfe & in_cgc, "RFE + CGC", np.where(in_rfe, "RFE", "CGC"))
    types = (var[K.CGC_TUMOUR_TYPES].astype(str).to_numpy() if K.CGC_TUMOUR_TYPES in var
             else np.full(len(var), ""))
    out = pd.DataFrame({"symbol": _symbols(adata)[panel].to_numpy(), "origin": origin,
                        "RFE folds": folds_text, "CGC tumour types": types},
                       index=pd.Index(var.index, name="feature"))
    order = np.lexsort((np.arange(len(out)), -n_sel, ~in_rfe, ~(in_rfe & in_cgc)))
    return out.iloc[order]


def _panel_section(adata: ad.AnnData) -> list[str]:
    table = panel_origins(adata)
    lines = ["## Final panel", "",
             f"{len(table)} features: " + ", ".join(
                 f"{n} {o}" for o, n in table["origin"].value_counts().items()) + ".", ""]
    lines.append(_table(table.head(_MAX_PANEL_ROWS).replace("", "-")))
    if len(table) > _MAX_PANEL_ROWS:
        lines.append(f"\n... {len(table) - _MAX_PANEL_ROWS} more in `consensus/panel.tsv`.")
    lines.append("")
    if K.UNS_SELECT in adata.uns:
        k = int(adata.uns[K.UNS_SELECT]["params"]["folds"])
        freq = adata.var[K.SELECTION_FREQUENCY]
        panel = adata.var[K.PANEL].to_numpy(bool)
        near = freq[(freq > 0) & ~panel].sort_values(ascending=False, kind="stable").head(15)
        if len(near):
            symbols = _symbols(adata)
            lines += ["Selected in some folds but not in the panel: " + ", ".join(
                f"{symbols[f]} ({int(round(v * k))}/{k})" for f, v in near.items()), ""]
    return lines


def write_report(adata: ad.AnnData, folder: Path, *, cohort: str) -> None:
    """Write ``figures/*.png`` and ``report.md`` for a finished selection into ``folder``."""
    from . import pl

    label_key = adata.uns.get(K.UNS_SELECT, {}).get("params", {}).get("label_key", K.LABEL)
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    pl.rfecv_curve(adata, save=figures / "rfecv_curve.png")
    pl.panel_heatmap(adata, label_key=label_key, save=figures / "panel_heatmap.png")
    pl.top_variable_genes(adata, save=figures / "top_variable_genes.png")

    lines = _summary(adata, cohort)
    if K.UNS_SELECT in adata.uns:
        lines += _folds_section(adata)
    else:
        rf = adata.uns[K.UNS_RFECV]
        lines += [f"- single RFE-CV on all samples: chosen size {int(rf['chosen_size'])}, "
                  f"best mean CV score {float(np.max(rf['mean_score'])):.3f} (no held-out "
                  "evaluation)", ""]
    lines += _panel_section(adata) + _dropped_section(adata)
    lines += ["## Figures", "", "![RFE-CV curve](figures/rfecv_curve.png)", "",
              "![Panel heatmap](figures/panel_heatmap.png)", "",
              "![Most variable panel genes](figures/top_variable_genes.png)", ""]
    (folder / "report.md").write_text("\n".join(lines))
