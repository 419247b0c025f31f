"""The map-style dataset of slide bags (+ RNA) and the collate function that pads ragged bags.

Randomness is a function of (seed, epoch, item index) only: the patch sample and the noise
tensors of the model's masks and reparameterisation (docs/model-internals.md) come from a
generator seeded by those three numbers. So a resumed run, any number of DataLoader workers
and any number of DDP ranks see the same data, item for item.

Bags are read lazily: the dataset holds file paths and metadata, opens the file inside
``__getitem__`` and reads only the sampled rows; nothing open is ever pickled to a worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import constants as C
from .._errors import ConfigError
from ._pairing import Pairing, pair_slides
from ._rna import Standardizer
from ._slides import SlideRecord, read_slide

SAMPLING = ("random", "fixed", "all")
# independent generator streams per item: patch choice, noise, and the epoch-free fixed sample
_STREAM_PATCHES, _STREAM_NOISE, _STREAM_FIXED = 0, 1, 2
_PAD_NOISE = 1.0  # above every uniform[0, 1) draw: a padded token is never among the "smallest noise"


def sample_patches(n_total: int, n_patches: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a training patch sample, in random order.

    Parameters
    ----------
    n_total
        Patches in the slide.
    n_patches
        Patches wanted.
    rng
        Generator to draw from.

    Returns
    -------
    int64 (n_patches,). Without replacement when the slide has enough patches; otherwise
    every patch once plus ``n_patches - n_total`` drawn with replacement (so no patch of a
    small slide is left out), shuffled.
    """
    if n_total >= n_patches:
        return rng.choice(n_total, n_patches, replace=False).astype(np.int64)
    extra = rng.integers(0, n_total, n_patches - n_total)
    return rng.permutation(np.concatenate([np.arange(n_total), extra])).astype(np.int64)


