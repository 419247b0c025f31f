"""A synthetic paired cohort: Xena transcriptomics (mirror-genes) + TRIDENT-layout slide bags.

The transcriptomics are written by :func:`mirror_genes.datasets.synthetic_cohort`, so
``mirror_genes.ingest`` and ``select`` run on them unchanged. The slides are invented here,
with a planted structure that a multi-modal model has something to find:

- subtype shows in the slides' tumour patches, but for a quarter of the patients only in the
  slides (their RNA class-marker genes are moved to the between-class midpoint) and for
  another quarter only in the RNA (their tumour patches mix every subtype's look);
- a latent factor shared by both modalities: the score of the strongest gene module of the
  written expression (first principal component, subtype removed) sets the lymphocyte share;
- a slide-only factor (necrosis share) that no gene carries;
- survival depends on the shared factor, on the slide-only factor and on an RNA-only
  prognostic-gene score; the Xena survival table is rewritten in its own layout.

Everything is invented; nothing here is biology.
"""

from __future__ import annotations

import gzip
import io
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mirror_genes.datasets import SyntheticCohort

SLIDE_SUBDIR = Path("slides") / "20x_256px_0px_overlap" / "features_synthetic"
VISIBILITY = ("both", "slide_only", "rna_only")
_VISIBILITY_SHARES = (0.5, 0.25, 0.25)
_OTHER_TISSUES = ("stroma", "lymphocytes", "necrosis", "fat", "normal_epithelium")
_PATCH_SIZE = 256          # pixels at the 20x target magnification
_RISK_WEIGHTS = {"shared": 0.6, "slide": 0.8, "rna": 0.5}


@dataclass(frozen=True)
class SyntheticPairedCohort:
    """Paths and planted truth of :func:`synthetic_paired_cohort`.

    Attributes
    ----------
    cohort
        Preset name.
    xena
        The mirror-genes :class:`~mirror_genes.datasets.SyntheticCohort` (its expression and
        survival files were rewritten in place, in the same layout).
    slides_dir
        Folder of the slide ``.h5`` files (TRIDENT-like nesting).
    slide_files
        Every slide file, sorted.
    patients
        Planted truth per patient (index ``patient_id``): ``sample_id``, ``label`` ("" when
        the patient has no RNA), ``visibility`` (``both``, ``slide_only``, ``rna_only``,
        ``none``), ``shared_factor``, ``slide_factor``, ``rna_factor``, ``risk``, ``time``,
        ``event`` (NaN where the survival table has no OS), ``has_rna``, ``n_slides``.
    slides
        One row per slide: ``slide_id``, ``sample_id``, ``patient_id``, ``n_patches``,
        ``patch_size_level0``, ``path``.
    tissues
        Tissue names, in the row order of ``prototypes``.
    prototypes
        (n_tissues, patch_dim) mean patch feature of each tissue.
    """

    cohort: str
    xena: SyntheticCohort
    slides_dir: Path
    slide_files: tuple[Path, ...]
    patients: pd.DataFrame
    slides: pd.DataFrame
    tissues: tuple[str, ...]
    prototypes: np.ndarray

    @property
    def expression(self) -> tuple[Path, ...]:
        return tuple(self.xena.expression)

    @property
    def phenotype(self) -> tuple[Path, ...]:
        return tuple(self.xena.phenotype)

    @property
    def survival(self) -> tuple[Path, ...]:
        return tuple(self.xena.survival)


