"""One benchmark unit = one method on one fold, for every task: pretrain or fit, then predict.

MIRROR and its ablations pretrain on the fold's training patients (a run folder each), are
embedded through the cache of :mod:`mirror_model._evaluate`, then probed; TANGLE likewise
(embeddings kept as ``embeddings.npz``); ABMIL and PORPOISE are trained supervised with the
epoch chosen on an inner validation split of the training fold; Linear fits concat(mean-pooled
patches, RNA). Every unit returns ``{task: EvalResult}``; the caller stores them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import constants as C
from ._evaluate import CACHE_DIR, MODALITIES, ProbeSettings, embed_cached, probe_fold, slide_embeddings_to_patients

MIRROR_VARIANTS = {
    "MIRROR": {},
    "MIRROR-align": dict(use_wsi_retention=False, use_rna_retention=False, use_style=False, use_cluster=False),
    "MIRROR-align+retention": dict(use_style=False, use_cluster=False),
    "MIRROR-align+clustering": dict(use_wsi_retention=False, use_rna_retention=False),
}
SUPERVISED = (C.METHOD_ABMIL, C.METHOD_PORPOISE)
METHODS = (*MIRROR_VARIANTS, C.METHOD_TANGLE, C.METHOD_ABMIL, C.METHOD_PORPOISE, C.METHOD_LINEAR)
INNER_FRACTION = 0.2


def _probe_settings(ctx) -> ProbeSettings:
    s = ctx.settings
    return ProbeSettings(shots=(s.shots,), n_repeats=s.n_repeats, epochs=s.probe_epochs, logreg=False, seed=s.seed)


def _probe_all(ctx, emb, method: str, k: int, tasks, modalities=("wsi+rna",)) -> dict:
    """Linear (inner-validated) and few-shot probes of one fold's embeddings, per task and modality setting."""
    from . import eval as ev

    out = {}
    for task in tasks:
        parts = [probe_fold(k, emb, ctx.folds[task][k], ctx.targets[task], task=task, protocol=protocol,
                            modalities=m, method=method, settings=_probe_settings(ctx))
                 for m in modalities for protocol in ("linear", "fewshot")]
        out[task] = ev.combine_results(*parts)
    return out


# ---------------------------------------------------------------------------------- MIRROR family
def mirror_config(ctx, method: str):
    """The variant's configuration: the preset plus the benchmark's epochs/patches, ablated modules off."""
    from .config import resolve_config

    s = ctx.settings
    model = {"patch_dim": ctx.patch_dim, "n_genes": ctx.n_genes, **MIRROR_VARIANTS[method]}
    train = {"epochs": s.epochs, "n_patches": s.n_patches, "seed": s.seed, "device": s.device}
    return resolve_config(preset=s.preset, model=model, train=train)


def pretrain_mirror(ctx, method: str, k: int, step) -> Path:
    """Pretrain (or resume, or reuse) the variant on fold k's training patients; returns its run folder."""
    from ._model import MIRROR
    from .train import read_manifest

    run_dir = ctx.out / "pretrain" / method / f"fold_{k}"
    manifest = read_manifest(run_dir)
    if manifest is not None and manifest.get("status") == "finished":
        return run_dir
    step(f"fold {k}: {method}: pretraining")
    model = MIRROR.from_config(*mirror_config(ctx, method))
    model.train(ctx.pairing, train_patients=ctx.raw_folds[k][0], split_name=f"fold {k} train", run_dir=run_dir,
                resume=manifest is not None, progress=False,
                run_info={"command": ctx.command, "method": method, "fold": k, "options": ctx.options})
    return run_dir


def mirror_unit(ctx, method: str, k: int, tasks, step) -> dict:
    """Pretrain, embed (cached) and probe one MIRROR variant on fold k; MIRROR also per single modality."""
    run_dir = pretrain_mirror(ctx, method, k, step)
    step(f"fold {k}: {method}: embedding + probes")
    emb = embed_cached(run_dir / C.CHECKPOINT_LAST, ctx.pairing, cache_dir=run_dir.parent / CACHE_DIR,
                       n_patches=ctx.settings.embed_patches, device=ctx.settings.device, progress=False)
    ctx.embeddings[(method, k)] = emb
    return _probe_all(ctx, emb, method, k, tasks, MODALITIES if method == "MIRROR" else ("wsi+rna",))


# ---------------------------------------------------------------------------------- TANGLE
def tangle_config(ctx):
    """TANGLE settings: ``TangleConfig.small`` for the small preset, the paper's otherwise; the
    benchmark's epochs and patches override; warm-up never exceeds the epochs."""
    from .baselines import TangleConfig

    s = ctx.settings
    base = TangleConfig.small() if s.preset == "small" else TangleConfig()
    epochs = s.epochs or base.epochs
    return TangleConfig(**{**base.to_dict(), "patch_dim": ctx.patch_dim, "n_genes": ctx.n_genes, "seed": s.seed,
                           "device": s.device, "epochs": epochs, "warmup_epochs": min(base.warmup_epochs, epochs),
                           "n_patches": s.n_patches or base.n_patches})


