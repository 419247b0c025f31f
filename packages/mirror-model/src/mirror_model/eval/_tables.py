"""Aggregation (mean ± std over folds), CSV/markdown tables and the paper-shaped tables."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from mirror_genes.utils import atomic_path

from .._errors import EvaluationError
from ..constants import FOLD_METRICS_CSV, PREDICTIONS_CSV, RUNS_CSV, SUMMARY_CSV, SUMMARY_MD
from ._inputs import SUBTYPING, SURVIVAL
from ._metrics import ACCURACY, C_INDEX, MACRO_F1
from ._predictions import write_predictions
from ._result import EvalResult, protocol_name

ABLATION_METHODS = ("MIRROR-align", "MIRROR-align+retention", "MIRROR-align+clustering", "MIRROR")
MISSING_CELL = "–"
_KEYS = ["cohort", "method", "task", "protocol", "modalities", "metric"]


def aggregate_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over folds of every metric.

    Parameters
    ----------
    metrics
        Fold-level rows (``EvalResult.metrics``), optionally with a ``cohort`` column.

    Returns
    -------
    One row per (cohort, method, task, protocol, modalities, metric): ``mean``, ``std``
    (sample std, ddof 1, across folds), ``n_folds`` (folds with a finite value) and ``n_runs``.
    Repeats within a fold (few-shot seeds) are first averaged, so ``std`` measures the spread
    across folds only. NaN fold values (C-index without comparable pairs) are left out.
    """
    keys = [k for k in _KEYS if k in metrics.columns]
    per_fold = (metrics.groupby(keys + ["fold"], sort=False)["value"]
                .agg(value="mean", n_runs="size").reset_index())
    out = per_fold.groupby(keys, sort=False).agg(mean=("value", "mean"), std=("value", "std"),
                                                 n_folds=("value", "count"), n_runs=("n_runs", "sum"))
    return out.reset_index()


