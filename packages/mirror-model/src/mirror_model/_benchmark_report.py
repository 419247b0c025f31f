"""Benchmark outputs rebuilt from the finished parts: tables I-IV, fold tables, figures, summary.

Tables follow the paper: I subtyping accuracy / macro-F1 (k-shot and all data), II survival
C-index, III the ablation, plus IV (MIRROR's multimodal probe against its single-modality
probes) and per-fold tables of the main metric. Cells are ``mean ± std`` over folds
(``mirror_model.eval.aggregate_metrics``); every number traces back to ``predictions.csv``.
"""

from __future__ import annotations

import warnings

import pandas as pd

from . import constants as C
from ._benchmark_units import METHODS
from ._evaluate import CACHE_DIR, COMMANDS_TXT, display_methods, embed_cached, umap_inputs, write_figures

# "all data" columns: the first protocol a method has, in this order (torch probe with inner
# validation; supervised MIL with inner validation; logistic regression / linear hazard with inner CV)
ALL_DATA = ("linear", "supervised", "logreg", "hazard")
MAIN_METRIC = {"subtyping": "accuracy", "survival": "c_index"}
MISSING = "–"
_NOTES = """Cells: mean ± std over folds (few-shot repeats averaged within a fold first). "all": every
training patient of the fold; MIRROR, its ablations and TANGLE by a linear probe whose epoch is
chosen on an inner validation split (protocol `linear`), ABMIL and PORPOISE trained supervised
with the epoch chosen on an inner validation split (`supervised`), Linear by logistic regression
(`logreg`) or a linear discrete-time hazard model (`hazard`), regularisation by inner CV. "k-shot":
k training patients per class (subtyping) or survival time bin, seeded repeats, the same draws
for every method; the embedding methods by the linear probe for a fixed number of epochs,
ABMIL and PORPOISE trained on the draw for the fixed number of epochs (too few cases for an
inner split), Linear with its inner CV on the draw. `MIRROR [wsi]` / `MIRROR [rna]`: the same MIRROR encoders probed on
one modality's embedding. Embeddings: one row per patient (mean over the patient's slides);
ABMIL/PORPOISE: one bag per patient (all the patient's slides' patches)."""


def _gather(ctx) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions and runs of the parts that belong to this benchmark's settings."""
    from . import eval as ev
    from ._benchmark import part_dir

    preds, runs = [], []
    for method in ctx.settings.methods:
        for task in ctx.settings.tasks:
            for k in range(len(ctx.raw_folds)):
                folder = part_dir(ctx, method, task, k)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # a pandas deprecation inside read_predictions
                    preds.append(ev.read_predictions(folder / C.PREDICTIONS_CSV))
                runs.append(pd.read_csv(folder / C.RUNS_CSV))
    return pd.concat(preds, ignore_index=True), pd.concat(runs, ignore_index=True)


def _cell(summary: pd.DataFrame, method: str, task: str, protocols, metric: str) -> str:
    from . import eval as ev

    rows = summary[(summary["method"] == method) & (summary["task"] == task) & (summary["metric"] == metric)]
    for protocol in protocols:
        hit = rows[rows["protocol"] == protocol]
        if len(hit):
            return ev.format_cell(float(hit["mean"].iloc[0]), float(hit["std"].iloc[0]))
    return MISSING


def _table(summary: pd.DataFrame, methods, columns: dict) -> pd.DataFrame:
    """columns: header -> (task, protocols in preference order, metric)."""
    data = {h: [_cell(summary, m, *spec) for m in methods] for h, spec in columns.items()}
    return pd.DataFrame(data, index=pd.Index(list(methods), name="method"))


def benchmark_tables(summary: pd.DataFrame, shots: int) -> dict[str, pd.DataFrame]:
    """Tables I-IV from an aggregated summary (``eval.aggregate_metrics``).

    Parameters
    ----------
    summary
        Mean and std over folds per method, task, protocol, modalities and metric.
    shots
        k of the few-shot columns.

    Returns
    -------
    ``{"Table I": ..., "Table II": ..., "Table III": ..., "Table IV": ...}``, methods as rows.
    """
    shown = display_methods(summary)
    few = tuple(f"{protocol}-{shots}shot" for protocol in ALL_DATA)
    present = list(dict.fromkeys(shown["method"]))
    order = [m for m in METHODS if m in present]
    task_methods = {t: [m for m in order if ((shown["method"] == m) & (shown["task"] == t)).any()]
                    for t in ("subtyping", "survival")}
    t1 = {f"Accuracy ({shots}-shot)": ("subtyping", few, "accuracy"),
          f"F1 ({shots}-shot)": ("subtyping", few, "macro_f1"),
          "Accuracy (all)": ("subtyping", ALL_DATA, "accuracy"), "F1 (all)": ("subtyping", ALL_DATA, "macro_f1")}
    t2 = {f"C-index ({shots}-shot)": ("survival", few, "c_index"), "C-index (all)": ("survival", ALL_DATA, "c_index")}
    t3 = {"Accuracy": ("subtyping", ALL_DATA, "accuracy"), "F1": ("subtyping", ALL_DATA, "macro_f1"),
          "C-index": ("survival", ALL_DATA, "c_index")}
    t4 = {**t1, "AUC (all)": ("subtyping", ALL_DATA, "auc"), **t2}
    ablation = [m for m in ("MIRROR-align", "MIRROR-align+retention", "MIRROR-align+clustering", "MIRROR")
                if m in present]
    single = [m for m in ("MIRROR [wsi]", "MIRROR [rna]", "MIRROR") if m in present]
    tables = {"Table I": _table(shown, task_methods["subtyping"], t1),
              "Table II": _table(shown, task_methods["survival"], t2),
              "Table III": _table(shown, ablation, t3), "Table IV": _table(shown, single, t4)}
    return {name: t for name, t in tables.items() if len(t)}


