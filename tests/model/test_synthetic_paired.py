"""mirror_model.datasets.synthetic_paired_cohort: layouts, mirror-genes compatibility, planted signal."""

import re
import time
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

import mirror_genes as mg
from mirror_model import constants as C
from mirror_model.data import MirrorDataset, Standardizer, discover_slides, pair_slides, read_rna
from mirror_model.datasets import SLIDE_SUBDIR, synthetic_paired_cohort

STEM = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-01Z-00-DX[12]\."
                  r"[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[0-9A-F]{4}-[0-9A-F]{12}$")
SURVIVAL_HEADER = "sample\t_PATIENT\tOS\tOS.time\tDSS\tDSS.time\tDFI\tDFI.time\tPFI\tPFI.time\tRedaction"


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    start = time.perf_counter()
    res = synthetic_paired_cohort(tmp_path_factory.mktemp("paired"), seed=0)
    return res, time.perf_counter() - start


@pytest.fixture(scope="module")
def ingested(paired):
    res, _ = paired
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mg.ingest(res.cohort, expression=res.expression, phenotype=res.phenotype,
                         survival=res.survival, progress=False)


def test_files_in_the_layouts(paired):
    res, seconds = paired
    assert seconds < 60  # seconds on a laptop; generous for loaded CI machines
    assert res.slides_dir == res.xena.cgc.parent.parent / SLIDE_SUBDIR
    assert len(res.slide_files) == len(res.slides) > 150 and all(p.parent == res.slides_dir for p in res.slide_files)
    sizes = set()
    for path in res.slide_files[:40]:
        assert STEM.match(path.name.removesuffix(".h5")), path.name
        with h5py.File(path) as f:
            feats, coords = f["features"], f["coords"]
            assert feats.dtype == np.float32 and feats.shape[1] == 64 and 100 <= feats.shape[0] <= 400
            assert coords.dtype == np.int64 and coords.shape == (feats.shape[0], 2)
            ps0 = int(coords.attrs["patch_size_level0"])
            assert coords.attrs["patch_size"] == 256 and coords.attrs["target_magnification"] == 20
            assert np.all(coords[:] % ps0 == 0) and len(np.unique(coords[:], axis=0)) == len(coords)
            sizes.add(ps0)
    assert sizes == {256, 512}  # patch size at level 0 varies between slides
    per_sample = res.slides.groupby("sample_id").size()
    assert (per_sample == 2).sum() >= 10 and per_sample.max() == 2
    head = res.survival[0].read_text().splitlines()[0]
    assert head == SURVIVAL_HEADER


def test_truth_table(paired):
    res, _ = paired
    t = res.patients
    assert {"both", "slide_only", "rna_only", "none"} == set(t["visibility"])
    assert (t["n_slides"] == 0).sum() >= 2 and (~t["has_rna"]).sum() >= 2
    with_rna = t[t["has_rna"]]
    assert with_rna["shared_factor"].std() == pytest.approx(1.0, abs=0.05)
    assert res.prototypes.shape == (len(res.tissues), 64)


def test_mirror_genes_ingest_reads_the_rna_and_rewritten_survival(paired, ingested):
    res, _ = paired
    t = res.patients
    obs = ingested.obs.set_index(C.PATIENT_ID)
    assert set(obs.index) == set(t.index[t["has_rna"]])
    both = obs.index[obs[C.TIME].notna()]
    np.testing.assert_array_equal(obs.loc[both, C.TIME].to_numpy(), t.loc[both, "time"].to_numpy())
    np.testing.assert_array_equal(obs.loc[both, C.EVENT].to_numpy(), t.loc[both, "event"].to_numpy())
    assert 0.2 < t["event"].mean() < 0.8
    assert t.loc[obs.index, "time"].isna().sum() == obs[C.TIME].isna().sum()  # unknown OS stays unknown


def test_data_layer_pairs_it(paired, ingested):
    res, _ = paired
    adata = ingested.copy()
    x = np.asarray(adata.X)
    adata.X = np.where(np.isnan(x), np.nanmean(x, axis=0), x)  # the Xena files carry NA cells
    pairing = pair_slides(discover_slides(res.slides_dir), read_rna(adata))
    t = res.patients
    assert pairing.report.patients == sorted(t.index[t["has_rna"] & (t["n_slides"] > 0)])
    assert {s[:12] for s in pairing.report.no_rna} == set(t.index[~t["has_rna"]])
    assert {s[:12] for s in pairing.report.no_slide} == set(t.index[t["has_rna"] & (t["n_slides"] == 0)])
    ds = MirrorDataset(pairing, standardizer=Standardizer.fit(pairing.rna), n_patches=128)
    assert ds[0][C.PATCHES].shape == (128, 64) and ds[0][C.COORDS].shape == (128, 2)


