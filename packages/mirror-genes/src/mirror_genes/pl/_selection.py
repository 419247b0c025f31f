"""Report figures for gene selection: RFECV curves, panel heatmap, most variable panel genes.

Every function builds a :class:`matplotlib.figure.Figure` directly (never pyplot's global
state), so the figures can be drawn headless and from worker threads.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import constants as K
from .._atomic import atomic_path
from .._errors import SelectionError

__all__ = ["rfecv_curve", "panel_heatmap", "top_variable_genes"]

_DPI = 150
_RUN_SELECTION = "run mirror_genes.tl.rfecv first"
_RUN_CGC = "run mirror_genes.tl.cgc_curate first"
_CGC_COLOUR = "#c0392b"
_OTHER_COLOUR = "#7f8c8d"
_PLAIN_COLOUR = "#3b75af"
_FOLD_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_FOLD_LINES = ("-", "--", "-.", ":")
_MIN_SCORE_SPAN = 0.10  # smallest y range: a 0.4 % wiggle must not look like a cliff
_FOLD_OFFSET = 0.06     # outer-fold curves shifted by +-6 % on the size axis, so ties show


# -- shared helpers ------------------------------------------------------------------------


def _finish(fig: Figure, save, show: bool) -> Figure:
    """Write ``fig`` atomically to ``save`` (PNG) and/or display it; return it."""
    if save is not None:
        with atomic_path(save) as tmp:
            fig.savefig(tmp, format="png", dpi=_DPI, bbox_inches="tight")
    if show:
        _show(fig)
    return fig


def _show(fig: Figure) -> None:
    """Display a pyplot-free figure: inline in IPython, in a window on an interactive backend."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import display

        display(fig)
        return
    import matplotlib

    backend = str(matplotlib.get_backend()).lower()
    if backend in {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"} or "inline" in backend:
        return  # nothing to show on a non-interactive backend
    import matplotlib.pyplot as plt  # only for an explicit on-screen request

    plt.figure(fig)  # hands the figure to the interactive backend's window manager
    plt.show()


def _require_var_column(adata, column: str, func: str) -> pd.Series:
    if column not in adata.var.columns:
        raise SelectionError(f"{func}: adata.var[{column!r}] not found; {_RUN_SELECTION}")
    return adata.var[column]


def _panel_positions(adata, panel_key: str, func: str) -> np.ndarray:
    """Integer positions of the panel features (``var[panel_key]`` true)."""
    flags = _require_var_column(adata, panel_key, func)
    try:
        mask = flags.astype(object).where(flags.notna(), False).astype(bool).to_numpy()
    except (TypeError, ValueError):
        raise SelectionError(
            f"{func}: adata.var[{panel_key!r}] is not boolean; {_RUN_SELECTION}") from None
    positions = np.flatnonzero(mask)
    if positions.size == 0:
        raise SelectionError(
            f"{func}: the panel adata.var[{panel_key!r}] is empty (no feature selected); "
            f"{_RUN_SELECTION}")
    return positions


def _columns(adata, positions: np.ndarray) -> np.ndarray:
    """Dense float64 copy of ``adata.X[:, positions]``."""
    block = adata.X[:, positions]
    if hasattr(block, "toarray"):
        block = block.toarray()
    return np.asarray(block, dtype=np.float64)


def _nanvar(values: np.ndarray) -> np.ndarray:
    """Per-column sample variance ignoring NaN; NaN where fewer than two finite values."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    filled = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / count
        sq = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0)
        var = sq / (count - 1)
    var[count < 2] = np.nan
    return var


def _rank_desc(values: np.ndarray) -> np.ndarray:
    """Positions ordered by decreasing value, NaN last, ties in original order."""
    key = np.where(np.isnan(values), -np.inf, values)
    return np.argsort(-key, kind="stable")


def _gene_labels(adata, positions: np.ndarray) -> list[str]:
    """Gene symbols (``var_names`` where empty); repeated symbols get their feature name."""
    names = adata.var_names[positions].astype(str).tolist()
    if K.GENE_SYMBOL in adata.var.columns:
        raw = adata.var[K.GENE_SYMBOL].iloc[positions]
        symbols = raw.astype(object).where(raw.notna(), "").astype(str).str.strip().tolist()
    else:
        symbols = [""] * len(names)
    labels = [s if s and s.lower() != "nan" else n for s, n in zip(symbols, names)]
    counts = pd.Series(labels).value_counts()
    return [f"{lab} ({n})" if counts[lab] > 1 and lab != n else lab
            for lab, n in zip(labels, names)]


def _pretty(name: str) -> str:
    return str(name).replace("_", " ")


# -- rfecv_curve ---------------------------------------------------------------------------


def _curve(record, where: str) -> dict:
    """Validated arrays of one RFECV record (``uns["rfecv"]`` layout)."""
    if not isinstance(record, Mapping):
        raise SelectionError(f"rfecv_curve: {where} is not a mapping; {_RUN_SELECTION}")
    for needed in ("n_features", "mean_score"):
        if needed not in record:
            raise SelectionError(
                f"rfecv_curve: {where} has no {needed!r} entry; {_RUN_SELECTION}")
    sizes = np.asarray(record["n_features"], dtype=np.float64).reshape(-1)
    mean = np.asarray(record["mean_score"], dtype=np.float64).reshape(-1)
    if sizes.size == 0 or sizes.size != mean.size:
        raise SelectionError(
            f"rfecv_curve: {where} has {sizes.size} sizes but {mean.size} mean scores")
    if np.any(~np.isfinite(sizes)) or np.any(sizes <= 0):
        raise SelectionError(f"rfecv_curve: {where}['n_features'] must be positive integers")
    std = None
    if record.get("std_score") is not None:
        std = np.asarray(record["std_score"], dtype=np.float64).reshape(-1)
        if std.size != sizes.size:
            std = None
    folds = None
    if record.get("fold_scores") is not None:
        folds = np.atleast_2d(np.asarray(record["fold_scores"], dtype=np.float64))
        if folds.shape[1] != sizes.size and folds.shape[0] == sizes.size:
            folds = folds.T
        if folds.shape[1] != sizes.size:
            folds = None
    chosen = record.get("chosen_size")
    if chosen is not None:
        chosen_arr = np.asarray(chosen).reshape(-1)
        chosen = int(chosen_arr[0]) if chosen_arr.size else None
    if chosen is None:  # fall back to the best mean score
        chosen = int(sizes[_rank_desc(mean)[0]])
    order = np.argsort(sizes, kind="stable")
    params = record.get("params")
    return {
        "sizes": sizes[order], "mean": mean[order],
        "std": None if std is None else std[order],
        "folds": None if folds is None else folds[:, order],
        "chosen": chosen, "params": dict(params) if isinstance(params, Mapping) else {},
    }


def _score_at(curve: dict, size: int) -> float:
    hit = np.flatnonzero(curve["sizes"] == size)
    return float(curve["mean"][hit[0]]) if hit.size else np.nan


def _fold_number(name: str, fallback: int) -> int:
    match = re.search(r"(\d+)$", str(name))
    return int(match.group(1)) if match else fallback


def _draw_main_curve(ax, curve: dict) -> None:
    sizes, mean = curve["sizes"], curve["mean"]
    if curve["folds"] is not None:
        for i, row in enumerate(curve["folds"]):
            ax.plot(sizes, row, color="0.6", lw=0.7, alpha=0.7,
                    label="individual CV folds" if i == 0 else None, zorder=1)
    if curve["std"] is not None:
        ax.fill_between(sizes, mean - curve["std"], mean + curve["std"], color="#3b75af",
                        alpha=0.2, lw=0, label="mean ± 1 s.d.", zorder=2)
    ax.plot(sizes, mean, color="#3b75af", lw=2, marker="o", ms=3, label="mean CV score",
            zorder=3)
    chosen = curve["chosen"]
    ax.axvline(chosen, color="#c0392b", ls="--", lw=1.2, label=f"chosen: {chosen} features",
               zorder=4)
    y = _score_at(curve, chosen)
    if np.isfinite(y):
        ax.plot([chosen], [y], marker="D", color="#c0392b", ms=6, zorder=5)


def _drawn_scores(main: dict | None, fold_curves: list[tuple[int, dict]]) -> list[np.ndarray]:
    """Every score value the figure draws: mean curves, the main curve's band and CV folds."""
    values = [curve["mean"] for _, curve in fold_curves]
    if main is not None:
        values.append(main["mean"])
        if main["std"] is not None:
            values += [main["mean"] - main["std"], main["mean"] + main["std"]]
        if main["folds"] is not None:
            values.append(main["folds"].ravel())
    return values


def _score_limits(values: list[np.ndarray]) -> tuple[float, float]:
    """A y range of at least ``_MIN_SCORE_SPAN`` around every drawn score."""
    flat = np.concatenate([np.ravel(v) for v in values])
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = float(flat.min()), float(flat.max())
    pad = max(0.05 * (hi - lo), 0.01)
    lo, hi = lo - pad, hi + pad
    if hi - lo < _MIN_SCORE_SPAN:
        mid = (lo + hi) / 2
        lo, hi = mid - _MIN_SCORE_SPAN / 2, mid + _MIN_SCORE_SPAN / 2
    if 0.0 <= flat.min() and flat.max() <= 1.0:  # a bounded score: keep the range inside it
        if hi > 1.0 + pad:
            lo, hi = lo - (hi - 1.0 - pad), 1.0 + pad
        if lo < 0.0:
            lo, hi = 0.0, hi - lo
    return lo, hi


def _draw_fold_curves(ax, fold_curves: list[tuple[int, dict]]) -> None:
    """One curve per outer fold: own colour, marker and dash; shifted a little along x."""
    n = len(fold_curves)
    cmap = colormaps["tab10"] if n <= 10 else colormaps["turbo"]
    for j, (k, curve) in enumerate(fold_curves):
        colour = cmap(j) if n <= 10 else cmap(j / max(n - 1, 1))
        shift = 1.0 + _FOLD_OFFSET * (j - (n - 1) / 2) / max((n - 1) / 2, 1)
        marker = _FOLD_MARKERS[j % len(_FOLD_MARKERS)]
        ax.plot(curve["sizes"] * shift, curve["mean"], color=colour, lw=1.3, alpha=0.8,
                ls=_FOLD_LINES[j % len(_FOLD_LINES)], marker=marker, ms=3.5,
                label=f"fold {k} (chosen {curve['chosen']})")
        y = _score_at(curve, curve["chosen"])
        if np.isfinite(y):
            ax.plot([curve["chosen"] * shift], [y], marker=marker, color=colour, ms=9,
                    markeredgecolor="black", markeredgewidth=0.9, zorder=5)


def rfecv_curve(
    adata: AnnData,
    *,
    key: str = K.UNS_RFECV,
    folds_key: str = K.UNS_RFECV_FOLDS,
    save: str | os.PathLike | None = None,
    show: bool = False,
) -> Figure:
    """Cross-validated score against the number of kept features, from RFECV.

    The left (or only) panel shows ``uns[key]``: the mean CV score on a log-scaled size axis,
    a shaded band of ±1 standard deviation, one thin grey line per CV fold and a dashed
    vertical line at the chosen size. When ``uns[folds_key]`` exists (nested selection),
    a further panel shows the mean curve of every outer fold, labelled
    ``fold k (chosen n)``, each with its own colour, marker and dash and shifted by a few
    per cent along the size axis so that identical curves stay visible, with a large marker
    at each fold's chosen size; if only the outer-fold curves exist, they are drawn alone.
    The score axis spans at least 0.1, so that a small wiggle does not look like a cliff.

    Parameters
    ----------
    adata
        AnnData with an RFECV record in ``uns`` (written by ``mirror_genes.tl.rfecv``).
    key
        Key of the RFECV record: a mapping with ``params`` (``scoring`` names the score),
        ``n_features``, ``mean_score``, ``std_score``, ``fold_scores`` (folds x sizes) and
        ``chosen_size``.
    folds_key
        Key of the per-outer-fold records ``{"fold_0": record, ...}``.
    save
        Write the figure there as PNG (150 dpi), atomically.
    show
        Display the figure (inline in IPython, or in a window on an interactive backend).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    SelectionError
        Neither ``uns[key]`` nor ``uns[folds_key]`` exists, or a record is malformed.
    """
    uns = adata.uns
    has_main = key in uns
    outer = uns.get(folds_key) if folds_key else None
    has_outer = isinstance(outer, Mapping) and len(outer) > 0
    if not has_main and not has_outer:
        raise SelectionError(f"rfecv_curve: adata.uns[{key!r}] not found; {_RUN_SELECTION}")
    main = _curve(uns[key], f"adata.uns[{key!r}]") if has_main else None
    fold_curves = []
    if has_outer:
        for i, name in enumerate(sorted(outer, key=lambda n: (_fold_number(n, 10**9), str(n)))):
            fold_curves.append((_fold_number(name, i),
                                _curve(outer[name], f"adata.uns[{folds_key!r}][{name!r}]")))

    params = (main or fold_curves[0][1])["params"]
    scoring = _pretty(params.get("scoring") or "score")
    n_panels = int(main is not None) + int(bool(fold_curves))
    fig = Figure(figsize=(6.4 * n_panels, 4.6), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    ylabel = f"cross-validated {scoring}"

    col = 0
    if main is not None:
        ax = axes[col]
        col += 1
        _draw_main_curve(ax, main)
        ax.set_title(f"RFECV: {main['chosen']} features chosen")
        ax.set_ylabel(ylabel)
        ax.legend(loc="best", fontsize="small", frameon=False)
    if fold_curves:
        ax = axes[col]
        _draw_fold_curves(ax, fold_curves)
        ax.set_title(f"Nested selection: inner CV curve of {len(fold_curves)} outer folds")
        ax.set_ylabel(f"inner-CV mean {scoring}")
        ax.legend(loc="best", fontsize="small", frameon=False,
                  ncol=1 if len(fold_curves) <= 8 else 2)
        ax.set_xlabel("number of features (log scale; folds shifted slightly to show ties)")
    limits = _score_limits(_drawn_scores(main, fold_curves))
    for ax in axes:
        ax.set_xscale("log")
        if not ax.get_xlabel():
            ax.set_xlabel("number of features (log scale)")
        ax.set_ylim(*limits)
        ax.grid(True, which="major", alpha=0.3)
    return _finish(fig, save, show)


# -- panel_heatmap -------------------------------------------------------------------------


def _labels(adata, label_key: str, func: str) -> tuple[np.ndarray, list[str]]:
    """Integer class codes (category order; missing labels last) and class names."""
    if label_key not in adata.obs.columns:
        raise SelectionError(
            f"{func}: adata.obs[{label_key!r}] not found; load the cohort with "
            f"mirror_genes ingest (which writes obs['label']) first")
    col = adata.obs[label_key]
    if isinstance(col.dtype, pd.CategoricalDtype):
        cat = col.cat.remove_unused_categories()
    else:  # plain column: sorted classes
        cat = col.astype(object).where(col.notna(), None).astype("category")
    names = [str(c) for c in cat.cat.categories]
    codes = cat.cat.codes.to_numpy().astype(np.int64)
    if np.any(codes < 0):
        codes = np.where(codes < 0, len(names), codes)
        names.append("(no label)")
    return codes, names


def _zscore(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, values, 0.0).sum(axis=0) / count
        centred = values - mean
        sd = np.sqrt(np.where(finite, centred ** 2, 0.0).sum(axis=0) / count)
        z = centred / sd
    z[:, ~(sd > 0)] = np.where(finite[:, ~(sd > 0)], 0.0, np.nan)
    z[~finite] = np.nan
    return z


def _pc1(z: np.ndarray) -> np.ndarray:
    """Sample scores on the first principal component (NaN as the gene mean; fixed sign)."""
    filled = np.where(np.isfinite(z), z, 0.0)
    filled = filled - filled.mean(axis=0)
    if filled.shape[0] < 2 or not np.any(filled):
        return np.zeros(filled.shape[0])
    _, _, vt = np.linalg.svd(filled, full_matrices=False)
    loading = vt[0]
    if loading[np.argmax(np.abs(loading))] < 0:  # deterministic sign
        loading = -loading
    return filled @ loading


def _class_colours(adata, label_key: str, names: list[str]) -> list:
    stored = adata.uns.get(f"{label_key}_colors")
    colours = None
    if stored is not None:
        stored = list(np.asarray(stored).reshape(-1))
        if len(stored) >= len(names) - (names[-1] == "(no label)"):
            try:
                colours = [to_rgba(c) for c in stored[:len(names)]]
            except ValueError:
                colours = None
    if colours is None:
        n = len(names)
        if n <= 10:
            colours = [colormaps["tab10"](i) for i in range(n)]
        elif n <= 20:
            colours = [colormaps["tab20"](i) for i in range(n)]
        else:
            colours = [colormaps["turbo"](i / (n - 1)) for i in range(n)]
    if names and names[-1] == "(no label)":
        colours = list(colours[:len(names) - 1]) + [to_rgba("lightgrey")]
    return list(colours)


def _heatmap_order(z: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows by class, then PC1 score; genes by the class of highest mean, then that mean."""
    row_order = np.lexsort((np.arange(z.shape[0]), _pc1(z), codes))
    n_genes = z.shape[1]
    class_means = np.full((n_classes, n_genes), -np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN genes of a class
        for c in range(n_classes):
            rows = z[codes == c]
            if rows.size:
                class_means[c] = np.nan_to_num(np.nanmean(rows, axis=0), nan=-np.inf)
    home = np.argmax(class_means, axis=0)
    home_mean = class_means[home, np.arange(n_genes)]
    return row_order, np.lexsort((np.arange(n_genes), -home_mean, home))


def _draw_heat(ax, shown: np.ndarray, standard_scale: bool, sorted_codes: np.ndarray,
               gene_labels: list[str]):
    """The heatmap itself, class boundaries and gene ticks; the image and its bar label."""
    if standard_scale:
        cmap = colormaps["RdBu_r"].with_extremes(bad="0.85")
        image = ax.imshow(np.ma.masked_invalid(np.clip(shown, -3, 3)), aspect="auto",
                          interpolation="nearest", cmap=cmap, vmin=-3, vmax=3)
        bar_label = "z-score per gene (clipped to ±3)"
    else:
        cmap = colormaps["viridis"].with_extremes(bad="0.85")
        image = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", interpolation="nearest",
                          cmap=cmap)
        bar_label = "expression"
    for y in np.flatnonzero(np.diff(sorted_codes)) + 0.5:
        ax.axhline(y, color="black", lw=0.8)
    ax.tick_params(axis="y", left=False, labelleft=False)
    n_genes = shown.shape[1]
    if n_genes <= 60:
        ax.set_xticks(np.arange(n_genes))
        ax.set_xticklabels(gene_labels, rotation=90, fontsize=8 if n_genes <= 40 else 6)
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"{n_genes} panel genes, grouped by the class of highest mean")
    return image, bar_label


def panel_heatmap(
    adata: AnnData,
    *,
    panel_key: str = K.PANEL,
    label_key: str = K.LABEL,
    max_genes: int = 100,
    standard_scale: bool = True,
    save: str | os.PathLike | None = None,
    show: bool = False,
) -> Figure:
    """Heatmap of the samples x panel genes, samples grouped by class.

    Samples are ordered by class (category order), then within a class by their score on
    the first principal component of the panel (z-scores, missing values as the gene mean,
    sign fixed so the largest loading is positive). Genes are grouped by the class in which
    their mean z-score is highest (class order), then by decreasing mean within that class.
    Values are z-scored per gene ignoring NaN and clipped to [-3, 3]; missing values are
    drawn grey. A colour strip on the left shows the class of every row.

    Parameters
    ----------
    adata
        Samples x features AnnData with ``var[panel_key]`` and ``obs[label_key]``.
    panel_key
        Boolean ``var`` column marking the panel genes.
    label_key
        ``obs`` column with the class labels (``uns[f"{label_key}_colors"]`` is used for the
        class colours when present).
    max_genes
        Largest number of genes drawn; a larger panel keeps its ``max_genes`` most variable
        genes (ties by position) and the title says so.
    standard_scale
        Z-score each gene and use a diverging colour map; ``False`` draws the raw values
        with a sequential colour map.
    save
        Write the figure there as PNG (150 dpi), atomically.
    show
        Display the figure (inline in IPython, or in a window on an interactive backend).

    Returns
    -------
    matplotlib.figure.Figure
        Axes: the class strip, the heatmap, the colour bar.

    Raises
    ------
    SelectionError
        ``var[panel_key]`` or ``obs[label_key]`` missing, an empty panel, or
        ``max_genes`` < 1.
    """
    func = "panel_heatmap"
    positions = _panel_positions(adata, panel_key, func)
    codes, names = _labels(adata, label_key, func)
    if int(max_genes) < 1:
        raise SelectionError(f"{func}: max_genes must be at least 1, not {max_genes!r}")
    if adata.n_obs == 0:
        raise SelectionError(f"{func}: adata has no samples")
    max_genes = int(max_genes)
    n_panel = positions.size
    values = _columns(adata, positions)
    if n_panel > max_genes:
        keep = np.sort(_rank_desc(_nanvar(values))[:max_genes])
        positions, values = positions[keep], values[:, keep]
    n_genes = positions.size

    z = _zscore(values)
    row_order, col_order = _heatmap_order(z, codes, len(names))
    shown = (z if standard_scale else values)[row_order][:, col_order]
    all_labels = _gene_labels(adata, positions)
    sorted_codes = codes[row_order]

    width = min(max(7.0, 3.5 + 0.16 * n_genes), 24.0)
    fig = Figure(figsize=(width, 6.0), layout="constrained")
    grid = fig.add_gridspec(1, 3, width_ratios=[0.35, width - 1.2, 0.25], wspace=0.02)
    ax_strip = fig.add_subplot(grid[0, 0])
    ax_heat = fig.add_subplot(grid[0, 1], sharey=ax_strip)
    colours = _class_colours(adata, label_key, names)
    ax_strip.imshow(sorted_codes[:, None], aspect="auto", interpolation="nearest",
                    cmap=ListedColormap(colours), vmin=-0.5, vmax=len(names) - 0.5)
    ax_strip.set_xticks([])
    ax_strip.set_yticks([])
    ax_strip.set_ylabel(f"{adata.n_obs} samples, grouped by {label_key}")
    image, bar_label = _draw_heat(ax_heat, shown, standard_scale, sorted_codes,
                                  [all_labels[i] for i in col_order])
    fig.colorbar(image, cax=fig.add_subplot(grid[0, 2]), label=bar_label)

    present = sorted(set(sorted_codes.tolist()))
    handles = [Patch(facecolor=colours[c], edgecolor="none",
                     label=f"{names[c]} (n={int((codes == c).sum())})") for c in present]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5),
               frameon=False, fontsize="small", title=label_key)

    title = f"Gene panel {panel_key!r}: {n_genes} genes x {adata.n_obs} samples"
    if n_genes < n_panel:
        title = (f"Gene panel {panel_key!r}: top {n_genes} most variable of {n_panel} genes "
                 f"x {adata.n_obs} samples")
    fig.suptitle(title)
    return _finish(fig, save, show)


# -- top_variable_genes --------------------------------------------------------------------


def top_variable_genes(
    adata: AnnData,
    *,
    panel_key: str = K.PANEL,
    cgc_key: str = K.CGC_MEMBER,
    n: int = 10,
    save: str | os.PathLike | None = None,
    show: bool = False,
) -> Figure:
    """Horizontal bars of the ``n`` panel genes with the highest variance across samples.

    Variance is the sample variance (ddof=1) ignoring NaN; genes with fewer than two
    measured samples rank last, ties keep feature order. The most variable gene is at the
    top. Bars are coloured by COSMIC Cancer Gene Census membership (``var[cgc_key]``);
    without that column all bars share one colour and a note says so.

    Parameters
    ----------
    adata
        Samples x features AnnData with ``var[panel_key]``.
    panel_key
        Boolean ``var`` column marking the panel genes.
    cgc_key
        Boolean ``var`` column of CGC membership (written by ``mirror_genes.tl.cgc_curate``).
    n
        Number of genes shown (fewer when the panel is smaller).
    save
        Write the figure there as PNG (150 dpi), atomically.
    show
        Display the figure (inline in IPython, or in a window on an interactive backend).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    SelectionError
        ``var[panel_key]`` missing, an empty panel, or ``n`` < 1.
    """
    func = "top_variable_genes"
    positions = _panel_positions(adata, panel_key, func)
    if int(n) < 1:
        raise SelectionError(f"{func}: n must be at least 1, not {n!r}")
    variance = _nanvar(_columns(adata, positions))
    top = _rank_desc(variance)[:int(n)]
    chosen = positions[top]
    labels = _gene_labels(adata, chosen)
    values = np.nan_to_num(variance[top], nan=0.0)
    k = chosen.size

    has_cgc = bool(cgc_key) and cgc_key in adata.var.columns
    if has_cgc:
        raw = adata.var[cgc_key].iloc[chosen]
        member = raw.astype(object).where(raw.notna(), False).astype(bool).to_numpy()
        colours = [_CGC_COLOUR if m else _OTHER_COLOUR for m in member]
    else:
        colours = [_PLAIN_COLOUR] * k

    fig = Figure(figsize=(6.4, max(2.6, 1.2 + 0.34 * k)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(np.arange(k), values, color=colours, edgecolor="none", height=0.7)
    ax.set_yticks(np.arange(k))
    ax.set_yticklabels(labels)
    ax.set_ylim(k - 0.5, -0.5)  # most variable at the top
    ax.set_xlabel(f"variance across {adata.n_obs} samples")
    ax.set_title(f"Top {k} most variable genes of panel {panel_key!r} ({positions.size} genes)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if has_cgc:  # below the axes, so it never hides a bar
        fig.legend(handles=[Patch(facecolor=_CGC_COLOUR, label="COSMIC CGC"),
                            Patch(facecolor=_OTHER_COLOUR, label="not in CGC")],
                   loc="outside lower center", ncol=2, frameon=False, fontsize="small")
    else:
        fig.supxlabel(f"CGC membership unknown: no var[{cgc_key!r}] ({_RUN_CGC})",
                      fontsize="x-small", color="0.35")
    return _finish(fig, save, show)
