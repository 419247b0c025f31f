"""`mirror-genes select` end to end on synthetic cohorts, leak-freedom, splits, bad input."""

import json
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import mirror_genes as mg
from mirror_genes._errors import LabelError, SelectionError
from mirror_genes.cli import app
from mirror_genes.datasets import synthetic_cohort

runner = CliRunner()
FAST = ["--folds", "3", "--inner-cv", "3", "--quiet"]


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return synthetic_cohort(tmp_path_factory.mktemp("syn"), cohort="brca", n_patients=150, n_genes=300, n_markers=2)


def files_args(syn):
    return ["--cohort", "brca", "--expression", str(syn.expression[0]), "--phenotype",
            str(syn.phenotype[0]), "--survival", str(syn.survival[0])]


@pytest.fixture(scope="module")
def selected(syn, tmp_path_factory):
    out = tmp_path_factory.mktemp("sel") / "brca"
    result = runner.invoke(app, ["select", *files_args(syn), "--cgc", str(syn.cgc), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.stderr
    return out, result


def test_select_writes_every_output(selected):
    out, result = selected
    for rel in ["selection.h5ad", "report.md", "metrics.tsv", "figures/rfecv_curve.png",
                "figures/panel_heatmap.png", "figures/top_variable_genes.png",
                "consensus/brca_pruned_rna.csv", "consensus/brca_pruned_rna.parquet",
                "consensus/brca_refined.h5ad", "consensus/panel.gmt", "consensus/panel.tsv",
                "consensus/panel.json"] + [f"splits/splits_{k}.csv" for k in range(3)] + \
               [f"fold_{k}/{name}" for k in range(3) for name in
                ("brca_pruned_rna.csv", "brca_refined.h5ad", "brca_pruned_rna.parquet", "panel.json")]:
        assert (out / rel).is_file(), rel
    assert "wrote" in result.stderr
    assert not list(out.parent.glob(".brca*"))  # no temporary folder left


def test_panel_contents_and_provenance(selected, syn):
    out, _ = selected
    panel = mg.panels.load(out / "consensus" / "panel.json")
    full = ad.read_h5ad(out / "selection.h5ad")
    mask = full.var["mirror_panel"].to_numpy(bool)
    assert list(panel.features) == list(full.var_names[mask])  # deterministic file order
    assert "CDH1" in panel.features  # the planted lobular marker
    assert mask[full.var["cgc_member"].to_numpy(bool)].all()  # CGC features always in
    freq = full.var["selection_frequency"].to_numpy()
    assert freq[list(full.var_names).index("CDH1")] >= 2 / 3
    prov = panel.provenance
    assert prov["inputs"]["expression_0"]["sha256"] == mg._provenance.sha256_file(syn.expression[0])
    assert prov["cgc"]["params"]["tiers"] == [1, 2]
    csv = pd.read_csv(out / "consensus" / "brca_pruned_rna.csv", index_col=0)
    assert list(csv.columns) == list(panel.features) and csv.shape[0] == full.n_obs
    parquet = pd.read_parquet(out / "consensus" / "brca_pruned_rna.parquet")
    assert list(parquet.columns[1:]) == list(panel.features)
    gmt = (out / "consensus" / "panel.gmt").read_text().rstrip("\n").split("\t")
    assert gmt[0] == "mirror_brca_consensus" and set(gmt[2:]) <= set(panel.gene_symbols)


def test_metrics_compare_panel_all_and_random(selected):
    out, _ = selected
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t", index_col=0)
    assert len(metrics) == 3
    for col in ("chosen_size", "panel_balanced_accuracy", "all_macro_f1", "random_balanced_accuracy"):
        assert col in metrics.columns
    # planted markers: the panel is at least as good as a random panel of its size, and beats
    # all 300 features (p > n overfits) on held-out samples
    panel = metrics["panel_balanced_accuracy"].mean()
    assert panel >= metrics["random_balanced_accuracy"].mean()
    assert panel > metrics["all_balanced_accuracy"].mean() + 0.05
    assert metrics["chosen_size"].dtype.kind == "i"
    assert "| fold_0 |" in (out / "report.md").read_text()


def test_given_splits_reproduce_the_run(selected, syn, tmp_path):
    out, _ = selected
    again = tmp_path / "again"
    result = runner.invoke(app, ["select", *files_args(syn), "--cgc", str(syn.cgc), "--out", str(again),
                                 "--splits", str(out / "splits"), "--inner-cv", "3", "--quiet"])
    assert result.exit_code == 0, result.stderr
    for k in range(3):
        assert (out / "splits" / f"splits_{k}.csv").read_text() == (again / "splits" / f"splits_{k}.csv").read_text()
    a = json.loads((out / "consensus" / "panel.json").read_text())
    b = json.loads((again / "consensus" / "panel.json").read_text())
    assert a["features"] == b["features"]


def test_splits_are_patient_level_and_disjoint(selected):
    out, _ = selected
    seen = []
    for k in range(3):
        df = pd.read_csv(out / "splits" / f"splits_{k}.csv", index_col=0)
        train, val = set(df["train"].dropna()), set(df["val"].dropna())
        assert not train & val
        seen.append(val)
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2])


