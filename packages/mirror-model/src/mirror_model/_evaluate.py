"""Evaluation of pretrained MIRROR runs: an embedding cache, then the probes of ``mirror_model.eval``.

Frozen encoders run **once per (checkpoint, data, sampling)**: the slide and RNA embeddings of
every slide item go to ``<cache>/<checkpoint sha256[:16]>/<key[:16]>.npz``, where the key hashes
the checkpoint's content, the data fingerprint (slide files, the RNA values actually paired) and
the patch sampling; every later probe (any task, protocol, modality setting, shot count) reads
that file. Rows are slide items; the probes get **one row per patient**, the mean of the
embeddings of that patient's slides, because folds, few-shot draws and predictions are keyed by
patient. Details: docs/evaluation.md ("Commands", "Embedding cache").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import constants as C
from ._errors import CheckpointError, ConfigError, EvaluationError

CACHE_DIR = ".cache"          # hidden: reports of the folder skip it
CACHE_FORMAT, CACHE_VERSION = "mirror-model-embedding-cache", 1
MODALITIES = ("wsi+rna", "wsi", "rna")
TASKS = ("subtyping", "survival")
PROTOCOLS = ("linear", "fewshot")
AGGREGATION = ("one row per patient: the mean of the embeddings of the patient's slides "
               "(each slide embedded on its own, eval mode)")
EVALUATION_JSON = "evaluation.json"
COMMANDS_TXT = "commands.txt"


def _few(names, k: int = 3) -> str:
    names = list(names)
    return ", ".join(map(str, names[:k])) + (f", ... ({len(names)} in all)" if len(names) > k else "")


def check_choice(value: str, allowed, option: str) -> str:
    """``value`` when it is one of ``allowed``; else a one-line :class:`ConfigError` naming ``option``."""
    if value not in allowed:
        raise ConfigError(f"{option}: {value!r} is not one of {', '.join(allowed)}")
    return value


# ---------------------------------------------------------------------------------- embeddings
@dataclass
class PatientEmbeddings:
    """Encoder outputs, one row per patient (mean over the patient's slides).

    Attributes
    ----------
    patients
        Patient barcodes, sorted.
    slide
        Slide [CLS] embeddings (n, dim).
    rna
        RNA embeddings (n, dim); None for slides-only data.
    n_slides
        Slides averaged per patient.
    info
        Where they came from: ``checkpoint``, ``checkpoint_sha256``, ``cache``, ``cache_hit``,
        ``sampling``, ``n_patches``, ``seed``, ``aggregation``.
    """

    patients: np.ndarray
    slide: np.ndarray
    rna: np.ndarray | None
    n_slides: np.ndarray
    info: dict = field(default_factory=dict)

    def matrix(self, modalities: str) -> np.ndarray:
        """The probe input: ``wsi`` (slide), ``rna``, or ``wsi+rna`` (their concatenation, the paper's)."""
        check_choice(modalities, MODALITIES, "--modalities")
        if modalities != "wsi" and self.rna is None:
            raise ConfigError(f"--modalities {modalities}: the data have no RNA (slides only); "
                              "give --rna, or use --modalities wsi")
        if modalities == "wsi":
            return self.slide
        return self.rna if modalities == "rna" else np.concatenate([self.slide, self.rna], axis=1)


def aggregate_by_patient(patient_ids, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict, np.ndarray]:
    """Mean of per-slide rows per patient.

    Parameters
    ----------
    patient_ids
        Patient of each row.
    arrays
        name -> (n_rows, d) arrays.

    Returns
    -------
    (sorted patients, name -> (n_patients, d) float32 means, rows per patient).
    """
    codes, patients = pd.factorize(pd.Index(np.asarray(patient_ids).astype(str)), sort=True)
    counts = np.bincount(codes, minlength=len(patients))
    means = {}
    for name, arr in arrays.items():
        sums = np.zeros((len(patients), arr.shape[1]), dtype=np.float64)
        np.add.at(sums, codes, arr.astype(np.float64))
        means[name] = (sums / counts[:, None]).astype(np.float32)
    return np.asarray(patients, dtype=str), means, counts


def data_fingerprint(pairing) -> dict:
    """What the embeddings depend on besides the checkpoint: the slide files and the paired RNA.

    Slides: ``slides_fingerprint`` (names, sizes, mtimes: contents are not read). RNA: sha256 of
    the paired rows' values in slide order, with sample IDs and feature names, so the same table
    under another path hits the cache and another pairing misses it.
    """
    from .train import slides_fingerprint

    out = {"slides": slides_fingerprint(s.path for s in pairing.slides),
           "slide_ids": hashlib.sha256("\n".join(s.slide_id for s in pairing.slides).encode()).hexdigest()}
    if pairing.rna is not None:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(pairing.rna.values[pairing.rna_rows], dtype=np.float32).tobytes())
        h.update("\n".join(pairing.rna.sample_ids[i] for i in pairing.rna_rows).encode())
        h.update("\n".join(pairing.rna.features).encode())
        out["rna"] = {"sha256": h.hexdigest(), "n_features": len(pairing.rna.features)}
    return out


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _read_cache(path: Path, key: str) -> dict | None:
    """The cached per-slide arrays, or None when absent, unreadable or made for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        meta = json.loads(str(data.pop("meta")))
    except Exception as err:  # a damaged file: recompute rather than fail the evaluation
        warnings.warn(f"{path}: unreadable embedding cache ({str(err).splitlines()[0][:80]}); recomputing",
                      stacklevel=3)
        return None
    if meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
        return None
    return {**data, "meta": meta}


def _write_cache(path: Path, data: dict, meta: dict) -> None:
    from mirror_genes.utils import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.savez adds no suffix
        np.savez(fh, meta=np.asarray(json.dumps(meta)), **data)


def _encode(model, pairing, **kw) -> dict[str, np.ndarray]:
    """Run the frozen encoders (the only place that does; tests count its calls)."""
    from ._embed import encode_dataset

    return encode_dataset(model, pairing, **kw)


def embed_cached(checkpoint, pairing, *, cache_dir, n_patches: int | None = None, seed: int = 0,
                 batch_size: int = 1, device: str | None = None, progress: bool | None = None) -> PatientEmbeddings:
    """Patient-level embeddings of ``pairing`` under ``checkpoint``, computed once and cached.

    Parameters
    ----------
    checkpoint
        A checkpoint file or a run folder (its ``checkpoint_last.pt``).
    pairing
        Slides (and RNA) to embed (:func:`mirror_model.data.pair_slides`).
    cache_dir
        Cache folder; entries are ``<checkpoint sha256[:16]>/<key[:16]>.npz``.
    n_patches
        Embed a fixed seeded sample of this many patches per slide; None: every patch.
    seed
        Seed of that sample.
    batch_size
        Slides per forward pass.
    device
        ``auto``/``cpu``/``cuda`` (default: the checkpoint's training setting).
    progress
        Progress bar of the encoder pass.

    Returns
    -------
    :class:`PatientEmbeddings`; ``info["cache_hit"]`` says whether the encoders ran.
    """
    from mirror_genes.utils import sha256_file

    from .train import resolve_checkpoint_path

    ckpt_path = resolve_checkpoint_path(checkpoint)
    ckpt_sha = sha256_file(ckpt_path)
    sampling = "fixed" if n_patches else "all"
    fields = {"checkpoint_sha256": ckpt_sha, "data": data_fingerprint(pairing), "sampling": sampling,
              "n_patches": int(n_patches) if n_patches else -1, "seed": int(seed) if n_patches else -1,
              "version": CACHE_VERSION}
    key = _digest(fields)
    path = Path(cache_dir) / ckpt_sha[:16] / f"{key[:16]}.npz"
    data = _read_cache(path, key)
    hit = data is not None
    if not hit:
        data = _compute_slide_embeddings(ckpt_path, pairing, n_patches=n_patches, seed=seed, batch_size=batch_size,
                                         device=device, progress=progress)
        meta = {"format": CACHE_FORMAT, "key": key, **fields, "checkpoint": str(ckpt_path),
                "rows": "one row per slide item (patient means are taken on reading)"}
        _write_cache(path, data, meta)
    info = {"checkpoint": str(ckpt_path), "checkpoint_sha256": ckpt_sha, "cache": str(path), "cache_hit": hit,
            "sampling": sampling, "n_patches": fields["n_patches"], "seed": fields["seed"],
            "aggregation": AGGREGATION}
    return _patient_embeddings(data, info)


def _compute_slide_embeddings(ckpt_path, pairing, **kw) -> dict[str, np.ndarray]:
    from ._model import MIRROR

    model = MIRROR.load(ckpt_path)
    kinds = [C.KIND_SLIDE] + ([C.KIND_RNA] if pairing.rna is not None else [])
    sampling = "fixed" if kw.get("n_patches") else "all"
    reps = _encode(model, pairing, kinds=kinds, sampling=sampling, **kw)
    return {"slide_ids": np.asarray([s.slide_id for s in pairing.slides], dtype=str),
            "patient_ids": np.asarray([s.patient_id for s in pairing.slides], dtype=str), **reps}


def _patient_embeddings(data: dict, info: dict) -> PatientEmbeddings:
    arrays = {k: data[k] for k in (C.KIND_SLIDE, C.KIND_RNA) if k in data}
    patients, means, counts = aggregate_by_patient(data["patient_ids"], arrays)
    return PatientEmbeddings(patients, means[C.KIND_SLIDE], means.get(C.KIND_RNA), counts, info)


def slide_embeddings_to_patients(slide_ids, patient_ids, slide, rna=None, info=None) -> PatientEmbeddings:
    """Patient-level embeddings from per-slide arrays (e.g. TANGLE's), with the same aggregation."""
    data = {"slide_ids": np.asarray(slide_ids), "patient_ids": np.asarray(patient_ids), C.KIND_SLIDE: slide}
    if rna is not None:
        data[C.KIND_RNA] = rna
    return _patient_embeddings(data, {"aggregation": AGGREGATION, **(info or {})})


# ---------------------------------------------------------------------------------- runs
def run_checkpoints(run, n_folds: int) -> list[Path]:
    """The checkpoint of each fold.

    Parameters
    ----------
    run
        A pretraining run folder. A folder of per-fold runs (``mirror-model pretrain
        --all-folds``: ``run.json`` kind ``mirror-model-folds``) gives ``RUN/fold_<k>`` to fold k;
        any other run folder, saved model folder or checkpoint file is one checkpoint used for
        every fold.
    n_folds
        Number of folds of the splits.

    Returns
    -------
    One checkpoint path per fold. :class:`CheckpointError` when a checkpoint is missing;
    :class:`ConfigError` when the run has another number of folds, or the fold checkpoints
    hold different model configurations.
    """
    from .train import read_manifest, resolve_checkpoint_path
    from .train._rundir import FOLDS_KIND

    run = Path(run)
    manifest = read_manifest(run) if run.is_dir() else None
    if manifest is None or manifest.get("kind") != FOLDS_KIND:
        return [resolve_checkpoint_path(run)] * n_folds
    have = int(manifest.get("n_folds", n_folds))
    if have != n_folds:
        raise ConfigError(f"{run}: holds {have} fold run(s), the splits have {n_folds} fold(s)")
    paths = [resolve_checkpoint_path(run / f"fold_{k}") for k in range(n_folds)]
    _check_same_architecture(paths)
    return paths


def _check_same_architecture(paths: list[Path]) -> None:
    """Every fold's checkpoint must hold the architecture of fold 0's (one method, one table row)."""
    from .train import load_checkpoint

    first = None
    for path in dict.fromkeys(paths):
        config = dict(load_checkpoint(path).get("model_config") or {})
        config.pop("activation_checkpointing", None)  # a memory lever, not the architecture
        if first is None:
            first = config
            continue
        for key in sorted(set(first) | set(config)):
            if first.get(key) != config.get(key):
                raise CheckpointError(f"{path}: checkpoint has model.{key} = {config.get(key)!r}, fold 0's "
                                      f"({paths[0]}) has {first.get(key)!r}: the folds come from different "
                                      "configurations")


def recorded_splits(run) -> Path:
    """The splits folder recorded in a run's ``run.json`` (``options.splits``)."""
    from .train import read_manifest

    run = Path(run)
    manifest = read_manifest(run) if run.is_dir() else None
    splits = ((manifest or {}).get("options") or {}).get("splits")
    if not splits:
        raise ConfigError(f"--splits: {run} records no splits (pretrained without --splits); give --splits DIR")
    if not Path(splits).exists():  # recorded as typed: relative to where pretrain ran
        raise ConfigError(f"--splits: {run} records the splits {splits!r}, not found from here; give --splits DIR")
    return Path(splits)


def default_cache_dir(run) -> Path:
    """``RUN/.cache`` (beside a checkpoint file: its folder's ``.cache``), shared by every evaluation of the run."""
    run = Path(run)
    return (run if run.is_dir() else run.parent) / CACHE_DIR


def pretraining_patients(checkpoint: Path) -> set[str] | None:
    """Patients a checkpoint's run was pretrained on (its ``pairing.json``), None when unknown."""
    path = Path(checkpoint).parent / C.PAIRING_REPORT
    try:
        return set(json.loads(path.read_text())["matched"]["patients"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None


def warn_transductive(checkpoints, folds) -> None:
    """One warning line per checkpoint whose encoders saw (unlabelled) held-out patients of its folds.

    Parameters
    ----------
    checkpoints
        Checkpoint of each fold.
    folds
        (train, val) patients per fold.
    """
    seen: dict[Path, list] = {}
    for k, (ckpt, (_, val)) in enumerate(zip(checkpoints, folds, strict=True)):
        pretrained = pretraining_patients(ckpt)
        overlap = sorted(set(val) & pretrained) if pretrained else []
        if overlap:
            seen.setdefault(ckpt, []).append((k, overlap))
    for ckpt, hits in seen.items():
        n = sum(len(o) for _, o in hits)
        warnings.warn(f"{ckpt} was pretrained on {n} validation patient(s) of fold(s) "
                      f"{', '.join(str(k) for k, _ in hits)} (e.g. {_few(hits[0][1], 2)}): its encoders saw them, "
                      "without labels; pretrain per fold (pretrain --all-folds) for a strict protocol", stacklevel=3)


# ---------------------------------------------------------------------------------- labels and folds
def read_targets(rna=None, labels=None) -> pd.DataFrame:
    """Per-patient ``label``, ``time``, ``event`` (those present), index ``patient_id``.

    Parameters
    ----------
    rna
        A refined ``.h5ad`` (its obs carry the labels; ``mirror-genes select`` writes them).
    labels
        Instead: a CSV/TSV with a ``patient_id`` column (else the first column) and
        ``label`` and/or ``time``, ``event``.

    Returns
    -------
    One row per patient (the first sample's values when a patient has several).
    """
    from mirror_genes.utils import InputFileError

    if labels is not None:
        path = Path(labels)
        try:
            df = pd.read_csv(path, sep="\t" if path.suffix.lower() in (".tsv", ".txt") else ",")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise InputFileError(path, f"cannot read labels ({str(err).splitlines()[0][:120]})") from None
        key = C.PATIENT_ID if C.PATIENT_ID in df.columns else df.columns[0]
        df = df.assign(**{C.PATIENT_ID: df[key].astype(str).str[:12]})
    elif rna is not None and str(rna).lower().endswith(".h5ad"):
        from ._embed import _rna_obs

        obs = _rna_obs(rna)
        ids = obs[C.PATIENT_ID].astype(str) if C.PATIENT_ID in obs.columns else obs.index.astype(str).str[:12]
        df = obs.assign(**{C.PATIENT_ID: np.asarray(ids)})
    else:
        raise ConfigError("labels: the RNA input carries none (not an .h5ad); give --labels FILE "
                          "(patient_id, label, time, event)")
    cols = [c for c in (C.LABEL, C.TIME, C.EVENT) if c in df.columns]
    return df[[C.PATIENT_ID, *cols]].drop_duplicates(C.PATIENT_ID).set_index(C.PATIENT_ID)


def task_targets(targets: pd.DataFrame, task: str) -> pd.DataFrame:
    """The patients with what ``task`` needs (a label; or time and event), typed."""
    need = [C.LABEL] if task == "subtyping" else [C.TIME, C.EVENT]
    missing = [c for c in need if c not in targets.columns]
    if missing:
        raise ConfigError(f"--task {task}: the labels have no {', '.join(repr(c) for c in missing)} column")
    out = targets[need].dropna()
    if task == "survival":
        out = out.astype({C.TIME: float, C.EVENT: float})
    else:
        out = out.astype({C.LABEL: str})
    return out


def prepare_folds(folds, known, usable, what: str) -> list[tuple[list[str], list[str]]]:
    """Folds restricted to usable patients; unknown patients are an error.

    Parameters
    ----------
    folds
        (train, val) patient lists per fold.
    known
        Every patient the slides, the RNA or the labels mention.
    usable
        Patients with a paired slide and the task's targets.
    what
        What the unusable ones lack (for the warning).

    Returns
    -------
    The folds without the unusable patients (one warning line lists them).
    """
    dropped = set()
    out = []
    for k, (train, val) in enumerate(folds):
        unknown = sorted((set(train) | set(val)) - set(known))
        if unknown:
            raise EvaluationError(f"fold {k}: {len(unknown)} split patient(s) are unknown (in neither the slides, "
                                  f"the RNA nor the labels): {_few(unknown)}")
        dropped |= (set(train) | set(val)) - set(usable)
        out.append(([p for p in train if p in usable], [p for p in val if p in usable]))
    if dropped:
        warnings.warn(f"{len(dropped)} split patient(s) have {what}; left out of every fold "
                      f"(e.g. {_few(sorted(dropped), 2)})", stacklevel=2)
    return out


def check_fold_targets(folds, targets: pd.DataFrame, task: str) -> None:
    """Refuse folds a probe cannot fit, before any work: one class, or no events, in a training part."""
    for k, (train, val) in enumerate(folds):
        if not train or not val:
            raise EvaluationError(f"fold {k}: the {'training' if not train else 'validation'} side is empty "
                                  "(no patient with a paired slide and the task's targets)")
        if task == "subtyping":
            present = sorted(set(targets.loc[train, C.LABEL]))
            if len(present) < 2:
                raise EvaluationError(f"fold {k}: the training part holds one class only ({_few(present)}); "
                                      "a probe needs at least two")
            absent = sorted(set(targets.loc[val, C.LABEL]) - set(present))
            if absent:
                raise EvaluationError(f"fold {k}: class(es) {_few(absent)} appear in validation but not in training")
        elif not targets.loc[train, C.EVENT].astype(bool).any():
            raise EvaluationError(f"fold {k}: no events (deaths) in the training part; survival bins and the "
                                  "hazard model need observed events")


def target_kwargs(targets: pd.DataFrame, patients, task: str) -> dict:
    """The probes' ``labels=`` or ``time=, event=`` for ``patients``, in order."""
    rows = targets.loc[list(patients)]
    if task == "subtyping":
        return {"labels": rows[C.LABEL].to_numpy(str)}
    return {"time": rows[C.TIME].to_numpy(float), "event": rows[C.EVENT].to_numpy(float)}


# ---------------------------------------------------------------------------------- probes
@contextlib.contextmanager
def as_fold(k: int):
    """Run a one-fold probe call as fold ``k``: its messages say "fold 0", rewrite them.

    Per-fold checkpoints give a different embedding matrix per fold, so each fold is probed by
    its own call (folds=[fold_k]); errors and warnings are renamed to the real fold number.
    """
    def fix(text: str) -> str:
        return re.sub(r"\bfold 0\b", f"fold {k}", text, count=1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except EvaluationError as err:
            raise EvaluationError(fix(str(err))) from None
    for w in caught:
        warnings.warn(fix(str(w.message)), w.category, stacklevel=3)


@dataclass
class ProbeSettings:
    """How the probes run (defaults: the reference, docs/evaluation.md)."""

    shots: tuple[int, ...] = (10,)
    n_repeats: int = 5
    epochs: int = 100
    reference_protocol: bool = False
    logreg: bool = True        # add the logistic-regression probe to the linear protocol (subtyping)
    seed: int = 42


def probe_fold(k: int, emb: PatientEmbeddings, fold, targets: pd.DataFrame, *, task: str, protocol: str,
               modalities: str, method: str, settings: ProbeSettings):
    """Probe one fold's embeddings; the result's ``fold`` column is ``k``.

    Parameters
    ----------
    k
        Fold number.
    emb
        Embeddings under fold k's checkpoint.
    fold
        (train patients, val patients), already restricted to usable patients.
    targets
        :func:`task_targets` output.
    task
        ``subtyping`` or ``survival``.
    protocol
        ``linear`` (inner-validated probe, plus logistic regression for subtyping) or ``fewshot``.
    modalities
        ``wsi+rna``, ``wsi`` or ``rna``.
    method
        Written in the ``method`` column.
    settings
        :class:`ProbeSettings`.

    Returns
    -------
    An :class:`~mirror_model.eval.EvalResult`.
    """
    from . import eval as ev

    keep = np.isin(emb.patients, np.asarray(list(fold[0]) + list(fold[1]), dtype=str))
    X, pats = emb.matrix(modalities)[keep], emb.patients[keep]
    kw = dict(method=method, modalities=modalities, seed=settings.seed, progress=False,
              **target_kwargs(targets, pats, task))
    with as_fold(k):
        if protocol == "linear":
            parts = [ev.linear_probe(X, pats, [fold], epochs=settings.epochs,
                                     reference_protocol=settings.reference_protocol, **kw)]
            if task == "subtyping" and settings.logreg:
                parts.append(ev.logreg_probe(X, pats, [fold], **kw))
        else:
            parts = [ev.few_shot_probe(X, pats, [fold], shots=list(settings.shots), n_repeats=settings.n_repeats,
                                       epochs=settings.epochs, reference_protocol=settings.reference_protocol, **kw)]
    result = ev.combine_results(*parts)
    for frame in (result.predictions, result.metrics, result.runs):
        frame["fold"] = np.int64(k)
    return result


# ---------------------------------------------------------------------------------- evaluate
@dataclass
class Evaluation:
    """What :func:`evaluate` returns: the probe results, the embeddings used, and provenance."""

    result: object                       # mirror_model.eval.EvalResult
    embeddings: list[PatientEmbeddings]  # fold k's (one object shared when one checkpoint serves all)
    targets: pd.DataFrame
    info: dict


def _load_inputs(slides, rna, labels, task: str, modalities: str, folds):
    """Pairing, task targets and usable folds; everything that can fail on bad input, first."""
    from .data import discover_slides, pair_slides, read_rna

    if modalities != "wsi" and rna is None:
        raise ConfigError(f"--modalities {modalities}: the data have no RNA (slides only); give --rna, "
                          "or use --modalities wsi")
    pairing = pair_slides(discover_slides(slides, progress=False), read_rna(rna) if rna is not None else None)
    targets = task_targets(read_targets(rna, labels), task)
    usable = set(pairing.patients) & set(targets.index)
    what = "no paired slide or no label" if task == "subtyping" else "no paired slide or no survival time/event"
    folds = prepare_folds(folds, pairing.known_patients | set(targets.index), usable, what)
    check_fold_targets(folds, targets, task)
    return pairing, targets, folds


def evaluate(run, *, slides, rna=None, labels=None, task: str = "subtyping", protocol: str = "linear",
             splits=None, modalities: str = "wsi+rna", settings: ProbeSettings | None = None,
             cache_dir=None, n_patches: int | None = None, embed_seed: int = 0, batch_size: int = 1,
             device: str | None = None, method: str = "MIRROR", progress: bool | None = None) -> Evaluation:
    """Probe the frozen encoders of a pretraining run over patient-level folds.

    Parameters
    ----------
    run
        Pretraining run (``RUN/fold_<k>`` per fold after ``--all-folds``; otherwise one
        checkpoint for every fold, see :func:`run_checkpoints`).
    slides
        Folder of patch-feature files.
    rna
        Refined ``.h5ad`` (labels come from its obs unless ``labels`` is given); None: slides only.
    labels
        Per-patient label table (needed without an ``.h5ad``).
    task
        ``subtyping`` or ``survival``.
    protocol
        ``linear`` or ``fewshot``.
    splits
        Folder of ``splits_<k>.csv``; None: the splits recorded in the run.
    modalities
        ``wsi+rna`` (default, the paper's), ``wsi`` or ``rna``.
    settings
        :class:`ProbeSettings` (shots, repeats, epochs, reference protocol, seed).
    cache_dir
        Embedding cache; None: ``RUN/.cache``.
    n_patches
        Embed a fixed seeded sample of N patches per slide (default: all patches).
    embed_seed
        Seed of that sample.
    batch_size
        Slides per encoder pass.
    device
        Encoder device.
    method
        Name in the ``method`` column.
    progress
        Progress bar over folds.

    Returns
    -------
    :class:`Evaluation`.
    """
    from mirror_genes.splits import read_splits
    from mirror_genes.utils import step_bar

    from . import eval as ev

    check_choice(task, TASKS, "--task")
    check_choice(protocol, PROTOCOLS, "--protocol")
    check_choice(modalities, MODALITIES, "--modalities")
    settings = settings or ProbeSettings()
    splits = Path(splits) if splits is not None else recorded_splits(run)
    raw_folds = read_splits(splits)
    checkpoints = run_checkpoints(run, len(raw_folds))
    pairing, targets, folds = _load_inputs(slides, rna, labels, task, modalities, raw_folds)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(run)
    warn_transductive(checkpoints, folds)
    by_ckpt: dict[Path, PatientEmbeddings] = {}
    results = []
    with step_bar(f"{method} {task} {protocol} ({modalities})", len(folds), progress=progress) as advance:
        for k, fold in enumerate(folds):
            if checkpoints[k] not in by_ckpt:
                by_ckpt[checkpoints[k]] = embed_cached(checkpoints[k], pairing, cache_dir=cache, n_patches=n_patches,
                                                       seed=embed_seed, batch_size=batch_size, device=device,
                                                       progress=False)
            results.append(probe_fold(k, by_ckpt[checkpoints[k]], fold, targets, task=task, protocol=protocol,
                                      modalities=modalities, method=method, settings=settings))
            advance()
    info = {"run": str(run), "splits": str(splits), "task": task, "protocol": protocol, "modalities": modalities,
            "method": method, "settings": dict(settings.__dict__, shots=list(settings.shots)),
            "n_folds": len(folds), "patients_per_fold": [[len(a), len(b)] for a, b in folds],
            "embeddings": [by_ckpt[c].info for c in checkpoints], "aggregation": AGGREGATION}
    return Evaluation(ev.combine_results(*results), [by_ckpt[c] for c in checkpoints], targets, info)


# ---------------------------------------------------------------------------------- outputs
FIGURE_METRICS = ("accuracy", "macro_f1", "auc", "c_index")
_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def display_methods(frame: pd.DataFrame) -> pd.DataFrame:
    """Methods probed under several modality settings get ``method [modalities]`` for their
    single-modality rows, so one figure bar or table row never mixes settings."""
    multi = frame.groupby("method")["modalities"].nunique()
    tag = frame["method"].map(multi).fillna(1).gt(1) & frame["modalities"].ne("wsi+rna")
    return frame.assign(method=np.where(tag, frame["method"] + " [" + frame["modalities"] + "]", frame["method"]))


def write_figures(result, folder, *, umap: dict | None = None, umap_labels=None, umap_color: str = "label",
                  seed: int = 0) -> list[Path]:
    """Probe-metric bars, Kaplan-Meier curves (survival) and a UMAP of embeddings, as PNGs.

    Parameters
    ----------
    result
        An :class:`~mirror_model.eval.EvalResult`.
    folder
        Output folder (``figures/`` inside it is created).
    umap
        ``{panel name: (n, d) array}`` of patient embeddings to draw; None: no UMAP.
    umap_labels
        Colour value per row.
    umap_color
        Legend title.
    seed
        UMAP seed.

    Returns
    -------
    The written paths: ``probe_<metric>.png``, ``km_<method>_<protocol>.png`` (survival: each
    method's all-data run, or its few-shot runs' first seed when it has no other), ``umap.png``.
    """
    from . import eval as ev
    from .pl import umap_embeddings
    from .pl._common import save_png

    figures = Path(folder) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = display_methods(result.metrics)
    for metric in FIGURE_METRICS:
        if (metrics["metric"] == metric).any() and metrics.loc[metrics["metric"] == metric, "value"].notna().any():
            save_png(ev.plot_probe_metrics(metrics, metric), figures / f"probe_{metric}.png")
            written.append(figures / f"probe_{metric}.png")
    surv = display_methods(result.predictions)
    surv = surv[surv["task"] == "survival"]
    full = set(surv.loc[~surv["protocol"].str.contains("shot"), "method"])
    for (method, protocol), rows in surv.groupby(["method", "protocol"], sort=False):
        if "shot" in protocol and method in full:  # one curve per method: its all-data run when it has one
            continue
        first = rows[rows["seed"] == rows["seed"].min()]
        path = figures / f"km_{_SAFE.sub('_', method)}_{protocol}.png"
        save_png(ev.plot_kaplan_meier(first, method=method, protocol=protocol), path)
        written.append(path)
    if umap:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # umap-learn/numba chatter: the figure is what matters
            umap_embeddings(umap, labels=umap_labels, color=umap_color, seed=seed, save=figures / "umap.png")
        written.append(figures / "umap.png")
    return written


def umap_inputs(emb: PatientEmbeddings, targets: pd.DataFrame, task: str) -> tuple[dict, np.ndarray, str]:
    """Panels (slide, RNA, joint) of the patients with targets, and their colour (subtype, or event)."""
    keep = np.isin(emb.patients, targets.index.to_numpy(str))
    panels = {"slide": emb.slide[keep]}
    if emb.rna is not None:
        panels.update(rna=emb.rna[keep], joint=np.concatenate([emb.slide, emb.rna], axis=1)[keep])
    rows = targets.loc[emb.patients[keep]]
    if task == "subtyping":
        return panels, rows[C.LABEL].to_numpy(str), "label"
    return panels, np.where(rows[C.EVENT].to_numpy(float) > 0, "event", "censored"), "event"


def write_evaluation(evaluation: Evaluation, folder, *, command: str | None = None, umap: bool = True) -> list[Path]:
    """Write an evaluation: tables (``eval.write_results``), figures, ``evaluation.json``, ``commands.txt``.

    Parameters
    ----------
    evaluation
        Output of :func:`evaluate`.
    folder
        Output folder (the CLI passes a temporary folder renamed when complete).
    command
        The exact command line, for ``commands.txt``.
    umap
        Draw the UMAP of fold 0's embeddings (umap-learn compiles on first use: ~20 s).

    Returns
    -------
    Paths written.
    """
    from mirror_genes.utils import now_utc

    from . import eval as ev
    from ._model import _versions
    from .train._rundir import write_json

    folder = Path(folder)
    info = evaluation.info
    shots = info["settings"]["shots"]
    paths = list(ev.write_results(evaluation.result, folder, shots=shots[0] if shots else 10).values())
    panels = umap_inputs(evaluation.embeddings[0], evaluation.targets, info["task"]) if umap else None
    paths += write_figures(evaluation.result, folder, umap=panels[0] if panels else None,
                           umap_labels=panels[1] if panels else None, umap_color=panels[2] if panels else "label")
    write_json(folder / EVALUATION_JSON, {"kind": "mirror-model-evaluation", "created": now_utc(),
                                          "command": command, **info, "versions": _versions()})
    paths.append(folder / EVALUATION_JSON)
    if command:
        (folder / COMMANDS_TXT).write_text(command + "\n")
        paths.append(folder / COMMANDS_TXT)
    return paths


def command_line(command=None, values: dict | None = None, argv=None) -> str:
    """The command as typed (``mirror-model ...``), shell-quoted.

    Parameters
    ----------
    command
        The typer command function (used when the process is not the ``mirror-model`` program,
        e.g. a command invoked in-process by a test runner).
    values
        Its parameter values (``locals()`` at its start).
    argv
        Default ``sys.argv``.

    Returns
    -------
    From ``argv`` when the process is ``mirror-model`` (or ``python -m mirror_model.cli``);
    otherwise rebuilt from ``command``'s options: every value that differs from its default.
    """
    import shlex
    import sys
    import typing

    argv = list(sys.argv if argv is None else argv)
    prog = os.path.basename(argv[0]) if argv else ""
    if prog.startswith("mirror-model") or (prog == "__main__.py" and "mirror_model" in argv[0]) or command is None:
        return " ".join(["mirror-model"] + [shlex.quote(a) for a in argv[1:]])
    import inspect

    words = ["mirror-model", command.__name__.removesuffix("_command")]
    hints = typing.get_type_hints(command, include_extras=True)
    for name, param in inspect.signature(command).parameters.items():
        value, info = (values or {}).get(name), getattr(hints.get(name), "__metadata__", [None])[0]
        spelling = getattr(info, "default", None)
        if value is None or value == param.default:
            continue
        if not isinstance(spelling, str) or not spelling.startswith("-"):  # an argument
            words.append(shlex.quote(str(value)))
        elif isinstance(value, bool):  # "--umap/--no-umap": the spelling that sets this value
            on, _, off = spelling.partition("/")
            words.append(on if value else off or on)
        else:
            for v in value if isinstance(value, (list, tuple)) else [value]:
                words += [spelling, shlex.quote(str(v))]
    return " ".join(words)
