"""Tools: gene selection (RFE-CV, nested selection) and COSMIC Cancer Gene Census curation."""

from ._cgc import cgc_curate
from ._nested import nested_select
from ._rfecv import rfecv

__all__ = ["cgc_curate", "nested_select", "rfecv"]
