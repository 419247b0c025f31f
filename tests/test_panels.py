"""Gene panels: the Panel record, GMT/TSV/JSON files, and applying a panel to other AnnData."""

from __future__ import annotations

import json
import os
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from mirror_genes import panels
from mirror_genes._errors import InputFileError, PanelError
from mirror_genes.panels import Panel, convert, load, save
from mirror_genes.pp._panel import apply_panel

SYMBOLS = ("TP53", "ERBB2", "CDH1", "GATA3", "PIK3CA")


@pytest.fixture
def symbol_panel():
    return Panel("brca_refined", SYMBOLS, weights=(0.5, 1.25, -2.0, 1e-7, 3.0),
                 provenance={"cohort": "brca", "inputs": [{"name": "HiSeqV2.gz", "sha256": "ab" * 32}],
                             "params": {"step": 0.05, "cv": 5},
                             "cv_curve": {"n_features": np.array([10, 5]), "score": [0.8, 0.85]}})


@pytest.fixture
def transcript_panel():
    return Panel("nsclc_toil",
                 ("ENST00000269305.8", "ENST00000445888.6", "ENST00000275493.6", "ENST00000999999.1"),
                 ("TP53", "TP53", "EGFR", ""),
                 provenance={"params": {"cohort": "nsclc"}})


def _adata(var_names, symbols=None, **columns):
    var = pd.DataFrame(index=pd.Index(var_names))
    if symbols is not None:
        var["gene_symbol"] = symbols
    for key, values in columns.items():
        var[key] = values
    x = np.arange(2 * len(var_names), dtype=np.float32).reshape(2, len(var_names))
    return ad.AnnData(x, obs=pd.DataFrame(index=["s1", "s2"]), var=var)


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------------------------------------
# the Panel record

def test_panel_defaults_and_plain_provenance(symbol_panel):
    p = Panel("p", ["A", "B"])
    assert p.features == ("A", "B") and p.gene_symbols == ("A", "B") and p.weights == (1.0, 1.0)
    assert p.provenance == {} and len(p) == 2 and hash(p) == hash(Panel("p", ("A", "B")))
    assert symbol_panel.provenance["cv_curve"]["n_features"] == [10, 5]
    json.dumps(symbol_panel.provenance)  # plain JSON types only
    assert symbol_panel.description == "mirror-genes:brca"


@pytest.mark.parametrize("kwargs, problem", [
    ({"name": "has space", "features": ("A",)}, "whitespace"),
    ({"name": "", "features": ("A",)}, "non-empty"),
    ({"name": "p", "features": ()}, "no features"),
    ({"name": "p", "features": ("A", "A")}, "twice"),
    ({"name": "p", "features": ("A", "B"), "gene_symbols": ("A",)}, "1 gene symbols for 2"),
    ({"name": "p", "features": ("A",), "weights": (float("nan"),)}, "finite"),
    ({"name": "p", "features": ("A",), "weights": ("heavy",)}, "numbers"),
    ({"name": "p", "features": ("A",), "provenance": {"x": object()}}, "plain JSON"),
])
def test_panel_validation(kwargs, problem):
    with pytest.raises(PanelError, match=problem):
        Panel(**kwargs)


# ------------------------------------------------------------------------------------------
# files

def test_json_round_trip_keeps_everything(tmp_path, symbol_panel):
    path = save(symbol_panel, tmp_path / "sub" / "panel.json")
    back = load(path)
    assert back == symbol_panel
    assert back.provenance["inputs"][0]["sha256"] == "ab" * 32
    assert back.weights == (0.5, 1.25, -2.0, 1e-7, 3.0)
    assert json.loads(path.read_text())["format"] == "mirror-genes-panel"


def test_tsv_round_trip_keeps_features_symbols_weights(tmp_path, symbol_panel, transcript_panel):
    for panel in (symbol_panel, transcript_panel):
        back = load(save(panel, tmp_path / f"{panel.name}.tsv"))
        assert (back.name, back.features, back.gene_symbols, back.weights) == (
            panel.name, panel.features, panel.gene_symbols, panel.weights)
        assert back.provenance["format"] == "tsv" and "lost" in back.provenance["note"]
    net = pd.read_csv(tmp_path / "brca_refined.tsv", sep="\t")
    assert list(net.columns) == ["source", "target", "weight", "gene_symbol"]
    assert net["target"].tolist() == list(SYMBOLS) and set(net["source"]) == {"brca_refined"}


def test_tsv_without_optional_columns(tmp_path):
    path = tmp_path / "net.tsv"
    path.write_text("source\ttarget\nP\tTP53\nP\tEGFR\n")
    p = load(path)
    assert p.features == ("TP53", "EGFR") and p.gene_symbols == p.features and p.weights == (1.0, 1.0)


