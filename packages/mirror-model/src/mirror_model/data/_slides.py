"""Slide patch-feature files: TRIDENT / CLAM ``.h5`` and the reference's bare-tensor ``.pt``.

Discovery reads metadata only (shapes, attributes): a cohort of thousands of slides is
listed without reading any feature values. Values are read per item, only the sampled
rows, and checked for NaN/Inf there; :func:`validate_slides` is the optional full scan (the
CLI runs it before training so that a bad file stops the run at once, not at epoch 37).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._errors import SlideFileError
from ._ids import patient_id_of, sample_id_of

H5_SUFFIXES = (".h5", ".hdf5")
PT_SUFFIXES = (".pt", ".pth")
SUFFIXES = H5_SUFFIXES + PT_SUFFIXES

PathLike = str | os.PathLike


@dataclass(frozen=True)
class SlideRecord:
    """One slide feature file, described by its metadata (no feature values).

    Attributes
    ----------
    path
        File path (a string, so records pickle small into DataLoader workers).
    slide_id
        File stem, e.g. ``TCGA-3C-AALI-01Z-00-DX1.<uuid>``.
    sample_id, patient_id
        First 15 / 12 characters of the stem.
    n_patches, dim
        Rows and columns of ``features``.
    kind
        ``h5`` (TRIDENT / CLAM) or ``pt`` (reference bare tensor).
    has_coords
        Whether the file holds ``coords`` (level-0 top-left pixels).
    attrs
        HDF5 attributes as plain Python: ``{"file": ..., "features": ..., "coords": ...}``.
    """

    path: str
    slide_id: str
    sample_id: str
    patient_id: str
    n_patches: int
    dim: int
    kind: str
    has_coords: bool
    attrs: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def patch_size_level0(self) -> int | None:
        """Patch side in level-0 pixels: TRIDENT's attribute, else CLAM's size x downsample."""
        for group in ("coords", "file", "features"):
            value = self.attrs.get(group, {}).get("patch_size_level0")
            if value is not None:
                return int(value)
        coords = self.attrs.get("coords", {})
        if "patch_size" in coords:
            down = coords.get("downsample", [1.0])
            down = down[0] if isinstance(down, list) else down
            return int(round(float(coords["patch_size"]) * float(down)))
        return None


@dataclass(frozen=True)
class SlideBag:
    """Feature rows read from one slide: ``features`` (n, D) float32, ``coords`` (n, 2) int64."""

    features: np.ndarray
    coords: np.ndarray | None


def _plain(value):
    """HDF5 attribute -> plain Python (JSON- and ``weights_only``-safe)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype.kind in "SOU" else value.tolist()
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _plain_attrs(attrs) -> dict:
    return {str(k): _plain(attrs[k]) for k in sorted(attrs.keys())}


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:160]}" if text else type(err).__name__


def _feature_shape(path: PathLike, shape: tuple[int, ...]) -> tuple[int, int]:
    # some pipelines keep a leading batch axis of 1: accept (1, N, D) as (N, D)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise SlideFileError(path, f"features has shape {tuple(shape)}; expected N x D (patches x dims)")
    if shape[0] == 0:
        raise SlideFileError(path, "zero patches (features has 0 rows)")
    if shape[1] == 0:
        raise SlideFileError(path, "features has 0 columns")
    return int(shape[0]), int(shape[1])


def _check_coords(path: PathLike, shape: tuple[int, ...], n: int) -> None:
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2 or shape[1] != 2:
        raise SlideFileError(path, f"coords has shape {tuple(shape)}; expected N x 2")
    if shape[0] != n:
        raise SlideFileError(path, f"coords has {shape[0]} rows but features has {n}")


def _record(path: Path, n: int, d: int, kind: str, has_coords: bool, attrs: dict) -> SlideRecord:
    stem = path.name.rsplit(".", 1)[0]
    return SlideRecord(path=str(path), slide_id=stem, sample_id=sample_id_of(stem),
                       patient_id=patient_id_of(stem), n_patches=n, dim=d, kind=kind,
                       has_coords=has_coords, attrs=attrs)


def _h5_info(path: Path) -> SlideRecord:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            feats = f.get("features")
            if not isinstance(feats, h5py.Dataset):
                found = ", ".join(sorted(f.keys())) or "nothing"
                raise SlideFileError(path, f"no 'features' dataset (found: {found}); a patch-feature "
                                           "file holds 'features' (N x D) and 'coords' (N x 2)")
            n, d = _feature_shape(path, feats.shape)
            coords = f.get("coords")
            has_coords = isinstance(coords, h5py.Dataset)
            if has_coords:
                _check_coords(path, coords.shape, n)
            attrs = {"file": _plain_attrs(f.attrs), "features": _plain_attrs(feats.attrs),
                     "coords": _plain_attrs(coords.attrs) if has_coords else {}}
    except SlideFileError:
        raise
    except Exception as err:  # h5py raises OSError, KeyError, ValueError for broken files
        raise SlideFileError(path, f"not a readable HDF5 file ({_first_line(err)})") from None
    return _record(path, n, d, "h5", has_coords, attrs)


