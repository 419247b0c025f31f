"""mirror_model.pl: attention heatmaps (real CLAM geometry and pixel-exact synthetic grids),
per-patch attention of the slide encoder, embedding UMAPs, training curves."""

import inspect
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from mirror_model import constants as C
from mirror_model import eval as ev
from mirror_model import pl
from mirror_model._errors import ConfigError, RunDirError
from mirror_model.config import ModelConfig
from mirror_model.nn import MirrorModule, SlideEncoder
from mirror_model.pl._attention import _cls_row, _last_layer_input

CLAM_FILE = "xena-samples/TCGA-2V-A95S-01Z-00-DX1.9DFA6FC7-87A6-4C14-9A39-E3F12B01C4D4.h5"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rgba(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())


def _pixel(fig, ax, x: float, y: float, image: np.ndarray) -> np.ndarray:
    """RGB of the rendered pixel at data point (x, y) (display origin is bottom-left)."""
    dx, dy = ax.transData.transform((x, y))
    return image[image.shape[0] - 1 - int(round(dy)), int(round(dx)), :3]


# ------------------------------------------------------------------ patch sizes, coordinates


def test_patch_size_level0_prefers_trident_then_downsample_then_level():
    assert pl.patch_size_level0({"patch_size_level0": 448, "patch_size": 224}) == 448
    assert pl.patch_size_level0({"patch_size": 256, "patch_level": 1, "downsample": np.array([4.0, 4.0002])}) == 1024
    assert pl.patch_size_level0({"patch_size": 512, "patch_level": 0}) == 512
    with pytest.warns(UserWarning, match="no downsample"):
        assert pl.patch_size_level0({"patch_size": 256, "patch_level": 1}) == 512
    with pytest.raises(ConfigError, match="patch_size"):
        pl.patch_size_level0({"name": "x"})


def test_heatmap_on_real_clam_coordinates(shared_data, tmp_path):
    path = shared_data / CLAM_FILE
    if not path.is_file():
        pytest.skip(f"optional real CLAM coords file not present: {path}")
    coords, size = pl.read_coords(path)
    assert coords.shape == (1481, 2) and size == 512
    centre = coords.mean(0)
    weights = np.exp(-((coords - centre) ** 2).sum(1) / (2 * 5000.0**2))   # a smooth spatial bump
    fig = pl.attention_heatmap(coords, weights / weights.sum(), patch_size=size, save=tmp_path / "a.png")
    ax = fig.axes[0]
    assert len(ax.collections[0].get_array()) == 1481
    assert ax.get_ylim()[0] > ax.get_ylim()[1]          # y points down, like the slide
    assert (tmp_path / "a.png").read_bytes().startswith(PNG_MAGIC)


def test_read_coords_rejects_files_without_coords(tmp_path):
    import h5py

    from mirror_model import SlideFileError

    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["features"] = np.zeros((3, 4), np.float32)
    with pytest.raises(SlideFileError, match="coords"):
        pl.read_coords(tmp_path / "s.h5")


# ------------------------------------------------------------------ heatmap pixels


def test_heatmap_pixels_show_exactly_the_patches_with_their_colours():
    size = 100
    grid = [(i, j) for i in range(8) for j in range(6)]
    holes = {(0, 0), (3, 2), (7, 5), (4, 0)}
    cells = [c for c in grid if c not in holes]
    hot = {(1, 1), (6, 4)}
    coords = np.array([(i * size, j * size) for i, j in cells])
    weights = np.array([1.0 if c in hot else 0.0 for c in cells])
    fig = pl.attention_heatmap(coords, weights, patch_size=size, vmax=1.0, cmap="viridis")
    ax = fig.axes[0]
    image = _rgba(fig)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    low, high = (np.round(np.array(cmap(v)[:3]) * 255) for v in (0.0, 1.0))
    coloured = set()
    for i, j in grid:
        rgb = _pixel(fig, ax, (i + 0.5) * size, (j + 0.5) * size, image).astype(float)
        if not (rgb >= 250).all():           # anything but the white background
            coloured.add((i, j))
            expect = high if (i, j) in hot else low
            assert np.abs(rgb - expect).max() <= 2, ((i, j), rgb, expect)
    assert coloured == set(cells)            # one coloured cell per patch, holes stay background
    # y down: the first grid row (smallest y) is drawn above the last one
    top = ax.transData.transform((50, 50))[1]
    bottom = ax.transData.transform((50, 550))[1]
    assert top > bottom
    assert ax.get_aspect() == 1.0