def test_gmt_round_trip_and_exact_line(tmp_path):
    panel = Panel("brca_refined", SYMBOLS, provenance={"cohort": "brca"})
    path = save(panel, tmp_path / "panel.gmt")
    assert path.read_text() == "brca_refined\tmirror-genes:brca\t" + "\t".join(SYMBOLS) + "\n"
    back = load(path)
    assert back.name == panel.name and back.features == SYMBOLS and back.weights == (1.0,) * 5
    assert back.provenance["description"] == "mirror-genes:brca"
    assert back.provenance["loaded_from"]["sha256"]


def test_gmt_is_lossy_and_says_so(tmp_path, symbol_panel, transcript_panel):
    with pytest.warns(UserWarning, match="weights dropped"):
        save(symbol_panel, tmp_path / "w.gmt")
    with pytest.warns(UserWarning, match="4 features -> 3 gene symbols"):
        save(transcript_panel, tmp_path / "t.gmt")
    # symbols deduplicated in panel order; the symbol-less transcript keeps its ID
    assert (tmp_path / "t.gmt").read_text().split("\t")[1:] == [
        "mirror-genes:nsclc", "TP53", "EGFR", "ENST00000999999.1\n"]


def test_gmt_readable_by_gseapy(tmp_path, symbol_panel, transcript_panel):
    import gseapy  # a test extra: the real reader, never skipped

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save(symbol_panel, tmp_path / "a.gmt")
        save(transcript_panel, tmp_path / "b.gmt")
    assert gseapy.read_gmt(str(tmp_path / "a.gmt")) == {"brca_refined": list(SYMBOLS)}
    assert gseapy.read_gmt(str(tmp_path / "b.gmt")) == {
        "nsclc_toil": ["TP53", "EGFR", "ENST00000999999.1"]}


def test_gmt_readable_by_decoupler(tmp_path, symbol_panel):
    import decoupler as dc  # a test extra: the real reader, never skipped

    reader = getattr(getattr(dc, "pp", None), "read_gmt", None) or dc.read_gmt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save(symbol_panel, tmp_path / "a.gmt")
    net = reader(str(tmp_path / "a.gmt"))
    assert net["source"].tolist() == ["brca_refined"] * 5
    assert net["target"].tolist() == list(SYMBOLS)


def _validate_gmt(text):
    """The GMT format as gene-set tools read it (MSigDB definition), checked strictly."""
    assert text.endswith("\n") and "\r" not in text
    names = set()
    for line in text.splitlines():
        fields = line.split("\t")
        assert len(fields) >= 3, "name, description and at least one gene"
        assert all(f and f == f.strip() and not any(c.isspace() for c in f) for f in fields)
        assert fields[0] not in names
        names.add(fields[0])
        genes = fields[2:]
        assert len(genes) == len(set(genes))
        # whitespace-splitting readers (decoupler) see the same fields as tab-splitting ones
        assert line.split() == fields
    return names


