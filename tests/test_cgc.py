"""COSMIC Cancer Gene Census: reading every layout, and curation onto the three hubs' AnnData."""

from __future__ import annotations

import csv
import gzip
import io
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from mirror_genes._errors import InputFileError, SelectionError
from mirror_genes.io._cgc import read_cgc
from mirror_genes.tl._cgc import cgc_curate, tumour_type_matches

CURRENT_HEADER = [
    "Gene Symbol", "Name", "Entrez GeneId", "Genome Location", "Tier", "Hallmark", "Chr Band",
    "Somatic", "Germline", "Tumour Types(Somatic)", "Tumour Types(Germline)", "Cancer Syndrome",
    "Tissue Type", "Molecular Genetics", "Role in Cancer", "Mutation Types",
    "Translocation Partner", "Other Germline Mut", "Other Syndrome", "Synonyms",
]
LEGACY_HEADER = [
    "Gene Symbol", "Name", "Entrez GeneId", "Chr", "Chr Band", "Cancer Somatic Mut",
    "Cancer Germline Mut", "Tumour Types (Somatic)", "Tumour Types (Germline)", "Cancer Syndrome",
    "Tissue Type", "Cancer Molecular Genetics", "Role in Cancer", "Mutation Type",
    "Translocation Partner", "Other Germline Mut", "Other Syndrome/Disease",
]

# symbol, tier, somatic, germline, role, synonyms, entrez
GENES = [
    ("BRCA1", "1", "", "breast, ovarian", "TSG", "ENSG00000012048.23,RNF53,Q3LRJ0", "672"),
    ("CDH1", "1", "lobular breast, gastric", "gastric", "TSG", "ENSG00000039068.20,CD324,UVO", "999"),
    ("ERBB2", "1", "breast, ovarian, NSCLC, gastric", "", "oncogene", "ENSG00000141736.13,HER2,NEU", "2064"),
    ("KMT2C", "1", "medulloblastoma, breast", "", "TSG", "ENSG00000055609.17,MLL3,HALR", "58508"),
    ("MAP3K1", "2", "luminal A breast", "", "TSG", "ENSG00000095015.6,MEKK1", "4214"),
    ("EGFR", "1", "glioma, NSCLC", "NSCLC", "oncogene", "ENSG00000146648.18,ERBB,ERBB1", "1956"),
    ("NKX2-1", "1", "lung adenocarcinoma", "", "oncogene", "ENSG00000136352.17,TTF1", "7080"),
    ("SOX2", "2", "lung SCC, oesophageal squamous cell carcinoma", "", "oncogene", "ENSG00000181449.3", "6657"),
    ("ASCL1", "2", "SCLC", "", "oncogene", "", "429"),
    ("TP53", "1", "breast, colorectal, lung", "breast, sarcoma", "oncogene, TSG, fusion",
     "ENSG00000141510.16,P53,LFS1", "7157"),
    ("PTEN", "1", "glioma, prostate, endometrial", "harmartoma, glioma", "TSG", "ENSG00000171862.9,MMAC1", "5728"),
    ("GATA3", "1", "breast", "", "TSG", "ENSG00000107485.15,HDR,PTEN", "2625"),
    ("NCOR1", "1", "breast", "", "TSG", "N-CoR,SHARED", "9611"),
    ("ZFHX3", "1", "breast", "", "TSG", "ATBF1,SHARED", "463"),
    ("PIK3CA", "1", "breast, colorectal", "", "oncogene", "ENSG00000121879.5,PI3K", "5290"),
]
BRCA_SELECTED = ["BRCA1", "CDH1", "ERBB2", "KMT2C", "MAP3K1", "TP53", "GATA3", "NCOR1", "ZFHX3", "PIK3CA"]
NSCLC_SELECTED = ["ERBB2", "EGFR", "NKX2-1", "SOX2", "TP53"]