def _tangle_embeddings(ctx, k: int, folder: Path, step) -> dict:
    """Pretrain TANGLE on fold k's training patients and embed every slide; kept in ``folder``."""
    from mirror_genes.utils import atomic_path

    from .baselines import pretrain_tangle, tangle_embeddings
    from .data import MirrorDataset, Standardizer

    path = folder / "embeddings.npz"
    if not path.is_file():
        step(f"fold {k}: TANGLE: pretraining")
        train = ctx.pairing.restrict(ctx.raw_folds[k][0], name=f"fold {k} train")
        std = Standardizer.fit(ctx.pairing.rna, patients=train.patients)
        cfg = tangle_config(ctx)
        ds = MirrorDataset(train, standardizer=std, n_patches=cfg.n_patches, sampling="random", seed=cfg.seed,
                           noise=False, coords=False)
        model, history = pretrain_tangle(ds, cfg)
        full = MirrorDataset(ctx.pairing, standardizer=std, sampling="all", noise=False, coords=False)
        reps = tangle_embeddings(model, full, device=cfg.device)
        with atomic_path(folder, is_dir=True) as tmp:
            pd.DataFrame(history).to_csv(tmp / C.METRICS_CSV, index=False)
            (tmp / C.RUN_CONFIG).write_text(json.dumps({"tangle": cfg.to_dict(), "fold": k}, indent=2) + "\n")
            with open(tmp / "embeddings.npz", "wb") as fh:
                np.savez(fh, slide_ids=np.asarray([s.slide_id for s in ctx.pairing.slides], dtype=str),
                         patient_ids=np.asarray([s.patient_id for s in ctx.pairing.slides], dtype=str),
                         slide=reps[C.KIND_SLIDE], rna=reps[C.KIND_RNA])
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def tangle_unit(ctx, k: int, tasks, step) -> dict:
    """Pretrain TANGLE on fold k, then the same probes as MIRROR (concat of slide and RNA embeddings)."""
    folder = ctx.out / "pretrain" / C.METHOD_TANGLE / f"fold_{k}"
    data = _tangle_embeddings(ctx, k, folder, step)
    step(f"fold {k}: TANGLE: probes")
    emb = slide_embeddings_to_patients(data["slide_ids"], data["patient_ids"], data["slide"], data["rna"],
                                       info={"source": str(folder / "embeddings.npz")})
    return _probe_all(ctx, emb, C.METHOD_TANGLE, k, tasks)


# ---------------------------------------------------------------------------------- supervised baselines
class BagStore:
    """Patch features per patient: every slide of the patient, concatenated into one bag.

    MIL baselines predict per patient (folds and predictions are patient-level), so a patient
    with several slides is one bag of all their patches. Bags are read lazily and kept in memory
    when the whole cohort's features fit in ``max_bytes`` (they are read every epoch).
    """

    def __init__(self, pairing, max_bytes: int = 1 << 30) -> None:
        self.slides: dict[str, list] = {}
        self.rna_row: dict[str, int] = {}
        for i, s in enumerate(pairing.slides):
            self.slides.setdefault(s.patient_id, []).append(s)
            if len(pairing.rna_rows):
                self.rna_row.setdefault(s.patient_id, int(pairing.rna_rows[i]))
        self.keep = sum(s.n_patches * s.dim * 4 for s in pairing.slides) <= max_bytes
        self._bags: dict[str, np.ndarray] = {}

    def patches(self, patient: str) -> np.ndarray:
        """(N, D) float32 patches of all the patient's slides, in slide order."""
        from .data import read_slide

        bag = self._bags.get(patient)
        if bag is None:
            bag = np.concatenate([read_slide(s).features for s in self.slides[patient]])
            if self.keep:
                self._bags[patient] = bag
        return bag


class PatientBags(torch.utils.data.Dataset):
    """Items ``{C.PATCHES: (N, D), C.RNA: (G,)}``, one per patient (RNA standardised on the training fold)."""

    def __init__(self, store: BagStore, patients, rna: np.ndarray | None = None) -> None:
        self.store, self.patients, self.rna = store, list(patients), rna

    def __len__(self) -> int:
        return len(self.patients)

    def __getitem__(self, i: int) -> dict:
        item = {C.PATCHES: torch.from_numpy(self.store.patches(self.patients[i]))}
        if self.rna is not None:
            item[C.RNA] = torch.from_numpy(self.rna[i])
        return item


