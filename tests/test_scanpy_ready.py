"""Every h5ad the CLI writes is scanpy-ready: finite X, the missingness kept as a layer, and
standard tools (PCA, rank_genes_groups, decoupler's ulm) find the planted biology."""

import gzip
import json
import warnings

import anndata as ad
import decoupler as dc  # test extras: the real clients, never skipped
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from typer.testing import CliRunner

from mirror_genes import constants as K
from mirror_genes.cli import app
from mirror_genes.datasets import synthetic_cohort

runner = CliRunner()
N_BLANK = 20  # CDH1 cells blanked in the expression file (primary tumours of both classes)
FOLDS = 3


def _blank_cells(path, gene: str, samples: list[str]) -> None:
    """Write ``NA`` into the cells of ``gene`` for ``samples`` of a Xena matrix (gzip)."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header = lines[0].split("\t")
    cols = [header.index(s) for s in samples]
    for i, line in enumerate(lines):
        cells = line.split("\t")
        if cells[0] == gene:
            for c in cols:
                cells[c] = "NA"
            lines[i] = "\t".join(cells)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ready")
    syn = synthetic_cohort(root / "syn", cohort="brca", n_patients=150, n_genes=300, n_markers=4)
    pheno = pd.read_csv(syn.phenotype[0], sep="\t", dtype=str, keep_default_na=False)
    header = gzip.decompress(syn.expression[0].read_bytes()).decode().split("\n", 1)[0].split("\t")
    primary = pheno[pheno["sampleID"].isin(header) & pheno["sampleID"].str.endswith("-01")]
    blanked = []
    for histology, n in (("Infiltrating Ductal Carcinoma", 14), ("Infiltrating Lobular Carcinoma", 6)):
        blanked += primary.loc[primary["histological_type"] == histology, "sampleID"].head(n).tolist()
    assert len(blanked) == N_BLANK
    _blank_cells(syn.expression[0], "CDH1", blanked)
    cohort = root / "brca.h5ad"
    result = runner.invoke(app, ["ingest", "--cohort", "brca", "--expression", str(syn.expression[0]),
                                 "--phenotype", str(syn.phenotype[0]), "--survival", str(syn.survival[0]),
                                 "--out", str(cohort), "--quiet"])
    assert result.exit_code == 0, result.stderr
    sel = root / "sel"
    result = runner.invoke(app, ["select", "--input", str(cohort), "--cgc", str(syn.cgc), "--out", str(sel),
                                 "--folds", str(FOLDS), "--inner-cv", "3", "--quiet"])
    assert result.exit_code == 0, result.stderr
    paths = {"ingest": cohort, "consensus": sel / "consensus" / "brca_refined.h5ad",
             "selection": sel / "selection.h5ad"}
    paths.update({f"fold_{f}": sel / f"fold_{f}" / "brca_refined.h5ad" for f in range(FOLDS)})
    return {"paths": paths, "syn": syn, "blanked": blanked, "sel": sel}


H5ADS = ["ingest", "consensus", "selection"] + [f"fold_{f}" for f in range(FOLDS)]


def _read(outputs, name):
    adata = ad.read_h5ad(outputs["paths"][name])
    adata.obs[K.LABEL] = adata.obs[K.LABEL].astype("category")
    return adata


@pytest.mark.parametrize("name", H5ADS)
def test_x_is_finite_and_missingness_is_kept(outputs, name):
    adata = _read(outputs, name)
    assert np.isfinite(np.asarray(adata.X)).all()
    missing = adata.layers[K.MISSING].toarray()
    assert missing.dtype == bool and missing.shape == adata.shape
    cdh1 = adata.var_names.get_loc("CDH1")
    blanked = adata.obs_names.isin(outputs["blanked"])
    assert blanked.sum() == N_BLANK
    assert missing[blanked, cdh1].all()
    record = adata.uns[K.UNS_IMPUTE]
    assert record["n_imputed"] == int(missing.sum()) >= N_BLANK
    assert "median" in record["params"]["rule"]


def test_fold_datasets_are_imputed_from_their_training_samples(outputs):
    cohort = ad.read_h5ad(outputs["paths"]["ingest"])
    splits = json.loads(ad.read_h5ad(outputs["paths"]["selection"]).uns[K.UNS_SELECT_JSON])["splits"]
    raw = np.asarray(cohort[:, "CDH1"].X).ravel()
    raw[cohort[:, "CDH1"].layers[K.MISSING].toarray().ravel()] = np.nan
    for f in range(FOLDS):
        fold = _read(outputs, f"fold_{f}")
        train = cohort.obs[K.PATIENT_ID].isin(splits[f"fold_{f}"]["train"]).to_numpy()
        expected = np.nanmedian(raw[train])
        got = np.asarray(fold[outputs["blanked"], "CDH1"].X).ravel()
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        assert fold.uns[K.UNS_IMPUTE]["params"]["fit_on"] == f"{int(train.sum())} of {cohort.n_obs} samples"
    consensus = _read(outputs, "consensus")
    assert consensus.uns[K.UNS_IMPUTE]["params"]["fit_on"] == "all samples"
    np.testing.assert_allclose(np.asarray(consensus[outputs["blanked"], "CDH1"].X).ravel(),
                               np.nanmedian(raw), rtol=1e-6)


@pytest.mark.parametrize("name", H5ADS)
def test_pca_and_rank_genes_groups_find_the_planted_marker(outputs, name):
    adata = _read(outputs, name)
    sc.pp.pca(adata, n_comps=min(10, adata.n_vars - 1))
    assert np.isfinite(adata.obsm["X_pca"]).all()
    assert adata.uns["pca"]["variance_ratio"][0] > 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scanpy's notes on non-log data
        sc.tl.rank_genes_groups(adata, groupby=K.LABEL, method="t-test")
    ranked = sc.get.rank_genes_groups_df(adata, group="IDC")
    position = ranked.index[ranked["names"] == "CDH1"][0]
    assert position < 5, ranked.head(10)  # CDH1 (E-cadherin) is lost in lobular tumours
    assert ranked.loc[position, "scores"] > 5.0


@pytest.mark.parametrize("name", H5ADS)
def test_decoupler_ulm_scores_the_marker_sets(outputs, name):
    adata = _read(outputs, name)
    markers = outputs["syn"].marker_genes
    net = pd.DataFrame([(cls, g) for cls, genes in markers.items() for g in genes if g in adata.var_names],
                       columns=["source", "target"])
    net["weight"] = 1.0
    sc.pp.scale(adata)  # genes comparable within a sample
    dc.mt.ulm(adata, net, tmin=1)
    scores = adata.obsm["score_ulm"]
    assert np.isfinite(scores.to_numpy()).all()
    idc = (adata.obs[K.LABEL] == "IDC").to_numpy()
    assert scores.loc[idc, "IDC"].mean() > scores.loc[~idc, "IDC"].mean() + 1.0
    assert scores.loc[~idc, "ILC"].mean() > scores.loc[idc, "ILC"].mean() + 1.0


# ---- real data (optional) --------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.slow
def test_real_brca_with_blanked_cells(shared_data, tmp_path):
    """Acceptance check of docs/selection.md: 2 % of the real BRCA cells blanked at random."""
    d = shared_data / "tcga-brca"
    expr = pd.read_csv(d / "expression.tsv.gz", sep="\t", index_col=0)
    values = expr.to_numpy(dtype=float)
    blank = (np.random.default_rng(0).random(values.shape) < 0.02) & ~np.isnan(values)
    values[blank] = np.nan
    blanked = tmp_path / "expression.tsv.gz"
    with gzip.open(blanked, "wt") as fh:
        pd.DataFrame(values, index=expr.index.rename("sample"), columns=expr.columns).to_csv(
            fh, sep="\t", na_rep="NA")
    cohort, sel = tmp_path / "x.h5ad", tmp_path / "sel"
    result = runner.invoke(app, ["ingest", "--cohort", "brca", "--expression", str(blanked),
                                 "--phenotype", str(d / "clinicalMatrix.tsv"), "--survival",
                                 str(d / "survival.tsv"), "--out", str(cohort), "--quiet"])
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(app, ["select", "--input", str(cohort), "--out", str(sel), "--force", "--quiet"])
    assert result.exit_code == 0, result.stderr

    ingested = ad.read_h5ad(cohort)
    kept = expr.columns.get_indexer(ingested.obs_names)
    assert int(ingested.layers[K.MISSING].sum()) == int(blank[:, kept].sum())
    for path in [cohort, *sorted(sel.rglob("*.h5ad"))]:
        adata = ad.read_h5ad(path)
        assert np.isfinite(np.asarray(adata.X)).all(), path
        # the default balanced-accuracy scoring keeps multi-gene panels on this imbalanced cohort
        assert adata.n_vars >= 2, path
        sc.pp.pca(adata, n_comps=min(50, adata.n_vars - 1))
        assert np.isfinite(adata.obsm["X_pca"]).all(), path
    for path in (cohort, sel / "consensus" / "brca_refined.h5ad"):
        adata = ad.read_h5ad(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # z-scores: scanpy's log fold changes are NaN
            sc.tl.rank_genes_groups(adata, groupby=K.LABEL, method="t-test")
        ranked = sc.get.rank_genes_groups_df(adata, group="IDC")
        position = ranked.index[ranked["names"] == "CDH1"][0]
        assert position < 20 and ranked.loc[position, "scores"] > 10.0, (path, ranked.head())
