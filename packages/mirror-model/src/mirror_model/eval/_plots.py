"""Figures: probe-metric bars with fold-level points; Kaplan-Meier curves of risk groups."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mirror_genes.constants import EVENT, TIME

from .._errors import EvaluationError
from ._inputs import SURVIVAL
from ._predictions import GROUP_KEYS, HIGH, LOW
from ._survival import logrank_p


def _axes(ax, size):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def plot_probe_metrics(metrics: pd.DataFrame, metric: str = "accuracy", *, ax=None, title: str | None = None):
    """Bars of the mean over folds (error bar: std) with one point per fold.

    Parameters
    ----------
    metrics
        Fold-level rows (``EvalResult.metrics``).
    metric
        Metric to show (``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``auc``, ``c_index``).
    ax
        Matplotlib axes to draw on; None: a new figure.
    title
        Axes title; None: the metric name.

    Returns
    -------
    The matplotlib ``Figure``: methods on the x axis, one bar per protocol. Few-shot repeats
    are averaged within a fold before the points are drawn.
    """
    rows = metrics[metrics["metric"] == metric]
    if rows.empty:
        raise EvaluationError(f"no {metric!r} rows to plot; metrics present: {sorted(set(metrics['metric']))}")
    per_fold = rows.groupby(["method", "protocol", "fold"], sort=False)["value"].mean().reset_index()
    methods = list(dict.fromkeys(per_fold["method"]))
    protocols = list(dict.fromkeys(per_fold["protocol"]))
    # each method's own protocols side by side (baselines have other protocols than the probes,
    # so one slot per protocol everywhere would leave most slots empty)
    own = {m: [p for p in protocols if ((per_fold["method"] == m) & (per_fold["protocol"] == p)).any()]
           for m in methods}
    slots = max(len(v) for v in own.values())
    fig, ax = _axes(ax, (max(4.5, 2.5 + 0.4 * len(methods) * slots), 3.6))
    width = 0.8 / slots
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    labelled = set()
    for i, method in enumerate(methods):
        for j, protocol in enumerate(own[method]):
            vals = per_fold.loc[(per_fold["method"] == method) & (per_fold["protocol"] == protocol), "value"]
            x = i + (j - (len(own[method]) - 1) / 2) * width
            ax.bar(x, vals.mean(), width * 0.9, yerr=np.nan_to_num(vals.std()), capsize=3, alpha=0.6,
                   color=f"C{protocols.index(protocol) % 10}", label=None if protocol in labelled else protocol)
            labelled.add(protocol)
            ax.scatter(x + rng.uniform(-0.25, 0.25, len(vals)) * width, vals.to_numpy(), s=14, color="k", zorder=3)
    ax.set_xticks(np.arange(len(methods)), methods, rotation=20 if len(methods) > 3 else 0,
                  ha="right" if len(methods) > 3 else "center")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric}: mean ± std over folds, dots = folds", fontsize=9)
    if np.nanmin(per_fold["value"]) >= 0 and np.nanmax(per_fold["value"]) <= 1:
        ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, frameon=False, title="protocol", title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    return fig


def _one_run(predictions, method, protocol, seed) -> pd.DataFrame:
    rows = predictions[predictions["task"] == SURVIVAL]
    for col, val in (("method", method), ("protocol", protocol), ("seed", seed)):
        if val is not None:
            rows = rows[rows[col] == val]
    groups = rows.groupby(GROUP_KEYS, sort=False).ngroups
    if groups != 1:
        found = sorted({"/".join(map(str, k)) for k, _ in rows.groupby(GROUP_KEYS)})[:4]
        raise EvaluationError(f"Kaplan-Meier needs exactly one survival run (method/protocol/seed), found "
                              f"{groups}: {found}; pass method=, protocol=, seed=")
    return rows


def plot_kaplan_meier(predictions: pd.DataFrame, *, method: str | None = None, protocol: str | None = None,
                      seed: int | None = None, ax=None):
    """Kaplan-Meier curves of the predicted high- and low-risk groups, with the log-rank p-value.

    Parameters
    ----------
    predictions
        Predictions table; survival rows of one run are pooled over folds (each held-out
        patient once). ``prediction`` holds the group: risk above the training fold's median.
    method
        Select the run's method.
    protocol
        Select the run's protocol.
    seed
        Select the run's seed (few-shot repeats).
    ax
        Matplotlib axes to draw on; None: a new figure.

    Returns
    -------
    The matplotlib ``Figure``.
    """
    from lifelines import KaplanMeierFitter

    rows = _one_run(predictions, method, protocol, seed)
    time, event = rows[TIME].to_numpy(float), rows[EVENT].to_numpy(float)
    fig, ax = _axes(ax, (4.8, 3.6))
    for group, color in ((LOW, "C0"), (HIGH, "C3")):
        mask = (rows["prediction"] == group).to_numpy()
        if mask.any():
            kmf = KaplanMeierFitter(label=f"{group} risk (n={int(mask.sum())})")
            kmf.fit(time[mask], event[mask])
            kmf.plot_survival_function(ax=ax, ci_show=True, color=color, show_censors=True,
                                       censor_styles={"ms": 5, "mew": 1})
    p = logrank_p(time, event, rows["prediction"].to_numpy())
    key = rows.iloc[0]
    ax.set_title(f"{key['method']} {key['protocol']}: log-rank p = {p:.3g}", fontsize=9)
    ax.set_xlabel("time")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.05)
    return fig
