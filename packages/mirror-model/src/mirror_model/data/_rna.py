"""Transcriptomics: a refined h5ad (or any samples x features AnnData) or the reference CSV.

Standardisation (per-feature mean and standard deviation) is fitted on the training
patients only, so that no statistic of a validation patient leaks into training; it is
stored with the model as plain lists (a ``weights_only=True`` checkpoint loads it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from .._errors import ConfigError, InputFileError, PairingError
from ._ids import patient_id_of, sample_id_of

PathLike = str | os.PathLike


@dataclass(frozen=True)
class RnaTable:
    """Samples x features transcriptomics, as read (not standardised).

    Attributes
    ----------
    values
        float32 (n_samples, n_features).
    sample_ids
        Sample keys: the first 15 characters of the IDs (12 when the table is per patient).
    patient_ids
        Patient barcode per row.
    features
        Feature names, in column order.
    source
        File the table came from (``<AnnData>`` for an in-memory object).
    """

    values: np.ndarray
    sample_ids: tuple[str, ...]
    patient_ids: tuple[str, ...]
    features: tuple[str, ...]
    source: str

    @property
    def patient_level(self) -> bool:
        """True when the IDs are 12-character patient barcodes (slides pair by patient then)."""
        return all(len(s) <= 12 for s in self.sample_ids)


def _from_anndata(adata, patient_key: str) -> tuple[np.ndarray, list[str], list[str] | None, list[str]]:
    x = adata.X
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    patients = None
    if patient_key in adata.obs.columns:
        patients = [str(p) for p in adata.obs[patient_key]]
    return x, [str(s) for s in adata.obs_names], patients, [str(f) for f in adata.var_names]


def _from_table(path: Path) -> tuple[np.ndarray, list[str], None, list[str]]:
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
            df = df.set_index(df.columns[0])
        else:
            sep = "\t" if path.name.lower().removesuffix(".gz").endswith((".tsv", ".txt")) else ","
            df = pd.read_csv(path, sep=sep, index_col=0)
    except Exception as err:  # pandas parser errors vary by engine
        raise InputFileError(path, f"cannot parse RNA table ({str(err).splitlines()[0][:160]})") from None
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        col = df[bad[0]]
        cell = col[pd.to_numeric(col, errors="coerce").isna() & col.notna()]
        example = f" (e.g. {cell.iloc[0]!r} in sample {cell.index[0]})" if len(cell) else ""
        raise InputFileError(path, f"non-numeric column {bad[0]!r}{example}; an RNA table is samples x "
                                   "numeric features with the sample ID in the first column")
    return (df.to_numpy(dtype=np.float64), [str(s) for s in df.index], None,
            [str(c) for c in df.columns])


def read_rna(source, *, patient_key: str = C.PATIENT_ID) -> RnaTable:
    """Read transcriptomics: refined h5ad / AnnData, or the reference ``<cohort>_pruned_rna.csv``.

    Parameters
    ----------
    source
        ``.h5ad`` path or AnnData (obs names = sample barcodes), or a ``.csv``/``.tsv``/
        ``.parquet`` table of samples x features whose first column is the sample ID.
    patient_key
        ``obs`` column holding the patient ID; when absent the first 12 characters of the
        sample ID are used.

    Returns
    -------
    RnaTable, float32 values.

    Raises
    ------
    InputFileError
        Unreadable file, non-numeric cells, no rows or columns, NaN/Inf cells (with the
        count), duplicated sample IDs.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputFileError(path, "no such file")
        if path.suffix.lower() == ".h5ad":
            import anndata as ad

            try:
                adata = ad.read_h5ad(path)
            except Exception as err:  # h5py/anndata errors vary
                raise InputFileError(path, f"not a readable h5ad file ({str(err).splitlines()[0][:160]})") from None
            values, ids, patients, features = _from_anndata(adata, patient_key)
        else:
            values, ids, patients, features = _from_table(path)
        name = str(path)
    else:
        name = "<AnnData>"
        values, ids, patients, features = _from_anndata(source, patient_key)
    return _build_table(values, ids, patients, features, name)


