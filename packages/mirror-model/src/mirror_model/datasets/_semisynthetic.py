"""Semi-synthetic slides: invented slide feature bags for a REAL transcriptomics cohort.

Given an AnnData written by ``mirror-genes ingest`` / ``select`` (real samples, real labels,
real survival), write TRIDENT-layout ``.h5`` slide bags whose content is generated from the
real labels and survival only, never from the expression values. What the slides know is
then independent of what the RNA knows, except through the true labels, the true survival
and the tissue source site (a batch effect, as in real TCGA). See docs/results.md,
"Semi-synthetic generator", for what is planted and how strongly.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._synthetic import (
    _OTHER_TISSUES,
    _PATCH_SIZE,
    SLIDE_SUBDIR,
    _composition,
    _prototypes,
    _stem,
    _tissue_grid,
    _write_slide,
)

TRUTH_FILE = "truth.tsv"
SLIDES_FILE = "slides.tsv"
PARAMS_FILE = "semi_synthetic.json"
_BARCODE = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-\d\d")
_SALT = 0x5E31  # separates these random streams from other generators with the same seed
_STAIN_SLIDE = 0.3   # per-slide stain shift (sd per feature), as in the synthetic cohort
_PATCH_NOISE = 0.9   # per-patch noise (sd per feature), as in the synthetic cohort


@dataclass(frozen=True)
class SemiSyntheticSlides:
    """Paths and planted truth of :func:`semi_synthetic_slides`.

    Attributes
    ----------
    out_dir
        Output folder.
    slides_dir
        Folder of the slide ``.h5`` files (``out_dir/slides/20x_256px_0px_overlap/features_synthetic``).
    slide_files
        Every slide file, sorted.
    truth
        Planted truth, one row per labelled sample (index ``sample_id``, sorted):
        ``patient_id``, ``label``, ``site`` (tissue source site), ``own_look`` (share of the
        patient's tumour patches expected to show its own subtype's look), ``shown_label``
        (the subtype whose look dominates its tumour patches), ``time``, ``event`` (the real
        values, NaN when unknown), ``survival_score`` (normal score of the patient's real
        survival rank, high = short; NaN when unknown), ``slide_factor`` (the slide-only
        factor that sets the necrosis share), ``immune_nuisance`` (sets the lymphocyte share;
        tied to nothing), ``n_slides``.
    slides
        One row per slide: ``slide_id``, ``sample_id``, ``patient_id``, ``site``,
        ``n_patches``, ``patch_size_level0``, ``necrosis_share``, ``path``.
    unlabelled
        Samples whose label is missing: they get no slide.
    classes
        The label values, sorted (as strings).
    tissues
        Tissue names, in the row order of ``prototypes``.
    prototypes
        (n_tissues, patch_dim) mean patch feature of each tissue.
    survival_signal
        Whether the slides carry a survival signal (False when the input has no usable
        time/event: no column, or no event).
    params
        The generator's parameters, as given.
    """

    out_dir: Path
    slides_dir: Path
    slide_files: tuple[Path, ...]
    truth: pd.DataFrame
    slides: pd.DataFrame
    unlabelled: tuple[str, ...]
    classes: tuple[str, ...]
    tissues: tuple[str, ...]
    prototypes: np.ndarray
    survival_signal: bool
    params: dict = field(default_factory=dict)

    @property
    def truth_path(self) -> Path:
        return self.out_dir / TRUTH_FILE

    @property
    def slides_path(self) -> Path:
        return self.out_dir / SLIDES_FILE

    def summary(self) -> str:
        """A few lines for a terminal."""
        counts = self.truth["label"].value_counts().sort_index()
        lines = [f"wrote {len(self.slide_files)} slides for {len(self.truth)} samples "
                 f"({self.truth['patient_id'].nunique()} patients) in {self.slides_dir}",
                 "classes: " + ", ".join(f"{c} {n}" for c, n in counts.items()),
                 f"survival signal: {'yes' if self.survival_signal else 'no (no usable time/event)'}",
                 f"truth: {self.truth_path}; slides: {self.slides_path}"]
        if self.unlabelled:
            lines.append(f"{len(self.unlabelled)} samples without a label got no slide: "
                         + ", ".join(self.unlabelled[:5]) + (" ..." if len(self.unlabelled) > 5 else ""))
        return "\n".join(lines)


# ------------------------------------------------------------------------------ helpers
def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A stream keyed by names (sample, site), so that a sample's slides do not depend on
    which other samples are in the cohort."""
    return np.random.default_rng([int(seed), _SALT, *(zlib.crc32(k.encode()) for k in keys)])


