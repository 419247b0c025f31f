"""Embeddings: one row per slide, deterministic, scanpy-ready; slides-only input; the CLI."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from _train_data import load_pairing, tiny_config, write_cohort
from typer.testing import CliRunner

from mirror_model import MIRROR
from mirror_model import constants as C
from mirror_model._embed import embed, write_embedding
from mirror_model.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    slides, rna = write_cohort(root, n_patients=14, second_slide=(1, 4), slides_without_rna=(13,))
    model = MIRROR.from_config(*tiny_config(train=dict(epochs=1)))
    model.train(load_pairing(slides, rna), run_dir=root / "run", progress=False)
    return root, slides, rna, MIRROR.load(root / "run")


def test_embedding_anndata_rows_slots_and_obs(setup):
    root, slides, rna, model = setup
    adata = embed(model, slides, rna, progress=False)
    assert adata.n_obs == 15  # 13 RNA samples, two with two slides; the slide without RNA is left out
    assert adata.obsm[C.OBSM_SLIDE].shape == adata.obsm[C.OBSM_RNA].shape == (15, 16)
    np.testing.assert_array_equal(adata.obsm[C.OBSM_JOINT],
                                  np.hstack([adata.obsm[C.OBSM_SLIDE], adata.obsm[C.OBSM_RNA]]))
    assert {C.SAMPLE_ID, C.PATIENT_ID, C.LABEL, C.TIME, C.EVENT} <= set(adata.obs.columns)
    rna_obs = ad.read_h5ad(rna).obs
    first = adata.obs.iloc[0]
    assert first[C.LABEL] == rna_obs.loc[first[C.SAMPLE_ID], C.LABEL]
    two = adata.obs.index[adata.obs[C.SAMPLE_ID] == "TCGA-T0-0004-01"]
    assert len(two) == 2  # two slides of one sample: two rows sharing the sample's RNA embedding
    rows = adata.obs.index.get_indexer(two)
    np.testing.assert_array_equal(adata.obsm[C.OBSM_RNA][rows[0]], adata.obsm[C.OBSM_RNA][rows[1]])
    assert not np.array_equal(adata.obsm[C.OBSM_SLIDE][rows[0]], adata.obsm[C.OBSM_SLIDE][rows[1]])
    info = adata.uns[C.UNS_EMBED]
    assert info["sampling"] == "all" and info["mode"].startswith("eval") and "one row per slide" in info["rows"]
    # the same numbers as the model's own representation, and deterministic
    np.testing.assert_array_equal(adata.obsm[C.OBSM_SLIDE],
                                  model.get_latent_representation(load_pairing(slides, rna), kind="slide"))
    again = embed(model, slides, rna, progress=False)
    np.testing.assert_array_equal(again.obsm[C.OBSM_JOINT], adata.obsm[C.OBSM_JOINT])


def test_scanpy_neighbors_and_umap_work_on_the_written_file(setup, tmp_path):
    import scanpy as sc

    root, slides, rna, model = setup
    write_embedding(embed(model, slides, rna, progress=False), tmp_path / "emb.h5ad")
    adata = ad.read_h5ad(tmp_path / "emb.h5ad")
    sc.pp.neighbors(adata, use_rep=C.OBSM_JOINT, n_neighbors=5)
    sc.tl.umap(adata, random_state=0)
    assert adata.obsm["X_umap"].shape == (15, 2) and np.isfinite(adata.obsm["X_umap"]).all()


def test_slides_only_gives_slide_embeddings_alone(setup):
    root, slides, rna, model = setup
    adata = model.embed(slides, progress=False)
    assert adata.n_obs == 16 and set(adata.obsm) == {C.OBSM_SLIDE}
    assert adata.uns[C.UNS_EMBED]["slides_only"]
    with_rna = embed(model, slides, rna, progress=False)
    same = adata.obs.index.get_indexer(with_rna.obs.index)
    np.testing.assert_array_equal(adata.obsm[C.OBSM_SLIDE][same], with_rna.obsm[C.OBSM_SLIDE])


def test_padded_batches_equal_one_slide_at_a_time(setup):
    root, slides, rna, model = setup
    one = embed(model, slides, rna, batch_size=1, progress=False)
    many = embed(model, slides, rna, batch_size=5, progress=False)  # ragged bags: padded and masked
    np.testing.assert_allclose(many.obsm[C.OBSM_JOINT], one.obsm[C.OBSM_JOINT], rtol=1e-4, atol=1e-5)


def test_cli_embed_with_a_fixed_patch_sample(setup, tmp_path):
    root, slides, rna, _ = setup
    outs = []
    for name in ("a.h5ad", "b.h5ad"):
        args = ["embed", "--checkpoint", root / "run", "--slides", slides, "--rna", rna, "--out", tmp_path / name,
                "--n-patches", "5", "--seed", "3", "--quiet"]
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        assert f"wrote {tmp_path / name}: 15 slides" in result.output
        outs.append(ad.read_h5ad(tmp_path / name))
    a, b = outs
    assert a.uns[C.UNS_EMBED]["sampling"] == "fixed" and a.uns[C.UNS_EMBED]["n_patches"] == 5
    np.testing.assert_array_equal(a.obsm[C.OBSM_JOINT], b.obsm[C.OBSM_JOINT])
    full = embed(MIRROR.load(root / "run"), slides, rna, progress=False)
    assert not np.allclose(a.obsm[C.OBSM_SLIDE], full.obsm[C.OBSM_SLIDE])
    np.testing.assert_array_equal(a.obsm[C.OBSM_RNA], full.obsm[C.OBSM_RNA])


def test_cli_embed_slides_only_and_force(setup, tmp_path):
    root, slides, _, _ = setup
    out = tmp_path / "s.h5ad"
    out.write_text("old")
    args = ["embed", "--checkpoint", root / "run" / C.CHECKPOINT_LAST, "--slides", slides, "--out", out, "--force"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert set(ad.read_h5ad(out).obsm) == {C.OBSM_SLIDE}


def test_rna_kinds_need_rna(setup):
    from mirror_model import ConfigError
    from mirror_model.data import discover_slides

    _, slides, _, model = setup
    with pytest.raises(ConfigError, match="kind 'rna' is not available: the data have no RNA"):
        model.get_latent_representation(discover_slides(slides, progress=False), kind="rna")