def _load_pt(path: PathLike):
    """(features tensor, coords tensor or None) of a ``.pt`` file, memory-mapped when possible."""
    import torch

    obj, last = None, None
    # mmap=True reads only the pages of the rows indexed later; files in the legacy
    # (pre-zip) format cannot be mapped, so fall back to a plain load
    for mmap in (True, False):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except Exception as err:  # torch raises RuntimeError / UnpicklingError / EOFError
            last = err
    else:
        # torch's weights-only message is long and generic: say what it means here
        why = ("corrupt, or holds objects other than tensors" if "Weights only load failed" in str(last)
               else _first_line(last))
        raise SlideFileError(path, f"cannot be loaded with torch.load(weights_only=True) ({why})")
    coords = None
    if isinstance(obj, dict):
        if "features" not in obj:
            raise SlideFileError(path, f"holds a dict without 'features' (keys: {sorted(map(str, obj))[:5]})")
        obj, coords = obj["features"], obj.get("coords")
    if not isinstance(obj, torch.Tensor):
        raise SlideFileError(path, f"holds a {type(obj).__name__}, not an N x D feature tensor")
    if obj.ndim == 3 and obj.shape[0] == 1:
        obj = obj[0]
    if coords is not None and not isinstance(coords, torch.Tensor):
        raise SlideFileError(path, f"'coords' is a {type(coords).__name__}, not an N x 2 tensor")
    return obj, coords


def _pt_info(path: Path) -> SlideRecord:
    feats, coords = _load_pt(path)
    n, d = _feature_shape(path, tuple(feats.shape))
    if not (feats.is_floating_point()):
        raise SlideFileError(path, f"features tensor has dtype {feats.dtype}; expected floating point")
    if coords is not None:
        _check_coords(path, tuple(coords.shape), n)
    return _record(path, n, d, "pt", coords is not None, {"file": {}, "features": {}, "coords": {}})


def slide_info(path: PathLike) -> SlideRecord:
    """Describe one slide feature file from its metadata (no feature values are read).

    Parameters
    ----------
    path
        A TRIDENT/CLAM ``.h5``/``.hdf5`` file or a reference ``.pt``/``.pth`` file.

    Returns
    -------
    SlideRecord

    Raises
    ------
    SlideFileError
        Unreadable file, no ``features``, zero patches, coords not N x 2.
    """
    p = Path(path)
    if not p.is_file():
        raise SlideFileError(p, "no such file")
    if p.suffix.lower() in H5_SUFFIXES:
        return _h5_info(p)
    if p.suffix.lower() in PT_SUFFIXES:
        return _pt_info(p)
    raise SlideFileError(p, f"unknown slide file type {p.suffix!r}; expected one of {', '.join(SUFFIXES)}")