def _current_row(symbol, tier, somatic, germline, role, synonyms, entrez):
    return {"Gene Symbol": symbol, "Name": f"{symbol} protein", "Entrez GeneId": entrez,
            "Genome Location": "17:1-2", "Tier": tier, "Hallmark": "Yes" if tier == "1" else "",
            "Chr Band": "17q21", "Somatic": "yes" if somatic else "", "Germline": "yes" if germline else "",
            "Tumour Types(Somatic)": somatic, "Tumour Types(Germline)": germline,
            "Role in Cancer": role, "Mutation Types": "Mis, N, F", "Synonyms": synonyms}


def _write_table(path, header, rows, *, delimiter=",", bom=False, compress=False):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, delimiter=delimiter, lineterminator="\r\n",
                            extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    data = (("\ufeff" if bom else "") + buf.getvalue()).encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def cgc_csv(tmp_path):
    return _write_table(tmp_path / "cancer_gene_census.csv", CURRENT_HEADER,
                        [_current_row(*g) for g in GENES])


@pytest.fixture
def cgc(cgc_csv):
    return read_cgc(cgc_csv)


def _adata(var_names, symbols, *, ensembl=None, cohort=None):
    var = pd.DataFrame({"gene_symbol": symbols}, index=pd.Index(var_names))
    if ensembl is not None:
        var["ensembl_id"] = ensembl
    a = ad.AnnData(np.zeros((3, len(var_names)), dtype=np.float32),
                   obs=pd.DataFrame(index=["TCGA-A1-0001-01", "TCGA-A1-0002-01", "TCGA-A1-0003-01"]),
                   var=var)
    if cohort is not None:
        a.uns["mirror_genes"] = {"params": {"cohort": cohort}}
    return a


TCGA_SYMBOLS = ["ACTB", "BRCA1", "CDH1", "ERBB2", "MLL3", "MAP3K1", "EGFR", "TP53", "PTEN", "SHARED",
                "GAPDH", "NKX2-1", "HDR1"]


@pytest.fixture
def tcga(cgc):
    return _adata(TCGA_SYMBOLS, TCGA_SYMBOLS, cohort="brca")


def _members(a, key="cgc"):
    return list(a.var_names[a.var[f"{key}_member"].to_numpy()])


# ------------------------------------------------------------------------------------------
# read_cgc

def test_read_current_layout_with_quoted_lists(cgc_csv):
    text = cgc_csv.read_text()
    assert '"lobular breast, gastric"' in text  # the census quotes comma lists
    df = read_cgc(cgc_csv)
    assert list(df.columns) == ["gene_symbol", "name", "tier", "tumour_types_somatic",
                                "tumour_types_germline", "role_in_cancer", "synonyms",
                                "ensembl_ids", "entrez_id"]
    assert df["gene_symbol"].tolist() == [g[0] for g in GENES]
    row = df.set_index("gene_symbol").loc["CDH1"]
    assert row["tumour_types_somatic"] == ["lobular breast", "gastric"]
    assert row["tumour_types_germline"] == ["gastric"]
    assert row["synonyms"] == ["ENSG00000039068.20", "CD324", "UVO"]
    assert row["ensembl_ids"] == ["ENSG00000039068"]
    assert row["name"] == "CDH1 protein"
    assert df.set_index("gene_symbol").loc["TP53", "role_in_cancer"] == ["oncogene", "TSG", "fusion"]
    assert str(df["tier"].dtype) == "Int64"
    assert df["tier"].tolist() == [int(g[1]) for g in GENES]
    assert str(df["entrez_id"].dtype) == "Int64" and df["entrez_id"].iloc[0] == 672
    assert df.set_index("gene_symbol").loc["NCOR1", "ensembl_ids"] == []
    src = df.attrs["cgc_source"]
    assert src["layout"] == "tiered" and src["delimiter"] == "comma" and len(src["sha256"]) == 64


