"""Synthetic Xena cohorts: layouts, determinism, planted signal and ground-truth counts."""

import csv
import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mirror_genes._errors import CohortError
from mirror_genes.cohorts import get_preset
from mirror_genes.datasets import SyntheticCohort, synthetic_cohort

SMALL = {"n_patients": 160, "n_genes": 300, "n_markers": 12, "n_prognostic": 8}
CGC_HEADER = ("Gene Symbol,Name,Entrez GeneId,Genome Location,Tier,Hallmark,Chr Band,Somatic,"
              "Germline,Tumour Types(Somatic),Tumour Types(Germline),Cancer Syndrome,Tissue Type,"
              "Molecular Genetics,Role in Cancer,Mutation Types,Translocation Partner,"
              "Other Germline Mut,Other Syndrome,Synonyms")
SURVIVAL_HEADER = ["sample", "_PATIENT", "OS", "OS.time", "DSS", "DSS.time", "DFI", "DFI.time",
                   "PFI", "PFI.time", "Redaction"]
BARCODE15 = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-\d{2}$")
BARCODE16 = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-\d{2}[A-Z]$")


def first_line(path: Path) -> list[str]:
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt") as fh:
        return fh.readline().rstrip("\n").split("\t")


def matrix(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", index_col=0, na_values=["NA"], keep_default_na=False)


def table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, SyntheticCohort]:
    root = tmp_path_factory.mktemp("synthetic")
    out = {hub: synthetic_cohort(root / hub, hub=hub, **SMALL) for hub in ("tcga", "gdc", "toil")}
    out["nsclc-toil"] = synthetic_cohort(root / "nsclc-toil", cohort="nsclc", hub="toil", **SMALL)
    return out


def expected_counts_from_files(res: SyntheticCohort) -> dict[str, int]:
    """Independent re-derivation of the default ingest filters with pandas."""
    preset = get_preset(res.cohort)
    expr_samples = set()
    for path in res.expression:
        expr_samples.update(first_line(path)[1:])
    frames = []
    for member, path in zip(preset.members, res.phenotype, strict=True):
        df = table(path)
        sample_col = "sampleID" if "sampleID" in df.columns else "sample"
        if preset.multi_member:
            label = pd.Series(member.project, index=df.index)
        else:
            col = next(c for c in preset.label_rule.columns if c in df.columns)
            label = df[col].map(preset.label_rule.mapping).fillna("")
        frames.append(pd.DataFrame({"sample": df[sample_col], "label": label}))
    ph = pd.concat(frames, ignore_index=True)
    ph = ph[(ph["sample"].str[13:15] == "01") & (ph["label"] != "")
            & ph["sample"].isin(expr_samples)]
    ph = ph.assign(patient=ph["sample"].str[:12]).sort_values("sample")
    ph = ph.drop_duplicates("patient")
    return {c: int((ph["label"] == c).sum()) for c in preset.classes}


