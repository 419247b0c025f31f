"""Selection report: figures and a markdown summary with the numbers."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .tl._nested import FEATURE_SETS


def _table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join([df.index.name or ""] + cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for idx, *row in df.itertuples(name=None):  # keeps each column's dtype (ints stay ints)
        cells = [f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(lines)


def write_report(adata: ad.AnnData, folder: Path, *, cohort: str) -> None:
    from . import pl

    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    pl.rfecv_curve(adata, save=figures / "rfecv_curve.png")
    pl.panel_heatmap(adata, save=figures / "panel_heatmap.png")
    pl.top_variable_genes(adata, save=figures / "top_variable_genes.png")

    ingest = adata.uns.get("mirror_genes", {})
    counts = ingest.get("counts", {})
    mask = adata.var["mirror_panel"].to_numpy(bool)
    lines = [f"# mirror-genes selection report: {cohort}", ""]
    classes = ", ".join(f"{k} {v}" for k, v in counts.get("classes", {}).items())
    lines += [f"- samples: {adata.n_obs} ({classes})",
              f"- features after filtering: {adata.n_vars} "
              f"(dropped: {adata.uns.get('filter_features', {}).get('n_dropped_missing', 0)} mostly missing, "
              f"{adata.uns.get('filter_features', {}).get('n_dropped_constant', 0)} constant)"]
    if "cgc" in adata.uns:
        cgc = adata.uns["cgc"]
        lines.append(f"- COSMIC CGC: {len(cgc.get('matched_genes', []))} genes matched "
                     f"({int(adata.var['cgc_member'].sum())} features), "
                     f"{len(cgc.get('unmatched_genes', []))} CGC genes of the tumour types not in the data")
    else:
        lines.append("- COSMIC CGC: not used (no --cgc file); panel = RFE selection alone")
    lines.append(f"- final panel (`var['mirror_panel']`): {int(mask.sum())} features")
    if "mirror_select" in adata.uns:
        sel = adata.uns["mirror_select"]
        params = sel["params"]
        lines += [f"- outer folds: {params['folds']} (patient-level), inner RFE-CV: {params['inner_cv']} "
                  f"folds, step {params['step']}, scoring {params['scoring']}, engine {params['engine']}",
                  f"- consensus: features selected in >= {params['min_frequency']:.0%} of folds: "
                  f"{sel['n_consensus']}", "", "## Per fold (held-out samples)", ""]
        folds = pd.DataFrame(sel["folds"]).T
        folds.index.name = "fold"
        cols = ["n_train", "n_val", "chosen_size", "n_panel"]
        cols += [f"{s}_{m}" for s in FEATURE_SETS for m in ("balanced_accuracy", "macro_f1")
                 if f"{s}_{m}" in folds.columns]
        folds = folds[cols]
        for c in cols[:4]:
            folds[c] = folds[c].astype(int)
        mean = folds.iloc[:, 4:].astype(float).mean()
        lines.append(_table(folds))
        lines += ["", "Mean over folds: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()), ""]
        lines += ["Feature sets: `panel` = the fold's RFE support + CGC features; `rfe` = RFE support "
                  "alone; `all` = every feature; `random` = random features, as many as `panel`. "
                  "Probe: logistic regression on training-fold standard scaling.", ""]
        freq = adata.var["selection_frequency"]
        symbols = adata.var.get("gene_symbol", pd.Series(adata.var_names, index=adata.var_names))
        top = freq[freq > 0].sort_values(ascending=False, kind="stable").head(25)
        lines += ["## Most frequently selected features", "",
                  "| feature | symbol | folds selected |", "|---|---|---|"]
        k = params["folds"]
        lines += [f"| {f} | {symbols[f]} | {int(round(v * k))}/{k} |" for f, v in top.items()]
    else:
        rf = adata.uns["rfecv"]
        lines.append(f"- single RFE-CV on all samples: chosen size {int(rf['chosen_size'])}, "
                     f"best mean CV score {float(np.max(rf['mean_score'])):.3f} (no held-out evaluation)")
    lines += ["", "## Figures", "", "![RFE-CV curve](figures/rfecv_curve.png)", "",
              "![Panel heatmap](figures/panel_heatmap.png)", "",
              "![Most variable panel genes](figures/top_variable_genes.png)", ""]
    (folder / "report.md").write_text("\n".join(lines))