# ------------------------------------------------------------------------------ Xena files
def _read_matrix(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", index_col=0, na_values=["NA"], keep_default_na=False)


def _write_text(path: Path, text: str, compress: bool) -> None:
    from mirror_genes.utils import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        if compress:  # no name or time stamp in the header: byte-reproducible, like mirror-genes
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                gz.write(text.encode())
        else:
            raw.write(text.encode())


def _write_matrix(path: Path, df: pd.DataFrame) -> None:
    """Same layout as read: features x samples, first header cell kept, 4 decimals, ``NA``."""
    buf = io.StringIO()
    np.savetxt(buf, df.to_numpy(dtype=float), fmt="%.4f", delimiter="\t")  # faster than DataFrame.to_csv
    body = buf.getvalue().replace("nan", "NA").splitlines()
    header = "\t".join([str(df.index.name or "sample"), *map(str, df.columns)])
    text = header + "\n" + "".join(f"{name}\t{line}\n" for name, line in zip(df.index, body))
    _write_text(path, text, path.read_bytes()[:2] == b"\x1f\x8b")


def _ingest_labels(xena) -> pd.DataFrame:
    """Labelled primary-tumour samples, as mirror-genes ingest sees them (obs)."""
    import mirror_genes as mg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped orphans / missing survival: expected here
        adata = mg.ingest(xena.cohort, expression=xena.expression, phenotype=xena.phenotype,
                          survival=xena.survival, progress=False)
    obs = adata.obs[["patient_id", "sample_id", "label"]].copy()
    obs["label"] = obs["label"].astype(str)
    return obs


def _hide_rna_subtype(frames: dict[Path, pd.DataFrame], obs: pd.DataFrame, markers: list[str],
                      hidden: pd.Index) -> None:
    """Move the class-marker genes of ``hidden`` samples to the midpoint of the class means.

    Class means are taken over every file at once (multi-member cohorts keep one class per file).
    """
    parts = [df.loc[df.index.intersection(markers), df.columns.intersection(obs.index)] for df in frames.values()]
    x = pd.concat(parts, axis=1, join="inner")
    means = x.T.groupby(obs.loc[x.columns, "label"].to_numpy()).mean().T  # genes x classes
    mid = means.mean(axis=1)
    for df in frames.values():
        for col in df.columns.intersection(hidden):
            shifted = df.loc[means.index, col] - means[obs.at[col, "label"]] + mid
            df.loc[means.index, col] = np.maximum(shifted.to_numpy(), 0.0) + 0.0  # log scale floor, no "-0"


def _rna_margin(frames: dict[Path, pd.DataFrame], obs: pd.DataFrame, marker_genes: dict) -> pd.Series:
    """How typical each sample's RNA is of its subtype: own-class marker score minus the best other."""
    x = pd.concat([df[df.columns.intersection(obs.index)] for df in frames.values()], axis=1, join="inner").T
    z = (x - x.mean()) / x.std().replace(0.0, 1.0)
    scores = pd.DataFrame({c: z[z.columns.intersection(list(g))].mean(axis=1) for c, g in marker_genes.items()})
    labels = obs.loc[scores.index, "label"].to_numpy()
    own = scores.to_numpy()[np.arange(len(scores)), [list(scores.columns).index(lab) for lab in labels]]
    other = np.where(scores.columns.to_numpy()[None, :] == labels[:, None], -np.inf, scores.to_numpy()).max(axis=1)
    return pd.Series(own - other, index=scores.index).reindex(obs.index).fillna(0.0)


def _pc1(x: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Standardised first principal-component score of z-scored columns (NaN -> 0)."""
    z = (x - np.nanmean(x, axis=0)) / np.where(np.nanstd(x, axis=0) > 0, np.nanstd(x, axis=0), 1.0)
    z = np.nan_to_num(z)
    if groups is not None:  # remove subtype means: the module is not the subtype itself
        for g in np.unique(groups):
            z[groups == g] -= z[groups == g].mean(axis=0)
    # top eigenvector of the samples' Gram matrix = PC1 scores (up to scale); cheaper and
    # steadier than an SVD of the wide matrix
    _, vecs = np.linalg.eigh(z @ z.T)
    score = vecs[:, -1]
    load = z.T @ score
    score = score * np.sign(load[np.argmax(np.abs(load))])  # deterministic sign
    return (score - score.mean()) / (score.std() or 1.0)


def _rna_factors(frames: dict[Path, pd.DataFrame], obs: pd.DataFrame, xena) -> pd.DataFrame:
    """Shared (gene-module) and RNA-only (prognostic-gene) factors per labelled sample."""
    full = pd.concat([df[df.columns.intersection(obs.index)] for df in frames.values()], axis=1, join="inner")
    full = full[obs.index.intersection(full.columns)]
    planted = {g for genes in xena.marker_genes.values() for g in genes} | set(xena.prognostic_genes)
    x = full.T
    labels = obs.loc[x.index, "label"].to_numpy()
    module_genes = [g for g in x.columns if g not in planted]
    prog = [g for g in xena.prognostic_genes if g in x.columns]
    return pd.DataFrame({"shared_factor": _pc1(x[module_genes].to_numpy(float), labels),
                         "rna_factor": _pc1(x[prog].to_numpy(float)) if prog else 0.0}, index=x.index)


def _rewrite_survival(paths, truth: pd.DataFrame) -> set[str]:
    """Replace OS/DSS of the truth patients (PFI/DFI cut at the new OS time), same layout.

    Returns the patients written; a patient whose OS was unknown stays unknown.
    """
    written: set[str] = set()
    for path in map(Path, paths):
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        rows = df["_PATIENT"].isin(truth.index) & (df["OS"] != "")
        t = df["_PATIENT"].map(truth["time"]).where(rows).fillna(0).astype(int).astype(str)
        e = df["_PATIENT"].map(truth["event"]).where(rows).fillna(0).astype(int).astype(str)
        df.loc[rows, "OS"], df.loc[rows, "OS.time"] = e[rows], t[rows]
        if "DSS" in df.columns:  # disease-specific death: the OS event, same time
            dss = rows & (df["DSS"] != "")
            df.loc[dss, "DSS"], df.loc[dss, "DSS.time"] = e[dss], t[dss]
        for end in ("PFI", "DFI"):
            if f"{end}.time" not in df.columns:
                continue
            has = rows & (df[f"{end}.time"] != "")
            old = pd.to_numeric(df[f"{end}.time"].where(has), errors="coerce")
            late = has & (old > t.astype(int))  # progression after the new follow-up end: unseen
            df.loc[late, end] = "0"
            df.loc[has, f"{end}.time"] = np.minimum(old[has], t[has].astype(int)).astype(int).astype(str)
        _write_text(path, df.to_csv(sep="\t", index=False, lineterminator="\n"), False)
        written |= set(df.loc[rows, "_PATIENT"])
    return written


# ------------------------------------------------------------------------------ slides
def _tissue_grid(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Grid cells (row, col) of a lobed tissue blob in raster order, and each cell's distance
    to a tumour centre inside it (tumour patches are the nearest cells)."""
    side = int(np.ceil(np.sqrt(n / 0.6))) + 4
    yy, xx = np.mgrid[0:side, 0:side]
    cy, cx = (side - 1) / 2, (side - 1) / 2
    aspect, phase, lobes = rng.uniform(0.6, 1.0), rng.uniform(0, 2 * np.pi), int(rng.integers(2, 5))
    dy, dx = (yy - cy) / aspect, xx - cx
    radius = np.hypot(dy, dx) / (1.0 + 0.2 * np.sin(lobes * np.arctan2(dy, dx) + phase))
    radius = radius + rng.uniform(0, 0.8, radius.shape)  # ragged tissue edge
    cells = np.argsort(radius.ravel(), kind="stable")[:n]
    cells = np.sort(cells)  # raster order, as patching tools write them
    rows, cols = np.divmod(cells, side)
    centre = cells[int(rng.integers(len(cells)))]
    dist = np.hypot(rows - centre // side, cols - centre % side) + rng.uniform(0, 1.5, n)
    return np.stack([rows, cols], axis=1), dist


def _composition(rng: np.random.Generator, shared: float, slide: float) -> dict[str, float]:
    """Tissue shares of one slide: lymphocytes follow the shared factor, necrosis the slide-only one."""
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    tumour = rng.uniform(0.35, 0.6)
    lymph = 0.04 + 0.28 * sig(1.8 * shared)
    necro = 0.02 + 0.22 * sig(1.8 * slide - 0.5)
    rest = max(1.0 - tumour - lymph - necro, 0.05) * rng.dirichlet([4.0, 1.5, 1.5])
    return {"tumour": tumour, "lymphocytes": lymph, "necrosis": necro,
            "stroma": rest[0], "fat": rest[1], "normal_epithelium": rest[2]}


def _slide_bag(rng: np.random.Generator, n: int, protos: np.ndarray, classes: list[str], label: str,
               visible: bool, shared: float, slide: float) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, D) float32, grid cells (n, 2)) of one slide."""
    k = len(classes)
    grid, dist = _tissue_grid(n, rng)
    comp = _composition(rng, shared, slide)
    n_tum = max(1, int(round(comp["tumour"] * n)))
    tissue = np.empty(n, dtype=np.int64)
    order = np.argsort(dist, kind="stable")
    # tumour patches: the subtype's own look with probability q, else any subtype's look
    q = rng.uniform(0.5, 0.9) if visible and label in classes else 0.0
    own = rng.random(n_tum) < q
    tissue[order[:n_tum]] = np.where(own, classes.index(label) if label in classes else 0,
                                     rng.integers(0, k, n_tum))
    others = [comp[t] for t in _OTHER_TISSUES]
    tissue[order[n_tum:]] = k + rng.choice(len(others), n - n_tum, p=np.asarray(others) / sum(others))
    stain = rng.normal(0.0, 0.3, protos.shape[1])  # per-slide batch effect
    feats = protos[tissue] + stain + rng.normal(0.0, 0.9, (n, protos.shape[1]))
    return feats.astype(np.float32), grid


def _write_slide(path: Path, feats: np.ndarray, coords: np.ndarray, stem: str, ps0: int) -> None:
    import h5py

    from mirror_genes.utils import atomic_path

    level0_mag = 40 if ps0 == 2 * _PATCH_SIZE else 20
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=feats)
            ds = f.create_dataset("coords", data=coords.astype(np.int64))
            # TRIDENT-like attributes: level-0 coordinates, patch size at level 0 per slide
            ds.attrs.update({"patch_size": _PATCH_SIZE, "patch_size_level0": ps0,
                             "target_magnification": 20, "level0_magnification": level0_mag,
                             "overlap": 0, "name": stem, "savetodir": str(path.parent),
                             "level0_width": int(coords[:, 0].max() + ps0 + 1000),
                             "level0_height": int(coords[:, 1].max() + ps0 + 1000)})
            f.attrs["encoder"] = "synthetic"


def _stem(sample: str, k: int, rng: np.random.Generator) -> str:
    return f"{sample}Z-00-DX{k}.{str(uuid.UUID(bytes=rng.bytes(16), version=4)).upper()}"


def _prototypes(rng: np.random.Generator, classes: list[str], dim: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Mean patch feature per tissue; subtypes are variations of one tumour look."""
    base = rng.normal(0.0, 1.0, dim)
    tumour = base + 0.7 * rng.normal(0.0, 1.0, (len(classes), dim))
    other = rng.normal(0.0, 1.0, (len(_OTHER_TISSUES), dim))
    names = tuple(f"tumour_{c}" for c in classes) + _OTHER_TISSUES
    return names, np.vstack([tumour, other]).astype(np.float32)


def _truth(obs: pd.DataFrame, margin: pd.Series, extra: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Planted per-patient truth: visibility (per subtype) and the slide-only factor.

    RNA patients get their shared and RNA-only factors from the written expression later.
    """
    df = pd.DataFrame({"sample_id": obs["sample_id"].to_numpy(), "label": obs["label"].to_numpy(),
                       "shared_factor": np.nan, "rna_factor": np.nan, "has_rna": True, "visibility": ""},
                      index=pd.Index(obs["patient_id"].to_numpy(), name="patient_id"))
    col = df.columns.get_loc("visibility")
    margin = margin.to_numpy()
    for label in sorted(df["label"].unique()):
        idx = np.flatnonzero(df["label"].to_numpy() == label)
        n_slide, n_rna = (int(round(share * len(idx))) for share in _VISIBILITY_SHARES[1:])
        # the least RNA-typical tumours become slide-only (their markers are then hidden)
        idx = idx[np.argsort(margin[idx], kind="stable")]
        rest = rng.permutation(idx[n_slide:])
        df.iloc[idx[:n_slide], col] = "slide_only"
        df.iloc[rest[:n_rna], col] = "rna_only"
        df.iloc[rest[n_rna:], col] = "both"
    # patients with a slide but no RNA (their expression was never sequenced)
    no_rna = pd.DataFrame({"sample_id": extra, "label": "", "shared_factor": rng.normal(0, 1, len(extra)),
                           "rna_factor": np.nan, "has_rna": False, "visibility": "none"},
                          index=pd.Index([s[:12] for s in extra], name="patient_id"))
    df = pd.concat([df, no_rna]).sort_index()
    df["slide_factor"] = rng.normal(0.0, 1.0, len(df))
    return df


def _survival_times(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Weibull times from shared + slide-only + RNA-only risk; uniform censoring."""
    w = _RISK_WEIGHTS
    df["risk"] = (w["shared"] * df["shared_factor"] + w["slide"] * df["slide_factor"]
                  + w["rna"] * df["rna_factor"].fillna(0.0))
    t_event = 3000.0 * (rng.exponential(1.0, len(df)) * np.exp(-df["risk"].to_numpy())) ** (1 / 1.3)
    t_cens = rng.uniform(200.0, 4500.0, len(df))
    df["time"] = np.maximum(np.round(np.minimum(t_event, t_cens)), 1.0)
    df["event"] = (t_event <= t_cens).astype(int)
    return df


def _slides_without_rna(xena, n: int, rng: np.random.Generator) -> list[str]:
    """Primary-tumour samples in the phenotype but in no expression file (up to ``n``)."""
    from mirror_genes.io import read_matrix_header, read_phenotype

    in_expr = {s[:15] for p in xena.expression for s in read_matrix_header(p)}
    pheno = sorted({s[:15] for p in xena.phenotype for s in read_phenotype(p).index})
    cand = [s for s in pheno if s[13:15] == "01" and s not in in_expr]
    return sorted(rng.choice(cand, min(n, len(cand)), replace=False).tolist()) if cand else []


def _write_slides(folder: Path, truth: pd.DataFrame, classes: list[str], protos: np.ndarray,
                  n_patches: tuple[int, int], multi_slide_rate: float, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for pid, p in truth.iterrows():
        u = rng.random()
        n_slides = 0 if (p["has_rna"] and u < 0.03) else 2 if u > 1.0 - multi_slide_rate else 1
        for k in range(1, n_slides + 1):
            n = int(rng.integers(n_patches[0], n_patches[1] + 1))
            visible = p["visibility"] in ("both", "slide_only")
            feats, grid = _slide_bag(rng, n, protos, classes, p["label"], visible,
                                     p["shared_factor"], p["slide_factor"])
            ps0 = int(rng.choice([_PATCH_SIZE, 2 * _PATCH_SIZE]))  # 20x or 40x scanner
            origin = rng.integers(2, 20, 2) * ps0
            coords = grid[:, ::-1] * ps0 + origin  # (x, y) level-0 top-left pixels
            stem = _stem(p["sample_id"], k, rng)
            path = folder / f"{stem}.h5"
            _write_slide(path, feats, coords, stem, ps0)
            rows.append({"slide_id": stem, "sample_id": p["sample_id"], "patient_id": pid, "n_patches": n,
                         "patch_size_level0": ps0, "path": path})
    return pd.DataFrame(rows)


def synthetic_paired_cohort(
    out_dir: str | os.PathLike,
    *,
    cohort: str = "brca",
    n_patients: int = 200,
    n_patches: int | tuple[int, int] = (100, 400),
    patch_dim: int = 64,
    n_genes: int = 500,
    multi_slide_rate: float = 0.15,
    seed: int = 0,
) -> SyntheticPairedCohort:
    """Write a paired cohort: Xena transcriptomics + TRIDENT-layout slide feature bags.

    Parameters
    ----------
    out_dir
        Output folder: ``xena/`` (hub layout, from mirror-genes) and
        ``slides/20x_256px_0px_overlap/features_synthetic/*.h5``.
    cohort
        mirror-genes cohort preset (``brca``, ``nsclc``, ``rcc``, ``coadread``).
    n_patients
        Patients in the phenotype tables (mirror-genes adds orphans, normals, ...).
    n_patches
        Patches per slide: a number, or an inclusive (low, high) range drawn per slide.
    patch_dim
        Patch feature dimension.
    n_genes
        Genes in the expression files.
    multi_slide_rate
        Share of samples with two slides (``DX1``, ``DX2``).
    seed
        Seed of everything random.

    Returns
    -------
    SyntheticPairedCohort
        Paths and planted truth.
    """
    from mirror_genes.datasets import synthetic_cohort

    out = Path(out_dir)
    lo, hi = (n_patches, n_patches) if isinstance(n_patches, int) else (int(n_patches[0]), int(n_patches[1]))
    if not 1 <= lo <= hi or patch_dim < 1 or not 0.0 <= multi_slide_rate <= 0.9:
        raise ValueError(f"n_patches {n_patches}, patch_dim {patch_dim}, multi_slide_rate "
                         f"{multi_slide_rate}: out of range")
    rng = np.random.default_rng([int(seed), 0x5A1DE])
    xena = synthetic_cohort(out / "xena", cohort=cohort, hub="tcga", n_patients=n_patients, n_genes=n_genes,
                            seed=seed)
    obs = _ingest_labels(xena)
    classes = sorted(obs["label"].unique())
    frames = {Path(p): _read_matrix(Path(p)) for p in xena.expression}
    margin = _rna_margin(frames, obs, xena.marker_genes)
    truth = _truth(obs, margin, _slides_without_rna(xena, max(2, n_patients // 50), rng), rng)
    hidden = obs.index[obs["patient_id"].map(truth["visibility"]).to_numpy() == "slide_only"]
    markers = sorted({g for genes in xena.marker_genes.values() for g in genes})
    _hide_rna_subtype(frames, obs, markers, hidden)
    for path, df in frames.items():
        _write_matrix(path, df)
    factors = _rna_factors(frames, obs, xena)  # from the expression as written
    with_rna = truth["has_rna"].to_numpy(bool)
    truth.loc[with_rna, ["shared_factor", "rna_factor"]] = factors.set_index(
        obs.loc[factors.index, "patient_id"]).loc[truth.index[with_rna]].to_numpy()
    truth = _survival_times(truth, rng)
    written = _rewrite_survival(xena.survival, truth)
    truth.loc[~truth.index.isin(list(written)), ["time", "event"]] = np.nan  # unknown in the files too
    tissues, protos = _prototypes(rng, classes, patch_dim)
    folder = out / SLIDE_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    slides = _write_slides(folder, truth, classes, protos, (lo, hi), multi_slide_rate, rng)
    truth["n_slides"] = slides.groupby("patient_id").size().reindex(truth.index, fill_value=0)
    return SyntheticPairedCohort(cohort=xena.cohort, xena=xena, slides_dir=folder,
                                 slide_files=tuple(sorted(slides["path"])), patients=truth, slides=slides,
                                 tissues=tissues, prototypes=protos)
