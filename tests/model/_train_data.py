"""Tiny paired cohorts written into a test's tmp_path (shared by the training/embedding tests)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from mirror_model.config import resolve_config

TINY_MODEL = dict(dim=16, slide_heads=2, slide_head_dim=8, landmarks=8, residual_conv_kernel=3, rna_hidden=32,
                  rna_heads=2, style_hidden=(16, 16), latent_dim=4, n_prototypes=8)
TINY_TRAIN = dict(epochs=2, batch_size=4, n_patches=16, lr=1e-3)


def tiny_config(model: dict | None = None, train: dict | None = None):
    """``resolve_config(preset="small")`` shrunk to test size (input sizes filled by the data)."""
    return resolve_config(preset="small", model={**TINY_MODEL, **(model or {})}, train={**TINY_TRAIN, **(train or {})})


def patient(i: int) -> str:
    return f"TCGA-T{i // 100:01d}-{i:04d}"


def write_cohort(root: Path, *, n_patients: int = 10, patch_dim: int = 8, n_genes: int = 12, seed: int = 0,
                 second_slide: tuple[int, ...] = (1,), slides_without_rna: tuple[int, ...] = (),
                 suffix: str = ".h5") -> tuple[Path, Path]:
    """Write ``slides/*.h5`` (features + coords) and ``refined.h5ad`` (obs: patient_id, label, time, event)."""
    rng = np.random.default_rng(seed)
    slides, root = Path(root) / "slides", Path(root)
    slides.mkdir(parents=True, exist_ok=True)
    obs_names, labels = [], []
    for i in range(n_patients):
        sample = f"{patient(i)}-01"
        label = "A" if i % 2 else "B"
        for k in range(2 if i in second_slide else 1):
            n = int(rng.integers(10, 40))
            feats = rng.normal(loc=1.0 if label == "A" else -1.0, size=(n, patch_dim)).astype(np.float32)
            stem = f"{sample}Z-00-DX{k + 1}.{i:04d}{k}"
            with h5py.File(slides / f"{stem}{suffix}", "w") as f:
                f.create_dataset("features", data=feats)
                f.create_dataset("coords", data=rng.integers(0, 5000, (n, 2)).astype(np.int64))
        if i not in slides_without_rna:
            obs_names.append(sample)
            labels.append(label)
    x = rng.normal(size=(len(obs_names), n_genes)).astype(np.float32)
    x[np.array(labels) == "A", :3] += 2.0
    obs = pd.DataFrame({"patient_id": [s[:12] for s in obs_names], "label": labels,
                        "time": rng.uniform(100, 2000, len(obs_names)), "event": rng.integers(0, 2, len(obs_names))},
                       index=obs_names)
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)]))
    rna = root / "refined.h5ad"
    adata.write_h5ad(rna)
    return slides, rna


def load_pairing(slides: Path, rna: Path):
    from mirror_model.data import discover_slides, pair_slides, read_rna

    return pair_slides(discover_slides(slides, progress=False), read_rna(rna))


# A tiny configuration file for CLI tests (the small preset, shrunk further).
_TINY_MODEL = """preset = "small"
[model]
dim = 16
slide_heads = 2
slide_head_dim = 8
landmarks = 8
residual_conv_kernel = 3
rna_hidden = 32
rna_heads = 2
style_hidden = [16, 16]
latent_dim = 4
n_prototypes = 8
"""


def tiny_toml(model: dict | None = None, **train) -> str:
    """The tiny configuration as TOML; ``model`` adds model fields, ``train`` sets the [train] table
    (default: one epoch, batch 4, 16 patches)."""
    train = train or {"epochs": 1, "batch_size": 4, "n_patches": 16}
    lines = [f"{k} = {v!r}" for k, v in (model or {}).items()] + ["[train]"]
    lines += [f"{k} = {v!r}" for k, v in train.items()]
    return _TINY_MODEL + "\n".join(lines) + "\n"


TINY_TOML = tiny_toml()
