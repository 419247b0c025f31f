"""The scanpy-style API conventions this project promises (see DEVELOPERS.md)."""

import inspect
import re

import pytest
from anndata import AnnData

import mirror_genes as mg

NAMESPACES = {"pp": mg.pp, "tl": mg.tl, "pl": mg.pl, "io": mg.io, "datasets": mg.datasets, "splits": mg.splits}
PUBLIC = [(ns, name, getattr(mod, name)) for ns, mod in NAMESPACES.items()
          for name in mod.__all__ if inspect.isfunction(getattr(mod, name))]


def _positional(fn):
    return [p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


@pytest.mark.parametrize(("ns", "name", "fn"), PUBLIC, ids=[f"{n}.{f}" for n, f, _ in PUBLIC])
def test_public_function_conventions(ns, name, fn):
    # re-exported from a private module
    assert re.match(rf"mirror_genes\.(_?{ns}\._|_{ns}$)", fn.__module__), fn.__module__
    assert len(_positional(fn)) <= 3, f"{ns}.{name}: more than 3 positional parameters"
    if ns in ("pp", "tl", "pl"):
        assert _positional(fn)[0].name == "adata", f"{ns}.{name}: first parameter must be adata"
        first = inspect.signature(fn, eval_str=True).parameters["adata"].annotation
        assert first is AnnData, f"{ns}.{name}: adata must be annotated AnnData, not {first!r}"
    doc = inspect.getdoc(fn) or ""
    assert "Parameters\n----------" in doc, f"{ns}.{name}: numpy-style Parameters section"
    assert "Returns\n-------" in doc, f"{ns}.{name}: numpy-style Returns section"
    section = doc.split("Parameters\n----------", 1)[1].split("\n\n", 1)[0] if False else \
        doc.split("Parameters\n----------", 1)[1].split("Returns\n-------", 1)[0]
    documented = set(re.findall(r"^(\w+)\s*$", section, flags=re.M))
    typed = re.findall(r"^(\w+) : ", section, flags=re.M)
    assert not typed, f"{ns}.{name}: types belong in the signature, not the docstring: {typed}"
    params = [p for p in inspect.signature(fn).parameters if p not in ("kwargs", "args")]
    missing = [p for p in params if p not in documented]
    assert not missing, f"{ns}.{name}: undocumented parameters {missing}"


@pytest.mark.parametrize("fn", [mg.tl.rfecv, mg.tl.cgc_curate, mg.tl.nested_select, mg.pp.impute_median])
def test_tools_record_params_and_support_copy(fn):
    sig = inspect.signature(fn)
    assert "copy" in sig.parameters and sig.parameters["copy"].default is False
    assert sig.parameters["copy"].kind is inspect.Parameter.KEYWORD_ONLY
