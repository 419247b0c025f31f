"""mirror_model.report: one self-contained HTML file from a run / benchmark folder."""

import base64
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mirror_genes.utils import OutputPathError
from mirror_model import constants as C
from mirror_model import eval as ev
from mirror_model import pl
from mirror_model._errors import RunDirError
from mirror_model.report import REPORT_HTML, write_report
from mirror_model.report._html import _markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
COMMAND = "mirror-model pretrain --slides feats/ --rna brca.h5ad --out run/"


class PageParser(HTMLParser):
    """Collects images, links, scripts, every URL-valued attribute and the tables' shapes."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.urls, self.tags = [], [], [], []
        self.tables, self._table = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href", "action", "data") and v]
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "a":
            self.links.append(attrs.get("href", ""))
        elif tag == "table":
            self._table = {"th": 0, "body_rows": 0, "in_body": False}
        elif tag == "th" and self._table is not None:
            self._table["th"] += 1
        elif tag == "tbody" and self._table is not None:
            self._table["in_body"] = True
        elif tag == "tr" and self._table is not None and self._table["in_body"]:
            self._table["body_rows"] += 1

    def handle_endtag(self, tag):
        if tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table = None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    n = 48
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 5)).astype(np.float32)
    X[:, 0] += 2.5 * y
    pats = np.array([f"TCGA-AA-{i:04d}" for i in range(n)])
    time = rng.exponential(100 * np.exp(-X[:, 1])) + 1
    event = (rng.random(n) < 0.7).astype(int)
    order = rng.permutation(n)
    folds = [(sorted(pats[np.setdiff1d(order, p)]), sorted(pats[p])) for p in np.array_split(order, 3)]
    result = ev.combine_results(
        ev.linear_probe(X, pats, folds, labels=np.array(["IDC", "ILC"])[y], epochs=4),
        ev.linear_probe(X, pats, folds, time=time, event=event, epochs=4))
    ev.write_results(result, root / "eval")
    epochs = np.arange(1, 7)
    pd.DataFrame({"epoch": epochs, C.LOSS: 3 / epochs, C.LOSS_ALIGN: 2 / epochs, C.LOSS_STYLE: 0.1 * epochs,
                  "lr": 2e-5}).to_csv(root / C.METRICS_CSV, index=False)
    pl.training_curves(root / C.METRICS_CSV, save=root / "figures" / "curves.png")
    (root / C.RUN_CONFIG).write_text(json.dumps({"model": {"dim": 768}, "train": {"lr": 2e-5, "epochs": 6}}))
    (root / C.RUN_MANIFEST).write_text(json.dumps({
        "kind": "mirror-model-run", "status": "finished", "command": COMMAND,
        "data": {"rna": {"name": "brca.h5ad", "sha256": "ab" * 32}, "slides": {"n_files": 12, "sha256": "cd" * 32}},
        "versions": {"python": "3.11.2", "torch": "2.13.0"}}))
    (root / "commands.txt").write_text("mirror-model evaluate run/ --out run/eval\n")
    (root / C.PAIRING_REPORT).write_text(json.dumps({"counts": {"slides": n}, "split": None,
                                                     "matched": {"patients": list(pats)}}))
    pd.DataFrame({"i": range(300)}).to_csv(root / "eval" / "long.csv", index=False)
    (root / "checkpoint_last.pt").write_bytes(b"\0" * 100)
    (root / ".hidden.csv").write_text("a\n1\n")
    return root, len(result.predictions)


@pytest.fixture(scope="module")
def page(run_dir):
    path = write_report(run_dir[0])
    return path, path.read_text(encoding="utf-8")


def test_report_is_one_self_contained_file(page):
    path, text = page
    parser = PageParser()
    parser.feed(text)
    assert path.name == REPORT_HTML
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    for url in parser.urls:                  # nothing is loaded from a server
        assert not re.match(r"^(https?:|//|ftp:|file:)", url, flags=re.I), url
    # the saved figure; drawn from the tables: training curves, accuracy / macro_f1 / auc /
    # c_index bars, Kaplan-Meier of the survival run
    assert len(parser.images) == 7
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
    assert parser.tables and all(t["th"] >= 1 and t["body_rows"] >= 1 for t in parser.tables)
    assert "default-src 'none'" in text      # the page forbids every network load


def test_report_holds_commands_versions_fingerprints_and_tables(page, run_dir):
    _, text = page
    root, n_predictions = run_dir
    assert "mirror-model evaluate run/ --out run/eval" in text and COMMAND in text
    assert "ab" * 32 in text and "cd" * 32 in text and "2.13.0" in text
    assert f"predictions.csv</a>: {n_predictions} rows" in text
    assert 'href="eval/predictions.csv"' in text
    assert "<h4>Table I</h4>" in text and "Evaluation summary" in text     # summary.md rendered
    assert "first 200 of 300 rows" in text and 'href="eval/long.csv"' in text
    assert "checkpoint_last.pt (100 B)" in text
    assert ".hidden" not in text and "report.html" not in text
    assert "TCGA-AA-0000" in text and "(48 items)" in text                 # pairing lists cut


def test_report_is_deterministic_and_replaces_itself(run_dir, tmp_path):
    root, _ = run_dir
    out = tmp_path / "r.html"
    first = write_report(root, out=out, title="BRCA run").read_text()
    second = write_report(root, out=out, title="BRCA run").read_text()
    stamp = re.compile(r"report written \S+")
    assert stamp.sub("", first) == stamp.sub("", second)
    assert "<title>BRCA run</title>" in first


def test_report_refuses_bad_folders_and_outputs(run_dir, tmp_path):
    root, _ = run_dir
    with pytest.raises(RunDirError, match="not a folder"):
        write_report(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="nothing to report"):
        write_report(tmp_path / "empty")
    before = (root / "eval" / "summary.md").read_bytes()
    with pytest.raises(OutputPathError, match=r"\.html"):
        write_report(root, out=root / "eval" / "summary.md")
    assert (root / "eval" / "summary.md").read_bytes() == before
    (root / "sub.html").mkdir()
    try:
        with pytest.raises(OutputPathError, match="directory"):
            write_report(root, out=root / "sub.html")
    finally:
        (root / "sub.html").rmdir()


def test_markdown_subset():
    out = _markdown("# T\n\ntext with `code` and [a link](https://x.org)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
                    "\n```\nx < y\n```\n- one\n- two\n")
    assert "<h3>T</h3>" in out and "<code>code</code>" in out and "a link" in out and "https" not in out
    assert "<th>a</th>" in out and "<td>1</td>" in out and "<pre>x &lt; y</pre>" in out
    assert out.count("<ul>") == 1 and out.count("<li>") == 2


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (headless render check)")
def test_report_renders_in_headless_chromium(page, tmp_path):
    from PIL import Image

    path, _ = page
    shot = tmp_path / "shot.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
           f"--screenshot={shot}", "--window-size=1280,2000", path.resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape == (2000, 1280)
    assert (image < 200).mean() > 0.01 and image.std() > 10      # text, tables and figures, not a blank page
