"""Readers and writers: Xena matrices, probemaps, phenotypes, survival, COSMIC CGC."""

from ._matrix import read_xena_matrix
from ._probemap import read_probemap

__all__ = ["read_xena_matrix", "read_probemap"]