def inner_split(positions: np.ndarray, strata: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified inner train / validation split of the training fold (20 %), seeded."""
    from sklearn.model_selection import train_test_split

    try:
        tr, va = train_test_split(positions, test_size=INNER_FRACTION, stratify=strata, random_state=seed)
    except ValueError:  # a stratum of one: split without stratification rather than fail
        tr, va = train_test_split(positions, test_size=INNER_FRACTION, random_state=seed)
    return np.sort(tr), np.sort(va)


def _fold_arrays(ctx, task: str, k: int) -> dict:
    """Patients of fold k (training first), positions, and the task's per-position targets.

    Subtyping ``y`` indexes the training classes; survival ``y`` is the time bin, with edges
    fitted on the training part only. Held-out values are filled in but never read by the fits.
    """
    from . import eval as ev

    train, val = ctx.folds[task][k]
    patients = list(train) + list(val)
    rows = ctx.targets[task].loc[patients]
    tr, te = np.arange(len(train)), np.arange(len(train), len(patients))
    out = {"patients": patients, "train": tr, "test": te}
    if task == "subtyping":
        labels = rows[C.LABEL].to_numpy(str)
        classes = sorted(set(labels[tr]))
        out.update(labels=labels, classes=classes, y=np.asarray([classes.index(v) for v in labels]),
                   strata=labels[tr])
    else:
        time, event = rows[C.TIME].to_numpy(float), rows[C.EVENT].to_numpy(float)
        edges = ev.survival_bins(time[tr], event[tr])
        out.update(time=time, event=event, y=ev.assign_bins(time, edges), strata=event[tr].astype(int))
    return out


def _baseline_result(pred: pd.DataFrame, run: dict):
    """An EvalResult of one baseline fit; metrics from its predictions (one code path)."""
    import warnings

    from . import eval as ev

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined-metric warnings are given once, on assembly
        metrics = ev.metrics_from_predictions(pred)
    return ev.EvalResult(pred, metrics, pd.DataFrame([run]))


def shot_draws(ctx, a: dict, k: int):
    """The few-shot training sets of fold k: ``(seed, positions)`` per repeat.

    The draws are the few-shot probes' own (:func:`mirror_model.eval.shot_seed`, patients in
    ID order), so every method of the benchmark is trained on the same k cases per class
    (subtyping) or per time bin (survival).
    """
    from . import eval as ev

    s = ctx.settings
    order = np.asarray(sorted(a["train"], key=lambda i: a["patients"][i]))
    groups = a["labels"][order] if "labels" in a else a["y"][order]
    for r in range(s.n_repeats):
        picked, _ = ev.draw_per_group(groups, order, shots=s.shots,
                                      seed=ev.shot_seed(s.seed, repeat=r, fold=k, shots=s.shots))
        yield s.seed + r, picked


def _patient_rna(ctx, a: dict) -> np.ndarray:
    """RNA rows of fold k's patients, standardised on its whole training part (PORPOISE's input)."""
    from .data import Standardizer

    std = Standardizer.fit(ctx.pairing.rna, patients=[a["patients"][i] for i in a["train"]])
    return std.transform(ctx.pairing.rna.values[[ctx.store.rna_row[p] for p in a["patients"]]])


def _fit_mil(ctx, method: str, a: dict, task: str, rna, *, train, inner_val, seed: int):
    """One ABMIL or PORPOISE fit on ``train`` positions (epoch chosen on ``inner_val``, or the last
    one when it is None), predicting the fold's held-out part."""
    from .baselines import ABMIL, PORPOISE, fit_supervised

    s = ctx.settings
    n_out = len(a["classes"]) if task == "subtyping" else 4
    torch.manual_seed(seed)
    model = (ABMIL(ctx.patch_dim, n_out) if method == C.METHOD_ABMIL
             else PORPOISE(ctx.patch_dim, ctx.n_genes, n_out))
    return fit_supervised(model, PatientBags(ctx.store, a["patients"], rna), a["y"], task=task, train_idx=train,
                          val_idx=inner_val, test_idx=a["test"], event=a.get("event"), time=a.get("time"),
                          epochs=s.baseline_epochs, n_patches=s.baseline_patches, batch_size=s.baseline_batch_size,
                          lr=s.baseline_lr, seed=seed, device=s.device)


