"""Feature identifiers: one rule for Ensembl IDs across readers, CGC curation and panels."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Ensembl stable IDs: ENSG (gene), ENST (transcript), with optional species infix (ENSMUSG...).
ENSEMBL_RE = re.compile(r"^ENS[A-Z]*[GT]\d{6,}")
ENSEMBL_GENE_RE = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?(_PAR_Y)?$")


def is_ensembl(value: str) -> bool:
    """Whether ``value`` looks like an Ensembl gene or transcript ID (versioned or not)."""
    return bool(ENSEMBL_RE.match(value))


def unversion(value: str) -> str:
    """Ensembl ID without its version (``ENSG00000141510.17`` -> ``ENSG00000141510``).

    Same rule as the matrix reader: text from the first dot on is dropped for IDs that start
    with ``ENS`` (so GENCODE ``..._PAR_Y`` rows map to their X-chromosome gene); any other
    identifier is returned unchanged.
    """
    return value.split(".", 1)[0] if value.startswith("ENS") else value


def unversion_all(values: Iterable[str]) -> list[str]:
    return [unversion(str(v)) for v in values]