def format_cell(mean: float, std: float, digits: int = 3) -> str:
    """``"mean ± std"``; just the mean when std is undefined, ``–`` when the mean is.

    Parameters
    ----------
    mean
        Mean over folds.
    std
        Standard deviation over folds.
    digits
        Decimals.

    Returns
    -------
    The cell text.
    """
    if mean is None or math.isnan(mean):
        return MISSING_CELL
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(table: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-flavoured markdown table (no extra dependency).

    Parameters
    ----------
    table
        Any frame; cells are written with ``str``.
    index
        Write the index as the first column.

    Returns
    -------
    The markdown text, ending with a newline.
    """
    df = table.reset_index() if index else table
    cells = [[str(c) for c in df.columns]] + [["" if pd.isna(v) else str(v) for v in row] for row in df.to_numpy()]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in cells[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines) + "\n"


def _cell(summary: pd.DataFrame, method: str, task: str, protocols, metric: str, digits: int) -> str:
    rows = summary[(summary["method"] == method) & (summary["task"] == task) & (summary["metric"] == metric)]
    for protocol in protocols:
        hit = rows[rows["protocol"] == protocol]
        if len(hit) > 1:
            raise EvaluationError(f"{method}/{protocol}/{metric}: several rows (modalities or cohorts); "
                                  "filter the summary first")
        if len(hit):
            return format_cell(float(hit["mean"].iloc[0]), float(hit["std"].iloc[0]), digits)
    return MISSING_CELL


def _table(summary, methods, columns, digits) -> pd.DataFrame:
    """columns: header -> (task, protocols in preference order, metric)."""
    data = {}
    for cohort, part in (summary.groupby("cohort", sort=False) if "cohort" in summary else [(None, summary)]):
        for header, (task, protocols, metric) in columns.items():
            name = header if cohort is None else f"{cohort} {header}"
            data[name] = [_cell(part, m, task, protocols, metric, digits) for m in methods]
    return pd.DataFrame(data, index=pd.Index(list(methods), name="method"))


def paper_tables(summary: pd.DataFrame, *, shots: int = 10, reference: bool = False,
                 digits: int = 3) -> dict[str, pd.DataFrame]:
    """Tables shaped like the paper's, each cell ``mean ± std`` over folds.

    Parameters
    ----------
    summary
        Output of :func:`aggregate_metrics` (one modalities setting; a ``cohort`` column gives
        one column group per cohort).
    shots
        k of the few-shot columns.
    reference
        Use the reference-protocol runs (``-reference``) instead of inner validation.
    digits
        Decimals.

    Returns
    -------
    ``{"Table I": subtyping accuracy / macro-F1, k-shot and all data, methods as rows;
    "Table II": survival C-index, k-shot and all data; "Table III": the ablation rows
    MIRROR-align, MIRROR-align+retention, MIRROR-align+clustering, MIRROR}``. "All data" uses
    the torch probe, else the logistic-regression probe (baselines); ``–`` marks a missing run.
    """
    few = [protocol_name("linear", shots, reference)]
    full = [protocol_name("linear", None, reference), protocol_name("logreg")]
    methods = lambda task: list(dict.fromkeys(summary.loc[summary["task"] == task, "method"]))  # noqa: E731
    table1 = {f"Accuracy ({shots}-shot)": (SUBTYPING, few, ACCURACY), f"F1 ({shots}-shot)": (SUBTYPING, few, MACRO_F1),
              "Accuracy (all)": (SUBTYPING, full, ACCURACY), "F1 (all)": (SUBTYPING, full, MACRO_F1)}
    table2 = {f"C-index ({shots}-shot)": (SURVIVAL, few, C_INDEX), "C-index (all)": (SURVIVAL, full, C_INDEX)}
    table3 = {"Accuracy": (SUBTYPING, full, ACCURACY), "F1": (SUBTYPING, full, MACRO_F1),
              "C-index": (SURVIVAL, full, C_INDEX)}
    return {"Table I": _table(summary, methods(SUBTYPING), table1, digits),
            "Table II": _table(summary, methods(SURVIVAL), table2, digits),
            "Table III": _table(summary, ABLATION_METHODS, table3, digits)}


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_results(result: EvalResult, folder: str | os.PathLike, *, shots: int = 10) -> dict[str, Path]:
    """Write predictions, fold-level metrics, runs, the summary (CSV and markdown).

    Parameters
    ----------
    result
        A probe's (or :func:`combine_results`'s) output.
    folder
        Output folder (created); each file is written atomically.
    shots
        k of the few-shot columns of the paper tables in ``summary.md``.

    Returns
    -------
    Paths by name: ``predictions.csv``, ``metrics_per_fold.csv``, ``runs.csv``,
    ``summary.csv``, ``summary.md``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {PREDICTIONS_CSV: write_predictions(result.predictions, folder / PREDICTIONS_CSV)}
    summary = aggregate_metrics(result.metrics)
    for name, frame in ((FOLD_METRICS_CSV, result.metrics), (RUNS_CSV, result.runs), (SUMMARY_CSV, summary)):
        with atomic_path(folder / name) as tmp:
            frame.to_csv(tmp, index=False)
        paths[name] = folder / name
    show = summary.assign(value=[format_cell(m, s) for m, s in zip(summary["mean"], summary["std"], strict=True)])
    parts = ["# Evaluation summary\n", "Mean ± std over folds (few-shot repeats averaged within a fold first).\n",
             to_markdown(show.drop(columns=["mean", "std"]), index=False)]
    for title, table in paper_tables(summary, shots=shots).items():
        if (table != MISSING_CELL).to_numpy().any():
            parts += [f"\n## {title}\n", to_markdown(table)]
    _write_text(folder / SUMMARY_MD, "\n".join(parts))
    paths[SUMMARY_MD] = folder / SUMMARY_MD
    return paths
