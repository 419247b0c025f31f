"""mirror_model.data: slide files, RNA, pairing, standardisation, sampling, laziness, collate, bad input."""

import json
import pickle
import shutil
import tracemalloc
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from mirror_genes.splits import make_splits, splits_to_patients
from mirror_genes.utils import InputFileError
from mirror_model import constants as C
from mirror_model._errors import ConfigError, PairingError, SlideFileError
from mirror_model.data import (
    MirrorDataset,
    Standardizer,
    collate_bags,
    discover_slides,
    pair_slides,
    read_rna,
    read_slide,
    sample_patches,
    validate_slides,
)

D = 16
UUID = "0A1B2C3D-4E5F-4061-8293-A4B5C6D7E8F9"


def stem(patient: str, dx: int = 1, sample: str = "01") -> str:
    return f"{patient}-{sample}Z-00-DX{dx}.{UUID[:-1]}{dx}"


def write_h5(path: Path, feats: np.ndarray, coords: np.ndarray | None = None, coords_attrs: dict | None = None,
             file_attrs: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=feats)
        if coords is not None:
            ds = f.create_dataset("coords", data=coords)
            ds.attrs.update(coords_attrs or {})
        f.attrs.update(file_attrs or {})
    return path


def trident(path: Path, n: int, ps0: int, seed: int = 0, dim: int = D) -> Path:
    rng = np.random.default_rng(seed)
    coords = np.stack(np.divmod(np.arange(n), 7), axis=1)[:, ::-1].astype(np.int64) * ps0
    attrs = {"patch_size": 256, "patch_size_level0": ps0, "target_magnification": 20,
             "level0_magnification": 40 if ps0 == 512 else 20, "overlap": 0, "name": path.stem}
    return write_h5(path, rng.normal(size=(n, dim)).astype(np.float32), coords, attrs)


def one_line(err: pytest.ExceptionInfo, path) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


@pytest.fixture
def cohort(tmp_path):
    """6 patients; patient P0 has two slides of one sample; P5 has a slide but no RNA."""
    patients = [f"TCGA-AA-{i:04d}" for i in range(6)]
    root = tmp_path / "features" / "20x_256px_0px_overlap" / "features_uni"
    for i, p in enumerate(patients):
        trident(root / f"{stem(p)}.h5", n=20 + 10 * i, ps0=512 if i % 2 else 256, seed=i)
    trident(root / "sub" / f"{stem(patients[0], 2)}.h5", n=15, ps0=256, seed=99)
    rna_ids = [f"{p}-01" for p in patients[:5]] + ["TCGA-AA-0099-01"]  # 0099: RNA without slide
    values = np.random.default_rng(1).normal(size=(len(rna_ids), 8)) + np.arange(len(rna_ids))[:, None]
    csv = tmp_path / "brca_pruned_rna.csv"
    pd.DataFrame(values, index=pd.Index(rna_ids, name="sample"),
                 columns=[f"G{j}" for j in range(8)]).to_csv(csv)
    return {"root": root, "csv": csv, "patients": patients, "values": values, "rna_ids": rna_ids}


# ------------------------------------------------------------------------------ reading files
def test_trident_h5_attrs_kept_and_patch_size_per_slide(tmp_path):
    a = trident(tmp_path / f"{stem('TCGA-AA-0001')}.h5", n=30, ps0=512)
    b = trident(tmp_path / f"{stem('TCGA-AA-0002')}.h5", n=12, ps0=256, seed=1)
    recs = discover_slides(tmp_path)
    assert [r.path for r in recs] == [str(a), str(b)]
    assert [r.patch_size_level0 for r in recs] == [512, 256]
    assert recs[0].attrs["coords"]["level0_magnification"] == 40 and recs[0].attrs["coords"]["name"] == a.stem
    assert (recs[0].kind, recs[0].n_patches, recs[0].dim, recs[0].has_coords) == ("h5", 30, D, True)
    bag = read_slide(recs[0], np.array([5, 1, 5, 29]))
    with h5py.File(a) as f:
        np.testing.assert_array_equal(bag.features, f["features"][:][[5, 1, 5, 29]])
        np.testing.assert_array_equal(bag.coords, f["coords"][:][[5, 1, 5, 29]])
    assert bag.features.flags.c_contiguous and bag.features.dtype == np.float32 and bag.coords.dtype == np.int64
    json.dumps(recs[0].attrs)  # plain Python