def test_read_legacy_layout_with_bom(tmp_path):
    rows = [{"Gene Symbol": "CDH1", "Name": "cadherin 1", "Entrez GeneId": "999",
             "Cancer Somatic Mut": "yes", "Tumour Types (Somatic)": "lobular breast, gastric",
             "Tumour Types (Germline)": "gastric"},
            {"Gene Symbol": "ERBB2", "Entrez GeneId": "2064", "Tumour Types (Somatic)": "breast"}]
    df = read_cgc(_write_table(tmp_path / "cgc_v68.csv", LEGACY_HEADER, rows, bom=True))
    assert df["gene_symbol"].tolist() == ["CDH1", "ERBB2"]
    assert df["tier"].isna().all()
    assert df["tumour_types_somatic"].tolist() == [["lobular breast", "gastric"], ["breast"]]
    assert df["synonyms"].tolist() == [[], []]
    assert df.attrs["cgc_source"]["layout"] == "legacy"


def test_read_tsv_and_gzip(tmp_path):
    rows = [_current_row(*g) for g in GENES[:3]]
    tsv = read_cgc(_write_table(tmp_path / "cgc.tsv", CURRENT_HEADER, rows, delimiter="\t"))
    assert tsv.attrs["cgc_source"]["delimiter"] == "tab"
    assert tsv.set_index("gene_symbol").loc["CDH1", "tumour_types_somatic"] == ["lobular breast", "gastric"]
    gz = read_cgc(_write_table(tmp_path / "cgc.csv.gz", CURRENT_HEADER, rows, compress=True))
    assert gz["gene_symbol"].tolist() == ["BRCA1", "CDH1", "ERBB2"]


def test_read_wrong_header_names_missing_columns(tmp_path):
    bad = tmp_path / "probemap.tsv"
    bad.write_text("id\tgene\tchrom\nENSG1\tTP53\tchr17\n")
    with pytest.raises(InputFileError) as err:
        read_cgc(bad)
    msg = str(err.value)
    assert str(bad) in msg and "'Gene Symbol'" in msg and "'Tumour Types(Somatic)'" in msg
    assert "\n" not in msg
    only_symbol = tmp_path / "symbols.csv"
    only_symbol.write_text("Gene Symbol,Name\nTP53,tumor protein p53\n")
    with pytest.raises(InputFileError, match=r"missing column\(s\) 'Tumour Types\(Somatic\)';"):
        read_cgc(only_symbol)


@pytest.mark.parametrize("content, problem", [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (",".join(CURRENT_HEADER).encode() + b"\n", "no gene rows"),
    (b"Gene Symbol,Tier,Tumour Types(Somatic)\nTP53,1,breast\nTP53,2,lung\n", "appears twice"),
    (b"Gene Symbol,Tier,Tumour Types(Somatic)\nTP53,one,breast\n", "not an integer"),
    (b"Gene Symbol,Tier,Tumour Types(Somatic)\n,1,breast\n", "no gene symbol"),
    (b"Gene Symbol,Tier,Tumour Types(Somatic)\nTP53,1,breast,lung\n", "4 cells"),
    (gzip.compress(b"Gene Symbol,Tier,Tumour Types(Somatic)\nTP53,1,breast\n" * 50)[:30], "cannot be read"),
])
def test_read_bad_files(tmp_path, content, problem):
    path = tmp_path / "cgc.csv"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=problem) as err:
        read_cgc(path)
    assert str(path) in str(err.value)