def _read_obs(adata_or_h5ad) -> tuple[pd.DataFrame, str | None]:
    """obs of an AnnData, or of an ``.h5ad`` read without its matrix."""
    if isinstance(adata_or_h5ad, (str, os.PathLike)):
        import anndata as ad

        path = Path(adata_or_h5ad)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        adata = ad.read_h5ad(path, backed="r")
        try:
            return adata.obs.copy(), str(path)
        finally:
            adata.file.close()
    obs = getattr(adata_or_h5ad, "obs", None)
    if not isinstance(obs, pd.DataFrame):
        raise TypeError(f"expected an AnnData or an .h5ad path, got {type(adata_or_h5ad).__name__}")
    return obs.copy(), None


def _samples(obs: pd.DataFrame, label_key: str, time_key: str, event_key: str) -> pd.DataFrame:
    from mirror_genes import constants as K

    if label_key not in obs.columns:
        raise KeyError(f"obs has no label column {label_key!r} (columns: {', '.join(map(str, obs.columns))})")
    sample = (obs[K.SAMPLE_ID].astype(str) if K.SAMPLE_ID in obs.columns
              else pd.Series(obs.index.astype(str), index=obs.index)).str[:15]
    bad = [s for s in sample if not _BARCODE.match(s)]
    if bad:
        raise ValueError(f"{len(bad)} sample IDs are not TCGA barcodes (e.g. {bad[0]!r}); slide stems "
                         "must start with the 15-character sample barcode")
    if sample.duplicated().any():
        raise ValueError(f"sample {sample[sample.duplicated()].iloc[0]!r} appears twice in obs")
    patient = (obs[K.PATIENT_ID].astype(str) if K.PATIENT_ID in obs.columns else sample.str[:12])
    label = obs[label_key].astype(object)
    label = label.where(~label.isna() & (label.astype(str).str.strip() != ""), None)
    df = pd.DataFrame({"patient_id": patient.to_numpy(), "label": label.to_numpy(),
                       "site": sample.str[5:7].to_numpy()}, index=pd.Index(sample.to_numpy(), name="sample_id"))
    for key, col in ((time_key, "time"), (event_key, "event")):
        df[col] = pd.to_numeric(obs[key], errors="coerce").to_numpy(float) if key in obs.columns else np.nan
    return df.sort_index()


