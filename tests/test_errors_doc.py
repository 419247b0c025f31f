"""docs/errors.md is the truth: every row of its table is triggered here and the message the
CLI prints (or the documented API call raises) must match the row's pattern exactly."""

from __future__ import annotations

import gzip
import os
import re
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anndata as ad
import pytest
from typer.testing import CliRunner

from mirror_genes.cli import app
from mirror_genes.datasets import synthetic_cohort

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
runner = CliRunner()
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------- reading the doc


def _cells(line: str) -> list[str]:
    """Split a Markdown table row on '|' outside backticks."""
    cells, cell, code = [], "", False
    for ch in line.strip().strip("|"):
        if ch == "`":
            code = not code
        if ch == "|" and not code:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += ch
    return [*cells, cell.strip()]


def doc_rows() -> dict[str, dict]:
    """id -> {exit, exception, pattern} from the table under '## Messages'."""
    text = DOC.read_text(encoding="utf-8").split("## Messages", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.lower() for c in _cells(lines[0])]
    rows = {}
    for line in lines[2:]:
        row = dict(zip(header, _cells(line), strict=True))
        rows[row["id"].strip("`")] = row
    return rows


def as_regex(pattern: str) -> re.Pattern:
    """`<...>` marks a variable part; everything else must match literally."""
    pattern = pattern.strip()
    assert pattern.startswith("`") and pattern.endswith("`"), pattern
    parts = re.split(r"<[^<>]+>", pattern[1:-1])
    return re.compile(".+?".join(re.escape(p) for p in parts), re.DOTALL)


# ------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return synthetic_cohort(tmp_path_factory.mktemp("syn"), cohort="brca", n_patients=120,
                            n_genes=200)