def test_heatmap_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="weights for"):
        pl.attention_heatmap(np.zeros((3, 2)), np.ones(2), patch_size=10)
    with pytest.raises(ValueError, match="N x 2"):
        pl.attention_heatmap(np.zeros((3, 3)), np.ones(3), patch_size=10)
    with pytest.raises(ValueError, match="patch_size"):
        pl.attention_heatmap(np.zeros((3, 2)), np.ones(3), patch_size=0)


# ------------------------------------------------------------------ slide-encoder attention


def _encoder(attention="nystrom", landmarks=64):
    torch.manual_seed(0)
    cfg = ModelConfig(patch_dim=12, n_genes=8, dim=32, slide_heads=2, slide_head_dim=8, landmarks=landmarks,
                      attention=attention, rna_heads=2, rna_hidden=16, style_hidden=(16, 8), latent_dim=4,
                      n_prototypes=5)
    return cfg, SlideEncoder(cfg)


@pytest.mark.parametrize("attention", ["nystrom", "exact"])
def test_cls_attention_reproduces_the_layer_output(attention):
    # with the residual convolution zeroed, the [CLS] output of the last layer is exactly
    # to_out(sum_j a_j v_j) per head: the weights are the ones the layer uses
    _, enc = _encoder(attention)
    enc.eval()
    attn = enc.layer2.attn
    with torch.no_grad():
        attn.res_conv.weight.zero_()
        bag = torch.randn(1, 16, 12)                 # 16 patches: a 4 x 4 grid, no repeats
        x = _last_layer_input(enc, bag)
        a = _cls_row(attn, x)                         # (1, H, 17)
        hd = attn.heads * attn.head_dim
        v = attn.to_qkv(x)[..., 2 * hd:].unflatten(-1, (attn.heads, attn.head_dim)).transpose(1, 2)
        mixed = (a[:, :, None, :] @ v).transpose(1, 2).flatten(2)
        torch.testing.assert_close(attn.to_out(mixed), attn(x, None, 1), rtol=1e-4, atol=1e-5)


def test_slide_attention_maps_layout_copies_back_to_patches():
    _, enc = _encoder()
    bag = torch.randn(10, 12)                 # 10 patches: a 4 x 4 grid, the first 6 repeated
    w = pl.slide_attention(enc, bag)
    assert w.shape == (10,) and np.isclose(w.sum(), 1.0) and (w >= 0).all()
    enc.eval()
    with torch.no_grad():
        row = _cls_row(enc.layer2.attn, _last_layer_input(enc, bag[None])).mean(1)[0, 1:].double().numpy()
    expect = row[:10].copy()
    expect[:6] += row[10:]
    np.testing.assert_allclose(w, expect / expect.sum(), rtol=1e-6)


def test_slide_attention_accepts_models_batches_and_masks():
    cfg, _ = _encoder()
    module = MirrorModule(cfg).train()
    bags = torch.randn(2, 9, 12)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    w = pl.slide_attention(module, bags, patch_mask=mask)
    assert module.training                       # the caller's mode is restored
    assert w.shape == (2, 9) and np.allclose(w.sum(1), 1.0) and (w[1, 5:] == 0).all()
    np.testing.assert_allclose(w[1, :5], pl.slide_attention(module.slide_encoder, bags[1, :5]), rtol=1e-6)

    class Wrapper:                               # a MIRROR holds its MirrorModule as .module
        pass

    wrapper = Wrapper()
    wrapper.module = module
    np.testing.assert_allclose(pl.slide_attention(wrapper, bags[0].numpy()), w[0], rtol=1e-6)
    with pytest.raises(ConfigError, match="slide encoder"):
        pl.slide_attention(object(), bags[0])