def test_gmt_format_is_valid_without_optional_readers(tmp_path, symbol_panel, transcript_panel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for panel in (symbol_panel, transcript_panel, Panel("p", ("A",), provenance={"description": "a b"})):
            path = save(panel, tmp_path / f"{panel.name}.gmt")
            assert _validate_gmt(path.read_text(encoding="utf-8")) == {panel.name}


def test_gmt_description_never_holds_whitespace(tmp_path):
    p = Panel("p", ("A", "B"), provenance={"description": "refined genes for BRCA"})
    save(p, tmp_path / "p.gmt")
    line = (tmp_path / "p.gmt").read_text()
    assert line == "p\trefined_genes_for_BRCA\tA\tB\n"
    # whitespace-splitting readers (decoupler) see the same fields as tab-splitting ones
    assert line.split() == line.rstrip("\n").split("\t")


def test_format_choice(tmp_path, symbol_panel):
    with pytest.raises(PanelError, match="suffix '.txt'"):
        save(symbol_panel, tmp_path / "p.txt")
    with pytest.raises(PanelError, match="unknown panel format"):
        save(symbol_panel, tmp_path / "p.json", format="xml")
    save(symbol_panel, tmp_path / "p.txt", format="json")
    assert load(tmp_path / "p.txt") == symbol_panel  # content sniffed for other suffixes
    assert not (tmp_path / "p.json").exists()


def test_convert_between_formats(tmp_path, symbol_panel):
    src = save(symbol_panel, tmp_path / "p.json")
    convert(src, tmp_path / "p.tsv")
    back = load(convert(tmp_path / "p.tsv", tmp_path / "q.json"))
    assert back.features == symbol_panel.features and back.weights == symbol_panel.weights
    assert back.provenance["format"] == "tsv"  # TSV carried no provenance
    with pytest.warns(UserWarning, match="weights dropped"):
        convert(src, tmp_path / "p.gmt")
    assert load(tmp_path / "p.gmt").features == SYMBOLS


def test_multi_set_files_need_set_name(tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("A\thttp://x\tTP53\tEGFR\nB\tdesc\tCDH1\n")
    with pytest.raises(PanelError, match="holds 2 gene sets .*set_name"):
        load(gmt)
    assert load(gmt, set_name="B").features == ("CDH1",)
    tsv = tmp_path / "net.tsv"
    tsv.write_text("source\ttarget\tweight\nA\tTP53\t1\nB\tEGFR\t-1\n")
    assert load(tsv, set_name="B").weights == (-1.0,)
    with pytest.raises(PanelError, match="no source named 'C'"):
        load(tsv, set_name="C")


@pytest.mark.parametrize("name, content, error, problem", [
    ("p.gmt", "onlyname\tdesc\n", PanelError, "line 1"),
    ("p.gmt", "a\tb\tTP53\na\tb\tEGFR\n", PanelError, "twice"),
    ("p.tsv", "source\tgene\nP\tTP53\n", PanelError, "missing column"),
    ("p.tsv", "source\ttarget\tweight\nP\tTP53\theavy\n", PanelError, "not a number"),
    ("p.tsv", "source\ttarget\nP\tTP53\nP\tTP53\n", PanelError, "twice"),
    ("p.json", "{not json", PanelError, "invalid JSON"),
    ("p.json", '{"name": "x"}', PanelError, "not a mirror-genes panel"),
    ("p.json", '{"format": "mirror-genes-panel", "format_version": 99, "name": "x", "features": ["A"]}',
     PanelError, "newer"),
    ("p.json", '{"format": "mirror-genes-panel", "format_version": 1, "name": "x", "features": ["A"],'
     ' "weights": [1, 2]}', PanelError, "2 weights for 1"),
    ("p.json", "", InputFileError, "empty"),
    ("p.gmt", "  \n", InputFileError, "empty"),
])
def test_bad_panel_files(tmp_path, name, content, error, problem):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(error, match=problem) as err:
        load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_missing_path_and_unknown_name(tmp_path, monkeypatch):
    with pytest.raises(InputFileError, match="no such file"):
        load(tmp_path / "absent.json")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PanelError, match=r"panel 'nope' not found: no file .*nope'.* no packaged "
                                         r"panel .*data/nope\.json.*packaged panels: none"):
        load("nope")


def test_load_packaged_panel_by_name(tmp_path, monkeypatch, symbol_panel):
    data = tmp_path / "data"
    save(symbol_panel, data / "brca_refined.json")
    monkeypatch.setattr("mirror_genes.panels._panel.packaged_panel_dir", lambda: data)
    monkeypatch.chdir(tmp_path)
    assert panels.packaged_panels() == ["brca_refined"]
    assert load("brca_refined") == symbol_panel


def test_no_panels_shipped_yet():
    assert panels.packaged_panels() == []


@pytest.mark.parametrize("fmt", ["json", "tsv", "gmt"])
def test_failed_write_leaves_no_file(tmp_path, monkeypatch, fmt):
    panel = Panel("p", ("A", "B"))
    target = tmp_path / f"p.{fmt}"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save(panel, target)
    assert not target.exists() and _no_temp_files(tmp_path)
    monkeypatch.undo()
    save(panel, target)
    old = target.read_text()
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save(Panel("q", ("C",)), target)
    assert target.read_text() == old and _no_temp_files(tmp_path)


# ------------------------------------------------------------------------------------------
# apply_panel

def test_apply_by_symbol_keeps_panel_order_and_reports_missing(symbol_panel):
    a = _adata(["ACTB", "PIK3CA", "TP53", "CDH1", "GAPDH"], ["ACTB", "PIK3CA", "TP53", "CDH1", "GAPDH"])
    with pytest.warns(UserWarning, match=r"2 of 5 panel features of 'brca_refined' not found in adata "
                                         r"\(match='var_names'\): ERBB2, GATA3$") as rec:
        out = apply_panel(a, symbol_panel)
    assert len(rec) == 1
    assert list(out.var_names) == ["TP53", "CDH1", "PIK3CA"]
    np.testing.assert_array_equal(out.X, a[:, ["TP53", "CDH1", "PIK3CA"]].X)
    u = out.uns["panel"]
    assert (u["name"], u["n_requested"], u["n_found"], u["missing"]) == ("brca_refined", 5, 3, ["ERBB2", "GATA3"])
    assert u["params"]["match"] == "auto" and u["params"]["inplace"] is False
    assert json.loads(u["provenance_json"])["cohort"] == "brca"
    assert "panel" not in a.uns and a.n_vars == 5  # input untouched


def test_apply_warning_lists_first_few_only():
    panel = Panel("big", tuple(f"G{i}" for i in range(20)))
    a = _adata(["G0", "G1"], ["G0", "G1"])
    with pytest.warns(UserWarning, match=r"18 of 20 .*: G2, G3, G4, G5, G6 and 13 more$"):
        apply_panel(a, panel)


def test_apply_transcript_panel_to_symbol_data(transcript_panel):
    a = _adata(["EGFR", "ACTB", "TP53"], ["EGFR", "ACTB", "TP53"])
    with pytest.warns(UserWarning, match="1 of 3 panel genes"):
        out = apply_panel(a, transcript_panel)
    assert list(out.var_names) == ["TP53", "EGFR"]
    assert out.uns["panel"]["params"]["match_used"] == "gene_symbol"
    assert out.uns["panel"]["missing"] == ["ENST00000999999.1"]


def test_apply_symbol_panel_to_toil_keeps_every_transcript():
    var_names = ["ENST1.1", "ENST2.1", "ENST3.1", "ENST4.1", "ENST5.1"]
    a = _adata(var_names, ["CDH1", "TP53", "ACTB", "TP53", "CDH1"])
    out = apply_panel(a, Panel("p", ("TP53", "CDH1")), match="gene_symbol")
    assert list(out.var_names) == ["ENST2.1", "ENST4.1", "ENST1.1", "ENST5.1"]
    assert out.uns["panel"]["n_features"] == 4 and out.uns["panel"]["missing"] == []


def test_apply_gdc_panel_across_gencode_versions():
    panel = Panel("gdc", ("ENSG00000141510.16", "ENSG00000039068.20"), ("TP53", "CDH1"))
    a = _adata(["ENSG00000039068.21", "ENSG00000075624.17", "ENSG00000141510.17"],
               ["CDH1", "ACTB", "TP53"],
               ensembl_id=["ENSG00000039068", "ENSG00000075624", "ENSG00000141510"])
    out = apply_panel(a, panel)
    assert list(out.var_names) == ["ENSG00000141510.17", "ENSG00000039068.21"]
    assert out.uns["panel"]["params"]["match_used"] == "ensembl"
    # explicit modes
    assert apply_panel(a, panel, match="gene_symbol").n_vars == 2
    with pytest.raises(PanelError, match="none of panel 'gdc'"):
        apply_panel(a, panel, match="var_names")


def test_apply_foreign_anndata_with_symbol_var_names(transcript_panel):
    # another project's AnnData: symbols as var_names, no gene_symbol column
    a = _adata(["TP53", "EGFR"])
    with pytest.warns(UserWarning):
        out = apply_panel(a, transcript_panel)
    assert list(out.var_names) == ["TP53", "EGFR"]
    assert out.uns["panel"]["params"]["adata_key"] == "var_names"


def test_apply_all_missing_raises(symbol_panel):
    a = _adata(["ACTB", "GAPDH"], ["ACTB", "GAPDH"])
    with pytest.raises(PanelError, match="none of panel 'brca_refined'.*0 of 5") as err:
        apply_panel(a, symbol_panel)
    assert "\n" not in str(err.value)
    with pytest.raises(PanelError, match="unknown match"):
        apply_panel(a, symbol_panel, match="fuzzy")


def test_apply_inplace(symbol_panel):
    a = _adata(["CDH1", "ACTB", "TP53", "ERBB2", "GATA3", "PIK3CA"],
               ["CDH1", "ACTB", "TP53", "ERBB2", "GATA3", "PIK3CA"])
    expected = a[:, list(SYMBOLS)].X.copy()
    assert apply_panel(a, symbol_panel, inplace=True) is None
    assert list(a.var_names) == list(SYMBOLS)
    np.testing.assert_array_equal(a.X, expected)
    assert a.uns["panel"]["missing"] == [] and a.uns["panel"]["params"]["inplace"] is True


def test_apply_from_path_and_h5ad_round_trip(tmp_path, symbol_panel):
    path = save(symbol_panel, tmp_path / "panel.json")
    a = _adata(["TP53", "CDH1", "ACTB"], ["TP53", "CDH1", "ACTB"])
    with pytest.warns(UserWarning):
        out = apply_panel(a, path)
    assert out.uns["panel"]["source"] == str(path)
    full = apply_panel(_adata(list(SYMBOLS), list(SYMBOLS)), symbol_panel)
    for i, obj in enumerate((out, full)):
        obj.write_h5ad(tmp_path / f"o{i}.h5ad")
        back = ad.read_h5ad(tmp_path / f"o{i}.h5ad")
        assert list(back.var_names) == list(obj.var_names)
        assert list(back.uns["panel"]["missing"]) == obj.uns["panel"]["missing"]
        assert int(back.uns["panel"]["n_found"]) == obj.uns["panel"]["n_found"]
        assert json.loads(back.uns["panel"]["provenance_json"]) == symbol_panel.provenance