# ----------------------------------------------------------------------------- layouts
def test_tcga_hub_layout(cohorts):
    res = cohorts["tcga"]
    assert res.cohort == "brca" and res.hub == "tcga" and res.probemap is None
    root = res.cgc.parent
    assert res.expression == (root / "TCGA.BRCA.sampleMap/HiSeqV2.gz",)
    assert res.phenotype == (root / "TCGA.BRCA.sampleMap/BRCA_clinicalMatrix",)
    assert res.survival == (root / "survival/BRCA_survival.txt",)
    assert all(p.is_file() for p in res.files()) and len(res.files()) == 4
    assert res.expression[0].read_bytes()[:2] == b"\x1f\x8b"
    header = first_line(res.expression[0])
    assert header[0] == "sample"
    assert all(BARCODE15.match(s) for s in header[1:])
    pheno = table(res.phenotype[0])
    assert pheno.columns[0] == "sampleID"
    for col in ("_PATIENT", "histological_type", "sample_type", "sample_type_id", "_cohort",
                "_primary_disease", "_primary_site", "age_at_initial_pathologic_diagnosis",
                "gender"):
        assert col in pheno.columns
    assert set(pheno["_cohort"]) == {"TCGA Breast Cancer (BRCA)"}
    assert set(pheno["_primary_disease"]) == {"breast invasive carcinoma"}
    assert (pheno["_PATIENT"] == pheno["sampleID"].str[:12]).all()
    assert first_line(res.survival[0]) == SURVIVAL_HEADER
    # no temporary files left behind by the atomic writes
    assert not [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_gdc_hub_layout(cohorts):
    res = cohorts["gdc"]
    root = res.cgc.parent
    assert res.expression == (root / "TCGA-BRCA.star_tpm.tsv.gz",)
    assert res.phenotype == (root / "TCGA-BRCA.clinical.tsv.gz",)
    assert res.survival == (root / "TCGA-BRCA.survival.tsv.gz",)
    assert res.probemap == root / "gencode.v36.annotation.gtf.gene.probemap"
    expr = matrix(res.expression[0])
    assert expr.index.name == "Ensembl_ID"
    assert expr.index.str.fullmatch(r"ENSG\d{11}\.\d+").all()
    assert all(len(s) == 16 and BARCODE16.match(s) for s in expr.columns)
    assert any(s.endswith("-01B") for s in expr.columns)  # a second aliquot
    probemap = table(res.probemap)
    assert list(probemap.columns) == ["id", "gene", "chrom", "chromStart", "chromEnd", "strand"]
    assert set(expr.index) <= set(probemap["id"])
    pheno = table(res.phenotype[0])
    assert pheno.columns[0] == "sample"
    assert {"project_id", "primary_diagnosis.diagnoses", "sample_type.samples"} <= set(
        pheno.columns)
    assert set(pheno["project_id"]) == {"TCGA-BRCA"}
    assert {"Infiltrating duct carcinoma, NOS", "Lobular carcinoma, NOS"} < set(
        pheno["primary_diagnosis.diagnoses"])
    assert "Primary Tumor" in set(pheno["sample_type.samples"])
    assert first_line(res.survival[0]) == ["sample", "OS", "_PATIENT", "OS.time"]
    # marker and prognostic features are IDs of the file
    assert set(res.prognostic_genes) <= set(expr.index)
    assert all(set(f) <= set(expr.index) for f in res.marker_genes.values())


def test_toil_hub_layout(cohorts):
    res = cohorts["toil"]
    root = res.cgc.parent
    assert res.expression == (root / "tcga_RSEM_isoform_fpkm.gz",)
    assert res.probemap == root / "probeMap/gencode.v23.annotation.transcript.probemap"
    assert res.phenotype == (root / "TCGA.BRCA.sampleMap/BRCA_clinicalMatrix",)
    assert first_line(res.survival[0]) == SURVIVAL_HEADER
    expr = matrix(res.expression[0])
    assert expr.index.name == "sample"
    assert expr.index.str.fullmatch(r"ENST\d{11}\.\d+").all()
    assert all(BARCODE15.match(s) for s in expr.columns)
    assert np.nanmin(expr.to_numpy()) == pytest.approx(np.log2(0.001), abs=1e-3)
    probemap = table(res.probemap)
    assert list(probemap.columns) == ["id", "gene", "chrom", "chromStart", "chromEnd", "strand"]
    assert not probemap["id"].duplicated().any()
    mapped = probemap.set_index("id")["gene"].reindex(expr.index)
    assert mapped.notna().all() and (mapped != "").all()  # every transcript maps to a gene
    per_gene = mapped.value_counts()
    assert per_gene.between(2, 4).all() and len(per_gene) == SMALL["n_genes"]
    # the pan-cancer matrix holds samples of other projects too
    pheno = table(res.phenotype[0])
    assert not set(expr.columns) <= set(pheno["sampleID"])


@pytest.mark.parametrize("cohort, n_members", [("nsclc", 2), ("rcc", 3), ("coadread", 2)])
def test_multi_member_presets_write_one_file_per_member(tmp_path, cohort, n_members):
    res = synthetic_cohort(tmp_path, cohort=cohort, **SMALL)
    preset = get_preset(cohort)
    assert len(res.expression) == len(res.phenotype) == len(res.survival) == n_members
    for member, expr, pheno in zip(preset.members, res.expression, res.phenotype, strict=True):
        assert expr == tmp_path / f"TCGA.{member.project}.sampleMap/HiSeqV2.gz"
        df = table(pheno)
        assert set(df["_primary_disease"]) == {member.primary_disease}
        assert df["_cohort"].str.endswith(f"({member.project})").all()
    assert set(res.expected_counts) == set(preset.classes)
    assert res.expected_counts == expected_counts_from_files(res)
    assert set(res.marker_genes) == set(preset.classes)


def test_toil_multi_member_uses_one_matrix(cohorts):
    res = cohorts["nsclc-toil"]
    assert len(res.expression) == 1 and len(res.phenotype) == len(res.survival) == 2
    samples = set(first_line(res.expression[0])[1:])
    for path in res.phenotype:
        assert set(table(path)["sampleID"]) & samples
    assert res.expected_counts == expected_counts_from_files(res)


def test_plain_text_when_gzip_false(tmp_path):
    res = synthetic_cohort(tmp_path, hub="gdc", gzip=False, **SMALL)
    for path in res.files():
        assert not path.name.endswith(".gz")
        assert path.read_bytes()[:2] != b"\x1f\x8b"
    assert first_line(res.expression[0])[0] == "Ensembl_ID"


# ----------------------------------------------------------------------------- content
def test_deterministic_for_a_seed(cohorts, tmp_path):
    again = synthetic_cohort(tmp_path / "again", hub="gdc", **SMALL)
    for a, b in zip(cohorts["gdc"].files(), again.files(), strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert again.marker_genes == cohorts["gdc"].marker_genes
    other = synthetic_cohort(tmp_path / "other", hub="gdc", seed=1, **SMALL)
    assert other.expression[0].read_bytes() != again.expression[0].read_bytes()
    assert other.phenotype[0].read_bytes() != again.phenotype[0].read_bytes()
    assert other.cgc.read_bytes() == again.cgc.read_bytes()  # annotation does not use the seed


def test_missing_cells_and_sparse_clinical(cohorts):
    res = cohorts["tcga"]
    expr = matrix(res.expression[0])
    n_na = int(expr.isna().sum().sum())
    assert 0 < n_na < 0.01 * expr.size
    pheno = table(res.phenotype[0])
    assert (pheno == "").any().sum() >= 3  # several sparse columns
    surv = table(res.survival[0])
    assert (surv["OS"] == "").any() and (surv["OS.time"] == "").any()


def test_realistic_sample_mix(cohorts):
    res = cohorts["tcga"]
    expr = set(first_line(res.expression[0])[1:])
    pheno = table(res.phenotype[0])
    in_pheno = set(pheno["sampleID"])
    codes = pheno["sampleID"].str[13:15]
    assert set(codes) == {"01", "06", "11"}
    assert (codes == "11").sum() >= 2 and (codes == "06").sum() >= 1
    assert dict(zip(pheno["sample_type_id"], pheno["sample_type"], strict=False)) == {
        "01": "Primary Tumor", "06": "Metastatic", "11": "Solid Tissue Normal"}
    assert expr - in_pheno  # expression samples absent from the phenotype
    assert in_pheno - expr  # phenotype rows without expression
    hist = set(pheno["histological_type"])
    assert {"Infiltrating Ductal Carcinoma", "Infiltrating Lobular Carcinoma"} < hist
    assert hist - set(get_preset("brca").label_rule.mapping)  # unlabelled histologies


def test_expected_counts_match_the_files(cohorts):
    for key in ("tcga", "gdc", "toil"):
        res = cohorts[key]
        assert res.expected_counts == expected_counts_from_files(res), key
        assert res.expected_counts == cohorts["tcga"].expected_counts  # same patients
    counts = cohorts["tcga"].expected_counts
    total = sum(counts.values())
    assert 0.7 < counts["IDC"] / total < 0.9 and 0.1 < counts["ILC"] / total < 0.3


@pytest.mark.parametrize("key", ["tcga", "toil"])
def test_markers_differ_between_classes(cohorts, key):
    res = cohorts[key]
    expr = matrix(res.expression[0])
    pheno = table(res.phenotype[0]).set_index("sampleID")
    labels = pheno["histological_type"].map(get_preset("brca").label_rule.mapping)
    primary = [s for s in expr.columns if s[13:15] == "01" and s in labels.index]
    lab = labels.reindex(primary)
    for cls, feats in res.marker_genes.items():
        assert len(feats) >= SMALL["n_markers"]
        sub = expr.loc[list(feats), primary]
        diff = sub.loc[:, (lab == cls).to_numpy()].mean(axis=1) - sub.loc[
            :, (lab.notna() & (lab != cls)).to_numpy()].mean(axis=1)
        # planted shifts are 1-2 log2 units at full intensity; the classes overlap, so
        # single markers are noisy but every one points the right way
        assert (diff > 0.4).all(), diff[diff <= 0.4]
        assert diff.mean() > 1.0
    if key == "tcga":
        assert "CDH1" in res.marker_genes["IDC"]  # lobular loss of E-cadherin
        cdh1 = expr.loc["CDH1", primary]
        assert cdh1[(lab == "IDC").to_numpy()].mean() - cdh1[(lab == "ILC").to_numpy()].mean() > 2.0


def _c_index(time, event, score):
    """Harrell's C of a risk score (higher = earlier death)."""
    t, e, s = map(np.asarray, (time, event, score))
    ok = t[:, None] < t[None, :]
    usable = ok & (e[:, None] == 1)
    conc = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])
    return float((conc * usable).sum() / usable.sum())