def _find_files(source: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise SlideFileError(root, "no such file or folder")
        # hidden entries are skipped: atomic writers leave '.name.tmp' siblings while writing
        found = [p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
        if not found:
            raise SlideFileError(root, f"no slide feature files ({', '.join(SUFFIXES)}) under this folder")
        return found
    found = [Path(p) for p in source]
    if not found:
        raise SlideFileError("<slides>", "no slide feature files given")
    return found


def _check_consistent(records: Sequence[SlideRecord]) -> None:
    """Stems unique across the tree; one feature dimension for the whole cohort."""
    seen: dict[str, str] = {}
    for r in records:
        if r.slide_id in seen:
            raise SlideFileError(r.path, f"slide {r.slide_id} also found at {seen[r.slide_id]}; "
                                         "point at one feature folder (one encoder) only")
        seen[r.slide_id] = r.path
    dims, counts = np.unique([r.dim for r in records], return_counts=True)
    if len(dims) > 1:
        common = int(dims[np.argmax(counts)])
        odd = next(r for r in records if r.dim != common)
        example = next(r for r in records if r.dim == common)
        raise SlideFileError(odd.path, f"features are {odd.dim}-d but {int(counts.max())} other slide(s) "
                                       f"(e.g. {example.slide_id}) are {common}-d: mixed patch encoders?")


def discover_slides(source: PathLike | Iterable[PathLike], *, validate: bool = False,
                    progress: bool | None = None) -> list[SlideRecord]:
    """Find slide feature files recursively and describe them (metadata only).

    Parameters
    ----------
    source
        A folder (searched recursively for ``.h5``, ``.hdf5``, ``.pt``, ``.pth``; hidden
        entries skipped), one file, or an iterable of files.
    validate
        Also read every feature value once and fail on NaN/Inf (:func:`validate_slides`).
        Without it, values are checked when each bag is read.
    progress
        Show a progress bar (default: on unless ``MIRROR_NO_PROGRESS`` is set).

    Returns
    -------
    Records sorted by slide stem, then path: deterministic whatever the file system order.

    Raises
    ------
    SlideFileError
        One line naming the file: unreadable, no ``features``, zero patches, feature
        dimension differing from the other slides, the same stem twice, NaN/Inf (validate).
    """
    from mirror_genes.utils import step_bar

    paths = sorted(_find_files(source), key=lambda p: (p.name.rsplit(".", 1)[0], str(p)))
    records = []
    with step_bar("reading slide metadata", len(paths), progress=progress) as advance:
        for p in paths:
            records.append(slide_info(p))
            advance()
    _check_consistent(records)
    if validate:
        validate_slides(records, progress=progress)
    return records


def _check_finite(path: PathLike, values: np.ndarray, offset: int = 0, rows: np.ndarray | None = None) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        row = int(rows[first]) if rows is not None else offset + first
        raise SlideFileError(path, f"features hold {int(bad.sum())} NaN/Inf value(s) (first in patch row {row})")


def _h5_rows(ds, uniq: np.ndarray | None, n: int) -> np.ndarray:
    """Rows ``uniq`` (sorted, unique) of an h5 dataset; all rows when None."""
    lead = (0,) if ds.ndim == 3 else ()
    if uniq is None or len(uniq) == n:
        return np.asarray(ds[lead + (slice(None),)])
    lo, hi = int(uniq[0]), int(uniq[-1]) + 1
    # a dense selection reads faster as one contiguous slice than as an HDF5 point list;
    # the slice is at most twice the sampled rows, so memory still scales with the sample
    if hi - lo <= 2 * len(uniq):
        return np.asarray(ds[lead + (slice(lo, hi),)])[uniq - lo]
    return np.asarray(ds[lead + (uniq,)])  # h5py fancy indexing needs sorted unique indices


def _read_rows(record: SlideRecord, uniq: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    if record.kind == "pt":
        import torch

        feats, coords = _load_pt(record.path)
        idx = None if uniq is None else torch.from_numpy(uniq)
        f = feats if idx is None else feats[idx]
        c = None if coords is None else (coords if idx is None else coords[idx])
        return f.float().numpy(), None if c is None else c.long().numpy()
    import h5py

    try:
        with h5py.File(record.path, "r") as f:  # opened per read: no handle ever crosses a fork
            feats = _h5_rows(f["features"], uniq, record.n_patches)
            coords = _h5_rows(f["coords"], uniq, record.n_patches) if record.has_coords else None
    except Exception as err:  # file replaced or damaged since discovery
        raise SlideFileError(record.path, f"cannot read features ({_first_line(err)})") from None
    return feats, coords


def read_slide(source: SlideRecord | PathLike, rows: np.ndarray | None = None) -> SlideBag:
    """Read feature rows (and coords) of one slide, checking them for NaN/Inf.

    Parameters
    ----------
    source
        A record from :func:`discover_slides` or a file path.
    rows
        Patch row indices in any order, repeats allowed (they are read once each); None
        reads all rows in file order.

    Returns
    -------
    SlideBag with C-contiguous ``features`` (len(rows), D) float32 and ``coords`` int64.

    Raises
    ------
    SlideFileError
        NaN/Inf in the rows read, or the file changed since discovery.
    """
    record = source if isinstance(source, SlideRecord) else slide_info(source)
    uniq = inverse = None
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= record.n_patches):
            raise SlideFileError(record.path, f"patch rows out of range 0..{record.n_patches - 1}")
        uniq, inverse = np.unique(rows, return_inverse=True)
    feats, coords = _read_rows(record, uniq)
    if feats.ndim != 2 or feats.shape[1] != record.dim:
        raise SlideFileError(record.path, f"features are now {feats.shape}, {record.dim}-d at discovery")
    _check_finite(record.path, feats, rows=uniq)
    if inverse is not None:
        feats = feats[inverse]
        coords = None if coords is None else coords[inverse]
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    coords = None if coords is None else np.ascontiguousarray(coords, dtype=np.int64)
    return SlideBag(features=feats, coords=coords)


def validate_slides(records: Sequence[SlideRecord], *, chunk_rows: int = 16384,
                    progress: bool | None = None) -> None:
    """Read every feature value once (in chunks) and fail on the first NaN/Inf.

    Parameters
    ----------
    records
        Slides from :func:`discover_slides`.
    chunk_rows
        Rows read at a time from an ``.h5`` file (bounds memory on very large bags).
    progress
        Show a progress bar.

    Returns
    -------
    None

    Raises
    ------
    SlideFileError
        Naming the file and the count of non-finite values.
    """
    import h5py

    from mirror_genes.utils import step_bar

    with step_bar("checking slide features", len(records), progress=progress) as advance:
        for r in records:
            if r.kind == "pt":
                _check_finite(r.path, _load_pt(r.path)[0].float().numpy())
            else:
                with h5py.File(r.path, "r") as f:
                    ds = f["features"]
                    for lo in range(0, r.n_patches, chunk_rows):
                        hi = min(lo + chunk_rows, r.n_patches)
                        block = ds[0, lo:hi] if ds.ndim == 3 else ds[lo:hi]
                        _check_finite(r.path, np.asarray(block), offset=lo)
            advance()
