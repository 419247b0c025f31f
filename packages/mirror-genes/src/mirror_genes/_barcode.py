"""TCGA barcodes: patient (12 chars), sample (15 chars), and the sample-type code."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# TCGA sample-type codes (GDC code tables); the two digits after the patient part.
SAMPLE_TYPES = {
    "01": "Primary Tumor",
    "02": "Recurrent Tumor",
    "03": "Primary Blood Derived Cancer - Peripheral Blood",
    "05": "Additional - New Primary",
    "06": "Metastatic",
    "07": "Additional Metastatic",
    "10": "Blood Derived Normal",
    "11": "Solid Tissue Normal",
    "12": "Buccal Cell Normal",
    "14": "Bone Marrow Normal",
}

_BARCODE = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-\d{2}")


def patient_id(barcodes) -> np.ndarray:
    """First 12 characters (``TCGA-3C-AALI``)."""
    return np.asarray([str(b)[:12] for b in barcodes], dtype=object)


def sample_id(barcodes) -> np.ndarray:
    """First 15 characters (``TCGA-3C-AALI-01``): the join key across hubs (GDC adds a vial)."""
    return np.asarray([str(b)[:15] for b in barcodes], dtype=object)


def sample_type_code(barcodes) -> np.ndarray:
    return np.asarray([str(b)[13:15] if _BARCODE.match(str(b)) else "" for b in barcodes],
                      dtype=object)


def sample_type(barcodes) -> pd.Categorical:
    codes = sample_type_code(barcodes)
    return pd.Categorical([SAMPLE_TYPES.get(c, "Unknown") for c in codes])


def is_tcga_barcode(value: str) -> bool:
    return bool(_BARCODE.match(str(value)))
