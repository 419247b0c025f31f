"""Xena matrix, probemap, phenotype and survival readers on hand-written real layouts."""

import gzip

import numpy as np
import pandas as pd
import pytest

from mirror_genes._errors import InputFileError
from mirror_genes.io import read_phenotype, read_probemap, read_survival, read_xena_matrix

S = ["TCGA-AA-0001-01", "TCGA-AA-0002-01", "TCGA-AA-0003-11"]


def write(path, text, gz=False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_tcga_hub_matrix_is_samples_by_genes_float32(tmp_path, gz):
    text = "sample\t" + "\t".join(S) + "\nTP53\t1.5\tNA\t3\nCDH1\t0\t2.25\t-1\n"
    adata = read_xena_matrix(write(tmp_path / "m.tsv", text, gz), progress=False)
    assert adata.shape == (3, 2)
    assert list(adata.obs_names) == S and list(adata.var_names) == ["TP53", "CDH1"]
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X[:, 0], [1.5, np.nan, 3])
    np.testing.assert_array_equal(adata.X[:, 1], [0, 2.25, -1])
    assert list(adata.var["gene_symbol"]) == ["TP53", "CDH1"]


def test_gzip_detected_by_content_not_name(tmp_path):
    text = "sample\tTCGA-AA-0001-01\nG\t1\n"
    adata = read_xena_matrix(write(tmp_path / "plainname.tsv", text, gz=True), progress=False)
    assert adata.X[0, 0] == 1


def test_column_subset_keeps_file_order_and_reports_missing(tmp_path):
    text = "sample\t" + "\t".join(S) + "\nG1\t1\t2\t3\nG2\t4\t5\t6\n"
    adata = read_xena_matrix(write(tmp_path / "m.tsv", text),
                             samples=[S[2], S[0], "TCGA-ZZ-9999-01"], progress=False)
    assert list(adata.obs_names) == [S[0], S[2]]
    np.testing.assert_array_equal(adata.X, [[1, 4], [3, 6]])
    assert adata.uns["xena_matrix"]["missing_samples"] == ["TCGA-ZZ-9999-01"]


def test_streaming_spans_many_blocks(tmp_path, monkeypatch):
    import mirror_genes.io._matrix as m

    monkeypatch.setattr(m, "_BLOCK_SIZE", 4096)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 40)).astype(np.float32)
    names = [f"TCGA-AA-{i:04d}-01" for i in range(40)]
    lines = ["sample\t" + "\t".join(names)]
    lines += [f"G{g}\t" + "\t".join(f"{v:.6f}" for v in values[g]) for g in range(500)]
    path = write(tmp_path / "big.tsv.gz", "\n".join(lines) + "\n", gz=True)
    adata = read_xena_matrix(path, samples=names[::4], progress=False)
    assert adata.shape == (10, 500)
    np.testing.assert_allclose(adata.X, values[:, ::4].T, atol=1e-6)


def test_gdc_matrix_gets_symbols_from_probemap(tmp_path):
    text = ("Ensembl_ID\tTCGA-AA-0001-01A\tTCGA-AA-0002-01A\n"
            "ENSG00000039068.20\t1\t2\nENSG00000141510.18\t3\t4\n")
    pm = write(tmp_path / "gencode.v36.annotation.gtf.gene.probemap",
               "id\tgene\tchrom\tchromStart\tchromEnd\tstrand\n"
               "ENSG00000039068.20\tCDH1\tchr16\t68737292\t68835537\t+\n"
               "ENSG00000141510.18\tTP53\tchr17\t7661779\t7687538\t-\n")
    adata = read_xena_matrix(write(tmp_path / "TCGA-BRCA.star_tpm.tsv.gz", text, gz=True),
                             probemap=pm, progress=False)
    assert list(adata.var["gene_symbol"]) == ["CDH1", "TP53"]
    assert list(adata.var["ensembl_id"]) == ["ENSG00000039068", "ENSG00000141510"]
    assert read_probemap(pm).loc["ENSG00000141510.18", "gene"] == "TP53"