class MirrorDataset(torch.utils.data.Dataset):
    """Slide bags, each with its sample's standardised RNA vector and the model's noise.

    Parameters
    ----------
    data
        A :class:`Pairing` (slides + RNA, possibly restricted to a split) or slide records
        (slides only: items carry no ``C.RNA``).
    standardizer
        Fitted on the training patients; required when ``data`` carries RNA.
    n_patches
        Patches per bag (default ``TrainConfig.n_patches``, 2048).
    sampling
        ``random``: a fresh sample each epoch (training), with replacement only for slides
        with fewer patches. ``fixed``: a seeded sample that does not change with the epoch,
        in file order; slides with at most ``n_patches`` give all their patches.
        ``all``: every patch in file order (bags are ragged; :func:`collate_bags` pads).
    seed
        Seed of every draw (non-negative).
    dim
        Model width: ``C.RNA_MASK_NOISE`` has ``dim`` units (omitted when None or no RNA).
    latent_dim
        Style latent size: ``C.STYLE_EPS`` is (2, latent_dim) (omitted when None).
    coords
        Return ``C.COORDS`` when the file has coordinates.
    noise
        Return the noise tensors (off for pure embedding if they are not wanted).
    """

    def __init__(self, data: Pairing | Sequence[SlideRecord], *, standardizer: Standardizer | None = None,
                 n_patches: int | None = None, sampling: str = "random", seed: int = 0,
                 dim: int | None = None, latent_dim: int | None = None, coords: bool = True,
                 noise: bool = True) -> None:
        from ..config import TrainConfig

        pairing = data if isinstance(data, Pairing) else pair_slides(list(data))
        self.n_patches = int(TrainConfig.n_patches if n_patches is None else n_patches)
        if self.n_patches < 1:
            raise ConfigError(f"n_patches: must be >= 1, got {n_patches}")
        if sampling not in SAMPLING:
            raise ConfigError(f"sampling: {sampling!r} is not one of {', '.join(SAMPLING)}")
        if int(seed) < 0:
            raise ConfigError(f"seed: must be >= 0, got {seed}")
        self.slides = tuple(pairing.slides)
        self.report = pairing.report
        self.sampling, self.seed, self.epoch = sampling, int(seed), 0
        self.dim, self.latent_dim = dim, latent_dim
        self.coords, self.noise = coords, noise
        self._rna, self._rna_index = self._standardised(pairing, standardizer)

    @staticmethod
    def _standardised(pairing: Pairing, standardizer: Standardizer | None):
        """Standardised RNA of the rows in use only (memory: samples in the split, not the table)."""
        if pairing.rna is None:
            return None, None
        if standardizer is None:
            raise ConfigError("RNA given without a standardiser: fit one on the training patients "
                              "(Standardizer.fit(rna, patients=train_patients)) and pass it")
        standardizer.check_features(pairing.rna)
        uniq, inverse = np.unique(pairing.rna_rows, return_inverse=True)
        return standardizer.transform(pairing.rna.values[uniq]), inverse.astype(np.int64)

    @property
    def has_rna(self) -> bool:
        return self._rna is not None

    @property
    def patch_dim(self) -> int:
        return self.slides[0].dim

    @property
    def n_genes(self) -> int | None:
        return None if self._rna is None else int(self._rna.shape[1])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose patch samples and noise ``__getitem__`` returns."""
        if int(epoch) < 0:
            raise ConfigError(f"epoch: must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.slides)

    def patch_rows(self, index: int) -> np.ndarray | None:
        """Rows read for item ``index`` at the current epoch (None: all, in file order)."""
        n_total = self.slides[index].n_patches
        if self.sampling == "random":
            rng = np.random.default_rng([self.seed, self.epoch, index, _STREAM_PATCHES])
            return sample_patches(n_total, self.n_patches, rng)
        if self.sampling == "fixed" and n_total > self.n_patches:
            rng = np.random.default_rng([self.seed, index, _STREAM_FIXED])
            return np.sort(rng.choice(n_total, self.n_patches, replace=False)).astype(np.int64)
        return None

    def _noise(self, index: int, n: int) -> dict[str, torch.Tensor]:
        # one child stream per tensor, so switching one tensor off leaves the others unchanged
        slide_ss, rna_ss, style_ss = np.random.SeedSequence(
            [self.seed, self.epoch, index, _STREAM_NOISE]).spawn(3)
        out = {C.SLIDE_MASK_NOISE: torch.from_numpy(np.random.default_rng(slide_ss).random(n, dtype=np.float32))}
        if self.dim is not None and self._rna is not None:
            out[C.RNA_MASK_NOISE] = torch.from_numpy(
                np.random.default_rng(rna_ss).random(int(self.dim), dtype=np.float32))
        if self.latent_dim is not None:
            out[C.STYLE_EPS] = torch.from_numpy(
                np.random.default_rng(style_ss).standard_normal((2, int(self.latent_dim)), dtype=np.float32))
        return out

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        record = self.slides[index]
        bag = read_slide(record, self.patch_rows(index))
        item = {C.PATCHES: torch.from_numpy(bag.features), C.INDEX: index, C.SLIDE_ID: record.slide_id}
        if self.coords and bag.coords is not None:
            item[C.COORDS] = torch.from_numpy(bag.coords)
        if self._rna is not None:
            item[C.RNA] = torch.from_numpy(self._rna[self._rna_index[index]].copy())
        if self.noise:
            item.update(self._noise(index, len(bag.features)))
        return item


def _pad(tensors: Sequence[torch.Tensor], n_max: int, value: float) -> torch.Tensor:
    out = torch.full((len(tensors), n_max, *tensors[0].shape[1:]), value, dtype=tensors[0].dtype)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
    return out


def collate_bags(items: Sequence[dict]) -> dict:
    """Batch items of :class:`MirrorDataset`, padding ragged bags.

    Parameters
    ----------
    items
        Dataset items.

    Returns
    -------
    The batch dict of docs/model-internals.md. ``C.PATCH_MASK`` (True at real patches) is
    present only when bag lengths differ; padded rows are zeros, padded slide noise is 1.0
    (sorts after every real token). ``C.COORDS`` is present when every item has it.
    """
    if not items:
        raise ValueError("collate_bags: empty batch")
    lengths = [len(it[C.PATCHES]) for it in items]
    n_max, ragged = max(lengths), len(set(lengths)) > 1
    batch: dict = {}
    if ragged:
        batch[C.PATCHES] = _pad([it[C.PATCHES] for it in items], n_max, 0.0)
        batch[C.PATCH_MASK] = torch.arange(n_max)[None, :] < torch.tensor(lengths)[:, None]
    else:
        batch[C.PATCHES] = torch.stack([it[C.PATCHES] for it in items])
    if all(C.COORDS in it for it in items):
        batch[C.COORDS] = _pad([it[C.COORDS] for it in items], n_max, 0)
    if all(C.SLIDE_MASK_NOISE in it for it in items):
        batch[C.SLIDE_MASK_NOISE] = _pad([it[C.SLIDE_MASK_NOISE] for it in items], n_max, _PAD_NOISE)
    for key in (C.RNA, C.RNA_MASK_NOISE, C.STYLE_EPS):
        present = [key in it for it in items]
        if any(present) and not all(present):
            raise ValueError(f"collate_bags: {key!r} present in some items only")
        if all(present):
            batch[key] = torch.stack([it[key] for it in items])
    batch[C.INDEX] = torch.tensor([int(it[C.INDEX]) for it in items], dtype=torch.long)
    batch[C.SLIDE_ID] = [it[C.SLIDE_ID] for it in items]
    return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