def _build_table(values: np.ndarray, ids: list[str], patients: list[str] | None,
                 features: list[str], source: str) -> RnaTable:
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise InputFileError(source, f"RNA table has shape {values.shape}; need samples x features")
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputFileError(source, f"{int(bad.sum())} NaN/Inf cell(s) in the RNA table (first: sample "
                                     f"{ids[r]}, feature {features[c]}); impute them first "
                                     "(e.g. mirror_genes.pp.impute_median)")
    keys = [sample_id_of(s) for s in ids]
    dup = pd.Index(keys)[pd.Index(keys).duplicated()]
    if len(dup):
        raise InputFileError(source, f"{len(dup)} duplicated sample ID(s) after cutting to 15 characters "
                                     f"(e.g. {dup[0]}); keep one row per sample")
    if patients is None:
        patients = [patient_id_of(s) for s in ids]
    return RnaTable(values=np.ascontiguousarray(values, dtype=np.float32), sample_ids=tuple(keys),
                    patient_ids=tuple(patient_id_of(p) for p in patients), features=tuple(features),
                    source=source)


@dataclass
class Standardizer:
    """Per-feature mean and standard deviation, fitted on training patients only.

    Attributes
    ----------
    mean, std
        float32 (n_features,). Constant features get std 1 (centred, not divided by 0).
    features
        Feature names the statistics belong to (checked when applied to a table).
    n_fit
        Rows the statistics were computed from.
    """

    mean: np.ndarray
    std: np.ndarray
    features: tuple[str, ...]
    n_fit: int

    @classmethod
    def fit(cls, rna: RnaTable, patients: Iterable[str] | None = None) -> Standardizer:
        """Fit on the rows of ``patients`` (all rows when None); see the class docstring."""
        rows = np.arange(len(rna.sample_ids))
        if patients is not None:
            wanted = {patient_id_of(p) for p in patients}
            rows = np.flatnonzero([p in wanted for p in rna.patient_ids])
            if len(rows) == 0:
                raise PairingError(f"{rna.source}: none of the {len(wanted)} training patients has an RNA row; "
                                   "cannot fit the standardiser")
        x = rna.values[rows].astype(np.float64)
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std[std < 1e-8] = 1.0
        return cls(mean=mean.astype(np.float32), std=std.astype(np.float32),
                   features=tuple(rna.features), n_fit=int(len(rows)))

    def check_features(self, rna: RnaTable) -> None:
        """Raise :class:`ConfigError` unless ``rna`` has this standardiser's features, in order."""
        if tuple(rna.features) != self.features:
            diff = next((i for i, (a, b) in enumerate(zip(rna.features, self.features)) if a != b),
                        min(len(rna.features), len(self.features)))
            raise ConfigError(f"{rna.source}: RNA features differ from the standardiser's "
                              f"({len(rna.features)} vs {len(self.features)}; first difference at column {diff})")

    def transform(self, data: RnaTable | np.ndarray) -> np.ndarray:
        """Standardised float32 copy of a table's values (features checked) or of an array."""
        if isinstance(data, RnaTable):
            self.check_features(data)
            data = data.values
        x = np.asarray(data, dtype=np.float32)
        if x.shape[-1] != len(self.mean):
            raise ConfigError(f"RNA has {x.shape[-1]} features; the standardiser has {len(self.mean)}")
        return np.ascontiguousarray((x - self.mean) / self.std, dtype=np.float32)

    def state_dict(self) -> dict:
        """Plain lists and ints: loads with ``torch.load(weights_only=True)``."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "features": list(self.features),
                "n_fit": self.n_fit}

    @classmethod
    def from_state_dict(cls, state: dict) -> Standardizer:
        """Inverse of :meth:`state_dict` (also accepts arrays or tensors)."""
        return cls(mean=np.asarray(state["mean"], dtype=np.float32), std=np.asarray(state["std"], dtype=np.float32),
                   features=tuple(str(f) for f in state["features"]), n_fit=int(state["n_fit"]))

    def save(self, path: PathLike) -> Path:
        """Write an ``.npz`` (``C.STANDARDIZER``) atomically."""
        from mirror_genes.utils import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=self.mean, std=self.std, features=np.asarray(self.features, dtype=str),
                         n_fit=np.asarray(self.n_fit))
        return path

    @classmethod
    def load(cls, path: PathLike) -> Standardizer:
        """Read an ``.npz`` written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(mean=z["mean"].astype(np.float32), std=z["std"].astype(np.float32),
                           features=tuple(str(f) for f in z["features"]), n_fit=int(z["n_fit"]))
        except (OSError, KeyError, ValueError) as err:
            raise InputFileError(path, f"not a standardiser file ({str(err).splitlines()[0][:120]})") from None