def test_clam_h5_with_real_coords(tmp_path, shared_data):
    real = sorted((shared_data / "xena-samples").glob("*.h5"))
    if not real:
        pytest.skip(f"no real CLAM coords file in {shared_data / 'xena-samples'}")
    with h5py.File(real[0]) as f:
        coords, attrs = f["coords"][:], dict(f["coords"].attrs)
    feats = np.random.default_rng(0).normal(size=(len(coords), D)).astype(np.float32)
    path = write_h5(tmp_path / real[0].name, feats, coords, attrs)  # CLAM layout + synthetic features
    (rec,) = discover_slides(tmp_path)
    assert rec.slide_id == real[0].stem and rec.sample_id == real[0].name[:15] and rec.patient_id == real[0].name[:12]
    assert rec.attrs["coords"]["patch_size"] == 512 and rec.attrs["coords"]["patch_level"] == 0
    assert rec.attrs["coords"]["level_dim"] == [int(v) for v in attrs["level_dim"]]
    assert rec.patch_size_level0 == 512  # CLAM: patch_size x downsample
    rows = np.array([1480, 0, 700])
    bag = read_slide(path, rows)
    np.testing.assert_array_equal(bag.coords, coords[rows])
    np.testing.assert_array_equal(bag.features, feats[rows])


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_reference_pt_bare_tensor(tmp_path, legacy):
    feats = torch.randn(40, D)
    path = tmp_path / f"{stem('TCGA-AA-0003')}.pt"
    torch.save(feats, path, _use_new_zipfile_serialization=not legacy)
    (rec,) = discover_slides(tmp_path)
    assert (rec.kind, rec.n_patches, rec.dim, rec.has_coords, rec.patch_size_level0) == ("pt", 40, D, False, None)
    bag = read_slide(rec, np.array([3, 3, 39]))
    np.testing.assert_array_equal(bag.features, feats.numpy()[[3, 3, 39]])
    assert bag.coords is None


def test_discovery_recursive_deterministic_and_barcodes(tmp_path):
    names = [stem("TCGA-ZZ-0009"), stem("TCGA-AB-0001", 2), stem("TCGA-AB-0001", 1), stem("TCGA-CD-0002", 1, "06")]
    dirs = ["a/b", "", "z", "a"]
    for i, (n, d) in enumerate(zip(names, dirs)):
        trident(tmp_path / d / f"{n}.h5", n=10, ps0=256, seed=i)
    torch.save(torch.randn(5, D), tmp_path / "a" / f"{stem('TCGA-EF-0003')}.pt")
    trident(tmp_path / "a" / f".{names[0]}.h5.tmp.h5", n=10, ps0=256)  # a writer's hidden temp file
    (tmp_path / "notes.txt").write_text("not a slide")
    recs = discover_slides(tmp_path)
    assert [r.slide_id for r in recs] == sorted([*names, stem("TCGA-EF-0003")])
    by = {r.slide_id: r for r in recs}
    assert by[names[3]].sample_id == "TCGA-CD-0002-06" and by[names[3]].patient_id == "TCGA-CD-0002"
    assert by[names[1]].sample_id == by[names[2]].sample_id == "TCGA-AB-0001-01"
    assert [r.slide_id for r in discover_slides(tmp_path)] == [r.slide_id for r in recs]


# ------------------------------------------------------------------------------ RNA and pairing
def test_read_rna_csv_h5ad_and_gdc_ids(tmp_path, cohort):
    rna = read_rna(cohort["csv"])
    assert rna.sample_ids == tuple(cohort["rna_ids"]) and rna.patient_ids[0] == "TCGA-AA-0000"
    np.testing.assert_allclose(rna.values, cohort["values"], rtol=1e-6)
    obs = pd.DataFrame({C.PATIENT_ID: ["P-1", "P-2"]}, index=["TCGA-AA-0000-01A", "TCGA-AA-0001-01A"])
    adata = ad.AnnData(np.ones((2, 3), np.float32), obs=obs, var=pd.DataFrame(index=["g1", "g2", "g3"]))
    adata.write_h5ad(tmp_path / "refined.h5ad")
    rna2 = read_rna(tmp_path / "refined.h5ad")
    assert rna2.sample_ids == ("TCGA-AA-0000-01", "TCGA-AA-0001-01")  # GDC vial letter cut
    assert rna2.patient_ids == ("P-1", "P-2") and rna2.features == ("g1", "g2", "g3")
    assert read_rna(adata).source == "<AnnData>"


