"""Options and output paths are checked before any work; outputs follow the umask; one
overwrite policy (--force, never an input) for every command."""

from __future__ import annotations

import os
import stat

import anndata as ad
import pytest
from typer.testing import CliRunner

from mirror_genes.cli import app
from mirror_genes.datasets import synthetic_cohort
from mirror_genes.utils import OutputPathError, atomic_path, check_output

runner = CliRunner()
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


@pytest.fixture(scope="module")
def brca(tmp_path_factory):
    return synthetic_cohort(tmp_path_factory.mktemp("syn"), cohort="brca", n_patients=120,
                            n_genes=200)


@pytest.fixture(scope="module")
def h5ad(brca, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingested") / "brca.h5ad"
    result = runner.invoke(app, ingest_args(brca, out))
    assert result.exit_code == 0, result.output
    return out


def ingest_args(syn, out, *extra):
    args = ["ingest", "-c", "brca", "-o", str(out), "-q", *extra]
    for flag, paths in (("-e", syn.expression), ("-p", syn.phenotype), ("-s", syn.survival)):
        for p in paths:
            args += [flag, str(p)]
    return args


def error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0].removeprefix("error: ")


# ---------------------------------------------------------------------------- umask


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_file_and_folder_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    with atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    with atomic_path(tmp_path / "d", is_dir=True) as tmp:
        (tmp / "inner.txt").write_text("y")
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "d" / "inner.txt").stat().st_mode) == 0o666 & ~mask


def test_ingest_output_is_group_readable(brca, tmp_path, umask):
    umask(0o027)
    out = tmp_path / "x.h5ad"
    assert runner.invoke(app, ingest_args(brca, out)).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


# ---------------------------------------------------------------------- check_output