def test_survival_event_rate_and_prognostic_signal(cohorts):
    res = cohorts["tcga"]
    surv = table(res.survival[0])
    surv = surv[(surv["OS"] != "") & (surv["sample"].str[13:15] == "01")]
    event = surv["OS"].astype(float).to_numpy()
    time = surv["OS.time"].astype(float).to_numpy()
    assert set(np.unique(event)) == {0.0, 1.0}
    assert 0.15 <= event.mean() <= 0.45
    assert (time > 0).all() and (time == np.round(time)).all()
    pfi_time = surv["PFI.time"].astype(float).to_numpy()
    assert (pfi_time <= time).all()
    expr = matrix(res.expression[0])
    cols = [s for s in surv["sample"] if s in expr.columns]
    keep = surv["sample"].isin(cols).to_numpy()
    z = expr.loc[list(res.prognostic_genes), cols].T
    z = (z - z.mean()) / z.std()
    planted = np.mean([abs(_c_index(time[keep], event[keep], z[g].fillna(0)) - 0.5)
                       for g in res.prognostic_genes])
    others = [g for g in expr.index[:60] if g not in res.prognostic_genes]
    background = np.mean([abs(_c_index(time[keep], event[keep],
                                       expr.loc[g, cols].fillna(0).to_numpy()) - 0.5)
                          for g in others])
    assert planted > background + 0.02


