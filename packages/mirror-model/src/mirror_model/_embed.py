"""Embeddings: encoder outputs per case, and the AnnData that ``mirror-model embed`` writes.

One row per slide (a case = one slide item, as in training): several slides of one sample
each get a row and share that sample's RNA embedding. Deterministic: eval mode (no dropout,
no masking, no noise) and, by default, every patch of each slide; ``sampling="fixed"`` takes a
seeded sample of ``n_patches`` that depends on (seed, slide) only.
"""

from __future__ import annotations

import os
import time

import numpy as np

from . import constants as C
from ._errors import ConfigError

# obs columns carried over from the RNA AnnData when it has them
OBS_KEYS = (C.SAMPLE_ID, C.PATIENT_ID, C.LABEL, C.TIME, C.EVENT)
ROW_NOTE = ("one row per slide (a case = one slide item); slides of one sample share its RNA embedding")


def _as_dataset(model, data, *, sampling: str, n_patches: int | None, seed: int):
    """A :class:`MirrorDataset` for inference over ``data`` (no noise, deterministic patches)."""
    from .data import MirrorDataset, Pairing
    from .train import check_input_sizes

    if isinstance(data, MirrorDataset):
        return data
    if sampling not in ("all", "fixed"):
        raise ConfigError(f"sampling: {sampling!r} is not one of 'all', 'fixed' (embeddings are deterministic)")
    if sampling == "fixed" and not n_patches:
        raise ConfigError("sampling='fixed' needs n_patches (patches per slide)")
    records = list(data.slides) if isinstance(data, Pairing) else list(data)
    rna = data.rna if isinstance(data, Pairing) else None
    if model.module is not None and records:
        check_input_sizes(model.model_cfg, patch_dim=records[0].dim,
                          n_genes=None if rna is None else rna.values.shape[1], where=model.source or "model")
    if rna is not None and model.standardizer is None:
        raise ConfigError("model has no RNA standardiser (train it, or load a trained model) to embed RNA with")
    return MirrorDataset(data, standardizer=model.standardizer if rna is not None else None,
                         n_patches=n_patches or 1, sampling=sampling, seed=seed, noise=False, coords=True)


def encode_dataset(model, data, *, kinds=None, batch_size: int = 1, sampling: str = "all",
                   n_patches: int | None = None, seed: int = 0, device: str | None = None,
                   progress: bool | None = None) -> dict[str, np.ndarray]:
    """Encoder outputs of every case, in the data's order.

    Parameters
    ----------
    model
        A :class:`~mirror_model.MIRROR`.
    data
        Pairing, slide records or MirrorDataset.
    kinds
        Representation kinds wanted (default: every kind the data and the model provide).
    batch_size
        Cases per forward pass.
    sampling
        ``all`` patches, or a ``fixed`` seeded sample of ``n_patches``.
    n_patches
        Patches per slide for ``fixed``.
    seed
        Seed of the fixed sample.
    device
        Device name (default: the model's training device setting).
    progress
        Progress bar.

    Returns
    -------
    kind -> float32 (n_cases, dim).
    """
    import torch
    from torch.utils.data import DataLoader

    from mirror_genes.utils import step_bar

    from .data import collate_bags
    from .train import batch_to_device, resolve_device

    ds = _as_dataset(model, data, sampling=sampling, n_patches=n_patches, seed=seed)
    module = model._ensure_module(ds.patch_dim, ds.n_genes, where=model.source or "model")
    available = [C.KIND_SLIDE] + ([C.KIND_RNA] if ds.has_rna else [])
    if model.model_cfg.use_alignment:
        available += [C.KIND_ALIGNED_SLIDE] + ([C.KIND_ALIGNED_RNA] if ds.has_rna else [])
    kinds = list(kinds or available)
    missing = [k for k in kinds if k not in available]
    if missing:
        why = "the data have no RNA" if not ds.has_rna else "the model has no alignment module"
        raise ConfigError(f"kind {missing[0]!r} is not available: {why}")
    dev = resolve_device(device or model.train_cfg.device)
    module.to(dev).eval()
    parts: dict[str, list] = {k: [] for k in kinds}
    loader = DataLoader(ds, batch_size=int(batch_size), shuffle=False, collate_fn=collate_bags)
    with torch.inference_mode(), step_bar("embedding slides", len(loader), progress=progress) as advance:
        for batch in loader:
            out = module.encode(batch_to_device(batch, dev))
            for k in kinds:
                parts[k].append(out[k].float().cpu().numpy())
            advance()
    return {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}