def fold_table(metrics: pd.DataFrame, task: str) -> pd.DataFrame:
    """The task's main metric (accuracy; C-index) per fold (rows) and method (columns), all-data protocol."""
    shown = display_methods(metrics)
    rows = shown[(shown["task"] == task) & (shown["metric"] == MAIN_METRIC[task])]
    cols = {}
    for method, part in rows.groupby("method", sort=False):
        protocol = next((p for p in ALL_DATA if (part["protocol"] == p).any()), None)
        if protocol is not None:
            cols[method] = part[part["protocol"] == protocol].groupby("fold")["value"].mean()
    order = [m for m in [*METHODS, "MIRROR [wsi]", "MIRROR [rna]"] if m in cols]
    table = pd.DataFrame({m: cols[m] for m in order})
    table.index.name = "fold"
    table.loc["mean"] = table.mean(axis=0)
    return table.round(3)


_CAPTIONS = {"Table I": "subtyping, accuracy and macro-F1", "Table II": "survival, C-index",
             "Table III": "ablation (all data)", "Table IV": "MIRROR: multimodal probe vs single-modality probes"}


def _write_tables(ctx, tables: dict, folds: dict) -> str:
    """CSV + markdown per table under ``tables/``; returns the summary markdown."""
    from mirror_genes.utils import atomic_path

    from . import eval as ev

    folder = ctx.out / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    s = ctx.settings
    parts = [f"# Benchmark: {s.cohort}\n", f"{len(ctx.raw_folds)} patient-level folds; preset `{s.preset}`"
             f"{'' if s.epochs is None else f', {s.epochs} pretraining epochs'}; tasks {', '.join(s.tasks)}.\n",
             _NOTES + "\n"]
    for name, table in {**tables, **{f"Folds {t}": f for t, f in folds.items()}}.items():
        stem = name.lower().replace(" ", "_")
        with atomic_path(folder / f"{stem}.csv") as tmp:
            table.to_csv(tmp)
        md = ev.to_markdown(table)
        with atomic_path(folder / f"{stem}.md") as tmp:
            tmp.write_text(md)
        caption = _CAPTIONS.get(name) or f"{MAIN_METRIC[name.split()[-1]]} per fold (all data)"
        parts += [f"\n## {name}: {caption}\n", md]
    return "\n".join(parts)


def _umap_panels(ctx):
    """MIRROR's fold-0 patient embeddings (from the cache when this process did not compute them)."""
    if "MIRROR" not in ctx.settings.methods:
        return None
    emb = ctx.embeddings.get(("MIRROR", 0))
    if emb is None:
        run = ctx.out / "pretrain" / "MIRROR" / "fold_0"
        emb = embed_cached(run / C.CHECKPOINT_LAST, ctx.pairing, cache_dir=run.parent / CACHE_DIR,
                           n_patches=ctx.settings.embed_patches, device=ctx.settings.device, progress=False)
    task = ctx.settings.tasks[0]
    return umap_inputs(emb, ctx.targets[task], task)


def assemble(ctx) -> None:
    """Write predictions, per-fold metrics, runs, summary, tables, figures and commands.txt."""
    from mirror_genes.utils import atomic_path

    from . import eval as ev

    predictions, runs = _gather(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined C-index / AUC were warned when the probes ran
        metrics = ev.metrics_from_predictions(predictions)
    metrics.insert(0, "cohort", ctx.settings.cohort)
    summary = ev.aggregate_metrics(metrics)
    ev.write_predictions(predictions, ctx.out / C.PREDICTIONS_CSV)
    for name, frame in ((C.FOLD_METRICS_CSV, metrics), (C.RUNS_CSV, runs), (C.SUMMARY_CSV, summary)):
        with atomic_path(ctx.out / name) as tmp:
            frame.to_csv(tmp, index=False)
    tables = benchmark_tables(summary, ctx.settings.shots)
    folds = {t: fold_table(metrics, t) for t in ctx.settings.tasks}
    with atomic_path(ctx.out / C.SUMMARY_MD) as tmp:
        tmp.write_text(_write_tables(ctx, tables, folds))
    panels = _umap_panels(ctx) if ctx.settings.umap else None
    result = ev.EvalResult(predictions, metrics.drop(columns="cohort"), runs)
    write_figures(result, ctx.out, umap=panels[0] if panels else None, umap_labels=panels[1] if panels else None,
                  umap_color=panels[2] if panels else "label", seed=ctx.settings.seed)
    with atomic_path(ctx.out / COMMANDS_TXT) as tmp:
        tmp.write_text((ctx.command or "") + "\n")