# ----------------------------------------------------------------------------- CGC
def test_cgc_layout_keywords_and_synonyms(cohorts):
    res = cohorts["gdc"]
    text = res.cgc.read_text()
    assert text.splitlines()[0] == CGC_HEADER
    rows = list(csv.DictReader(text.splitlines()))
    assert 50 <= len(rows) <= 80
    assert all(len(r) == 20 and None not in r for r in rows)
    assert {r["Tier"] for r in rows} == {"1", "2"}
    assert '"lobular breast, gastric"' in text and '"TSG, fusion"' in text
    assert any(r["Role in Cancer"] == "TSG, fusion" for r in rows)
    assert len({r["Gene Symbol"] for r in rows}) == len(rows)

    probemap = table(res.probemap)
    ensg_symbol = dict(zip(probemap["id"].str.split(".").str[0], probemap["gene"], strict=True))
    tcga_genes = set(matrix(cohorts["tcga"].expression[0]).index)
    present, aliased = [], []
    for r in rows:
        syn = [s.strip() for s in r["Synonyms"].split(",")]
        ensg = [s for s in syn if s.startswith("ENSG")]
        assert len(ensg) == 1 and "." not in ensg[0]
        if ensg[0] in ensg_symbol:  # present in the expression: same gene in both hubs
            present.append(r)
            name = ensg_symbol[ensg[0]]
            assert name in tcga_genes
            if name != r["Gene Symbol"]:
                assert name in syn  # the expression uses a listed alias
                aliased.append(name)
        else:
            assert r["Gene Symbol"] not in tcga_genes
    assert len(aliased) >= 2
    assert len(present) < len(rows)

    def matches(row, keywords):
        types = [t.strip().lower() for t in row["Tumour Types(Somatic)"].split(",")]
        return any(k.lower() in types for k in keywords)

    present_symbols = {r["Gene Symbol"] for r in present}
    for name in ("brca", "nsclc", "rcc", "coadread"):
        hits = [r["Gene Symbol"] for r in rows if matches(r, get_preset(name).cosmic_keywords)]
        assert set(hits) & present_symbols, name
        assert set(hits) - present_symbols, name


