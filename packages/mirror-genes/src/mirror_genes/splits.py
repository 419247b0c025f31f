"""Patient-level cross-validation folds: make them, read and write the reference layout.

Public door for other packages (mirror-model imports this, never ``mirror_genes._splits``).
"""

from ._splits import make_splits, read_splits, splits_to_indices, splits_to_patients, write_splits

__all__ = ["make_splits", "read_splits", "splits_to_indices", "splits_to_patients", "write_splits"]
