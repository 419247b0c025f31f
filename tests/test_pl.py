"""Report figures for gene selection: RFECV curve, panel heatmap, most variable panel genes."""

from __future__ import annotations

import threading

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from mirror_genes._errors import SelectionError
from mirror_genes.pl._selection import panel_heatmap, rfecv_curve, top_variable_genes

N_OBS, N_VARS = 40, 60
PANEL = list(range(0, 24))          # features 0..23 form the panel
UP_IN_B = list(range(0, 8))         # planted: higher in class "B"
UP_IN_A = list(range(8, 14))        # planted: higher in class "A"
CGC = {1, 3, 9, 20, 22}


def _curve(sizes, best, chosen, rng, n_folds=5):
    sizes = np.asarray(sizes)
    mean = 0.6 + 0.3 * (1 - np.exp(-sizes / best)) - 0.0005 * sizes
    folds = mean + rng.normal(0, 0.03, size=(n_folds, sizes.size))
    return {
        "params": {"scoring": "balanced_accuracy", "estimator": "LogisticRegression", "cv": 5},
        "n_features": sizes.astype(np.int64),
        "mean_score": folds.mean(axis=0),
        "std_score": folds.std(axis=0),
        "fold_scores": folds,
        "chosen_size": int(chosen),
    }


def make_adata(seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    # interleaved labels, so grouping by label is not the identity order
    labels = np.array(["A", "B"] * (N_OBS // 2))
    X = rng.normal(0, 1, size=(N_OBS, N_VARS))
    X[:, PANEL] *= np.linspace(0.5, 3.0, len(PANEL))  # distinct variances
    X[np.ix_(labels == "B", UP_IN_B)] += 3.0
    X[np.ix_(labels == "A", UP_IN_A)] += 3.0
    X[5, 2] = np.nan
    X[11, 20] = np.nan
    X = X.astype(np.float32)
    symbols = [f"GENE{i}" for i in range(N_VARS)]
    symbols[4] = ""  # falls back to the feature name
    var = pd.DataFrame(
        {
            "gene_symbol": symbols,
            "mirror_panel": [i in PANEL for i in range(N_VARS)],
            "cgc_member": [i in CGC for i in range(N_VARS)],
            "selection_frequency": rng.uniform(0, 1, N_VARS),
        },
        index=[f"ENSG{i:011d}" for i in range(N_VARS)],
    )
    obs = pd.DataFrame({"label": pd.Categorical(labels, categories=["A", "B"])},
                       index=[f"TCGA-{i:02d}" for i in range(N_OBS)])
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["rfecv"] = _curve([1, 2, 4, 8, 16, 24, 32, 48, 60], 6, 16, rng)
    return adata


def expected_top(adata: ad.AnnData, n: int) -> list[str]:
    panel = np.flatnonzero(adata.var["mirror_panel"].to_numpy())
    var = pd.DataFrame(np.asarray(adata.X[:, panel], dtype=np.float64)).var(ddof=1).to_numpy()
    order = np.argsort(-var, kind="stable")[:n]
    names = []
    for i in panel[order]:
        sym = adata.var["gene_symbol"].iloc[i]
        names.append(sym if sym else adata.var_names[i])
    return names


def check_png(path, min_side: int = 200) -> np.ndarray:
    assert path.exists()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= min_side and image.shape[1] >= min_side
    assert image[..., :3].std() > 0.01  # not all one colour
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temporary left behind
    return image


# -- rfecv_curve ---------------------------------------------------------------------------


def test_rfecv_curve_png_and_content(tmp_path):
    adata = make_adata()
    out = tmp_path / "sub" / "rfecv.png"
    fig = rfecv_curve(adata, save=out)
    assert isinstance(fig, Figure)
    check_png(out)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert "balanced accuracy" in ax.get_ylabel()
    assert ax.get_title() and "16" in ax.get_title()
    vlines = [ln for ln in ax.get_lines() if ln.get_label().startswith("chosen")]
    assert len(vlines) == 1
    assert np.allclose(vlines[0].get_xdata(), 16)
    # five thin fold lines plus the mean line
    grey = [ln for ln in ax.get_lines() if ln.get_linewidth() < 1]
    assert len(grey) == 5
    mean_line = [ln for ln in ax.get_lines() if ln.get_label() == "mean CV score"][0]
    assert np.allclose(mean_line.get_ydata(), adata.uns["rfecv"]["mean_score"])
    assert len(ax.collections) == 1  # the ±1 s.d. band
    legend_texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "chosen: 16 features" in legend_texts


def test_rfecv_curve_outer_folds(tmp_path):
    adata = make_adata()
    rng = np.random.default_rng(3)
    sizes = [1, 2, 4, 8, 16, 32, 60]
    chosen = {"fold_0": 8, "fold_1": 16, "fold_2": 4, "fold_10": 32}
    adata.uns["rfecv_folds"] = {k: _curve(sizes, 5, c, rng) for k, c in chosen.items()}
    fig = rfecv_curve(adata, save=tmp_path / "nested.png")
    check_png(tmp_path / "nested.png")
    assert len(fig.axes) == 2
    outer_ax = fig.axes[1]
    assert outer_ax.get_xscale() == "log"
    labels = [t.get_text() for t in outer_ax.get_legend().get_texts()]
    assert labels == ["fold 0 (chosen 8)", "fold 1 (chosen 16)", "fold 2 (chosen 4)",
                      "fold 10 (chosen 32)"]

    # only the outer folds: one panel
    del adata.uns["rfecv"]
    fig = rfecv_curve(adata)
    assert len(fig.axes) == 1
    assert len(fig.axes[0].get_legend().get_texts()) == 4


def test_rfecv_curve_flat_scores_get_a_sensible_axis_and_folds_stay_visible():
    adata = make_adata()
    del adata.uns["rfecv"]
    sizes = np.array([1, 100, 200, 400])
    flat = {"n_features": sizes, "mean_score": np.array([0.996, 1.0, 1.0, 0.996]),
            "chosen_size": 100, "params": {"scoring": "accuracy"}}
    adata.uns["rfecv_folds"] = {f"fold_{k}": dict(flat) for k in range(5)}  # five equal curves
    fig = rfecv_curve(adata)
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    assert high - low >= 0.1 - 1e-9  # a 0.4 % dip must not fill the axis
    assert 1.0 < high <= 1.02  # a bounded score keeps near its bound
    curves = [ln for ln in ax.get_lines() if ln.get_label().startswith("fold ")]
    assert len({ln.get_marker() for ln in curves}) == 5
    assert len({ln.get_linestyle() for ln in curves}) >= 4
    chosen_x = [ln.get_xdata()[0] for ln in ax.get_lines()
                if ln.get_label().startswith("_") and ln.get_markersize() > 8]
    assert len(chosen_x) == 5 and len(set(np.round(chosen_x, 6))) == 5  # ties drawn apart
    assert max(chosen_x) / min(chosen_x) < 1.15  # ... but still at the chosen size


def test_rfecv_curve_errors():
    adata = make_adata()
    del adata.uns["rfecv"]
    with pytest.raises(SelectionError, match=r"uns\['rfecv'\].*tl\.rfecv"):
        rfecv_curve(adata)
    adata = make_adata()
    with pytest.raises(SelectionError, match="'other'"):
        rfecv_curve(adata, key="other")
    adata.uns["rfecv"] = {"n_features": [1, 2, 3]}
    with pytest.raises(SelectionError, match="mean_score"):
        rfecv_curve(adata)
    adata.uns["rfecv"] = {"n_features": [1, 2, 3], "mean_score": [0.5, 0.6]}
    with pytest.raises(SelectionError, match="3 sizes but 2"):
        rfecv_curve(adata)


def test_rfecv_curve_tolerates_h5ad_round_trip(tmp_path):
    adata = make_adata()
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    fig = rfecv_curve(back)
    line = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("chosen")][0]
    assert np.allclose(line.get_xdata(), 16)


# -- panel_heatmap -------------------------------------------------------------------------


def _strip_codes(fig: Figure) -> np.ndarray:
    strip = fig.axes[0]
    return np.asarray(strip.images[0].get_array()).reshape(-1)


def test_panel_heatmap_png_and_order(tmp_path):
    adata = make_adata()
    out = tmp_path / "heat.png"
    fig = panel_heatmap(adata, save=out)
    check_png(out)
    assert len(fig.axes) == 3  # class strip, heatmap, colour bar
    codes = _strip_codes(fig)
    assert codes.size == N_OBS
    # rows grouped by label, contiguously, in category order
    assert list(codes) == sorted(codes)
    assert (codes == 0).sum() == (codes == 1).sum() == N_OBS // 2

    heat = fig.axes[1]
    data = heat.images[0].get_array()
    assert data.shape == (N_OBS, len(PANEL))
    assert np.nanmax(data) <= 3 and np.nanmin(data) >= -3
    assert np.ma.count_masked(data) == 2  # the two NaN cells
    ticks = [t.get_text() for t in heat.get_xticklabels()]
    assert len(ticks) == len(PANEL)
    assert "ENSG00000000004" in ticks  # empty symbol falls back to the feature name
    # genes higher in A come first (class A is first), genes higher in B after them
    pos = {t: i for i, t in enumerate(ticks)}
    up_a = [pos[f"GENE{i}"] for i in UP_IN_A]
    up_b = [pos[f"GENE{i}"] if i != 4 else pos["ENSG00000000004"] for i in UP_IN_B]
    assert max(up_a) < min(up_b)
    assert "x 40 samples" in fig._suptitle.get_text()
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["A (n=20)", "B (n=20)"]


def test_panel_heatmap_is_deterministic():
    a = panel_heatmap(make_adata())
    b = panel_heatmap(make_adata())
    assert np.array_equal(_strip_codes(a), _strip_codes(b))
    da = a.axes[1].images[0].get_array()
    db = b.axes[1].images[0].get_array()
    assert np.ma.allequal(da, db)


def test_panel_heatmap_max_genes(tmp_path):
    adata = make_adata()
    fig = panel_heatmap(adata, max_genes=5, save=tmp_path / "h.png")
    check_png(tmp_path / "h.png")
    heat = fig.axes[1]
    assert heat.images[0].get_array().shape == (N_OBS, 5)
    assert "top 5 most variable of 24" in fig._suptitle.get_text()
    shown = {t.get_text() for t in heat.get_xticklabels()}
    assert shown == set(expected_top(adata, 5))


def test_panel_heatmap_raw_values():
    adata = make_adata()
    adata.X[0, 0] = 100.0  # far outside [-3, 3]: kept when not standard-scaled
    fig = panel_heatmap(adata, standard_scale=False)
    image = fig.axes[1].images[0]
    assert image.get_cmap().name.startswith("viridis")
    assert np.nanmax(image.get_array()) == pytest.approx(100.0)


def test_panel_heatmap_tick_label_threshold():
    rng = np.random.default_rng(1)
    for n_genes, labelled in ((60, True), (61, False)):
        adata = ad.AnnData(
            X=rng.normal(size=(12, n_genes)).astype(np.float32),
            obs=pd.DataFrame({"label": pd.Categorical(["x", "y", "z"] * 4)},
                             index=[f"s{i}" for i in range(12)]),
            var=pd.DataFrame({"gene_symbol": [f"G{i}" for i in range(n_genes)],
                              "mirror_panel": True}, index=[f"f{i}" for i in range(n_genes)]))
        fig = panel_heatmap(adata)
        assert (len(fig.axes[1].get_xticklabels()) == n_genes) is labelled
        assert list(_strip_codes(fig)) == sorted(_strip_codes(fig))


def test_panel_heatmap_errors():
    adata = make_adata()
    with pytest.raises(SelectionError, match=r"var\['nope'\].*tl\.rfecv"):
        panel_heatmap(adata, panel_key="nope")
    with pytest.raises(SelectionError, match=r"obs\['tumour'\]"):
        panel_heatmap(adata, label_key="tumour")
    adata.var["mirror_panel"] = False
    with pytest.raises(SelectionError, match="empty"):
        panel_heatmap(adata)


# -- top_variable_genes --------------------------------------------------------------------


def test_top_variable_genes_png_order_and_colours(tmp_path):
    adata = make_adata()
    out = tmp_path / "top.png"
    fig = top_variable_genes(adata, n=10, save=out)
    check_png(out)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == expected_top(adata, 10)
    # top label at the top: y axis inverted
    bottom, top = ax.get_ylim()
    assert bottom > top
    bars = ax.patches[:10]
    assert len(ax.patches) >= 10
    widths = [b.get_width() for b in bars]
    assert widths == sorted(widths, reverse=True)
    panel = np.flatnonzero(adata.var["mirror_panel"].to_numpy())
    by_label = dict(zip(labels, bars))
    name_to_pos = {(adata.var["gene_symbol"].iloc[i] or adata.var_names[i]): i for i in panel}
    cgc_colours = {to_rgba(b.get_facecolor()) for lab, b in by_label.items()
                   if name_to_pos[lab] in CGC}
    other_colours = {to_rgba(b.get_facecolor()) for lab, b in by_label.items()
                     if name_to_pos[lab] not in CGC}
    assert len(cgc_colours) == 1 and len(other_colours) == 1
    assert cgc_colours != other_colours
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["COSMIC CGC", "not in CGC"]
    assert [to_rgba(h.get_facecolor()) for h in legend.legend_handles] == [
        next(iter(cgc_colours)), next(iter(other_colours))]


def test_top_variable_genes_has_cgc_genes_in_top():
    adata = make_adata()
    # make a CGC gene the most variable of the panel
    adata.X[:, 1] = np.linspace(-50, 50, N_OBS)
    adata.var["mirror_panel"] = [i in (1, 5, 6, 7) for i in range(N_VARS)]
    fig = top_variable_genes(adata, n=3)
    ax = fig.axes[0]
    assert ax.get_yticklabels()[0].get_text() == "GENE1"
    colours = [to_rgba(b.get_facecolor()) for b in ax.patches[:3]]
    assert colours[0] != colours[1] and colours[1] == colours[2]


def test_top_variable_genes_without_cgc_and_small_panel():
    adata = make_adata()
    del adata.var["cgc_member"]
    adata.var["mirror_panel"] = [i in (0, 4, 7) for i in range(N_VARS)]
    fig = top_variable_genes(adata, n=10)
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 3
    assert len({to_rgba(b.get_facecolor()) for b in ax.patches}) == 1
    assert ax.get_legend() is None and not fig.legends
    assert "CGC membership unknown" in fig._supxlabel.get_text()
    assert "cgc_curate" in fig._supxlabel.get_text()
    assert "ENSG00000000004" in [t.get_text() for t in ax.get_yticklabels()]


def test_top_variable_genes_nan_tolerant():
    adata = make_adata()
    adata.X[:, 0] = np.nan
    adata.X[0, 0] = 1.0  # one measured sample: no variance, ranks last
    adata.var["mirror_panel"] = [i in (0, 1, 2) for i in range(N_VARS)]
    fig = top_variable_genes(adata, n=3)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == "GENE0"


def test_top_variable_genes_errors():
    adata = make_adata()
    with pytest.raises(SelectionError, match=r"var\['panel2'\]"):
        top_variable_genes(adata, panel_key="panel2")
    with pytest.raises(SelectionError, match="at least 1"):
        top_variable_genes(adata, n=0)
    adata.var["mirror_panel"] = False
    with pytest.raises(SelectionError, match="empty"):
        top_variable_genes(adata)


# -- shared behaviour ----------------------------------------------------------------------


def test_save_is_atomic_and_overwrites(tmp_path):
    adata = make_adata()
    out = tmp_path / "same.png"
    out.write_bytes(b"old")
    top_variable_genes(adata, save=str(out))
    check_png(out)
    before = set(tmp_path.iterdir())
    with pytest.raises(SelectionError):
        top_variable_genes(adata, panel_key="missing", save=tmp_path / "never.png")
    assert set(tmp_path.iterdir()) == before


def test_show_is_harmless_headless():
    fig = rfecv_curve(make_adata(), show=True)
    assert isinstance(fig, Figure)


def test_figures_in_threads(tmp_path):
    adata = make_adata()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            rfecv_curve(adata, save=tmp_path / f"r{i}.png")
            panel_heatmap(adata, save=tmp_path / f"h{i}.png")
            top_variable_genes(adata, save=tmp_path / f"t{i}.png")
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(3):
        for prefix in "rht":
            check_png(tmp_path / f"{prefix}{i}.png")
