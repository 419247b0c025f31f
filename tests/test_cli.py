"""The mirror-genes CLI as a user runs it: CliRunner, exit codes, one-line errors, no partial outputs."""

import gzip

import anndata as ad
import pandas as pd
import pytest
from typer.testing import CliRunner

from mirror_genes.cli import app
from mirror_genes.datasets import synthetic_cohort

runner = CliRunner()


@pytest.fixture(scope="module")
def brca(tmp_path_factory):
    return synthetic_cohort(tmp_path_factory.mktemp("syn"), cohort="brca", n_patients=120, n_genes=200)


def ingest_args(syn, out, expression=None, phenotype=None, cohort="brca"):
    args = ["ingest", "--cohort", cohort, "--out", str(out), "--quiet"]
    for p in expression or syn.expression:
        args += ["--expression", str(p)]
    for p in phenotype or syn.phenotype:
        args += ["--phenotype", str(p)]
    for p in syn.survival:
        args += ["--survival", str(p)]
    return args


def test_ingest_writes_h5ad(brca, tmp_path):
    out = tmp_path / "brca.h5ad"
    result = runner.invoke(app, ingest_args(brca, out))
    assert result.exit_code == 0, result.output
    adata = ad.read_h5ad(out)
    assert adata.obs["label"].value_counts().to_dict() == brca.expected_counts
    assert f"wrote {out}" in result.stderr
    assert "IDC" in result.stderr and "warning: " in result.stderr


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("fetch", "ingest", "synthetic"):
        assert command in result.output


def _sid(syn):
    """An IDC and an ILC primary-tumour sample of the synthetic phenotype, tab-joined, so the
    filters pass and the matrix values are read."""
    pheno = pd.read_csv(syn.phenotype[0], sep="\t", dtype=str)
    primary = pheno["sampleID"].str.endswith("-01")
    ids = [pheno.loc[primary & (pheno["histological_type"] == f"Infiltrating {kind} Carcinoma"),
                     "sampleID"].iloc[0] for kind in ("Ductal", "Lobular")]
    return "\t".join(ids)


def _matrix(tmp_path, name, text, gz=True):
    p = tmp_path / name
    p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return p


def _truncated(tmp_path, brca):
    data = brca.expression[0].read_bytes()
    p = tmp_path / "truncated.gz"
    p.write_bytes(data[: len(data) // 2])
    return p


BAD_EXPRESSION = {
    "empty file": (lambda tmp, syn: _matrix(tmp, "empty.tsv", "", gz=False), "file is empty"),
    "wrong first header cell": (lambda tmp, syn: _matrix(tmp, "w.gz", "gene\tTCGA-AA-0001-01\nG\t1\n"),
                                "first header cell is 'gene'"),
    "non-numeric cell": (lambda tmp, syn: _matrix(tmp, "n.gz", f"sample\t{_sid(syn)}\nG\t1\tx1\n"),
                         "non-numeric cell 'x1' at line 2"),
    "duplicated gene rows": (lambda tmp, syn: _matrix(tmp, "d.gz", f"sample\t{_sid(syn)}\nG\t1\t1\nG\t2\t2\n"),
                             "duplicated feature rows: G"),
    "duplicated sample columns": (lambda tmp, syn: _matrix(
        tmp, "c.gz", "sample\tTCGA-AA-0001-01\tTCGA-AA-0001-01\nG\t1\t2\n"),
        "duplicated sample columns: TCGA-AA-0001-01"),
    "truncated gzip": (_truncated, "truncated gzip"),
    "unreadable path": (lambda tmp, syn: tmp / "does-not-exist.tsv.gz", "no such file"),
    "samples missing from the phenotype": (
        lambda tmp, syn: _matrix(tmp, "other.gz", "sample\tTCGA-ZZ-0001-01\nG\t1\n"),
        "are in the phenotype"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPRESSION))
def test_bad_expression_one_line_exit_1_no_output(brca, tmp_path, case):
    make, message = BAD_EXPRESSION[case]
    bad = make(tmp_path, brca)
    out = tmp_path / "out" / "cohort.h5ad"
    result = runner.invoke(app, ingest_args(brca, out, expression=[bad]))
    assert result.exit_code == 1
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and bad.name in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not any(out.parent.glob("*")) if out.parent.exists() else True


def test_class_left_empty(brca, tmp_path):
    pheno = pd.read_csv(brca.phenotype[0], sep="\t", dtype=str, keep_default_na=False)
    pheno = pheno[pheno["histological_type"] != "Infiltrating Lobular Carcinoma"]
    path = tmp_path / "pheno.tsv"
    pheno.to_csv(path, sep="\t", index=False)
    out = tmp_path / "x.h5ad"
    result = runner.invoke(app, ingest_args(brca, out, phenotype=[path]))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: cohort brca: class 'ILC' has no samples")
    assert not out.exists()


def test_unknown_cohort(brca, tmp_path):
    result = runner.invoke(app, ingest_args(brca, tmp_path / "x.h5ad", cohort="lung"))
    assert result.exit_code == 1
    assert "error: unknown cohort 'lung'; known cohorts: brca, nsclc, rcc, coadread" in result.stderr


def test_failed_write_leaves_no_partial_file(brca, tmp_path, monkeypatch):
    import anndata

    def boom(self, path, *a, **k):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(anndata.AnnData, "write_h5ad", boom)
    out = tmp_path / "x.h5ad"
    result = runner.invoke(app, ingest_args(brca, out), catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "error: disk full"
    assert list(tmp_path.glob("*.h5ad*")) == [] and list(tmp_path.glob(".x.h5ad*")) == []


def test_offline_fetch_says_how_to_pass_local_files(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    result = runner.invoke(app, ["fetch", "--cohort", "brca", "--base-url", f"http://127.0.0.1:{port}",
                                 "--cache-dir", str(tmp_path), "--quiet"])
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot reach") and "--expression" in line


def test_version():
    from mirror_genes import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"mirror-genes {__version__}"


def test_flags_show_no_bool_metavar():
    for command in ("fetch", "ingest", "select", "synthetic", "export-panel"):
        result = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0
        assert "<bool>" not in result.stdout, command
    assert "--quiet" in runner.invoke(app, ["ingest", "--help"]).stdout


def test_usage_errors_are_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["select", "-c", "brca", "-o", str(tmp_path), "--folds", "abc"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: Invalid value for '--folds': Input should be a valid integer, unable to parse "
        "string as an integer"]


def test_ctrl_c_is_one_line_exit_130(tmp_path):
    """A real SIGINT while fetch waits on a server that accepted but never answers."""
    import signal
    import socket
    import subprocess
    import sys
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = threading.Event()
    conns = []

    def accept():
        conns.append(listener.accept()[0])
        accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mirror_genes.cli import main; main()", "fetch", "-c",
         "brca", "--base-url", f"http://127.0.0.1:{port}", "--cache-dir", str(tmp_path), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a runner started in the background ignores SIGINT, and children inherit that: give the
        # CLI the default disposition an interactive terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert accepted.wait(60), "fetch never connected"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        for c in conns:
            c.close()
        listener.close()
    assert proc.returncode == 130
    assert err.splitlines() == ["error: interrupted"], err
