"""TCGA barcode cuts: slide stem -> sample (15 characters) -> patient (12 characters).

DESIGN.md section 7: ``TCGA-3C-AALI-01Z-00-DX1.<uuid>`` -> sample ``TCGA-3C-AALI-01`` ->
patient ``TCGA-3C-AALI``. Non-TCGA names are cut the same way (shorter names stay whole), so
any naming scheme whose first 15/12 characters identify the sample/patient works.
"""

from __future__ import annotations

SAMPLE_LEN = 15
PATIENT_LEN = 12


def sample_id_of(name: str) -> str:
    """Sample barcode (first 15 characters) of a slide stem or GDC sample ID (``-01A``)."""
    return str(name)[:SAMPLE_LEN]


def patient_id_of(name: str) -> str:
    """Patient barcode (first 12 characters) of a slide stem, sample or aliquot ID."""
    return str(name)[:PATIENT_LEN]