def supervised_unit(ctx, method: str, k: int, tasks, step) -> dict:
    """ABMIL or PORPOISE on fold k: trained on the training part with the epoch chosen by
    inner-validation loss, and on each few-shot draw for the fixed number of epochs."""
    from . import eval as ev

    s, out = ctx.settings, {}
    modalities = "wsi" if method == C.METHOD_ABMIL else "wsi+rna"
    for task in tasks:
        step(f"fold {k}: {method}: {task}")
        a = _fold_arrays(ctx, task, k)
        rna = _patient_rna(ctx, a) if method == C.METHOD_PORPOISE else None
        tr, va = inner_split(a["train"], a["strata"], s.seed + k)
        fits = [("supervised", s.seed, tr, va)]
        fits += [(f"supervised-{s.shots}shot", seed, picked, None) for seed, picked in shot_draws(ctx, a, k)]
        parts = []
        for protocol, seed, train, inner_val in fits:
            res = _fit_mil(ctx, method, a, task, rna, train=train, inner_val=inner_val, seed=seed)
            pred = res.to_predictions(a["patients"], fold=k, seed=seed, labels=a["y"], classes=a.get("classes"),
                                      time=a.get("time"), event=a.get("event"), protocol=protocol,
                                      modalities=modalities)
            parts.append(_baseline_result(pred, {
                "method": method, "task": task, "protocol": protocol, "modalities": modalities, "fold": k,
                "seed": seed, "selection": "inner-val-loss" if inner_val is not None else "last-epoch",
                "n_train": len(train), "n_val": len(a["test"]),
                "n_inner_val": 0 if inner_val is None else len(inner_val), "selected_epoch": res.best_epoch}))
        out[task] = ev.combine_results(*parts)
    return out


def linear_features(ctx) -> tuple[list[str], np.ndarray]:
    """Per patient: concat(mean over the patient's slides of each slide's mean patch, raw RNA)."""
    from .data import read_slide

    if ctx.linear is None:
        means = {p: np.mean([read_slide(s).features.mean(0) for s in slides], axis=0)
                 for p, slides in ctx.store.slides.items()}
        patients = sorted(means)
        rna = ctx.pairing.rna.values[[ctx.store.rna_row[p] for p in patients]]
        ctx.linear = (patients, np.concatenate([np.stack([means[p] for p in patients]), rna], axis=1))
    return ctx.linear


def _fit_linear(a: dict, task: str, X: np.ndarray, train: np.ndarray, k: int, seed: int, protocol: str):
    """Linear on ``train`` positions, predicting fold k's held-out part. Regularisation by inner CV;
    where a few-shot draw leaves a stratum (class; event or censored) with one case, inner CV is
    impossible and the fixed ``FIXED_C`` / ``FIXED_ALPHA`` is used (``selection`` says which)."""
    from .baselines import FIXED_ALPHA, FIXED_C, inner_cv_possible, linear_subtyping, linear_survival

    strata = a["labels"][train] if task == "subtyping" else a["event"][train]
    cv = inner_cv_possible(strata)
    if task == "subtyping":
        grid = {} if cv else {"Cs": (FIXED_C,)}
        res = linear_subtyping(X, a["labels"], train_idx=train, test_idx=a["test"], seed=seed, **grid)
        chosen = {"C": res.params["C"]}
        pred = res.to_predictions(a["patients"], fold=k, seed=seed, labels=a["labels"], protocol=protocol)
    else:
        grid = {} if cv else {"alphas": (FIXED_ALPHA,)}
        res = linear_survival(X, a["y"], event=a["event"], time=a["time"], train_idx=train, test_idx=a["test"],
                              seed=seed, **grid)
        chosen = {"alpha": res.params["alpha"]}
        pred = res.to_predictions(a["patients"], fold=k, seed=seed, labels=a["y"], time=a["time"],
                                  event=a["event"], protocol=protocol)
    return _baseline_result(pred, {
        "method": C.METHOD_LINEAR, "task": task, "protocol": protocol, "modalities": "wsi+rna", "fold": k,
        "seed": seed, "selection": "inner-cv" if cv else "fixed", "n_train": len(train), "n_val": len(a["test"]),
        **chosen})


def linear_unit(ctx, k: int, tasks, step) -> dict:
    """The Linear baseline on fold k: logistic regression (subtyping), linear hazard (survival),
    regularisation by inner CV; on the whole training part and on each few-shot draw."""
    from . import eval as ev

    patients, X = linear_features(ctx)
    index = pd.Index(patients)
    s, out = ctx.settings, {}
    for task in tasks:
        step(f"fold {k}: Linear: {task}")
        a = _fold_arrays(ctx, task, k)
        Xf = X[index.get_indexer(a["patients"])]
        protocol = "logreg" if task == "subtyping" else "hazard"
        parts = [_fit_linear(a, task, Xf, a["train"], k, s.seed, protocol)]
        parts += [_fit_linear(a, task, Xf, picked, k, seed, f"{protocol}-{s.shots}shot")
                  for seed, picked in shot_draws(ctx, a, k)]
        out[task] = ev.combine_results(*parts)
    return out