def test_slide_attention_runs_with_more_patches_than_landmarks():
    _, enc = _encoder(landmarks=8)
    w = pl.slide_attention(enc, torch.randn(50, 12))
    assert w.shape == (50,) and np.isclose(w.sum(), 1.0)


# ------------------------------------------------------------------ UMAP, training curves


def test_umap_embeddings_panels_and_seeded_layout(tmp_path):
    import anndata as ad

    rng = np.random.default_rng(0)
    n = 40
    labels = np.array(["IDC", "ILC"])[np.arange(n) % 2]
    adata = ad.AnnData(np.zeros((n, 1), np.float32), obs=pd.DataFrame({C.LABEL: labels},
                                                                      index=[f"s{i}" for i in range(n)]))
    adata.obsm[C.OBSM_SLIDE] = rng.normal(size=(n, 8)) + (np.arange(n) % 2)[:, None] * 3
    adata.obsm[C.OBSM_RNA] = rng.normal(size=(n, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # numba / umap chatter
        fig = pl.umap_embeddings(adata, save=tmp_path / "u.png")
        again = pl.umap_embeddings(adata, keys=[C.OBSM_SLIDE])
    panels = [ax for ax in fig.axes if ax.get_xlabel() == "UMAP1"]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["slide", "RNA"]
    assert {t.get_text() for t in panels[-1].get_legend().get_texts()} == {"IDC (n=20)", "ILC (n=20)"}
    first = np.vstack([c.get_offsets() for c in panels[0].collections])
    second = np.vstack([c.get_offsets() for c in again.axes[0].collections])
    np.testing.assert_array_equal(first, second)  # same seed, same layout
    assert (tmp_path / "u.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ConfigError, match="color"):
        pl.umap_embeddings(adata, color="nope")


def test_training_curves_one_panel_per_term_present(tmp_path):
    frame = pd.DataFrame({"epoch": [1, 2, 3], "steps": [2, 4, 6], C.LOSS: [3.0, 2.0, 1.5],
                          C.LOSS_ALIGN: [2.0, 1.0, 0.8], C.LOSS_STYLE: [0.1, 0.2, 0.3],
                          C.LOSS_CLUSTER: [np.nan] * 3, "val_align": [2.1, 1.4, 1.2], "lr": 2e-5})
    fig = pl.training_curves(frame, save=tmp_path / "t.png")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["total (weighted)", "alignment (contrastive)", "style (KL)"]
    assert len(visible[1].get_lines()) == 2      # train and validation
    np.testing.assert_array_equal(visible[0].get_lines()[0].get_xdata(), [1, 2, 3])
    frame.to_csv(tmp_path / C.METRICS_CSV, index=False)
    assert len([a for a in pl.training_curves(tmp_path).axes if a.get_visible()]) == 3
    with pytest.raises(RunDirError, match="no loss column"):
        pl.training_curves(frame[["epoch", "lr"]])
    with pytest.raises(RunDirError, match="unreadable"):
        pl.training_curves(tmp_path / "absent.csv")


def test_pl_is_the_one_place_for_figures():
    assert pl.plot_probe_metrics is ev.plot_probe_metrics
    assert pl.plot_kaplan_meier is ev.plot_kaplan_meier
    for name in pl.__all__:
        fn = getattr(pl, name)
        doc = inspect.getdoc(fn) or ""
        assert "Parameters\n----------" in doc and "Returns\n-------" in doc, name
        section = doc.split("Parameters\n----------", 1)[1].split("Returns\n-------", 1)[0]
        documented = set(re.findall(r"^(\w+)\s*$", section, flags=re.M))
        missing = [p for p in inspect.signature(fn).parameters if p not in documented]
        assert not missing, f"pl.{name}: undocumented parameters {missing}"
