"""Packages meet only through public modules, in one direction (mirror-model -> mirror-genes)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENES_SRC = ROOT / "packages" / "mirror-genes" / "src" / "mirror_genes"
MODEL_SRC = ROOT / "packages" / "mirror-model" / "src" / "mirror_model"


def imported_modules(source: str) -> list[str]:
    """Absolute module names a Python source imports (``import a.b``, ``from a.b import c``)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def private_genes_imports(source: str) -> list[str]:
    return [m for m in imported_modules(source)
            if m.split(".")[0] == "mirror_genes" and any(part.startswith("_") for part in m.split(".")[1:])]


def test_the_checker_catches_private_imports():
    bad = "import mirror_genes._atomic\nfrom mirror_genes.io._matrix import x\nfrom mirror_genes import _errors\n"
    assert {"mirror_genes._atomic", "mirror_genes.io._matrix", "mirror_genes._errors"} <= set(
        private_genes_imports(bad))
    assert private_genes_imports("from mirror_genes.utils import atomic_path\nimport mirror_genes as mg\n") == []


@pytest.mark.parametrize("path", sorted(MODEL_SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(MODEL_SRC)))
def test_mirror_model_imports_only_public_mirror_genes(path):
    found = private_genes_imports(path.read_text())
    assert not found, f"{path.name} imports private mirror-genes modules {found}; expose them publicly first"


def test_mirror_genes_never_imports_mirror_model():
    offenders = [str(p.relative_to(GENES_SRC)) for p in GENES_SRC.rglob("*.py")
                 if any(m.split(".")[0] == "mirror_model" for m in imported_modules(p.read_text()))]
    assert not offenders, f"mirror-genes must not depend on mirror-model: {offenders}"