def test_read_missing_path(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_cgc(tmp_path / "absent.csv")


# ------------------------------------------------------------------------------------------
# the tumour-type rule

@pytest.mark.parametrize("entry, keyword, expected", [
    ("breast", "breast", True),
    ("Breast", "BREAST", True),
    ("lobular breast", "breast", True),
    ("luminal A breast", "breast", True),
    ("phyllodes tumour of the breast", "breast", True),
    ("breast", "lobular breast", False),  # an entry must contain the whole keyword
    ("lung SCC", "lung", True),
    ("lung adenocarcinoma", "lung", True),
    ("NSCLC", "SCLC", False),  # whole words only
    ("SCLC", "NSCLC", False),
    ("NSCLC", "nsclc", True),
    ("non-small cell lung cancer", "small cell lung", False),  # hyphens join words
    ("non-Hodgkin lymphoma", "Hodgkin", False),
    ("Hodgkin's lymphoma", "Hodgkin", True),  # apostrophes separate words
    ("B-ALL", "ALL", False),
    ("colorectal", "colon", False),
    ("renal cell carcinoma", "renal cell", True),
    ("clear cell renal carcinoma", "renal cell", False),  # words must be contiguous
])
def test_tumour_type_rule(entry, keyword, expected):
    assert tumour_type_matches(entry, keyword) is expected


# ------------------------------------------------------------------------------------------
# cgc_curate

def test_curate_tcga_symbols_with_cohort_default(tcga, cgc):
    assert cgc_curate(tcga, cgc) is None
    assert _members(tcga) == ["BRCA1", "CDH1", "ERBB2", "MLL3", "MAP3K1", "TP53"]
    gene = tcga.var["cgc_gene"]
    assert gene["MLL3"] == "KMT2C" and gene["TP53"] == "TP53" and gene["ACTB"] == ""
    rec = tcga.uns["cgc"]
    assert rec["matched_genes"] == ["BRCA1", "CDH1", "ERBB2", "KMT2C", "MAP3K1", "TP53"]
    assert rec["unmatched_genes"] == ["GATA3", "NCOR1", "ZFHX3", "PIK3CA"]
    assert rec["match_kind"] == {"symbol": 5, "ensembl": 0, "synonym": 1}
    assert rec["synonym_matches"] == ["KMT2C:MLL3"]
    assert rec["n_features"] == 6 and rec["n_selected_genes"] == len(BRCA_SELECTED)
    assert rec["params"]["tumour_types_source"] == "cohort preset 'brca'"
    assert "lobular breast" in rec["params"]["tumour_types"]
    assert rec["params"]["tiers"] == [1, 2]
    assert rec["params"]["cgc_source"]["layout"] == "tiered"
    assert set(rec["matched_tumour_types"]) == {"breast", "lobular breast", "luminal A breast"}
    assert tcga.var["cgc_member"].dtype == bool


def test_curate_names_each_features_matching_tumour_types(tcga, cgc):
    cgc_curate(tcga, cgc)
    types = tcga.var["cgc_tumour_types"]
    # only the entries that matched a brca keyword, in the census's order
    assert types["CDH1"] == "lobular breast"
    assert types["ERBB2"] == "breast"
    assert types["MAP3K1"] == "luminal A breast"
    assert types["TP53"] == "breast"  # somatic and germline "breast" listed once
    assert types["MLL3"] == "breast"  # KMT2C, found through its synonym
    assert types["BRCA1"] == "breast"  # a germline entry
    assert types["ACTB"] == "" and types["EGFR"] == ""


def test_curate_takes_a_cohort_preset(tcga, cgc):
    from mirror_genes.cohorts import get_preset

    cgc_curate(tcga, cgc, tumour_types=get_preset("nsclc"), key_added="lung")
    assert tcga.uns["lung"]["params"]["tumour_types_source"] == "cohort preset 'nsclc'"
    assert tcga.uns["lung"]["params"]["tumour_types"] == list(get_preset("nsclc").cosmic_keywords)
    assert "EGFR" in _members(tcga, "lung") and "CDH1" not in _members(tcga, "lung")


def test_curate_synonym_fallback_is_conservative(tcga, cgc):
    cgc_curate(tcga, cgc)
    # GATA3's synonym PTEN is itself a CGC symbol; NCOR1 and ZFHX3 share the synonym SHARED.
    assert not tcga.var.loc["PTEN", "cgc_member"]
    assert not tcga.var.loc["SHARED", "cgc_member"]
    assert tcga.var.loc["PTEN", "cgc_gene"] == "" and tcga.var.loc["SHARED", "cgc_gene"] == ""


def test_curate_tier_filter(tcga, cgc):
    cgc_curate(tcga, cgc, tiers=(1,))
    assert "MAP3K1" not in _members(tcga)
    assert tcga.uns["cgc"]["params"]["tiers"] == [1]
    cgc_curate(tcga, cgc, tiers=None, key_added="all_tiers")
    assert "MAP3K1" in _members(tcga, "all_tiers")
    assert tcga.uns["all_tiers"]["params"]["tiers"] == "all"
    cgc_curate(tcga, cgc, tiers=2, key_added="tier2")
    assert _members(tcga, "tier2") == ["MAP3K1"]


def test_curate_explicit_tumour_types_and_germline(tcga, cgc):
    # BRCA1 lists breast only among germline tumour types
    cgc_curate(tcga, cgc, tumour_types=["ovarian"], key_added="ov")
    assert _members(tcga, "ov") == ["BRCA1", "ERBB2"]
    assert tcga.uns["ov"]["params"]["tumour_types_source"] == "argument"
    cgc_curate(tcga, cgc, tumour_types="lobular breast", key_added="lob")
    assert _members(tcga, "lob") == ["CDH1"]


def test_curate_gdc_ensembl_layout(cgc):
    var_names = ["ENSG00000075624.17", "ENSG00000012048.24", "ENSG00000039068.21",
                 "ENSG00000141736.14", "ENSG00000055609.18", "ENSG00000141510.17",
                 "ENSG00000171862.11"]
    symbols = ["ACTB", "BRCA1", "", "ERBB2", "KMT2C", "TP53", "PTEN"]
    a = _adata(var_names, symbols, ensembl=[v.split(".")[0] for v in var_names], cohort="brca")
    cgc_curate(a, cgc)
    assert _members(a) == ["ENSG00000012048.24", "ENSG00000039068.21", "ENSG00000141736.14",
                           "ENSG00000055609.18", "ENSG00000141510.17"]
    assert a.var.loc["ENSG00000039068.21", "cgc_gene"] == "CDH1"
    assert a.uns["cgc"]["match_kind"] == {"symbol": 4, "ensembl": 1, "synonym": 0}
    # without an ensembl_id column the unversioned var_name is used
    b = _adata(var_names, symbols, cohort="brca")
    cgc_curate(b, cgc)
    assert _members(b) == _members(a)


def test_curate_toil_transcripts_take_every_transcript(cgc):
    var_names = ["ENST00000269305.8", "ENST00000445888.6", "ENST00000420246.6",  # TP53
                 "ENST00000275493.6", "ENST00000455089.5",  # EGFR
                 "ENST00000354071.7",  # NKX2-1
                 "ENST00000646664.1",  # ACTB
                 "ENST00000325404.3",  # SOX2
                 "ENST00000269571.9"]  # ERBB2
    symbols = ["TP53", "TP53", "TP53", "EGFR", "EGFR", "NKX2-1", "ACTB", "SOX2", "ERBB2"]
    a = _adata(var_names, symbols, cohort="nsclc")
    cgc_curate(a, cgc)
    assert _members(a) == [v for v, s in zip(var_names, symbols) if s != "ACTB"]
    assert a.uns["cgc"]["matched_genes"] == NSCLC_SELECTED
    assert a.uns["cgc"]["unmatched_genes"] == []
    assert "SCLC" not in a.uns["cgc"]["matched_tumour_types"]
    assert a.var["cgc_gene"].tolist()[:3] == ["TP53"] * 3


def test_curate_needs_tumour_types(cgc):
    a = _adata(["TP53"], ["TP53"])
    with pytest.raises(SelectionError, match="tumour_types"):
        cgc_curate(a, cgc)
    a.uns["mirror_genes"] = {"params": {"cohort": "mesothelioma"}}
    with pytest.raises(SelectionError, match="tumour_types"):
        cgc_curate(a, cgc)
    with pytest.raises(SelectionError, match="empty"):
        cgc_curate(a, cgc, tumour_types=[" "])


def test_curate_no_match_warns_and_writes_all_false(tcga, cgc):
    with pytest.warns(UserWarning, match="no CGC gene .*mesothelioma") as rec:
        cgc_curate(tcga, cgc, tumour_types=["mesothelioma"])
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert not tcga.var["cgc_member"].any()
    assert (tcga.var["cgc_gene"] == "").all()
    assert tcga.uns["cgc"]["matched_genes"] == [] and tcga.uns["cgc"]["n_features"] == 0

    housekeeping = _adata(["ACTB", "GAPDH"], ["ACTB", "GAPDH"])
    with pytest.warns(UserWarning, match="none of the 10 selected CGC genes matches a feature"):
        cgc_curate(housekeeping, cgc, tumour_types=["breast"])
    assert not housekeeping.var["cgc_member"].any()
    assert housekeeping.uns["cgc"]["unmatched_genes"] == BRCA_SELECTED


def test_curate_legacy_census_skips_tier_filter_with_warning(tmp_path):
    rows = [{"Gene Symbol": "CDH1", "Tumour Types (Somatic)": "lobular breast, gastric"},
            {"Gene Symbol": "ERBB2", "Tumour Types (Somatic)": "breast"},
            {"Gene Symbol": "EGFR", "Tumour Types (Somatic)": "NSCLC"}]
    path = _write_table(tmp_path / "old.csv", LEGACY_HEADER, rows)
    a = _adata(["CDH1", "ERBB2", "EGFR"], ["CDH1", "ERBB2", "EGFR"], cohort="brca")
    with pytest.warns(UserWarning, match="no Tier column"):
        cgc_curate(a, path)  # a path is read with read_cgc
    assert _members(a) == ["CDH1", "ERBB2"]
    assert a.uns["cgc"]["params"]["tier_filter_applied"] is False
    assert a.uns["cgc"]["params"]["cgc_source"]["name"] == "old.csv"


def test_curate_copy_leaves_input_untouched(tcga, cgc):
    out = cgc_curate(tcga, cgc, copy=True)
    assert "cgc_member" not in tcga.var.columns and "cgc" not in tcga.uns
    assert _members(out) == ["BRCA1", "CDH1", "ERBB2", "MLL3", "MAP3K1", "TP53"]


def test_curate_accepts_plain_dataframe(tcga):
    table = pd.DataFrame({"gene_symbol": ["CDH1", "TP53"],
                          "tumour_types_somatic": ["lobular breast, gastric", ["colorectal"]]})
    cgc_curate(tcga, table, tiers=None)
    assert _members(tcga) == ["CDH1"]
    assert tcga.uns["cgc"]["params"]["cgc_source"]["sha256"] == ""


def test_curate_records_survive_h5ad(tmp_path, tcga, cgc):
    cgc_curate(tcga, cgc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cgc_curate(tcga, cgc, tumour_types=["mesothelioma"], key_added="none")
    path = tmp_path / "curated.h5ad"
    tcga.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert _members(back) == _members(tcga)
    assert back.var["cgc_gene"].tolist() == tcga.var["cgc_gene"].tolist()
    rec = back.uns["cgc"]
    assert list(rec["matched_genes"]) == tcga.uns["cgc"]["matched_genes"]
    assert {k: int(v) for k, v in rec["match_kind"].items()} == tcga.uns["cgc"]["match_kind"]
    assert list(rec["params"]["tumour_types"]) == tcga.uns["cgc"]["params"]["tumour_types"]
    assert len(back.uns["none"]["matched_genes"]) == 0