# ----------------------------------------------------------------------------- errors
def test_bad_arguments(tmp_path):
    with pytest.raises(CohortError):
        synthetic_cohort(tmp_path, cohort="gbm")
    with pytest.raises(CohortError):
        synthetic_cohort(tmp_path, hub="xena")
    with pytest.raises(ValueError, match="n_genes"):
        synthetic_cohort(tmp_path, n_genes=50)
    with pytest.raises(ValueError, match="n_patients"):
        synthetic_cohort(tmp_path, n_patients=10)
    with pytest.raises(ValueError, match="missing_rate"):
        synthetic_cohort(tmp_path, missing_rate=0.9)
    assert not any(tmp_path.iterdir())


def test_bytes_do_not_depend_on_python_hash_seed(tmp_path):
    code = ("import hashlib, sys\n"
            "from mirror_genes.datasets import synthetic_cohort\n"
            "r = synthetic_cohort(sys.argv[1], cohort='nsclc', n_patients=80, n_genes=200)\n"
            "print(hashlib.sha256(b''.join(p.read_bytes() for p in r.files())).hexdigest())\n")
    digests = set()
    for i, hash_seed in enumerate(("1", "2")):
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path / str(i))],
                             env={**os.environ, "PYTHONHASHSEED": hash_seed},
                             capture_output=True, text=True, check=True)
        digests.add(run.stdout.strip())
    assert len(digests) == 1


def _marker_auc(res: SyntheticCohort) -> float:
    """AUC of (mean z of IDC markers - mean z of ILC markers) for IDC vs ILC primary tumours."""
    expr = matrix(res.expression[0])
    pheno = table(res.phenotype[0]).set_index("sampleID")
    labels = pheno["histological_type"].map(get_preset("brca").label_rule.mapping)
    primary = [s for s in expr.columns if s[13:15] == "01" and pd.notna(labels.get(s))]
    z = expr[primary].T
    z = (z - z.mean()) / z.std()
    score = (z[list(res.marker_genes["IDC"])].mean(axis=1)
             - z[list(res.marker_genes["ILC"])].mean(axis=1)).to_numpy()
    is_idc = (labels[primary] == "IDC").to_numpy()
    pos, neg = score[is_idc], score[~is_idc]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


def test_class_overlap_makes_the_classes_realistically_hard(tmp_path):
    kw = {"n_patients": 300, "n_genes": 300, "n_markers": 8, "missing_rate": 0.0}
    clean = _marker_auc(synthetic_cohort(tmp_path / "clean", class_overlap=0.0, **kw))
    default = _marker_auc(synthetic_cohort(tmp_path / "default", **kw))
    blurred = _marker_auc(synthetic_cohort(tmp_path / "blurred", class_overlap=1.0, **kw))
    assert clean > 0.995  # without overlap the planted markers separate the classes
    # some lobular tumours look ductal, and vice versa: even the true markers make mistakes
    assert 0.95 < default < clean
    assert blurred < default - 0.05
    with pytest.raises(ValueError, match="class_overlap"):
        synthetic_cohort(tmp_path / "bad", class_overlap=-1.0, **kw)
