"""Downloads against a real local HTTP server that misbehaves on demand (no mocks)."""

from __future__ import annotations

import gzip
import hashlib
import re
import socket
import struct
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from mirror_genes import __version__
from mirror_genes._download import cache_dir, dataset_url, download, fetch_files
from mirror_genes._errors import DownloadError, OfflineError

MATRIX = "TCGA.BRCA.sampleMap/HiSeqV2.gz"
PHENO = "TCGA.BRCA.sampleMap/BRCA_clinicalMatrix"
BAD = "broken/truncated.gz"
SURV = "survival/BRCA_survival.txt"
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
             b"<body>Please log in to continue.</body></html>\n")


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory) -> Path:
    """Xena-like files: a gzipped genes x samples matrix, a phenotype, a truncated gzip."""
    root = tmp_path_factory.mktemp("hub")
    rng = np.random.default_rng(7)
    samples = [f"TCGA-AA-{i:04d}-01" for i in range(160)]
    values = rng.normal(8, 3, size=(2500, len(samples)))
    lines = ["sample\t" + "\t".join(samples)]
    for g, row in enumerate(values):
        cells = [f"{v:.4f}" for v in row]
        if g % 97 == 0:
            cells[g % len(cells)] = "NA"
        lines.append(f"GENE{g}\t" + "\t".join(cells))
    matrix = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1)
    assert 1_000_000 < len(matrix) < 2_500_000  # big enough to be cut mid-body
    (root / "TCGA.BRCA.sampleMap").mkdir()
    (root / MATRIX).write_bytes(matrix)
    pheno = "sampleID\thistological_type\n" + "".join(
        f"{s}\t{'Infiltrating Ductal Carcinoma' if i % 3 else 'NA'}\n"
        for i, s in enumerate(samples))
    (root / PHENO).write_text(pheno)
    (root / "survival").mkdir()
    (root / SURV).write_text("sample\t_PATIENT\tOS\tOS.time\n" + "".join(
        f"{s}\t{s[:12]}\t{i % 2}\t{100 + i}\n" for i, s in enumerate(samples)))
    (root / "plain").mkdir()
    (root / "plain" / "only_plain.tsv").write_text("sample\tTCGA-AA-0001-01\nG\t1\n")
    (root / "broken").mkdir()
    (root / BAD).write_bytes(matrix[: len(matrix) * 6 // 10])  # served with its own length
    return root


class _Handler(BaseHTTPRequestHandler):
    """Serves ``<root>/<path>`` at ``/download/<path>``, with ``Range: bytes=N-`` support.

    Per-path modes (``hub.modes``) misbehave on the first request only, except
    ``ignore_range`` (always a full 200).
    """

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        hub = self.server.hub
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        rng = self.headers.get("Range")
        with hub.lock:
            hub.log.append({"path": path, "range": rng, "agent": self.headers.get("User-Agent")})
            nth = sum(1 for r in hub.log if r["path"] == path)
        mode = hub.modes.get(path.removeprefix("/download/"), "normal")
        file = hub.root / path.removeprefix("/download/")
        if hub.html is not None and path.startswith("/download/"):
            # a proxy or captive portal answering every request with a page, status 200
            body = HTML_PAGE if hub.html == "plain" else gzip.compress(HTML_PAGE)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if mode == "hold":
            hub.held.set()
            hub.release.wait(60)  # a slow server: lets a test start a rival downloader
        if not path.startswith("/download/") or not file.is_file():
            self.send_error(404)
            return
        if mode == "503_first" and nth == 1:
            self.send_error(503)
            return
        data = file.read_bytes()
        start = 0
        if rng and mode != "ignore_range":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if nth == 1 and mode in ("cut_first", "reset_first", "stall_first"):
            self.wfile.write(body[: len(body) // 2])
            if mode == "stall_first":
                time.sleep(1.5)  # longer than the client's read timeout
            if mode == "reset_first":
                # Linger 0 makes close() send a TCP RST instead of an orderly FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Hub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.log: list[dict] = []
        self.modes: dict[str, str] = {}
        self.html: str | None = None  # "plain" / "gzip": every answer is an HTML page
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.hub = self
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, dataset: str) -> str:
        return dataset_url(self.base, dataset)

    def requests(self, dataset: str) -> list[dict]:
        with self.lock:
            return [r for r in self.log if r["path"] == f"/download/{dataset}"]


@pytest.fixture
def hub(hub_root):
    h = _Hub(hub_root)
    thread = threading.Thread(target=h.server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield h
    h.release.set()
    h.server.shutdown()
    h.server.server_close()


FAST = {"backoff": 0.01, "timeout": 5, "progress": False}


def test_plain_download_then_cache_hit(hub, hub_root, tmp_path):
    dest = tmp_path / "m.gz"
    assert download(hub.url(MATRIX), dest, **FAST) == dest
    assert _sha(dest) == _sha(hub_root / MATRIX)
    assert not dest.with_name("m.gz.part").exists()
    assert len(hub.log) == 1 and hub.log[0]["range"] is None
    assert hub.log[0]["agent"] == f"mirror-genes/{__version__}"
    download(hub.url(MATRIX), dest, **FAST)
    assert len(hub.log) == 1  # cache hit: no request at all


def test_plain_text_file_is_not_gzip_checked(hub, hub_root, tmp_path):
    dest = download(hub.url(PHENO), tmp_path / "pheno", **FAST)
    assert dest.read_text() == (hub_root / PHENO).read_text()


def test_cut_connection_resumes_with_range(hub, hub_root, tmp_path):
    hub.modes[MATRIX] = "cut_first"
    dest = download(hub.url(MATRIX), tmp_path / "m.gz", **FAST)
    assert _sha(dest) == _sha(hub_root / MATRIX)
    reqs = hub.requests(MATRIX)
    assert len(reqs) == 2
    half = (hub_root / MATRIX).stat().st_size // 2
    assert reqs[0]["range"] is None
    assert reqs[1]["range"] == f"bytes={half}-"  # resumed exactly where the cut happened


def test_reset_connection_recovers(hub, hub_root, tmp_path):
    hub.modes[MATRIX] = "reset_first"
    dest = download(hub.url(MATRIX), tmp_path / "m.gz", **FAST)
    assert _sha(dest) == _sha(hub_root / MATRIX)
    assert len(hub.requests(MATRIX)) == 2


def test_read_timeout_resumes(hub, hub_root, tmp_path):
    hub.modes[MATRIX] = "stall_first"
    dest = download(hub.url(MATRIX), tmp_path / "m.gz", **{**FAST, "timeout": 0.5})
    assert _sha(dest) == _sha(hub_root / MATRIX)
    reqs = hub.requests(MATRIX)
    assert len(reqs) == 2
    assert reqs[1]["range"] == f"bytes={(hub_root / MATRIX).stat().st_size // 2}-"


def test_server_ignoring_range_restarts_from_zero(hub, hub_root, tmp_path):
    hub.modes[MATRIX] = "ignore_range"
    dest = tmp_path / "m.gz"
    # A stale part of junk: appending the 200 body to it would corrupt the file.
    dest.with_name("m.gz.part").write_bytes(b"\x00junk" * 1000)
    download(hub.url(MATRIX), dest, **FAST)
    assert _sha(dest) == _sha(hub_root / MATRIX)
    assert [r["range"] for r in hub.requests(MATRIX)] == ["bytes=5000-"]


def test_part_already_complete_416(hub, hub_root, tmp_path):
    dest = tmp_path / "m.gz"
    dest.with_name("m.gz.part").write_bytes((hub_root / MATRIX).read_bytes())
    download(hub.url(MATRIX), dest, **FAST)
    assert _sha(dest) == _sha(hub_root / MATRIX)
    assert len(hub.requests(MATRIX)) == 1


def test_part_longer_than_file_restarts(hub, hub_root, tmp_path):
    dest = tmp_path / "m.gz"
    size = (hub_root / MATRIX).stat().st_size
    dest.with_name("m.gz.part").write_bytes(b"x" * (size + 10))
    download(hub.url(MATRIX), dest, **FAST)
    assert _sha(dest) == _sha(hub_root / MATRIX)
    assert [r["range"] for r in hub.requests(MATRIX)] == [f"bytes={size + 10}-", None]


def test_server_error_is_retried(hub, hub_root, tmp_path):
    hub.modes[MATRIX] = "503_first"
    dest = download(hub.url(MATRIX), tmp_path / "m.gz", **FAST)
    assert _sha(dest) == _sha(hub_root / MATRIX)
    assert len(hub.requests(MATRIX)) == 2


def test_corrupt_gzip_is_rejected_and_cleaned(hub, tmp_path):
    dest = tmp_path / "bad.gz"
    with pytest.raises(DownloadError, match="gzip") as info:
        download(hub.url(BAD), dest, **FAST)
    msg = str(info.value)
    assert msg.startswith(hub.url(BAD)) and "\n" not in msg
    assert not dest.exists()
    assert not dest.with_name("bad.gz.part").exists()


def test_expected_size_mismatch(hub, hub_root, tmp_path):
    dest = tmp_path / "pheno"
    with pytest.raises(DownloadError, match="expected 5"):
        download(hub.url(PHENO), dest, expected_size=5, **FAST)
    assert not dest.exists() and not dest.with_name("pheno.part").exists()


def test_404_is_not_retried(hub, tmp_path):
    with pytest.raises(DownloadError, match=r"not found on the server \(HTTP 404\)") as info:
        download(hub.url("nope/missing.gz"), tmp_path / "x.gz", retries=3, **FAST)
    assert not isinstance(info.value, OfflineError)
    assert len(hub.requests("nope/missing.gz")) == 1


def test_unreachable_host_is_offline_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/download/{MATRIX}"
    with pytest.raises(OfflineError) as info:
        download(url, tmp_path / "m.gz", retries=1, **FAST)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot reach http://127.0.0.1:{port} (")
    assert "--expression" in msg and "--base-url" in msg
    assert not (tmp_path / "m.gz").exists()


def test_fetch_files_layout(hub, hub_root, tmp_path):
    paths = fetch_files(hub.base, {"expression": MATRIX, "phenotype": PHENO}, cache=tmp_path,
                        progress=False)
    host = f"127.0.0.1_{hub.server.server_address[1]}"
    assert paths == {"expression": tmp_path / host / "TCGA.BRCA.sampleMap" / "HiSeqV2.gz",
                     "phenotype": tmp_path / host / "TCGA.BRCA.sampleMap" / "BRCA_clinicalMatrix"}
    assert _sha(paths["expression"]) == _sha(hub_root / MATRIX)
    assert _sha(paths["phenotype"]) == _sha(hub_root / PHENO)
    fetch_files(hub.base, {"expression": MATRIX}, cache=tmp_path, progress=False)
    assert len(hub.log) == 2  # the second call hit the cache


def test_fetch_files_rejects_escaping_paths(tmp_path):
    with pytest.raises(DownloadError, match="not a valid dataset path"):
        fetch_files("http://127.0.0.1:1", {"x": "../etc/passwd"}, cache=tmp_path)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MIRROR_GENES_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "mirror-genes"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "mirror-genes"
    monkeypatch.setenv("MIRROR_GENES_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert all((tmp_path / p).is_dir() for p in ("home/.cache/mirror-genes", "xdg/mirror-genes",
                                                 "env", "arg"))


def test_dataset_url_forms():
    assert (dataset_url("https://tcga.xenahubs.net/", MATRIX)
            == "https://tcga.xenahubs.net/download/TCGA.BRCA.sampleMap/HiSeqV2.gz")
    toil = "https://toil-xena-hub.s3.us-east-1.amazonaws.com"
    assert (dataset_url(toil, "probeMap/gencode.v23.annotation.transcript.probemap")
            == f"{toil}/download/probeMap%2Fgencode.v23.annotation.transcript.probemap")
    assert dataset_url(toil + "//", "tcga_RSEM_gene_fpkm.gz") == \
        f"{toil}/download/tcga_RSEM_gene_fpkm.gz"


# ------------------------------------------------------------ content checks: no poisoning


def _cache_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()]


@pytest.mark.parametrize("served", ["plain", "gzip"])
def test_html_page_with_status_200_is_never_cached(hub, tmp_path, served):
    hub.html = served
    with pytest.raises(DownloadError) as info:
        fetch_files(hub.base, {"expression": MATRIX}, cache=tmp_path, progress=False)
    msg = str(info.value)
    assert msg == f"{hub.url(MATRIX)}: downloaded file looks like an HTML page, not a Xena matrix"
    assert _cache_files(tmp_path) == []  # no file, no .part, no .lock


@pytest.mark.parametrize("served", ["plain", "gzip"])
def test_cli_fetch_of_html_pages_one_line_and_empty_cache(hub, tmp_path, served):
    from typer.testing import CliRunner

    from mirror_genes.cli import app

    hub.html = served
    result = CliRunner().invoke(app, ["fetch", "-c", "brca", "--base-url", hub.base,
                                      "--cache-dir", str(tmp_path), "-q"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {hub.url(MATRIX)}: downloaded file looks like an HTML page, not a Xena matrix"]
    assert _cache_files(tmp_path) == []


@pytest.mark.parametrize("kind, text, problem", [
    ("expression", "gene\tTCGA-AA-0001-01\n", "does not look like a Xena matrix: header starts "
     "['gene', 'TCGA-AA-0001-01']"),
    ("expression", "sample\n", "does not look like a Xena matrix"),
    ("probemap", "gene\tid\n", "does not look like a Xena probemap"),
    ("phenotype", "patient\tage\n", "does not look like a Xena phenotype table: no sample-ID"),
    ("survival", "\n\n<html><body>x</body></html>", "looks like an HTML page, not a Xena "
     "survival table"),
    ("phenotype", "<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>",
     "looks like an XML document"),
    ("expression", "", "is empty, not a Xena matrix"),
])
def test_content_problem(tmp_path, kind, text, problem):
    from mirror_genes._download import content_problem

    path = tmp_path / "f"
    path.write_text(text)
    assert problem in content_problem(path, kind)
    path.write_bytes(gzip.compress(text.encode()))
    assert problem in content_problem(path, kind)


def test_content_problem_accepts_real_layouts(tmp_path, hub_root):
    from mirror_genes._download import content_problem

    assert content_problem(hub_root / MATRIX, "expression") is None
    assert content_problem(hub_root / PHENO, "phenotype") is None
    assert content_problem(hub_root / SURV, "survival") is None
    (tmp_path / "pm").write_bytes(b"\xef\xbb\xbfid\tgene\tchrom\tchromStart\tchromEnd\tstrand\n")
    assert content_problem(tmp_path / "pm", "probemap") is None  # a BOM is fine


def test_poisoned_cache_names_the_refresh_command_then_refresh_fixes_it(hub, hub_root,
                                                                        tmp_path):
    from typer.testing import CliRunner

    from mirror_genes.cli import app

    runner = CliRunner()
    host = f"127.0.0.1_{hub.server.server_address[1]}"
    cached = tmp_path / host / "TCGA.BRCA.sampleMap" / "HiSeqV2.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(gzip.compress(HTML_PAGE))  # left by an older version
    args = ["fetch", "-c", "brca", "--base-url", hub.base, "--cache-dir", str(tmp_path), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {cached}: cached file looks like an HTML page, not a Xena matrix; download it "
        f"again with: mirror-genes fetch --cohort brca --base-url {hub.base} --cache-dir "
        f"{tmp_path} --refresh"]
    assert hub.requests(MATRIX) == []
    result = runner.invoke(app, [*args, "--refresh"])
    assert result.exit_code == 0, result.stderr
    assert _sha(cached) == _sha(hub_root / MATRIX)
    assert len(hub.requests(MATRIX)) == 1


def test_refresh_downloads_again_and_keeps_the_old_copy_on_failure(hub, hub_root, tmp_path):
    dest = tmp_path / "m.gz"
    download(hub.url(MATRIX), dest, kind="expression", **FAST)
    download(hub.url(MATRIX), dest, kind="expression", refresh=True, **FAST)
    assert len(hub.requests(MATRIX)) == 2
    hub.html = "plain"
    with pytest.raises(DownloadError, match="HTML page"):
        download(hub.url(MATRIX), dest, kind="expression", refresh=True, **FAST)
    assert _sha(dest) == _sha(hub_root / MATRIX)


def test_gz_name_falls_back_to_the_plain_twin(hub, tmp_path):
    from mirror_genes._fetch import _fetch_one

    local = _fetch_one(hub.base, "expression", "plain/only_plain.tsv.gz", tmp_path,
                       refresh=False, progress=False)
    assert local.name == "only_plain.tsv" and local.read_text().startswith("sample\t")
    with pytest.raises(DownloadError, match=r"missing\.gz: not found on the server \(HTTP 404\)"):
        _fetch_one(hub.base, "expression", "nope/missing.gz", tmp_path, refresh=False,
                   progress=False)


_RIVAL = """
import sys
from pathlib import Path
from mirror_genes._download import download
print("ready", flush=True)
download(sys.argv[1], Path(sys.argv[2]), kind="expression", progress=False, timeout=60)
"""


def test_two_processes_fetching_one_file_share_it(hub, hub_root, tmp_path):
    """The second process waits on the lock while the first downloads, then finds the file:
    one request, an intact file, no leftovers."""
    import subprocess
    import sys

    hub.modes[MATRIX] = "hold"
    dest = tmp_path / "cache" / "HiSeqV2.gz"
    cmd = [sys.executable, "-c", _RIVAL, hub.url(MATRIX), str(dest)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        assert hub.held.wait(60), "first downloader never reached the server"
        second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert second.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # unlocked, the second would send its own request within this
        assert len(hub.requests(MATRIX)) == 1
    finally:
        hub.release.set()
        outs = [p.communicate(timeout=120) for p in (first, second) if p is not None]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    assert len(hub.requests(MATRIX)) == 1
    assert _sha(dest) == _sha(hub_root / MATRIX)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["HiSeqV2.gz"]


def test_lock_file_is_removed_and_reusable(tmp_path):
    from mirror_genes.utils import file_lock

    target = tmp_path / "x"
    for _ in range(2):
        with file_lock(target):
            assert (tmp_path / "x.lock").exists()
        assert not (tmp_path / "x.lock").exists()


# ----------------------------------------------------- the synthetic folder as a mirror


def test_synthetic_folder_served_as_a_mirror(tmp_path):
    """``synthetic --out <dir>/download`` + a plain http.server on ``<dir>`` is a --base-url
    mirror: fetch and ingest go through the download cache."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    import anndata as ad
    from typer.testing import CliRunner

    from mirror_genes.cli import app

    runner = CliRunner()
    mirror = tmp_path / "mirror"
    result = runner.invoke(app, ["synthetic", "-o", str(mirror / "download"), "--n-patients",
                                 "60", "--n-genes", "200"])
    assert result.exit_code == 0, result.stderr

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        cache = tmp_path / "cache"
        result = runner.invoke(app, ["fetch", "-c", "brca", "--base-url", base,
                                     "--cache-dir", str(cache), "-q"])
        assert result.exit_code == 0, result.stderr
        roles = [line.split("\t")[0] for line in result.stdout.splitlines()]
        assert roles == ["expression", "phenotype", "survival"]
        out = tmp_path / "brca.h5ad"
        result = runner.invoke(app, ["ingest", "-c", "brca", "--base-url", base,
                                     "--cache-dir", str(cache), "-o", str(out), "-q"])
        assert result.exit_code == 0, result.stderr
        assert set(ad.read_h5ad(out).obs["label"]) == {"IDC", "ILC"}
    finally:
        server.shutdown()
        server.server_close()