def _balanced_cv_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    model = LogisticRegression(C=0.1, max_iter=5000, class_weight="balanced")
    pred = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    return balanced_accuracy_score(y, pred)


def _block(values: np.ndarray) -> np.ndarray:
    # z-score, then scale the block by 1/sqrt(width) so that 500 genes do not outweigh 64 slide dims
    z = (values - values.mean(0)) / np.where(values.std(0) > 0, values.std(0), 1.0)
    return z / np.sqrt(values.shape[1])


def test_subtype_is_predictable_from_each_modality_and_better_from_both(paired, ingested):
    res, _ = paired
    pooled = {}
    for row in res.slides.itertuples():
        with h5py.File(row.path) as f:
            pooled.setdefault(row.patient_id, []).append(f["features"][:].mean(0))
    slide = pd.DataFrame({p: np.mean(v, axis=0) for p, v in pooled.items()}).T
    x = np.asarray(ingested.X, dtype=float)
    rna = pd.DataFrame(np.where(np.isnan(x), np.nanmean(x, axis=0), x), index=ingested.obs[C.PATIENT_ID])
    patients = sorted(set(slide.index) & set(rna.index))
    y = ingested.obs.set_index(C.PATIENT_ID).loc[patients, C.LABEL].astype(str).to_numpy()
    s, r = _block(slide.loc[patients].to_numpy()), _block(rna.loc[patients].to_numpy())
    acc_slide, acc_rna = _balanced_cv_accuracy(s, y), _balanced_cv_accuracy(r, y)
    acc_both = _balanced_cv_accuracy(np.hstack([s, r]), y)
    print(f"balanced accuracy: slides {acc_slide:.3f}, RNA {acc_rna:.3f}, both {acc_both:.3f}")
    assert 0.6 < acc_slide < 0.97 and 0.6 < acc_rna < 0.97  # chance is 0.5
    assert acc_both > max(acc_slide, acc_rna)


def _harrell_c(time_: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    ok = event[:, None].astype(bool) & (time_[:, None] < time_[None, :])
    conc = (risk[:, None] > risk[None, :]) + 0.5 * (risk[:, None] == risk[None, :])
    return float((conc * ok).sum() / ok.sum())


def test_survival_depends_on_shared_slide_only_and_rna_only_factors(paired):
    t = paired[0].patients
    t = t[t["has_rna"] & t["time"].notna()]
    time_, event = t["time"].to_numpy(), t["event"].to_numpy()
    for factor in ("shared_factor", "slide_factor", "rna_factor"):
        assert _harrell_c(time_, event, t[factor].to_numpy()) > 0.55, factor
    assert _harrell_c(time_, event, t["risk"].to_numpy()) > 0.65


def test_slides_reflect_the_shared_factor(paired):
    """Lymphocyte share follows the gene-module score: alignment has something to find."""
    res, _ = paired
    lymph = res.prototypes[res.tissues.index("lymphocytes")]
    other = np.delete(res.prototypes, res.tissues.index("lymphocytes"), axis=0).mean(0)
    direction = lymph - other
    score = {}
    for row in res.slides.itertuples():
        with h5py.File(row.path) as f:
            score[row.patient_id] = float(f["features"][:].mean(0) @ direction)
    t = res.patients.loc[list(score)]
    assert np.corrcoef(t["shared_factor"], pd.Series(score)[t.index])[0, 1] > 0.4


def test_deterministic_for_a_seed(tmp_path):
    a = synthetic_paired_cohort(tmp_path / "a", n_patients=60, n_patches=50, seed=3)
    b = synthetic_paired_cohort(tmp_path / "b", n_patients=60, n_patches=50, seed=3)
    pd.testing.assert_frame_equal(a.patients, b.patients)
    assert [p.name for p in a.slide_files] == [p.name for p in b.slide_files]
    with h5py.File(a.slide_files[0]) as fa, h5py.File(b.slide_files[0]) as fb:
        np.testing.assert_array_equal(fa["features"][:], fb["features"][:])
    assert a.expression[0].read_bytes() == b.expression[0].read_bytes()