def _rna_obs(rna_source):
    """The RNA AnnData's obs (read without its matrix), or None for tables without one."""
    import anndata as ad

    if isinstance(rna_source, ad.AnnData):
        return rna_source.obs
    if rna_source is not None and str(rna_source).lower().endswith(".h5ad"):
        backed = ad.read_h5ad(rna_source, backed="r")
        try:
            return backed.obs.copy()
        finally:
            backed.file.close()
    return None


def _obs_table(pairing, rna_obs):
    import pandas as pd

    slides = pairing.slides
    obs = pd.DataFrame({C.SAMPLE_ID: [s.sample_id for s in slides], C.PATIENT_ID: [s.patient_id for s in slides],
                        "n_patches": [int(s.n_patches) for s in slides]},
                       index=pd.Index([s.slide_id for s in slides], name="slide_id"))
    if rna_obs is not None and len(pairing.rna_rows):
        rows = rna_obs.iloc[np.asarray(pairing.rna_rows)]
        for key in OBS_KEYS:
            if key in rows.columns:
                obs[key] = rows[key].to_numpy()
    return obs


def embed(model, slides, rna=None, *, sampling: str = "all", n_patches: int | None = None, seed: int = 0,
          batch_size: int = 1, device: str | None = None, progress: bool | None = None):
    """Embed slides (and their RNA) with a trained model into an AnnData.

    Parameters
    ----------
    model
        A trained :class:`~mirror_model.MIRROR` (e.g. ``MIRROR.load(run_dir)``).
    slides
        Folder or files of patch features, or slide records.
    rna
        Refined RNA (``.h5ad`` path, AnnData or table); None embeds the slides alone.
    sampling
        ``all`` patches (default) or a ``fixed`` seeded sample of ``n_patches``.
    n_patches
        Patches per slide with ``fixed``.
    seed
        Seed of the fixed sample.
    batch_size
        Slides per forward pass.
    device
        Device name (default: the model's training device setting).
    progress
        Progress bar.

    Returns
    -------
    AnnData, one row per slide: ``.obsm[X_mirror_slide]``, and with RNA also
    ``X_mirror_rna`` and ``X_mirror`` (their concatenation); ``.obs`` keeps sample_id,
    patient_id, label, time, event of the RNA AnnData; ``.uns[mirror_embed]`` records how.
    """
    import anndata as ad

    from mirror_genes.utils import now_utc

    from ._model import _versions
    from .config import to_dict
    from .data import discover_slides, pair_slides, read_rna

    records = slides if isinstance(slides, (list, tuple)) and slides and hasattr(slides[0], "slide_id") \
        else discover_slides(slides, progress=progress)
    table = read_rna(rna) if rna is not None else None
    pairing = pair_slides(records, table)
    t0 = time.perf_counter()
    reps = encode_dataset(model, pairing, kinds=[C.KIND_SLIDE] + ([C.KIND_RNA] if table is not None else []),
                          batch_size=batch_size, sampling=sampling, n_patches=n_patches, seed=seed,
                          device=device, progress=progress)
    elapsed = time.perf_counter() - t0
    adata = ad.AnnData(obs=_obs_table(pairing, _rna_obs(rna)))
    adata.obsm[C.OBSM_SLIDE] = reps[C.KIND_SLIDE]
    if table is not None:
        adata.obsm[C.OBSM_RNA] = reps[C.KIND_RNA]
        adata.obsm[C.OBSM_JOINT] = np.concatenate([reps[C.KIND_SLIDE], reps[C.KIND_RNA]], axis=1)
    adata.uns[C.UNS_EMBED] = {
        "rows": ROW_NOTE, "mode": "eval (no dropout, no masking)", "sampling": sampling,
        "n_patches": int(n_patches) if sampling == "fixed" else -1, "seed": int(seed),
        "slides_only": table is None, "checkpoint": str(model.source or ""),
        "epochs_trained": len(model.history), "model_config": to_dict(model.model_cfg),
        "pairing": pairing.report.to_dict()["counts"], "seconds": float(elapsed),
        "created": now_utc(), "versions": _versions()}
    return adata


def write_embedding(adata, out: str | os.PathLike) -> None:
    """Write the AnnData atomically (temporary file renamed once complete)."""
    from mirror_genes.utils import atomic_path

    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