def _survival_scores(time: np.ndarray, event: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Normal scores of each patient's real survival rank (high = short survival).

    Events keep their time; a censored patient's time is imputed from the Kaplan-Meier
    distribution beyond its censoring time (past the last event: a random order after every
    event), so that censoring itself is not what the score encodes. NaN where unknown.
    """
    from statistics import NormalDist  # scipy.stats takes seconds to import

    out = np.full(len(time), np.nan)
    known = np.isfinite(time) & np.isfinite(event) & (time >= 0)
    t, e = time[known], event[known] > 0
    if e.sum() == 0:
        return out
    ev_times = np.unique(t[e])
    at_risk = np.array([(t >= s).sum() for s in ev_times], float)
    deaths = np.array([(t[e] == s).sum() for s in ev_times], float)
    surv = np.cumprod(1.0 - deaths / at_risk)      # KM just after each event time
    horizon = max(t.max(), ev_times.max())
    imputed = t.astype(float).copy()
    for i in np.flatnonzero(~e):
        before = ev_times <= t[i]
        s_t = surv[before][-1] if before.any() else 1.0
        target = rng.random() * s_t
        later = np.flatnonzero((ev_times > t[i]) & (surv <= target))
        imputed[i] = ev_times[later[0]] if later.size else horizon * (1.0 + rng.exponential(1.0))
    # ties (events at one time) broken at random, reproducibly
    order = np.lexsort((rng.random(len(imputed)), imputed))
    ranks = np.empty(len(imputed))
    ranks[order] = np.arange(len(imputed))
    inv = NormalDist().inv_cdf
    out[known] = [-inv((r + 0.5) / len(imputed)) for r in ranks]
    return out


def _look(label: str, classes: list[str], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Tumour-look mixture of one patient: softmax(strength * onehot(label) + N(0, I))."""
    logits = rng.normal(0.0, 1.0, len(classes))
    logits[classes.index(label)] += strength
    w = np.exp(logits - logits.max())
    return w / w.sum()


def _bag(rng: np.random.Generator, n: int, protos: np.ndarray, look: np.ndarray, slide_factor: float,
         nuisance: float, site_shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(features (n, D) float32, grid cells (n, 2), necrosis share) of one slide."""
    k = len(look)
    grid, dist = _tissue_grid(n, rng)
    comp = _composition(rng, nuisance, slide_factor)
    n_tum = min(n, max(1, int(round(comp["tumour"] * n))))
    order = np.argsort(dist, kind="stable")
    tissue = np.empty(n, dtype=np.int64)
    tissue[order[:n_tum]] = rng.choice(k, n_tum, p=look)
    others = np.asarray([comp[t] for t in _OTHER_TISSUES])
    tissue[order[n_tum:]] = k + rng.choice(len(others), n - n_tum, p=others / others.sum())
    dim = protos.shape[1]
    feats = (protos[tissue] + site_shift + rng.normal(0.0, _STAIN_SLIDE, dim)
             + rng.normal(0.0, _PATCH_NOISE, (n, dim)))
    necro = float(np.mean(tissue == k + _OTHER_TISSUES.index("necrosis")))
    return feats.astype(np.float32), grid, necro


# ------------------------------------------------------------------------------ API
def semi_synthetic_slides(
    adata_or_h5ad,
    out_dir: str | os.PathLike,
    *,
    label_key: str = "label",
    n_patches: int | tuple[int, int] = (100, 400),
    patch_dim: int = 64,
    seed: int = 0,
    multi_slide_rate: float = 0.1,
    label_strength: float = 1.2,
    survival_strength: float = 0.5,
    site_effect: float = 0.5,
    time_key: str = "time",
    event_key: str = "event",
    force: bool = False,
) -> SemiSyntheticSlides:
    """Write invented slide feature bags for the samples of a real transcriptomics cohort.

    The slides are generated from the real labels, the real survival and the tissue source
    site of each sample, never from its expression (docs/results.md, "Semi-synthetic
    generator").

    Parameters
    ----------
    adata_or_h5ad
        AnnData (or ``.h5ad`` path) as written by ``mirror-genes ingest`` / ``select``: obs
        index or ``sample_id`` = TCGA sample barcodes; ``patient_id``; the label column;
        ``time`` / ``event`` (optional: without them the slides carry no survival signal).
    out_dir
        Output folder: ``slides/20x_256px_0px_overlap/features_synthetic/*.h5`` (TRIDENT
        layout, stems ``<sample>Z-00-DX<k>.<UUID>``), ``truth.tsv``, ``slides.tsv``,
        ``semi_synthetic.json``.
    label_key
        obs column of the class label (any number of classes). Samples without a label get
        no slide (``.unlabelled``, and a warning).
    n_patches
        Patches per slide: a number, or an inclusive (low, high) range drawn per slide.
    patch_dim
        Patch feature dimension.
    seed
        Seed of everything random.
    multi_slide_rate
        Share of samples with two slides (``DX1``, ``DX2``); every labelled sample has one.
    label_strength
        Logit margin of a patient's own subtype in its tumour-look mixture (noise N(0, 1) per
        class and patient). 0: the slides know nothing of the label.
    survival_strength
        Correlation (0..1) of the slide-only factor with the normal score of the patient's
        real survival rank. 0: no survival signal.
    site_effect
        Standard deviation (per feature) of the stain shift shared by every slide of one
        tissue source site. 0: no site batch effect.
    time_key
        obs column of the survival time (days).
    event_key
        obs column of the event flag (1 = died, 0 = censored).
    force
        Replace the slide files of an earlier run in the same folder.

    Returns
    -------
    SemiSyntheticSlides
        Paths and planted truth.
    """
    from mirror_genes.utils import atomic_path, check_output, ensure_dir, now_utc, versions

    lo, hi = (n_patches, n_patches) if isinstance(n_patches, int) else (int(n_patches[0]), int(n_patches[1]))
    if (not 1 <= lo <= hi or patch_dim < 1 or not 0.0 <= multi_slide_rate <= 1.0 or label_strength < 0
            or not 0.0 <= survival_strength <= 1.0 or site_effect < 0):
        raise ValueError(f"n_patches {n_patches}, patch_dim {patch_dim}, multi_slide_rate {multi_slide_rate}, "
                         f"label_strength {label_strength}, survival_strength {survival_strength}, "
                         f"site_effect {site_effect}: out of range")
    obs, source = _read_obs(adata_or_h5ad)
    samples = _samples(obs, label_key, time_key, event_key)
    out = Path(out_dir)
    folder = out / SLIDE_SUBDIR
    check_output(folder, inputs=[source], force=force, kind="dir")
    ensure_dir(folder, what="slide folder")
    for old in folder.glob("*.h5"):  # only reached with force (check_output refuses a non-empty folder)
        old.unlink()

    has_label = samples["label"].notna().to_numpy()
    unlabelled = tuple(samples.index[~has_label])
    if unlabelled:
        warnings.warn(f"{len(unlabelled)} samples have no {label_key!r} and get no slide "
                      f"(e.g. {unlabelled[0]})", stacklevel=2)
    truth = samples.loc[has_label].copy()
    if truth.empty:
        raise ValueError(f"no sample has a {label_key!r} value")
    truth["label"] = truth["label"].astype(str)
    classes = sorted(truth["label"].unique())

    # survival: one score per patient (its first sample's time/event), then mapped to samples
    tissues, protos = _prototypes(np.random.default_rng([int(seed), _SALT, 0]), classes, patch_dim)
    per_patient = truth.drop_duplicates("patient_id").set_index("patient_id").sort_index()
    scores = pd.Series(_survival_scores(per_patient["time"].to_numpy(float),
                                        per_patient["event"].to_numpy(float),
                                        np.random.default_rng([int(seed), _SALT, 1])), index=per_patient.index)
    survival_signal = bool(np.isfinite(scores).any()) and survival_strength > 0
    if not np.isfinite(scores).any():
        warnings.warn(f"no usable {time_key!r}/{event_key!r} (absent, or no event): the slides carry no "
                      "survival signal", stacklevel=2)
    truth["survival_score"] = truth["patient_id"].map(scores).to_numpy(float)
    first_label = per_patient["label"]

    rows, looks, factors, nuisances = [], {}, {}, {}
    for pid in per_patient.index:  # patient-level draws, keyed by patient
        prng = _rng(seed, "patient", pid)
        z = scores[pid]
        noise = prng.normal()
        factors[pid] = (survival_strength * z + np.sqrt(1.0 - survival_strength ** 2) * noise
                        if np.isfinite(z) else noise)
        nuisances[pid] = prng.normal()
        looks[pid] = _look(first_label[pid], classes, label_strength, prng)
    sites = {}
    for site in sorted(truth["site"].unique()):
        srng = _rng(seed, "site", site)
        sites[site] = (srng.normal(0.0, site_effect, patch_dim) if site_effect > 0 else np.zeros(patch_dim),
                       int(srng.choice([_PATCH_SIZE, 2 * _PATCH_SIZE])))  # one scanner (20x / 40x) per site
    for sample, p in truth.iterrows():
        srng = _rng(seed, "sample", sample)
        shift, ps0 = sites[p["site"]]
        n_slides = 2 if srng.random() < multi_slide_rate else 1
        for k in range(1, n_slides + 1):
            n = int(srng.integers(lo, hi + 1))
            feats, grid, necro = _bag(srng, n, protos, looks[p["patient_id"]], factors[p["patient_id"]],
                                      nuisances[p["patient_id"]], shift)
            origin = srng.integers(2, 20, 2) * ps0
            coords = grid[:, ::-1] * ps0 + origin  # (x, y) level-0 top-left pixels
            stem = _stem(sample, k, srng)
            path = folder / f"{stem}.h5"
            _write_slide(path, feats, coords, stem, ps0)
            rows.append({"slide_id": stem, "sample_id": sample, "patient_id": p["patient_id"], "site": p["site"],
                         "n_patches": n, "patch_size_level0": ps0, "necrosis_share": necro, "path": path})
    slides = pd.DataFrame(rows)
    look = truth["patient_id"].map(looks)
    truth["own_look"] = [w[classes.index(lab)] for w, lab in zip(look, truth["label"])]
    truth["shown_label"] = [classes[int(np.argmax(w))] for w in look]
    truth["slide_factor"] = truth["patient_id"].map(factors).to_numpy(float)
    truth["immune_nuisance"] = truth["patient_id"].map(nuisances).to_numpy(float)
    truth["n_slides"] = slides.groupby("sample_id").size().reindex(truth.index, fill_value=0).to_numpy()
    truth = truth[["patient_id", "label", "site", "own_look", "shown_label", "time", "event",
                   "survival_score", "slide_factor", "immune_nuisance", "n_slides"]]

    params = {"label_key": label_key, "n_patches": [lo, hi], "patch_dim": patch_dim, "seed": int(seed),
              "multi_slide_rate": multi_slide_rate, "label_strength": label_strength,
              "survival_strength": survival_strength, "site_effect": site_effect,
              "time_key": time_key, "event_key": event_key}
    with atomic_path(out / TRUTH_FILE) as tmp:
        truth.to_csv(tmp, sep="\t", float_format="%.6g", lineterminator="\n")
    with atomic_path(out / SLIDES_FILE) as tmp:
        slides.assign(path=slides["path"].map(lambda q: str(q.relative_to(out)))).to_csv(
            tmp, sep="\t", index=False, float_format="%.6g", lineterminator="\n")
    meta = {"generator": "mirror_model.datasets.semi_synthetic_slides", "params": params,
            "source": source, "created": now_utc(), "versions": versions(), "classes": classes,
            "n_samples": int(len(truth)), "n_patients": int(truth["patient_id"].nunique()),
            "n_slides": int(len(slides)), "survival_signal": survival_signal, "unlabelled": list(unlabelled),
            "slides_dir": str(SLIDE_SUBDIR)}
    with atomic_path(out / PARAMS_FILE) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2) + "\n")
    return SemiSyntheticSlides(out_dir=out, slides_dir=folder, slide_files=tuple(sorted(slides["path"])),
                               truth=truth, slides=slides, unlabelled=unlabelled, classes=tuple(classes),
                               tissues=tissues, prototypes=protos, survival_signal=survival_signal,
                               params=params)


def write_semi_synthetic(h5ad: str | os.PathLike, out_dir: str | os.PathLike, **kw) -> SemiSyntheticSlides:
    """CLI entry (``mirror-model semi-synthetic --rna refined.h5ad --out DIR``).

    Parameters
    ----------
    h5ad
        ``.h5ad`` written by ``mirror-genes ingest`` or ``select`` (only its obs is read).
    out_dir
        Output folder (see :func:`semi_synthetic_slides`).
    **kw
        Passed on to :func:`semi_synthetic_slides` (``force=True`` for ``--force``, ``seed``,
        ``label_key``, ...).

    Returns
    -------
    SemiSyntheticSlides
        Paths and planted truth; print ``result.summary()`` for the user.
    """
    if not str(h5ad).endswith(".h5ad"):
        from mirror_genes.utils import InputFileError

        raise InputFileError(h5ad, "expected an .h5ad file (written by mirror-genes ingest or select)")
    return semi_synthetic_slides(Path(h5ad), out_dir, **kw)