def test_check_output_rules(tmp_path):
    src = tmp_path / "in.tsv"
    src.write_text("x")
    assert check_output(tmp_path / "new" / "out.h5ad", inputs=[src]) == tmp_path / "new" / "out.h5ad"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    cases = [
        (dict(path=src, inputs=[src], force=True), "is also an input file"),
        (dict(path=src), "already exists (use --force to replace it)"),
        (dict(path=tmp_path), "is a directory; give a file name"),
        (dict(path=src / "out.h5ad"), f"cannot be created: {src} is a file, not a folder"),
        (dict(path=src, kind="dir"), "is a file, expected an output folder"),
        (dict(path=tmp_path, kind="dir"), "output folder is not empty"),
        (dict(path=tmp_path, kind="dir", inputs=[src], force=True), "holds the input file"),
    ]
    for kwargs, message in cases:
        with pytest.raises(OutputPathError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_output(**kwargs)
    assert check_output(src, force=True) == src
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output(empty, kind="dir") == empty


def test_check_output_same_file_through_a_link(tmp_path):
    src = tmp_path / "in.tsv"
    src.write_text("x")
    (tmp_path / "link.tsv").symlink_to(src)
    with pytest.raises(OutputPathError, match="is also an input file"):
        check_output(tmp_path / "link.tsv", inputs=[src], force=True)


@pytest.mark.skipif(ROOT, reason="root writes through permission bits")
def test_check_output_unwritable_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputPathError, match=r"cannot write in .*locked \(Permission denied\)"):
            check_output(locked / "out.h5ad")
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(not ROOT, reason="needs root to run as an unprivileged user")
def test_unwritable_output_folder_as_nobody():
    """Root ignores permission bits, so run the real CLI as 'nobody' (uid 65534)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    top = tempfile.mkdtemp(prefix="mirror-perm-", dir="/tmp")  # pytest's tmp is root-only
    try:
        os.chmod(top, 0o755)
        locked = os.path.join(top, "locked")
        os.mkdir(locked, 0o555)
        os.chmod(locked, 0o555)

        def demote():
            os.setgid(65534)
            os.setuid(65534)

        result = subprocess.run(
            [sys.executable, "-c", "from mirror_genes.cli import main; main()", "ingest", "-c",
             "brca", "-e", os.path.join(top, "x.gz"), "-p", os.path.join(top, "p.tsv"),
             "-o", os.path.join(locked, "x.h5ad")],
            preexec_fn=demote, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {locked}/x.h5ad: cannot write in {locked} (Permission denied)"]


# --------------------------------------------------------------- ingest overwrite policy


def test_ingest_refuses_to_overwrite_without_force(brca, tmp_path):
    out = tmp_path / "x.h5ad"
    out.write_bytes(b"keep me")
    result = runner.invoke(app, ingest_args(brca, out))
    assert result.exit_code == 1
    assert error_line(result) == f"{out}: already exists (use --force to replace it)"
    assert out.read_bytes() == b"keep me"
    result = runner.invoke(app, ingest_args(brca, out, "--force"))
    assert result.exit_code == 0, result.stderr
    assert ad.read_h5ad(out).n_obs > 0


def test_ingest_never_overwrites_its_input(brca, tmp_path):
    before = brca.phenotype[0].read_bytes()
    result = runner.invoke(app, ingest_args(brca, brca.phenotype[0], "--force"))
    assert result.exit_code == 1
    assert error_line(result) == f"{brca.phenotype[0]}: is also an input file; choose another output"
    assert brca.phenotype[0].read_bytes() == before


def test_output_checked_before_reading_inputs(brca, tmp_path):
    """A bad output path is reported even when an input is broken too: it is checked first."""
    bad = tmp_path / "bad.tsv"
    bad.write_text("gene\tx\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["ingest", "-c", "brca", "-o", str(blocker / "x.h5ad"), "-e", str(bad),
            "-p", str(brca.phenotype[0])]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert error_line(result).endswith(f"cannot be created: {blocker} is a file, not a folder")


@pytest.mark.parametrize("where", ["directory", "under_file"])
def test_ingest_bad_output_paths(brca, tmp_path, where):
    if where == "directory":
        out, message = tmp_path, "is a directory; give a file name for the output"
    else:
        (tmp_path / "f").write_text("")
        out, message = tmp_path / "f" / "x.h5ad", "cannot be created"
    result = runner.invoke(app, ingest_args(brca, out))
    assert result.exit_code == 1 and message in error_line(result)


def test_cache_dir_that_is_a_file(tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("")
    result = runner.invoke(app, ["fetch", "-c", "brca", "--cache-dir", str(cache), "-q",
                                 "--base-url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert error_line(result) == f"{cache}: cache folder is a file, not a folder"


# ------------------------------------------------------------------------ select options


@pytest.mark.parametrize("args, message", [
    (["--folds", "0"], "--folds must be >= 2 outer folds, or 1 for one selection on all "
                       "samples without held-out evaluation; got 0"),
    (["--folds", "-3"], "got -3"),
    (["--step", "0"], "--step must be > 0 and < 1"),
    (["--step", "1.5"], "got 1.5"),
    (["--inner-cv", "1"], "--inner-cv must be >= 2 (inner RFE-CV folds); got 1"),
    (["--min-frequency", "0"], "--min-frequency must be > 0 and <= 1"),
    (["--max-missing", "2"], "--max-missing must be >= 0 and <= 1"),
    (["--scoring", "auc"], "--scoring must be one of accuracy, balanced_accuracy, f1_macro"),
    (["--engine", "gpu"], "--engine must be one of fast, sklearn"),
    (["--formats", "xlsx"], "--formats must be one of h5ad, csv, parquet; got 'xlsx'"),
    (["--tiers", "one"], "--tiers must be integers like 1,2; got 'one'"),
    (["--cohort", "brca"], "--input cannot be combined with --cohort"),
    (["-e", "x.gz", "-p", "y"], "--input cannot be combined with --expression, --phenotype"),
])
def test_select_rejects_bad_options_before_work(h5ad, tmp_path, args, message):
    out = tmp_path / "sel"
    result = runner.invoke(app, ["select", "--input", str(h5ad), "-o", str(out), "-q", *args])
    assert result.exit_code == 2, result.stderr
    assert message in error_line(result)
    assert not out.exists()


def test_folds_must_agree_with_splits(h5ad, tmp_path):
    from mirror_genes.splits import write_splits

    write_splits([(["TCGA-AA-0001"], ["TCGA-AA-0002"])] * 2, tmp_path / "splits")
    args = ["select", "--input", str(h5ad), "-o", str(tmp_path / "s"), "-q",
            "--splits", str(tmp_path / "splits")]
    result = runner.invoke(app, [*args, "--folds", "3"])
    assert result.exit_code == 2
    assert error_line(result) == (f"--folds 3 does not match the 2 folds in --splits "
                                  f"{tmp_path / 'splits'}; drop --folds or make them agree")


def test_select_needs_cohort_or_input(tmp_path):
    result = runner.invoke(app, ["select", "-o", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert error_line(result).startswith("Missing option '--cohort'")


def test_ingest_download_options_with_files(brca, tmp_path):
    result = runner.invoke(app, ingest_args(brca, tmp_path / "x.h5ad", "--base-url", "http://h"))
    assert result.exit_code == 2
    assert error_line(result) == ("--base-url applies only when downloading, not with "
                                  "--expression/--phenotype/--survival")


def test_select_folds_1_runs_once_on_all_samples(h5ad, tmp_path):
    out = tmp_path / "sel"
    result = runner.invoke(app, ["select", "--input", str(h5ad), "-o", str(out), "-q",
                                 "--folds", "1", "--inner-cv", "3", "--formats", "csv"])
    assert result.exit_code == 0, result.stderr
    assert (out / "consensus" / "panel.json").is_file()
    assert not list(out.glob("fold_*")) and not (out / "metrics.tsv").exists()


def test_select_output_holding_its_input(h5ad, tmp_path):
    result = runner.invoke(app, ["select", "--input", str(h5ad), "-o", str(h5ad.parent), "-q",
                                 "--force"])
    assert result.exit_code == 1
    assert "holds the input file" in error_line(result)
    assert h5ad.is_file()


def test_inner_cv_error_names_inner_and_the_option(h5ad, tmp_path):
    result = runner.invoke(app, ["select", "--input", str(h5ad), "-o", str(tmp_path / "s"),
                                 "-q", "--folds", "2", "--inner-cv", "40"])
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith("inner RFE-CV: 40 inner folds") and line.endswith("lower --inner-cv")


# ------------------------------------------------------------------------ export-panel


@pytest.fixture
def two_sets(tmp_path):
    gmt = tmp_path / "two.gmt"
    gmt.write_text("setA\tdesc\tTP53\tEGFR\nsetB\tdesc\tKRAS\n")
    return gmt


def test_export_panel_speaks_cli_words(two_sets, tmp_path):
    result = runner.invoke(app, ["export-panel", str(two_sets), str(tmp_path / "p.json")])
    assert result.exit_code == 1
    assert error_line(result).endswith("pass --set-name to pick one")
    result = runner.invoke(app, ["export-panel", str(two_sets), str(tmp_path / "p.txt")])
    assert result.exit_code == 2
    assert error_line(result).endswith("use .gmt, .tsv or .json, or pass --format")
    assert "=" not in result.stderr


def test_export_panel_set_name_and_force(two_sets, tmp_path):
    dst = tmp_path / "p.tsv"
    args = ["export-panel", str(two_sets), str(dst), "--set-name", "setB"]
    assert runner.invoke(app, args).exit_code == 0
    assert "KRAS" in dst.read_text() and "TP53" not in dst.read_text()
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "already exists (use --force" in error_line(result)
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    result = runner.invoke(app, ["export-panel", str(two_sets), str(two_sets), "--force",
                                 "--set-name", "setA"])
    assert result.exit_code == 1 and "is also an input file" in error_line(result)


# ------------------------------------------------------------------------ synthetic


def test_synthetic_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    result = runner.invoke(app, ["synthetic", "-o", str(tmp_path), "--n-patients", "60",
                                 "--n-genes", "200"])
    assert result.exit_code == 1
    assert error_line(result) == (f"{tmp_path}: output folder is not empty "
                                  "(use --force to write into it anyway)")


def test_synthetic_sizes_name_the_options(tmp_path):
    result = runner.invoke(app, ["synthetic", "-o", str(tmp_path / "s"), "--n-patients", "3"])
    assert result.exit_code == 2
    assert error_line(result).startswith("--n-patients must be at least")