def test_multi_slide_sample_shares_rna_and_never_straddles_a_split(cohort):
    slides = discover_slides(cohort["root"])
    pairing = pair_slides(slides, read_rna(cohort["csv"]))
    p0 = [i for i, s in enumerate(pairing.slides) if s.patient_id == "TCGA-AA-0000"]
    assert len(p0) == 2 and pairing.rna_rows[p0[0]] == pairing.rna_rows[p0[1]]
    std = Standardizer.fit(pairing.rna)
    ds = MirrorDataset(pairing, standardizer=std, n_patches=8)
    assert torch.equal(ds[p0[0]][C.RNA], ds[p0[1]][C.RNA])
    patients = [s.patient_id for s in pairing.slides]  # one row per slide: slides of a patient group
    folds = splits_to_patients(make_splits(["a", "b"] * 3, patients, 2, random_state=0), patients)
    for train, val in folds:
        tr, va = pairing.restrict(train, name="train"), pairing.restrict(val, name="val")
        assert not {s.sample_id for s in tr.slides} & {s.sample_id for s in va.slides}
        assert len(tr) + len(va) == len(pairing)
        assert sum("TCGA-AA-0000" == s.patient_id for s in tr.slides) in (0, 2)


def test_standardizer_uses_training_patients_only(cohort):
    rna = read_rna(cohort["csv"])
    train = ["TCGA-AA-0000", "TCGA-AA-0001", "TCGA-AA-0002"]
    std = Standardizer.fit(rna, patients=train)
    x = cohort["values"][:3]
    np.testing.assert_allclose(std.mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.std, x.std(0), rtol=1e-5)
    assert std.n_fit == 3 and not np.allclose(std.mean, cohort["values"].mean(0))
    z = std.transform(rna)
    np.testing.assert_allclose(z[:3].mean(0), 0.0, atol=1e-5)
    assert z[3:].mean() > 1.0  # validation rows are not centred (their means are larger by design)
    # storable with the model: plain types load with weights_only=True
    buf = __import__("io").BytesIO()
    torch.save({"standardizer": std.state_dict()}, buf)
    buf.seek(0)
    back = Standardizer.from_state_dict(torch.load(buf, weights_only=True)["standardizer"])
    np.testing.assert_array_equal(back.mean, std.mean)
    assert back.features == std.features


def test_standardizer_npz_roundtrip_and_constant_feature(tmp_path, cohort):
    rna = read_rna(cohort["csv"])
    std = Standardizer.fit(rna, patients=["TCGA-AA-0000"])  # one row: every std is 0 -> 1
    assert np.all(std.std == 1.0)
    back = Standardizer.load(std.save(tmp_path / C.STANDARDIZER))
    np.testing.assert_array_equal(back.mean, std.mean)
    assert back.features == std.features and back.n_fit == 1


def test_pairing_report_lists_what_was_dropped_and_why(tmp_path, cohort):
    pairing = pair_slides(discover_slides(cohort["root"]), read_rna(cohort["csv"]))
    rep = pairing.report
    assert rep.no_rna == [stem("TCGA-AA-0005")] and rep.no_slide == ["TCGA-AA-0099-01"]
    assert (len(rep.slides), len(rep.samples), len(rep.patients)) == (6, 5, 5)
    train = pairing.restrict(["TCGA-AA-0000", "TCGA-AA-0001", "TCGA-AA-0099"], name="train")
    r2 = train.report
    assert r2.split == "train" and r2.patients == ["TCGA-AA-0000", "TCGA-AA-0001"]
    assert sorted(r2.not_in_split) == sorted(stem(f"TCGA-AA-000{i}") for i in (2, 3, 4))
    text = str(r2)
    assert "dropped 1 slides without RNA" in text and "not in the split" in text and "split 'train'" in text
    saved = json.loads(r2.save(tmp_path / C.PAIRING_REPORT).read_text())
    assert saved["counts"] == {"slides": 3, "samples": 2, "patients": 2, "dropped_no_rna": 1,
                               "dropped_no_slide": 1, "dropped_not_in_split": 3}
    assert saved["dropped"]["no_slide"] == ["TCGA-AA-0099-01"]