def test_toil_transcripts_map_every_transcript_to_its_gene(tmp_path):
    text = ("sample\tTCGA-AA-0001-01\n"
            "ENST00000261769.9\t-9.9658\nENST00000422392.6\t1.2\nENST00000269305.8\t3\n")
    pm = write(tmp_path / "tx.probemap",
               "id\tgene\tchrom\tchromStart\tchromEnd\tstrand\n"
               "ENST00000261769.9\tCDH1\tchr16\t1\t2\t+\n"
               "ENST00000422392.6\tCDH1\tchr16\t1\t2\t+\n"
               "ENST00000269305.8\tTP53\tchr17\t1\t2\t-\n")
    adata = read_xena_matrix(write(tmp_path / "toil.gz", text, gz=True), probemap=pm,
                             progress=False)
    assert list(adata.var["gene_symbol"]) == ["CDH1", "CDH1", "TP53"]


# ---- bad input: one line naming the file and the problem --------------------------------

@pytest.mark.parametrize(
    ("text", "gz", "message"),
    [
        ("", False, "file is empty"),
        ("gene\tTCGA-AA-0001-01\nG\t1\n", False, "first header cell is 'gene'"),
        ("sampleID\t_PATIENT\nTCGA-AA-0001-01\tTCGA-AA-0001\n", False, "phenotype/clinical"),
        ("sample\tTCGA-AA-0001-01\tTCGA-AA-0002-01\nG1\t1\t2\nG2\t3\tabc\n", False,
         "non-numeric cell 'abc' at line 3, column 'TCGA-AA-0002-01'"),
        ("sample\tTCGA-AA-0001-01\nG1\t1\nG1\t2\n", False, "duplicated feature rows: G1"),
        ("sample\tTCGA-AA-0001-01\tTCGA-AA-0001-01\nG1\t1\t2\n", False,
         "duplicated sample columns: TCGA-AA-0001-01"),
        ("sample\tTCGA-AA-0001-01\n", False, "no feature rows"),
    ],
)
def test_bad_matrices(tmp_path, text, gz, message):
    path = write(tmp_path / "bad.tsv", text, gz)
    with pytest.raises(InputFileError) as info:
        read_xena_matrix(path, progress=False)
    msg = str(info.value)
    assert message in msg and str(path) in msg and "\n" not in msg


def test_truncated_gzip(tmp_path):
    rng = np.random.default_rng(1)
    lines = ["sample\t" + "\t".join(f"TCGA-AA-{i:04d}-01" for i in range(50))]
    lines += [f"G{g}\t" + "\t".join(f"{v:.4f}" for v in rng.normal(size=50)) for g in range(2000)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "HiSeqV2.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated gzip"):
        read_xena_matrix(path, progress=False)