@pytest.fixture(scope="module")
def h5ad(syn, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingested") / "brca.h5ad"
    assert runner.invoke(app, _ingest(syn, out)).exit_code == 0
    return out


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        body = self.server.files.get(path.removeprefix("/download/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.files = {}
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


class Ctx:
    def __init__(self, tmp: Path, syn, h5ad: Callable[[], Path], hub) -> None:
        self.tmp, self.syn, self._h5ad, self.hub = tmp, syn, h5ad, hub

    @property
    def h5ad(self) -> Path:
        return self._h5ad()

    def file(self, name: str, data: bytes | str, gz: bool = False) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = data.encode() if isinstance(data, str) else data
        path.write_bytes(gzip.compress(data) if gz else data)
        return path

    def serve(self, **files: bytes) -> str:
        self.hub.files = {k.replace("__", "/"): v for k, v in files.items()}
        return self.hub.base


def _ingest(syn, out, *, expression=None, phenotype=None, survival=None, extra=()):
    args = ["ingest", "-c", "brca", "-o", str(out), "-q", *extra]
    for flag, paths in (("-e", expression or syn.expression), ("-p", phenotype or syn.phenotype),
                        ("-s", survival if survival is not None else syn.survival)):
        for p in paths:
            args += [flag, str(p)]
    return args


def cli(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stderr


def api(call: Callable[[], object]) -> tuple[str, str]:
    try:
        call()
    except Exception as err:  # the documented exception is compared by name
        return type(err).__name__, str(err)
    raise AssertionError("no exception raised")


def _sid(syn) -> str:
    """An IDC and an ILC primary tumour of the phenotype, so filters keep them."""
    import pandas as pd

    pheno = pd.read_csv(syn.phenotype[0], sep="\t", dtype=str)
    primary = pheno["sampleID"].str.endswith("-01")
    return "\t".join(pheno.loc[primary & (pheno["histological_type"] == f"Infiltrating {k} Carcinoma"),
                               "sampleID"].iloc[0] for k in ("Ductal", "Lobular"))


XENA_MATRIX = "TCGA.BRCA.sampleMap__HiSeqV2.gz"
GOOD_PHENO = "sampleID\thistological_type\nTCGA-AA-0001-01\tInfiltrating Ductal Carcinoma\n"


# ------------------------------------------------------------------- the triggers
# Each returns (exit code, stderr) from the CLI, or (exception name, message) from the API.

def _one_class(c: Ctx):
    adata = ad.read_h5ad(c.h5ad)
    one = adata[adata.obs["label"] == "IDC"].copy()
    one.obs["label"] = one.obs["label"].astype(str)
    path = c.tmp / "idc.h5ad"
    one.write_h5ad(path)
    return cli("select", "--input", path, "-o", c.tmp / "s", "-q")


def _cached_invalid(c: Ctx):
    base = c.serve()
    host = base.split("//")[1].replace(":", "_")
    c.file(f"cache/{host}/TCGA.BRCA.sampleMap/HiSeqV2.gz", "<!DOCTYPE html><html></html>", gz=True)
    return cli("fetch", "-c", "brca", "--base-url", base, "--cache-dir", c.tmp / "cache", "-q")


def _cached_bad_later(c: Ctx):
    syn = c.syn
    base = c.serve(**{XENA_MATRIX: syn.expression[0].read_bytes(),
                      "TCGA.BRCA.sampleMap__BRCA_clinicalMatrix": syn.phenotype[0].read_bytes(),
                      "survival__BRCA_survival.txt": syn.survival[0].read_bytes()})
    cache = c.tmp / "cache"
    assert cli("fetch", "-c", "brca", "--base-url", base, "--cache-dir", cache, "-q")[0] == 0
    host = base.split("//")[1].replace(":", "_")
    c.file(f"cache/{host}/TCGA.BRCA.sampleMap/HiSeqV2.gz", f"sample\t{_sid(syn)}\nG\t1\tx1\n",
           gz=True)
    return cli("ingest", "-c", "brca", "--base-url", base, "--cache-dir", cache,
               "-o", c.tmp / "x.h5ad", "-q")


def _unwritable(c: Ctx):
    import shutil
    import subprocess
    import sys
    import tempfile

    if not ROOT:
        locked = c.tmp / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            return cli(*_ingest(c.syn, locked / "x.h5ad"))
        finally:
            locked.chmod(0o755)
    # root writes through permission bits: run the real CLI as 'nobody' (uid 65534) in a
    # folder it can reach (pytest's tmp is root-only)
    top = Path(tempfile.mkdtemp(prefix="mirror-perm-", dir="/tmp"))
    try:
        top.chmod(0o755)
        (top / "locked").mkdir()
        (top / "locked").chmod(0o555)
        proc = subprocess.run(
            [sys.executable, "-c", "from mirror_genes.cli import main; main()", "ingest",
             "-c", "brca", "-e", str(top / "x.gz"), "-p", str(top / "p.tsv"),
             "-o", str(top / "locked" / "x.h5ad")],
            preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)), capture_output=True,
            text=True, timeout=120)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return proc.returncode, proc.stderr


def _interrupt(c: Ctx):
    import signal
    import socket
    import subprocess
    import sys

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = threading.Event()
    conns = []
    threading.Thread(target=lambda: (conns.append(listener.accept()), accepted.set()),
                     daemon=True).start()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mirror_genes.cli import main; main()", "fetch", "-c",
         "brca", "--base-url", f"http://127.0.0.1:{listener.getsockname()[1]}",
         "--cache-dir", str(c.tmp), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # see test_cli
    try:
        assert accepted.wait(60), "fetch never connected"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        listener.close()
    return proc.returncode, err


def _offline(c: Ctx):
    import socket

    from mirror_genes._download import download

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return api(lambda: download(f"http://127.0.0.1:{port}/download/x.gz", c.tmp / "x.gz",
                                retries=0, progress=False))


def _folds_vs_splits(c: Ctx):
    from mirror_genes.splits import write_splits

    write_splits([(["TCGA-AA-0001"], ["TCGA-AA-0002"])] * 2, c.tmp / "splits")
    return cli("select", "--input", c.h5ad, "-o", c.tmp / "s", "--splits", c.tmp / "splits",
               "--folds", 3)


def _several_sets(c: Ctx):
    gmt = c.file("two.gmt", "setA\tdesc\tTP53\tEGFR\nsetB\tdesc\tKRAS\n")
    return cli("export-panel", gmt, c.tmp / "p.json")


TRIGGERS: dict[str, Callable[[Ctx], tuple]] = {
    # input files
    "empty-file": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad",
                                         expression=[c.file("HiSeqV2.gz", b"")])),
    "wrong-first-header-cell": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", expression=[
        c.file("HiSeqV2.gz", "gene\tTCGA-AA-0001-01\nG\t1\n", gz=True)])),
    "phenotype-as-expression": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad",
                                                      expression=c.syn.phenotype)),
    "html-file": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", expression=[
        c.file("HiSeqV2.gz", "<!DOCTYPE html>\n<html><body>Not found</body></html>\n")])),
    "excel-file": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", phenotype=[
        c.file("clinical.xlsx", b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 64)])),
    "non-numeric-cell": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", expression=[
        c.file("n.gz", f"sample\t{_sid(c.syn)}\nG\t1\tx1\n", gz=True)])),
    "duplicated-feature-rows": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", expression=[
        c.file("d.gz", f"sample\t{_sid(c.syn)}\nTP53\t1\t1\nTP53\t2\t2\n", gz=True)])),
    "duplicated-sample-columns": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", expression=[
        c.file("c.gz", "sample\tTCGA-AA-0001-01\tTCGA-AA-0001-01\nG\t1\t2\n", gz=True)])),
    "truncated-gzip": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", expression=[
        c.file("trunc.gz", c.syn.expression[0].read_bytes()[:4000])])),
    "no-such-file": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad",
                                           expression=[c.tmp / "missing" / "HiSeqV2.gz"])),
    "samples-not-in-phenotype": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", expression=[
        c.file("other.gz", "sample\tTCGA-ZZ-0001-01\nG\t1\n", gz=True)])),
    "class-left-empty": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", phenotype=[
        c.file("pheno.tsv", "".join(ln for ln in c.syn.phenotype[0].read_text().splitlines(True)
                                    if "Lobular" not in ln))])),
    "unknown-cohort": lambda c: cli("ingest", "-c", "lung", "-o", c.tmp / "x.h5ad"),
    "survival-without-os": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", survival=[
        c.file("s.tsv", "sample\t_PATIENT\tDSS\nTCGA-AA-0001-01\tTCGA-AA-0001\t1\n")])),
    "not-an-h5ad": lambda c: cli("select", "--input", c.file("cohort.h5ad", GOOD_PHENO),
                                 "-o", c.tmp / "s"),
    # selection
    "cgc-wrong-header": lambda c: cli("select", "--input", c.h5ad, "-o", c.tmp / "s", "-q",
                                      "--cgc", c.file("cgc.csv", "Symbol,Description\nA,b\n")),
    "one-class": _one_class,
    "class-smaller-than-folds": lambda c: cli("select", "--input", c.h5ad, "-o", c.tmp / "s",
                                              "-q", "--folds", "50"),
    "inner-cv-too-large": lambda c: cli("select", "--input", c.h5ad, "-o", c.tmp / "s", "-q",
                                        "--folds", "2", "--inner-cv", "40"),
    # outputs
    "output-exists": lambda c: cli(*_ingest(c.syn, c.file("x.h5ad", "old"))),
    "output-folder-not-empty": lambda c: cli("select", "--input", c.h5ad, "-o",
                                             c.file("out/old.txt", "x").parent),
    "output-is-input": lambda c: cli(*_ingest(c.syn, c.syn.phenotype[0], extra=["--force"])),
    "output-holds-input": lambda c: cli("select", "--input", c.h5ad, "-o", c.h5ad.parent,
                                        "--force"),
    "output-is-directory": lambda c: cli(*_ingest(c.syn, c.tmp)),
    "output-is-file": lambda c: cli("select", "--input", c.h5ad, "-o", c.file("sel", "")),
    "output-under-file": lambda c: cli(*_ingest(c.syn, c.file("f", "") / "x.h5ad")),
    "output-unwritable": _unwritable,
    "cache-dir-is-file": lambda c: cli("fetch", "-c", "brca", "--cache-dir", c.file("cache", "")),
    # downloads
    "offline": _offline,
    "html-download": lambda c: cli("fetch", "-c", "brca", "--cache-dir", c.tmp, "-q",
                                   "--base-url", c.serve(**{XENA_MATRIX: gzip.compress(
                                       b"<!DOCTYPE html><html>Sign in</html>")})),
    "not-xena-download": lambda c: cli("fetch", "-c", "brca", "--cache-dir", c.tmp, "-q",
                                       "--base-url", c.serve(**{XENA_MATRIX: gzip.compress(
                                           b"gene_id\tvalue\nA\t1\n")})),
    "gzip-check": lambda c: cli("fetch", "-c", "brca", "--cache-dir", c.tmp, "-q", "--base-url",
                                c.serve(**{XENA_MATRIX: c.syn.expression[0].read_bytes()[:4000]})),
    "http-404": lambda c: cli("fetch", "-c", "brca", "--cache-dir", c.tmp, "-q",
                              "--base-url", c.serve()),
    "cached-file-invalid": _cached_invalid,
    "cached-file-bad-later": _cached_bad_later,
    "bad-base-url": lambda c: cli("fetch", "-c", "brca", "--base-url", "ftp://mirror.example",
                                  "--cache-dir", c.tmp),
    # panels
    "panel-format-unknown": lambda c: cli("export-panel", c.file("p.gmt", "s\td\tTP53\n"),
                                          c.tmp / "p.txt"),
    "panel-several-sets": _several_sets,
    # command line
    "folds-below-1": lambda c: cli("select", "--input", c.h5ad, "-o", c.tmp / "s", "--folds", 0),
    "step-out-of-range": lambda c: cli("select", "--input", c.h5ad, "-o", c.tmp / "s",
                                       "--step", 1.5),
    "inner-cv-below-2": lambda c: cli("select", "--input", c.h5ad, "-o", c.tmp / "s",
                                      "--inner-cv", 1),
    "bad-choice": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", extra=["--endpoint", "XX"])),
    "input-with-ingest-options": lambda c: cli("select", "--input", c.h5ad, "-o", c.tmp / "s",
                                               "-c", "brca", "-e", "x.gz"),
    "folds-disagree-with-splits": _folds_vs_splits,
    "download-options-with-files": lambda c: cli(*_ingest(c.syn, c.tmp / "x.h5ad", extra=[
        "--base-url", "http://mirror", "--cache-dir", c.tmp])),
    "invalid-value": lambda c: cli("select", "-c", "brca", "-o", c.tmp / "s", "--folds", "abc"),
    "missing-option": lambda c: cli("ingest", "-o", c.tmp / "x.h5ad"),
    "no-such-option": lambda c: cli("ingest", "--colour"),
    "interrupted": _interrupt,
}


def test_every_documented_case_is_triggered_and_every_trigger_documented():
    assert sorted(doc_rows()) == sorted(TRIGGERS)


@pytest.mark.parametrize("case", sorted(TRIGGERS))
def test_documented_message(case, syn, h5ad, hub, tmp_path):
    row = doc_rows()[case]
    regex = as_regex(row["message"])
    outcome, text = TRIGGERS[case](Ctx(tmp_path, syn, lambda: h5ad, hub))
    if isinstance(outcome, str):  # an API call: the documented exception and message
        assert outcome == row["exception"].strip("`"), (case, outcome, text)
        assert regex.fullmatch(text), (case, text)
        return
    assert "Traceback" not in text, text
    errors = [ln for ln in text.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, (case, text)
    assert outcome == int(row["exit"]), (case, outcome, text)
    message = errors[0].removeprefix("error: ")
    assert regex.fullmatch(message), f"{case}: printed {message!r}, doc says {row['message']}"
