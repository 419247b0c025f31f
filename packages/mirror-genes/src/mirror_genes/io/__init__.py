"""Readers and writers: Xena matrices, probemaps, phenotypes, survival, COSMIC CGC."""

from ._cgc import read_cgc
from ._clinical import read_phenotype
from ._matrix import read_matrix_header, read_xena_matrix
from ._probemap import read_probemap
from ._survival import read_survival

__all__ = ["read_cgc", "read_phenotype", "read_matrix_header", "read_probemap", "read_survival",
           "read_xena_matrix"]