def test_unreadable_paths(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_xena_matrix(tmp_path / "absent.tsv.gz")
    with pytest.raises(InputFileError, match="is a directory"):
        read_xena_matrix(tmp_path)


# ---- phenotype and survival layouts -----------------------------------------------------

def test_cbioportal_export_phenotype_and_survival(tmp_path):
    path = write(tmp_path / "brca_tcga_clinical_data.tsv",
                 "Study ID\tPatient ID\tSample ID\tOncotree Code\tOverall Survival (Months)\t"
                 "Overall Survival Status\n"
                 "brca_tcga\tTCGA-AA-0001\tTCGA-AA-0001-01\tIDC\t12\t1:DECEASED\n"
                 "brca_tcga\tTCGA-AA-0002\tTCGA-AA-0002-01\tILC\t24.5\t0:LIVING\n"
                 "brca_tcga\tTCGA-AA-0003\tTCGA-AA-0003-01\tIDC\t\t\n")
    pheno = read_phenotype(path)
    assert pheno.attrs["layout"] == "cbioportal"
    assert pheno.loc["TCGA-AA-0002-01", "_PATIENT"] == "TCGA-AA-0002"
    surv = read_survival(path)
    assert surv.loc["TCGA-AA-0001-01", "event"] == 1 and surv.loc["TCGA-AA-0002-01", "event"] == 0
    assert surv.loc["TCGA-AA-0001-01", "time"] == pytest.approx(12 * 365.25 / 12)
    assert np.isnan(surv.loc["TCGA-AA-0003-01", "time"])


def test_xena_survival_layouts(tmp_path):
    tcga = write(tmp_path / "BRCA_survival.txt",
                 "sample\t_PATIENT\tOS\tOS.time\tDSS\tDSS.time\tDFI\tDFI.time\tPFI\tPFI.time\tRedaction\n"
                 "TCGA-AA-0001-01\tTCGA-AA-0001\t1\t100\t1\t100\t\t\t1\t50\t\n")
    gdc = write(tmp_path / "TCGA-BRCA.survival.tsv.gz",
                "sample\tOS\t_PATIENT\tOS.time\nTCGA-AA-0001-01A\t0\tTCGA-AA-0001\t300\n", gz=True)
    a, b = read_survival(tcga), read_survival(gdc)
    assert (a.loc["TCGA-AA-0001-01", "time"], a.loc["TCGA-AA-0001-01", "event"]) == (100, 1)
    assert (b.loc["TCGA-AA-0001-01A", "time"], b.loc["TCGA-AA-0001-01A", "event"]) == (300, 0)
    assert read_survival(tcga, endpoint="PFI").loc["TCGA-AA-0001-01", "time"] == 50


def test_survival_errors(tmp_path):
    no_cols = write(tmp_path / "s.tsv", "sample\tfoo\nTCGA-AA-0001-01\t1\n")
    with pytest.raises(InputFileError, match="no OS survival columns"):
        read_survival(no_cols)
    bad_event = write(tmp_path / "s2.tsv", "sample\tOS\tOS.time\nTCGA-AA-0001-01\t2\t5\n")
    with pytest.raises(InputFileError, match="must be 0/1"):
        read_survival(bad_event)


def test_real_luad_clinical_matrix_parses(shared_data):
    pheno = read_phenotype(shared_data / "xena-samples" / "LUAD_clinicalMatrix.gz")
    assert pheno.shape[0] == 706 and pheno.attrs["layout"] == "xena_clinical_matrix"
    assert {"_PATIENT", "histological_type", "sample_type", "OS", "OS.time"} <= set(pheno.columns)
    surv = read_survival(shared_data / "xena-samples" / "LUAD_clinicalMatrix.gz")
    assert surv["time"].notna().sum() > 500
    assert set(surv["event"].dropna().unique()) <= {0.0, 1.0}
    assert isinstance(pheno, pd.DataFrame)



BOM = b"\xef\xbb\xbf"


def test_byte_order_mark_is_accepted_by_every_table_reader(tmp_path):
    from mirror_genes.io import read_phenotype, read_probemap, read_survival

    (tmp_path / "m.tsv").write_bytes(BOM + b"sample\tTCGA-AA-0001-01\nG1\t1.5\n")
    adata = read_xena_matrix(tmp_path / "m.tsv", progress=False)
    assert adata.obs_names.tolist() == ["TCGA-AA-0001-01"] and adata.var_names.tolist() == ["G1"]
    (tmp_path / "p.tsv").write_bytes(BOM + b"sampleID\thistological_type\nTCGA-AA-0001-01\tx\n")
    assert read_phenotype(tmp_path / "p.tsv").index.tolist() == ["TCGA-AA-0001-01"]
    (tmp_path / "s.tsv").write_bytes(BOM + b"sample\t_PATIENT\tOS\tOS.time\n"
                                     b"TCGA-AA-0001-01\tTCGA-AA-0001\t1\t30\n")
    assert read_survival(tmp_path / "s.tsv")["time"].tolist() == [30.0]
    (tmp_path / "pm").write_bytes(BOM + b"id\tgene\tchrom\nENSG1.1\tTP53\tchr17\n")
    assert read_probemap(tmp_path / "pm")["gene"].tolist() == ["TP53"]


@pytest.mark.parametrize("content, what", [
    (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 40, "an Excel workbook (.xlsx) or other zip archive"),
    (b"\n<!DOCTYPE html>\n<html><body>Not Found</body></html>\n", "an HTML page"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 40, "an HDF5 file (an .h5ad?)"),
])
def test_non_tables_are_named_by_every_reader(tmp_path, content, what):
    from mirror_genes.io import read_phenotype, read_probemap, read_survival

    path = tmp_path / "input.tsv"
    path.write_bytes(content)
    for reader in (read_xena_matrix, read_phenotype, read_survival, read_probemap):
        with pytest.raises(InputFileError) as info:
            reader(path)
        assert str(info.value) == f"{path}: looks like {what}, not a tab-separated text table"
    from mirror_genes.io import read_cgc

    with pytest.raises(InputFileError) as info:
        read_cgc(path)
    assert str(info.value) == f"{path}: looks like {what}, not a COSMIC Cancer Gene Census CSV"