def test_patient_level_rna_pairs_by_patient(tmp_path, cohort):
    csv = tmp_path / "patients.csv"
    pd.DataFrame(np.ones((2, 2)), index=["TCGA-AA-0000", "TCGA-AA-0001"], columns=["a", "b"]).to_csv(csv)
    pairing = pair_slides(discover_slides(cohort["root"]), read_rna(csv))
    assert pairing.patients == ["TCGA-AA-0000", "TCGA-AA-0001"] and len(pairing) == 3


# ------------------------------------------------------------------------------ sampling and noise
def test_sample_patches_replacement_only_when_fewer():
    rng = np.random.default_rng(0)
    many = sample_patches(100, 64, rng)
    assert len(many) == 64 and len(np.unique(many)) == 64
    exact = sample_patches(64, 64, rng)
    assert sorted(exact) == list(range(64))
    few = sample_patches(10, 64, rng)
    assert len(few) == 64 and set(few) == set(range(10))  # every patch at least once, repeats to fill


def _batches(ds, workers):
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False, num_workers=workers,
                                         collate_fn=collate_bags)
    return list(loader)


def test_sampling_and_noise_are_identical_across_worker_counts_and_epochs(cohort):
    pairing = pair_slides(discover_slides(cohort["root"]), read_rna(cohort["csv"]))
    ds = MirrorDataset(pairing, standardizer=Standardizer.fit(pairing.rna), n_patches=24, seed=7,
                       dim=12, latent_dim=5)
    ds.set_epoch(3)
    b0, b2 = _batches(ds, 0), _batches(ds, 2)
    for x, y in zip(b0, b2, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == y[k] if k == C.SLIDE_ID else torch.equal(x[k], y[k]), k
    item = ds[4]  # an item does not depend on the batch it is drawn in
    assert torch.equal(item[C.PATCHES], b0[1][C.PATCHES][1])
    assert item[C.SLIDE_MASK_NOISE].shape == (24,) and item[C.RNA_MASK_NOISE].shape == (12,)
    assert item[C.STYLE_EPS].shape == (2, 5)
    ds.set_epoch(4)
    other = ds[4]
    assert not torch.equal(other[C.PATCHES], item[C.PATCHES])
    assert not torch.equal(other[C.SLIDE_MASK_NOISE], item[C.SLIDE_MASK_NOISE])
    ds.set_epoch(3)
    assert torch.equal(ds[4][C.STYLE_EPS], item[C.STYLE_EPS])  # resume at epoch 3: same draws
    fresh = MirrorDataset(pairing, standardizer=Standardizer.fit(pairing.rna), n_patches=24, seed=7,
                          dim=12, latent_dim=5)
    fresh.set_epoch(3)
    assert torch.equal(fresh[4][C.PATCHES], item[C.PATCHES])


def test_random_sampling_rows(cohort):
    ds = MirrorDataset(discover_slides(cohort["root"]), n_patches=25, seed=1)
    by_n = {s.n_patches: i for i, s in enumerate(ds.slides)}
    big, small = ds.patch_rows(by_n[60]), ds.patch_rows(by_n[20])
    assert len(np.unique(big)) == 25  # without replacement
    assert len(small) == 25 and set(small) == set(range(20))  # with replacement, fewer patches only
    assert ds[by_n[60]][C.PATCHES].shape == (25, D)


def test_fixed_and_all_modes(cohort):
    slides = discover_slides(cohort["root"])
    fixed = MirrorDataset(slides, n_patches=25, sampling="fixed", seed=3)
    i = next(i for i, s in enumerate(slides) if s.n_patches == 60)
    rows = fixed.patch_rows(i)
    fixed.set_epoch(9)
    np.testing.assert_array_equal(fixed.patch_rows(i), rows)
    assert list(rows) == sorted(set(rows)) and len(rows) == 25
    j = next(i for i, s in enumerate(slides) if s.n_patches == 20)
    assert fixed.patch_rows(j) is None and fixed[j][C.PATCHES].shape == (20, D)  # all of a small slide
    full = MirrorDataset(slides, sampling="all")
    with h5py.File(slides[i].path) as f:
        np.testing.assert_array_equal(full[i][C.PATCHES].numpy(), f["features"][:])


def test_collate_pads_ragged_bags_with_a_mask(cohort):
    ds = MirrorDataset(discover_slides(cohort["root"]), sampling="all", latent_dim=4)
    items = [ds[i] for i in range(3)]
    lengths = [len(it[C.PATCHES]) for it in items]
    assert len(set(lengths)) > 1
    b = collate_bags(items)
    n = max(lengths)
    assert b[C.PATCHES].shape == (3, n, D) and b[C.PATCH_MASK].dtype == torch.bool
    assert b[C.PATCH_MASK].sum(1).tolist() == lengths
    for k, it in enumerate(items):
        assert torch.equal(b[C.PATCHES][k, : lengths[k]], it[C.PATCHES])
        assert torch.all(b[C.PATCHES][k, lengths[k]:] == 0)
        assert torch.all(b[C.SLIDE_MASK_NOISE][k, lengths[k]:] == 1.0)
        assert torch.equal(b[C.COORDS][k, : lengths[k]], it[C.COORDS])
    assert b[C.COORDS].dtype == torch.long and b[C.INDEX].tolist() == [0, 1, 2]
    assert b[C.STYLE_EPS].shape == (3, 2, 4) and all(t.is_contiguous() for t in b.values() if torch.is_tensor(t))
    same = collate_bags([MirrorDataset(ds.slides, n_patches=8)[i] for i in range(3)])
    assert C.PATCH_MASK not in same and same[C.PATCHES].shape == (3, 8, D)


def test_slides_only_dataset_has_no_rna(cohort):
    ds = MirrorDataset(discover_slides(cohort["root"]), n_patches=8, dim=12, latent_dim=4)
    b = collate_bags([ds[0], ds[1]])
    assert C.RNA not in b and C.RNA_MASK_NOISE not in b and C.STYLE_EPS in b
    assert ds.report.slides_only and not ds.has_rna and ds.n_genes is None


# ------------------------------------------------------------------------------ laziness
def test_dataset_is_lazy_and_pickles_without_data(tmp_path, monkeypatch):
    for i in range(40):
        trident(tmp_path / f"{stem(f'TCGA-LZ-{i:04d}')}.h5", n=3000, ps0=256, seed=i, dim=64)
    slides = discover_slides(tmp_path)

    def no_read(*args, **kwargs):
        raise AssertionError("a bag was read while building the dataset")

    monkeypatch.setattr("mirror_model.data._dataset.read_slide", no_read)
    ds = MirrorDataset(slides, n_patches=16)
    monkeypatch.undo()
    blob = pickle.dumps(ds)
    assert len(blob) < 40 * 1024  # 40 slides x 3000 x 64 floats would be 30 MB
    assert pickle.loads(blob)[3][C.PATCHES].shape == (16, 64)
    # one large chunked file: an item reads only its sampled rows, not the whole bag
    big = tmp_path / "big" / f"{stem('TCGA-BG-0001')}.h5"
    big.parent.mkdir()
    with h5py.File(big, "w") as f:
        f.create_dataset("features", data=np.ones((20000, 64), np.float32), chunks=(64, 64))
    ds_big = MirrorDataset(discover_slides(big), n_patches=16)
    tracemalloc.start()
    ds_big[0]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20000 * 64 * 4 / 8, peak


# ------------------------------------------------------------------------------ bad input
def test_h5_without_features(tmp_path):
    p = write_h5(tmp_path / "x" / f"{stem('TCGA-AA-0001')}.h5", np.zeros((2, 2), np.float32))
    with h5py.File(p, "a") as f:
        f["coords"] = f["features"][:].astype(np.int64)
        del f["features"]
    with pytest.raises(SlideFileError) as err:
        discover_slides(tmp_path / "x")
    assert "no 'features' dataset (found: coords)" in one_line(err, p)


def test_mismatched_feature_dims(tmp_path):
    trident(tmp_path / f"{stem('TCGA-AA-0001')}.h5", 10, 256, dim=16)
    trident(tmp_path / f"{stem('TCGA-AA-0002')}.h5", 10, 256, dim=16)
    odd = trident(tmp_path / f"{stem('TCGA-AA-0003')}.h5", 10, 256, dim=32)
    with pytest.raises(SlideFileError) as err:
        discover_slides(tmp_path)
    assert "features are 32-d but 2 other slide(s)" in one_line(err, odd)


def test_zero_patches(tmp_path):
    p = write_h5(tmp_path / f"{stem('TCGA-AA-0001')}.h5", np.zeros((0, D), np.float32))
    with pytest.raises(SlideFileError) as err:
        discover_slides(tmp_path)
    assert "zero patches" in one_line(err, p)


def test_nan_features_at_read_time_and_with_validate(tmp_path):
    feats = np.random.default_rng(0).normal(size=(50, D)).astype(np.float32)
    feats[17, 3] = np.nan
    feats[30, 0] = np.inf
    p = write_h5(tmp_path / f"{stem('TCGA-AA-0001')}.h5", feats)
    slides = discover_slides(tmp_path)  # metadata only: no full scan by default
    with pytest.raises(SlideFileError) as err:
        MirrorDataset(slides, sampling="all")[0]
    assert "2 NaN/Inf value(s) (first in patch row 17)" in one_line(err, p)
    with pytest.raises(SlideFileError) as err:
        read_slide(slides[0], np.array([30, 2]))
    assert "first in patch row 30" in one_line(err, p)
    with pytest.raises(SlideFileError) as err:
        discover_slides(tmp_path, validate=True)
    one_line(err, p)
    with pytest.raises(SlideFileError):
        validate_slides(slides, chunk_rows=7)


def test_pt_holding_something_else(tmp_path):
    p = tmp_path / f"{stem('TCGA-AA-0001')}.pt"
    torch.save({"weights": torch.ones(2)}, p)
    with pytest.raises(SlideFileError) as err:
        discover_slides(tmp_path)
    assert "without 'features'" in one_line(err, p)


def test_rna_with_nan_names_file_and_count(tmp_path):
    csv = tmp_path / "brca_pruned_rna.csv"
    pd.DataFrame({"a": [1.0, np.nan, 2.0], "b": [np.nan, 1.0, 1.0]},
                 index=["TCGA-AA-0001-01", "TCGA-AA-0002-01", "TCGA-AA-0003-01"]).to_csv(csv)
    with pytest.raises(InputFileError) as err:
        read_rna(csv)
    assert "2 NaN/Inf cell(s)" in one_line(err, csv)


def test_no_slide_matches_any_rna_sample(tmp_path, cohort):
    csv = tmp_path / "other.csv"
    pd.DataFrame(np.ones((2, 2)), index=["TCGA-ZZ-0001-01", "TCGA-ZZ-0002-01"]).to_csv(csv)
    with pytest.raises(PairingError) as err:
        pair_slides(discover_slides(cohort["root"]), read_rna(csv))
    assert "matches an RNA sample" in one_line(err, csv)


def test_split_naming_unknown_patients(cohort):
    pairing = pair_slides(discover_slides(cohort["root"]), read_rna(cohort["csv"]))
    unknown = [f"TCGA-XX-{i:04d}" for i in range(8)]
    with pytest.raises(PairingError) as err:
        pairing.restrict(["TCGA-AA-0000", *unknown], name="train")
    msg = str(err.value)
    assert "\n" not in msg and "8 patient(s)" in msg and "TCGA-XX-0000" in msg and "(+3)" in msg


def test_rna_without_standardizer_and_bad_options(cohort):
    pairing = pair_slides(discover_slides(cohort["root"]), read_rna(cohort["csv"]))
    with pytest.raises(ConfigError, match="standardiser"):
        MirrorDataset(pairing)
    with pytest.raises(ConfigError, match="sampling"):
        MirrorDataset(pairing.slides, sampling="random-ish")
    other = Standardizer.fit(read_rna(cohort["csv"]))
    other.features = ("x",) * len(other.features)
    with pytest.raises(ConfigError, match="features differ"):
        MirrorDataset(pairing, standardizer=other)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(SlideFileError, match="no such file or folder"):
        discover_slides(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlideFileError, match="no slide feature files"):
        discover_slides(tmp_path / "empty")


def test_same_stem_twice(tmp_path):
    trident(tmp_path / "a" / f"{stem('TCGA-AA-0001')}.h5", 5, 256)
    dup = trident(tmp_path / "b" / f"{stem('TCGA-AA-0001')}.h5", 5, 256)
    with pytest.raises(SlideFileError) as err:
        discover_slides(tmp_path)
    assert "also found at" in one_line(err, dup)
    shutil.rmtree(tmp_path / "b")
    assert len(discover_slides(tmp_path)) == 1
