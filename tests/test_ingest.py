"""Ingestion on synthetic cohorts in every hub layout, real BRCA data, and bad input."""

import functools
import gzip
import http.server
import threading
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import mirror_genes as mg
from mirror_genes._errors import CohortError, InputFileError, LabelError
from mirror_genes._provenance import sha256_file
from mirror_genes.datasets import synthetic_cohort


def _ingest(syn, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mg.ingest(syn.cohort, expression=syn.expression, phenotype=syn.phenotype,
                         survival=syn.survival, probemap=syn.probemap, progress=False, **kw)


@pytest.mark.parametrize("hub", ["tcga", "gdc", "toil"])
@pytest.mark.parametrize("cohort", ["brca", "nsclc", "rcc", "coadread"])
def test_synthetic_cohorts_ingest_to_expected_counts(tmp_path, cohort, hub):
    syn = synthetic_cohort(tmp_path, cohort=cohort, hub=hub, n_patients=160, n_genes=300)
    adata = _ingest(syn)
    assert adata.obs["label"].value_counts().to_dict() == syn.expected_counts
    assert list(adata.obs["label"].cat.categories) == list(mg.cohorts.get_preset(cohort).classes)
    assert adata.X.dtype == np.float32
    assert adata.obs["patient_id"].is_unique
    assert (adata.obs["patient_id"].str.len() == 12).all()
    assert (adata.obs["sample_type"] == "Primary Tumor").all()
    assert set(adata.obs["event"].dropna().unique()) <= {0.0, 1.0}
    assert adata.obs["time"].notna().mean() > 0.9
    assert (adata.var["gene_symbol"] != "").mean() > 0.95
    if hub == "toil":  # transcripts: several features per gene
        assert adata.var["gene_symbol"].duplicated().any()


def test_multi_member_labels_follow_each_samples_cohort(tmp_path):
    syn = synthetic_cohort(tmp_path, cohort="nsclc", n_patients=120, n_genes=200)
    adata = _ingest(syn)
    luad = set(pd.read_csv(syn.phenotype[0], sep="\t")["sampleID"])
    is_luad = adata.obs_names.isin(list(luad))
    assert (adata.obs.loc[is_luad, "label"] == "LUAD").all()
    assert (adata.obs.loc[~is_luad, "label"] == "LUSC").all()
    assert adata.uns["mirror_genes"]["features"]["n_common"] == adata.n_vars


def test_feature_intersection_across_cohorts_is_reported(tmp_path):
    syn = synthetic_cohort(tmp_path, cohort="nsclc", n_patients=80, n_genes=200)
    # drop three gene rows from the LUSC matrix
    path = syn.expression[1]
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    dropped = [ln.split("\t")[0] for ln in lines[1:4]]
    path.write_bytes(gzip.compress(("\n".join(lines[:1] + lines[4:]) + "\n").encode()))
    adata = _ingest(syn)
    assert adata.n_vars == 197 and not set(dropped) & set(adata.var_names)
    per_file = adata.uns["mirror_genes"]["features"]["per_file"]
    assert sorted(per_file.values()) == [197, 200]


def test_values_match_the_file_and_provenance_is_complete(tmp_path):
    syn = synthetic_cohort(tmp_path, cohort="brca", n_patients=100, n_genes=200)
    adata = _ingest(syn)
    raw = pd.read_csv(syn.expression[0], sep="\t", index_col=0).loc[adata.var_names, adata.obs_names].T
    missing = raw.isna().to_numpy()
    assert 0 < missing.sum() < 0.01 * missing.size
    # measured cells are the file's values; missing ones are flagged and hold the feature median
    X = np.asarray(adata.X)
    np.testing.assert_allclose(X[~missing], raw.to_numpy()[~missing], rtol=1e-6)
    assert (adata.layers["missing"].toarray() == missing).all()
    medians = raw.median(skipna=True).to_numpy()
    rows, cols = np.nonzero(missing)
    np.testing.assert_allclose(X[rows, cols], medians[cols], rtol=1e-6)
    assert adata.uns["impute_median"]["params"]["fit_on"] == "all samples"
    assert adata.uns["mirror_genes"]["counts"]["n_missing_cells"] == missing.sum()
    prov = adata.uns["mirror_genes"]
    assert prov["params"]["cohort"] == "brca" and prov["version"] == mg.__version__
    assert prov["inputs"]["expression_0"]["sha256"] == sha256_file(syn.expression[0])
    assert {"phenotype_0", "survival_0"} <= set(prov["inputs"])
    out = tmp_path / "cohort.h5ad"
    mg.write_h5ad(adata, out)
    back = ad.read_h5ad(out)
    assert back.uns["mirror_genes"]["inputs"]["expression_0"]["sha256"] == prov["inputs"]["expression_0"]["sha256"]
    assert back.obs["label"].tolist() == adata.obs["label"].tolist()


def test_dropped_samples_are_named(tmp_path):
    syn = synthetic_cohort(tmp_path, cohort="brca", n_patients=100, n_genes=200)
    adata = _ingest(syn)
    dropped = adata.uns["mirror_genes"]["dropped"]
    header = pd.read_csv(syn.expression[0], sep="\t", nrows=0).columns[1:]
    pheno = pd.read_csv(syn.phenotype[0], sep="\t", dtype=str, keep_default_na=False).set_index("sampleID")
    assert dropped["not_in_phenotype"] == sorted(set(header) - set(pheno.index), key=list(header).index)
    assert dropped["not_in_phenotype"]  # the synthetic cohort has such samples
    in_pheno = [s for s in header if s in pheno.index]
    assert dropped["other_sample_type"] == [s for s in in_pheno if s[13:15] != "01"]
    labels = pheno["histological_type"].map(mg.cohorts.get_preset("brca").label_rule.mapping)
    assert dropped["unlabelled"] == [s for s in in_pheno if s[13:15] == "01" and pd.isna(labels[s])]
    no_surv = adata.obs_names[adata.obs["time"].isna() | adata.obs["event"].isna()].tolist()
    assert dropped["no_survival_kept"] == no_surv and no_surv
    counts = adata.uns["mirror_genes"]["counts"]
    assert counts["n_unlabelled"] == len(dropped["unlabelled"])
    assert counts["n_matrix_samples"] == len(header)
    assert (adata.obs["tcga_project"] == "BRCA").all() and "cohort" not in adata.obs


def test_cli_prints_the_samples_left_out(tmp_path):
    from typer.testing import CliRunner

    from mirror_genes.cli import app

    syn = synthetic_cohort(tmp_path, cohort="brca", n_patients=100, n_genes=200)
    result = CliRunner().invoke(app, ["ingest", "--cohort", "brca", "--expression", str(syn.expression[0]),
                                      "--phenotype", str(syn.phenotype[0]), "--survival", str(syn.survival[0]),
                                      "--out", str(tmp_path / "x.h5ad"), "--quiet"])
    assert result.exit_code == 0, result.stderr
    adata = ad.read_h5ad(tmp_path / "x.h5ad")
    dropped = adata.uns["mirror_genes"]["dropped"]
    lines = result.stderr.splitlines()
    not_in = next(ln for ln in lines if "not in the phenotype file(s):" in ln)
    assert not_in.startswith(f"left out: {len(dropped['not_in_phenotype'])} expression samples")
    assert all(name in not_in for name in dropped["not_in_phenotype"])
    unlabelled = next(ln for ln in lines if "samples without a class label" in ln)
    assert list(dropped["unlabelled"])[0] in unlabelled
    n_missing = int(adata.layers["missing"].sum())
    assert f"{n_missing} missing cells imputed" in result.stderr and n_missing > 0


def test_one_sample_per_patient_tie_rule(tmp_path):
    syn = synthetic_cohort(tmp_path, cohort="brca", n_patients=100, n_genes=200)
    all_types = _ingest(syn, sample_types=tuple(mg._barcode.SAMPLE_TYPES))
    every = _ingest(syn, sample_types=tuple(mg._barcode.SAMPLE_TYPES), one_per_patient=False)
    assert every.n_obs > all_types.n_obs
    # the kept sample of each patient is the first barcode in sort order
    first = every.obs.reset_index().sort_values("index").groupby("patient_id")["index"].first()
    assert set(all_types.obs_names) == set(first)


def test_cbioportal_phenotype_labels_brca(tmp_path):
    syn = synthetic_cohort(tmp_path, cohort="brca", n_patients=100, n_genes=200)
    pheno = pd.read_csv(syn.phenotype[0], sep="\t", dtype=str, keep_default_na=False)
    code = pheno["histological_type"].map({"Infiltrating Ductal Carcinoma": "IDC",
                                           "Infiltrating Lobular Carcinoma": "ILC"}).fillna("MDLC")
    cbio = pd.DataFrame({"Study ID": "brca_tcga", "Patient ID": pheno["_PATIENT"],
                         "Sample ID": pheno["sampleID"], "Oncotree Code": code,
                         "Overall Survival (Months)": "10", "Overall Survival Status": "1:DECEASED"})
    path = tmp_path / "cbioportal.tsv"
    cbio.to_csv(path, sep="\t", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = mg.ingest("brca", expression=syn.expression, phenotype=path, progress=False)
    assert adata.obs["label"].value_counts().to_dict() == syn.expected_counts
    assert adata.uns["mirror_genes"]["params"]["survival_source"] == "phenotype"
    assert np.allclose(adata.obs["time"], 10 * 365.25 / 12) and (adata.obs["event"] == 1).all()


# ---- bad input ------------------------------------------------------------------------

def test_unknown_cohort():
    with pytest.raises(CohortError, match="unknown cohort 'lung'; known cohorts: brca, nsclc"):
        mg.ingest("lung", expression="x", phenotype="y")


def test_samples_missing_from_phenotype(tmp_path):
    syn = synthetic_cohort(tmp_path, cohort="brca", n_patients=60, n_genes=200)
    other = tmp_path / "other_pheno.tsv"
    other.write_text("sampleID\t_PATIENT\thistological_type\n"
                     "TCGA-ZZ-ZZZZ-01\tTCGA-ZZ-ZZZZ\tInfiltrating Ductal Carcinoma\n")
    with pytest.raises(InputFileError, match=r"none of its \d+ samples .* are in the phenotype"):
        mg.ingest("brca", expression=syn.expression, phenotype=other, progress=False)


def test_class_left_empty_after_filtering(tmp_path):
    syn = synthetic_cohort(tmp_path, cohort="brca", n_patients=60, n_genes=200)
    pheno = pd.read_csv(syn.phenotype[0], sep="\t", dtype=str, keep_default_na=False)
    pheno["histological_type"] = pheno["histological_type"].replace(
        "Infiltrating Lobular Carcinoma", "Other, specify")
    path = tmp_path / "no_ilc.tsv"
    pheno.to_csv(path, sep="\t", index=False)
    with pytest.raises(LabelError, match="class 'ILC' has no samples after filtering"):
        mg.ingest("brca", expression=syn.expression, phenotype=path, progress=False)


def test_wrong_number_of_phenotype_files(tmp_path):
    syn = synthetic_cohort(tmp_path, cohort="rcc", n_patients=60, n_genes=200)
    with pytest.raises(CohortError, match="3 member project"):
        mg.ingest("rcc", expression=syn.expression, phenotype=syn.phenotype[:2], progress=False)


# ---- fetch through the cache from a real local server ------------------------------------

@pytest.fixture
def xena_mirror(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder at ``/download/<dataset path>``."""
    root = tmp_path / "hub"

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path):
            return super().translate_path(path.replace("/download/", "/", 1))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ingest_without_files_fetches_through_cache(xena_mirror, tmp_path):
    root, url = xena_mirror
    syn = synthetic_cohort(root, cohort="nsclc", n_patients=80, n_genes=200)
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = mg.ingest("nsclc", base_url=url, cache_dir=cache, progress=False)
    assert adata.obs["label"].value_counts().to_dict() == syn.expected_counts
    cached = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert "HiSeqV2.gz" in cached and "LUSC_clinicalMatrix" in cached
    assert adata.uns["mirror_genes"]["params"]["fetched"] is True


# ---- real data (optional) --------------------------------------------------------------

def test_real_brca_counts(shared_data):
    d = shared_data / "tcga-brca"
    adata = mg.ingest("brca", expression=d / "expression.tsv.gz", phenotype=d / "clinicalMatrix.tsv",
                      survival=d / "survival.tsv", progress=False)
    assert adata.n_obs == 895
    assert adata.obs["label"].value_counts().to_dict() == {"IDC": 737, "ILC": 158}
    assert adata.obs[["time", "event"]].notna().all().all()
    assert int(adata.obs["event"].sum()) <= 130 and adata.n_vars == 1558


def test_fetch_falls_back_to_the_gzipped_dataset_name(xena_mirror, tmp_path):
    root, url = xena_mirror
    syn = synthetic_cohort(root, cohort="brca", n_patients=60, n_genes=200)
    pheno = syn.phenotype[0]
    pheno.with_name(pheno.name + ".gz").write_bytes(gzip.compress(pheno.read_bytes()))
    pheno.unlink()  # the mirror only has BRCA_clinicalMatrix.gz
    files = mg.fetch("brca", base_url=url, cache_dir=tmp_path / "cache", progress=False)
    assert files["phenotype"][0].name == "BRCA_clinicalMatrix.gz"
    assert mg.io.read_phenotype(files["phenotype"][0]).shape[0] > 50