def test_selection_never_sees_validation_labels(syn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = mg.ingest("brca", expression=syn.expression, phenotype=syn.phenotype, progress=False)
    base = mg.tl.nested_select(adata, folds=3, inner_cv=3, evaluate=False, copy=True)
    val_patients = base.uns["mirror_select"]["splits"]["fold_0"]["val"]
    flipped = adata.copy()
    is_val = flipped.obs["patient_id"].isin(val_patients).to_numpy()
    labels = flipped.obs["label"].astype(str).to_numpy()
    labels[is_val] = np.where(labels[is_val] == "IDC", "ILC", "IDC")
    flipped.obs["label"] = pd.Categorical(labels, categories=["IDC", "ILC"])
    splits = [(v["train"], v["val"]) for v in base.uns["mirror_select"]["splits"].values()]
    other = mg.tl.nested_select(flipped, splits=splits, inner_cv=3, evaluate=False, copy=True)
    np.testing.assert_array_equal(base.varm["fold_support"][:, 0], other.varm["fold_support"][:, 0])


def test_without_cgc_warns_once(syn, tmp_path):
    result = runner.invoke(app, ["select", *files_args(syn), "--out", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("no COSMIC Cancer Gene Census file given") == 1


def test_output_folder_not_empty(selected, syn):
    out, _ = selected
    result = runner.invoke(app, ["select", *files_args(syn), "--out", str(out), *FAST])
    assert result.exit_code == 1 and "output folder is not empty (use --force" in result.stderr


def test_cgc_with_wrong_header(syn, tmp_path):
    bad = tmp_path / "cgc.csv"
    bad.write_text("Symbol,Description\nTP53,tumour protein p53\n")
    result = runner.invoke(app, ["select", *files_args(syn), "--cgc", str(bad), "--out", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {bad}")
    assert not (tmp_path / "o").exists()


def test_cgc_matching_nothing_warns(syn, tmp_path):
    result = runner.invoke(app, ["select", *files_args(syn), "--cgc", str(syn.cgc), "--tumour-type",
                                 "glioblastoma of the moon", "--out", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 0, result.stderr
    assert "warning:" in result.stderr and "match" in result.stderr.lower()


def _tiny(labels, n_genes=20, seed=0):
    rng = np.random.default_rng(seed)
    n = len(labels)
    obs = pd.DataFrame({"label": pd.Categorical(labels), "patient_id": [f"TCGA-AA-{i:04d}" for i in range(n)]},
                       index=[f"TCGA-AA-{i:04d}-01" for i in range(n)])
    return ad.AnnData(rng.normal(size=(n, n_genes)).astype(np.float32), obs=obs)


def test_one_class_only():
    with pytest.raises(SelectionError, match="at least two classes"):
        mg.tl.nested_select(_tiny(["A"] * 30), folds=3)


def test_class_smaller_than_fold_count():
    with pytest.raises(SelectionError, match=r"class 'B' has 2 samples, fewer than the 5 folds"):
        mg.tl.nested_select(_tiny(["A"] * 30 + ["B"] * 2), folds=5)


def test_missing_labels_rejected():
    adata = _tiny(["A"] * 15 + ["B"] * 15)
    adata.obs["label"] = adata.obs["label"].cat.add_categories("C")
    adata.obs.loc[adata.obs_names[0], "label"] = np.nan
    with pytest.raises(LabelError, match="1 samples have no 'label'"):
        mg.tl.nested_select(adata, folds=3)


def test_nan_cells_and_constant_features_are_handled(tmp_path):
    adata = _tiny(["A"] * 20 + ["B"] * 20, n_genes=30, seed=3)
    adata.X[20:, 0] += 3.0  # informative
    adata.X[:, 5] = 1.0  # constant
    adata.X[3, 7] = np.nan
    adata.X[:, 9] = np.nan  # all missing
    adata.uns["mirror_genes"] = {"params": {"cohort": "brca"}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = mg.select(adata, tmp_path / "o", folds=3, inner_cv=3, formats=("csv",), report=False,
                        progress=False)
    messages = [str(w.message) for w in caught]
    assert any("no COSMIC Cancer Gene Census file" in m for m in messages)
    # one informative feature: every panel is that feature alone, and select says what it means
    assert adata.var["mirror_panel"].sum() == 1
    assert any(m.startswith("panel of a single feature in consensus, fold_0") for m in messages)
    assert adata.uns["filter_features"]["n_dropped_constant"] == 1
    assert adata.uns["filter_features"]["n_dropped_missing"] == 1
    assert adata.uns["filter_features"]["dropped_constant"] == ["5"]
    assert adata.uns["filter_features"]["dropped_missing"] == ["9"]
    assert adata.n_vars == 28
    assert (out / "consensus" / "brca_pruned_rna.csv").exists()


def test_export_panel_converts(selected, tmp_path):
    out, _ = selected
    dst = tmp_path / "p.gmt"
    result = runner.invoke(app, ["export-panel", str(out / "consensus" / "panel.json"), str(dst)])
    assert result.exit_code == 0, result.stderr
    assert dst.read_text() == (out / "consensus" / "panel.gmt").read_text()


# ---- missing values: selection never fits on imputed cells ------------------------------

def _ingested(syn, blank_fraction=0.05, seed=1):
    """The cohort as ingest writes it (imputed X + missing layer), with extra blanked cells."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = mg.ingest("brca", expression=syn.expression, phenotype=syn.phenotype, progress=False)
    rng = np.random.default_rng(seed)
    raw = mg.pp._filter.values_with_nan(adata)
    raw[rng.random(raw.shape) < blank_fraction] = np.nan
    adata.X = raw
    mg.pp.impute_median(adata)
    return adata, raw


def test_selection_ignores_values_imputed_before(syn):
    imputed, raw = _ingested(syn)
    assert np.isfinite(imputed.X).all() and imputed.layers["missing"].sum() == np.isnan(raw).sum()
    with_nan = imputed.copy()
    with_nan.X = raw.copy()
    del with_nan.layers["missing"]
    poisoned = imputed.copy()  # imputed values replaced by nonsense: must change nothing
    poisoned.X[np.isnan(raw)] = 1e3
    runs = [mg.tl.nested_select(a, folds=3, inner_cv=3, copy=True) for a in (with_nan, imputed, poisoned)]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0].varm["fold_support"], other.varm["fold_support"])
        assert runs[0].uns["mirror_select"]["folds"] == other.uns["mirror_select"]["folds"]


def test_impute_median_fits_on_the_given_samples():
    X = np.array([[1.0, np.nan], [3.0, 10.0], [np.nan, 20.0], [100.0, 30.0]], dtype=np.float32)
    adata = ad.AnnData(X)
    mg.pp.impute_median(adata, fit_on=np.array([True, True, True, False]))
    # column 0: median of 1 and 3 (sample 3 is held out); column 1: median of 10 and 20
    np.testing.assert_allclose(adata.X, [[1, 15], [3, 10], [2, 20], [100, 30]])
    assert adata.layers["missing"].toarray().tolist() == [[False, True], [False, False],
                                                          [True, False], [False, False]]
    assert adata.uns["impute_median"]["n_imputed"] == 2
    assert adata.uns["impute_median"]["params"]["fit_on"] == "3 of 4 samples"
    mg.pp.impute_median(adata)  # refit on all samples: the layer still knows the holes
    np.testing.assert_allclose(adata.X[:, 0], [1, 3, 3, 100])
    with pytest.raises(SelectionError, match="not in adata"):
        mg.pp.impute_median(adata, fit_on=["nope"])


# ---- what was dropped is said by name ---------------------------------------------------

@pytest.fixture(scope="module")
def with_losses(syn, tmp_path_factory):
    """CDH1 all missing, one gene constant, one sample without label; CLI run on the h5ad."""
    adata, _ = _ingested(syn, blank_fraction=0.0)
    missing = adata.layers["missing"].toarray()
    missing[:, adata.var_names.get_loc("CDH1")] = True
    adata.layers["missing"] = missing  # a dense layer works as well as ingest's sparse one
    adata.X[:, adata.var_names.get_loc("GAPDH")] = 7.0
    labels = adata.obs["label"].astype(object)
    labels.iloc[3] = np.nan
    adata.obs["label"] = pd.Categorical(labels, categories=["IDC", "ILC"])
    root = tmp_path_factory.mktemp("losses")
    mg.write_h5ad(adata, root / "in.h5ad")
    result = runner.invoke(app, ["select", "--input", str(root / "in.h5ad"), "--cgc", str(syn.cgc),
                                 "--out", str(root / "out"), *FAST])
    assert result.exit_code == 0, result.stderr
    return root / "out", result, adata.obs_names[3]


def test_cli_and_report_name_what_was_dropped(with_losses):
    out, result, unlabelled = with_losses
    err = result.stderr
    assert "left out: 1 features missing in more than 20% of samples: CDH1" in err
    assert "left out: 1 constant features: GAPDH" in err
    line = next(ln for ln in err.splitlines() if "samples without a class label" in ln)
    assert unlabelled in line
    assert "COSMIC CGC genes of the tumour types absent from the data: CDH1, SYNC02, SYNC03" in err
    dropped = pd.read_csv(out / "dropped.tsv", sep="\t")
    rows = set(map(tuple, dropped[["reason", "kind", "name"]].to_numpy()))
    assert {("features_missing", "feature", "CDH1"), ("features_constant", "feature", "GAPDH"),
            ("unlabelled", "sample", unlabelled), ("cgc_absent", "CGC gene", "CDH1")} <= rows
    report = (out / "report.md").read_text()
    left_out = report.split("## What was left out", 1)[1].split("##", 1)[0]
    assert "1 features missing in more than 20% of samples: CDH1" in left_out
    assert "1 constant features: GAPDH" in left_out
    full = ad.read_h5ad(out / "selection.h5ad")
    assert "CDH1" not in full.var_names and unlabelled not in full.obs_names
    assert list(full.uns["filter_features"]["dropped_missing"]) == ["CDH1"]


def test_report_lists_the_panel_with_origins(selected):
    out, _ = selected
    from mirror_genes._report import panel_origins

    full = ad.read_h5ad(out / "selection.h5ad")
    full.uns["mirror_select"] = json.loads(full.uns["mirror_select_json"])
    table = panel_origins(full)
    assert list(table.index) == [f for f in table.index if full.var.loc[f, "mirror_panel"]]
    assert len(table) == int(full.var["mirror_panel"].sum())
    cdh1 = table.loc["CDH1"]
    assert cdh1["origin"] == "RFE + CGC" and cdh1["CGC tumour types"] == "lobular breast"
    assert cdh1["RFE folds"] == f"{int(round(full.var.loc['CDH1', 'selection_frequency'] * 3))}/3"
    tp53 = table.loc["TP53"]  # a CGC breast gene carrying no class signal here
    assert tp53["origin"] == "CGC" and tp53["CGC tumour types"] == "breast"
    assert set(table["origin"]) <= {"RFE", "CGC", "RFE + CGC"}
    report = (out / "report.md").read_text()
    assert f"| CDH1 | CDH1 | RFE + CGC | {cdh1['RFE folds']} | lobular breast |" in report


def test_label_key_is_passed_through(syn, tmp_path):
    adata, _ = _ingested(syn, blank_fraction=0.0)
    adata.obs["histology"] = adata.obs.pop("label")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no CGC; maybe a one-feature fold panel
        mg.select(adata, tmp_path / "o", label_key="histology", folds=3, inner_cv=3,
                  formats=("h5ad",), progress=False)
    assert adata.uns["mirror_select"]["params"]["label_key"] == "histology"
    assert adata.var["mirror_panel"].sum() > 0
    assert (tmp_path / "o" / "figures" / "panel_heatmap.png").is_file()
