"""Baselines: ABMIL, PORPOISE, Linear, TANGLE, and the supervised loop (tiny dims, CPU, fast)."""

import math

import numpy as np
import pytest
import torch

from mirror_model import constants as C
from mirror_model._errors import ConfigError
from mirror_model.baselines import (
    ABMIL,
    PORPOISE,
    TANGLE,
    BaselineResult,
    TangleConfig,
    fit_supervised,
    info_nce,
    linear_subtyping,
    linear_survival,
    mean_pooled_features,
    pad_collate,
    pretrain_tangle,
    survival_curve,
    tangle_embeddings,
    warmup_cosine,
)
from mirror_model.eval import concordance_index as c_index
from mirror_model.eval import metrics_from_predictions, risk_from_logits

D, G = 8, 12


pytestmark = pytest.mark.usefixtures("one_thread")


def _bag(n, seed, d=D):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _items(sizes, seed=0, g=G):
    gen = torch.Generator().manual_seed(seed)
    return [{C.PATCHES: torch.randn(n, D, generator=gen), C.RNA: torch.randn(g, generator=gen)} for n in sizes]


def _small_models():
    return {
        "abmil": ABMIL(D, 3, hidden=16, attn_dim=8),
        "porpoise": PORPOISE(D, G, 4, hidden=16, dim=12, attn_dim=8, reduced=4),
        "tangle": TANGLE(TangleConfig.small(patch_dim=D, n_genes=G, dim=16, attn_dim=8, rna_hidden=16)),
    }


def _outputs(name, model, batch):
    if name == "tangle":
        z = model.encode(batch)
        return torch.cat([z[C.KIND_SLIDE], z[C.KIND_RNA]], 1)
    return model(batch)


# --- shapes and masks ------------------------------------------------------------------------

def test_shapes():
    torch.manual_seed(0)
    m = _small_models()
    batch = pad_collate(_items([5, 9, 3]))
    assert batch[C.PATCHES].shape == (3, 9, D) and batch[C.PATCH_MASK].sum().item() == 17
    assert m["abmil"](batch).shape == (3, 3)
    assert m["abmil"].encode(batch).shape == (3, 16)
    att = m["abmil"].attention(batch)
    assert att.shape == (3, 9) and torch.allclose(att.sum(1), torch.ones(3))
    assert m["porpoise"](batch).shape == (3, 4)
    z = m["tangle"].encode(batch)
    assert z[C.KIND_SLIDE].shape == (3, 16) and z[C.KIND_RNA].shape == (3, 16)
    losses = m["tangle"](batch)
    assert set(losses) == {C.LOSS, C.LOSS_ALIGN} and losses[C.LOSS].dim() == 0


@pytest.mark.parametrize("name", ["abmil", "porpoise", "tangle"])
def test_padded_bag_equals_bag_alone(name):
    torch.manual_seed(1)
    model = _small_models()[name].eval()
    items = _items([4, 11, 7], seed=3)
    batch = pad_collate(items)
    # garbage in the padding must not leak (masked rows are zeroed before any product)
    batch[C.PATCHES][~batch[C.PATCH_MASK]] = float("nan")
    with torch.no_grad():
        together = _outputs(name, model, batch)
        for i, it in enumerate(items):
            alone = _outputs(name, model, {C.PATCHES: it[C.PATCHES][None], C.RNA: it[C.RNA][None]})
            torch.testing.assert_close(together[i], alone[0], rtol=1e-5, atol=1e-6)
        att = model.attention(batch)
    assert torch.all(att[~batch[C.PATCH_MASK]] == 0)


def test_empty_bag_is_an_error():
    model = ABMIL(D, 2, hidden=8, attn_dim=4)
    batch = pad_collate(_items([3, 2]))
    batch[C.PATCH_MASK][1] = False
    with pytest.raises(ValueError, match="no real patch"):
        model(batch)


@pytest.mark.parametrize("name", ["abmil", "porpoise", "tangle"])
def test_gradient_reaches_every_parameter(name):
    torch.manual_seed(2)
    model = _small_models()[name].train()
    batch = pad_collate(_items([6, 9, 4, 5], seed=5))
    out = model(batch)
    loss = out[C.LOSS] if isinstance(out, dict) else out.pow(2).sum()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_porpoise_bilinear_fusion_is_1089_wide():
    model = PORPOISE(D, G, 4)  # the real widths: 256-d branches reduced to 32
    assert model.fusion.fusion_dim == 33 * 33 == 1089
    assert model.fusion.project[1].in_features == 1089 and model.fusion.project[1].out_features == 256
    prod, o_slide, o_rna = model.fusion.outer(torch.randn(2, 256), torch.randn(2, 256))
    assert prod.shape == (2, 1089) and o_slide.shape == o_rna.shape == (2, 32)
    # the appended 1 keeps both unimodal vectors inside the product
    grid = prod.view(2, 33, 33)
    torch.testing.assert_close(grid[:, :32, 32], o_slide)
    torch.testing.assert_close(grid[:, 32, :32], o_rna)
    assert isinstance(model.genomic[0][2], torch.nn.AlphaDropout)


def test_default_hyperparameters():
    assert (ABMIL.default_lr, ABMIL.default_weight_decay) == (1e-4, 1e-5)
    assert (PORPOISE.default_lr, PORPOISE.default_weight_decay) == (2e-4, 1e-5)
    m = ABMIL(768, 2)
    assert m.slide.embed[0].out_features == 512 and m.slide.attention.tanh_branch[0].out_features == 256
    assert m.slide.embed[2].p == 0.25 and m.slide.attention.score.out_features == 1
    cfg = TangleConfig()
    assert (cfg.temperature, cfg.lr, cfg.batch_size, cfg.n_patches, cfg.dim) == (0.01, 1e-4, 64, 2048, 768)
    assert ABMIL.method == C.METHOD_ABMIL == "ABMIL" and TANGLE.method == "TANGLE"


# --- TANGLE ----------------------------------------------------------------------------------

def test_info_nce_matched_unrelated_and_shuffled():
    B = 8
    eye = torch.eye(B, 16)[:B]
    assert info_nce(eye, eye, 0.01) < 1e-6  # matched, well separated
    uninformative = torch.ones(B, 16)  # every RNA embedding alike: chance level
    assert math.isclose(float(info_nce(eye, uninformative, 0.01)), math.log(B), rel_tol=1e-6)
    shuffled = eye[torch.roll(torch.arange(B), 1)]
    assert info_nce(eye, shuffled, 0.01) > math.log(B)  # wrong partners are worse than chance


def test_tangle_temperature_is_fixed():
    cfg = TangleConfig.small(patch_dim=D, n_genes=G, epochs=2, batch_size=4, n_patches=8)
    model, _ = pretrain_tangle(_items([6] * 9, seed=7), cfg)
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert not any("temp" in n or "scale" in n for n in names)
    assert "temperature" not in model.state_dict()
    assert isinstance(model.temperature, float) and model.temperature == 0.01
    # the logits really use 1/0.01: identical embeddings give exactly 100 on the diagonal
    a = torch.nn.functional.normalize(torch.randn(4, 5), dim=-1)
    expected = 0.5 * 2 * torch.nn.functional.cross_entropy(a @ a.T / 0.01, torch.arange(4))
    torch.testing.assert_close(info_nce(a, a, model.temperature), expected)


def test_warmup_cosine_schedule():
    total, warm = 110, 10
    assert warmup_cosine(0, total, warm) == pytest.approx(0.1)
    assert warmup_cosine(4, total, warm) == pytest.approx(0.5)
    assert warmup_cosine(9, total, warm) == pytest.approx(1.0)
    assert warmup_cosine(10, total, warm) == pytest.approx(1.0)
    assert warmup_cosine(60, total, warm) == pytest.approx(0.5)
    assert warmup_cosine(35, total, warm) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine(110, total, warm) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(0, 10, 0) == pytest.approx(1.0)


def _paired_items(n, seed=0):
    # RNA and slide share a latent factor, so pairing is learnable
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 4, generator=gen)
    w_s, w_r = torch.randn(4, D, generator=gen), torch.randn(4, G, generator=gen)
    items = []
    for i in range(n):
        k = int(torch.randint(5, 12, (1,), generator=gen))
        patches = latent[i] @ w_s + 0.3 * torch.randn(k, D, generator=gen)
        items.append({C.PATCHES: patches, C.RNA: latent[i] @ w_r + 0.1 * torch.randn(G, generator=gen)})
    return items


def test_pretrain_tangle_learns_and_embeds():
    items = _paired_items(48)
    cfg = TangleConfig.small(patch_dim=D, n_genes=G, dim=16, attn_dim=8, rna_hidden=16, epochs=12,
                             warmup_epochs=1, batch_size=16, n_patches=8, lr=3e-3, dropout=0.0)
    model, history = pretrain_tangle(items, cfg, device="auto")
    assert [h["epoch"] for h in history] == list(range(1, 13))
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["lr"] < history[1]["lr"]  # cosine decay
    emb = tangle_embeddings(model, items, batch_size=5)
    assert emb[C.KIND_SLIDE].shape == (48, 16) and emb["joint"].shape == (48, 32)
    np.testing.assert_allclose(emb["joint"][:, 16:], emb[C.KIND_RNA])
    one = tangle_embeddings(model, items[:3], batch_size=1)
    np.testing.assert_allclose(one[C.KIND_SLIDE], emb[C.KIND_SLIDE][:3], rtol=1e-5, atol=1e-6)


def test_pretrain_tangle_accepts_a_dataloader():
    items = _items([5] * 8, seed=4)
    loader = torch.utils.data.DataLoader(items, batch_size=4, collate_fn=pad_collate)
    cfg = TangleConfig.small(patch_dim=D, n_genes=G, epochs=1)
    _, history = pretrain_tangle(loader, cfg)
    assert len(history) == 1 and np.isfinite(history[0]["loss"])


# --- supervised loop -------------------------------------------------------------------------

def _planted_mil(n, seed):
    """Class 1 = the bag contains a few special patches; class 0 = noise only."""
    rng = np.random.default_rng(seed)
    signal = np.zeros(D, dtype=np.float32)
    signal[0] = 4.0
    items, y = [], rng.integers(0, 2, n)
    for label in y:
        patches = rng.normal(size=(rng.integers(10, 30), D)).astype(np.float32)
        if label:
            patches[rng.choice(len(patches), 3, replace=False)] += signal
        items.append({C.PATCHES: torch.from_numpy(patches), C.RNA: torch.zeros(G)})
    return items, y


def test_abmil_learns_planted_patch_signal():
    items, y = _planted_mil(200, seed=0)
    idx = np.arange(200)
    torch.manual_seed(0)
    model = ABMIL(D, 2, hidden=32, attn_dim=16)
    res = fit_supervised(model, items, y, task="subtyping", train_idx=idx[:120], val_idx=idx[120:150],
                         test_idx=idx[150:], epochs=10, lr=3e-3, batch_size=4, seed=0)
    assert res.method == "ABMIL" and res.logits.shape == (50, 2)
    assert np.mean(res.pred == y[150:]) > 0.9
    assert 1 <= res.best_epoch <= 10 and len(res.curve) == 10
    assert res.curve[res.best_epoch - 1]["val_loss"] == min(e["val_loss"] for e in res.curve)
    # the attention lands on the planted patches of a positive bag
    pos = next(i for i in range(150, 200) if y[i])
    att = model.attention({C.PATCHES: items[pos][C.PATCHES][None]})[0]
    special = items[pos][C.PATCHES][:, 0] > 2.5
    assert att[special].sum() > 0.5


def _fit_small(y, select_by="loss", task="subtyping", **kw):
    items, _ = _planted_mil(60, seed=1)
    idx = np.arange(60)
    torch.manual_seed(3)
    model = (PORPOISE(D, G, 4, hidden=16, dim=12, attn_dim=8, reduced=4) if task == "survival"
             else ABMIL(D, 2, hidden=16, attn_dim=8))
    return fit_supervised(model, items, y, task=task, train_idx=idx[:30], val_idx=idx[30:40], test_idx=idx[40:],
                          epochs=5, lr=3e-3, batch_size=3, seed=0, select_by=select_by, **kw)


@pytest.mark.parametrize("select_by", ["loss", "metric"])
def test_epoch_choice_never_reads_held_out_labels(select_by):
    _, y = _planted_mil(60, seed=1)
    a = _fit_small(y, select_by)
    y_perm = y.copy()
    y_perm[40:] = np.random.default_rng(0).permutation(1 - y[40:])
    b = _fit_small(y_perm, select_by)
    assert a.best_epoch == b.best_epoch and a.curve == b.curve
    np.testing.assert_array_equal(a.logits, b.logits)
    y_junk = y.copy()
    y_junk[40:] = -999  # held-out labels may be anything
    assert _fit_small(y_junk, select_by).best_epoch == a.best_epoch


def test_survival_fit_returns_risks_and_predictions_frame():
    rng = np.random.default_rng(0)
    bins, event, time = rng.integers(0, 4, 60), rng.integers(0, 2, 60), rng.uniform(1, 100, 60)
    res = _fit_small(bins, task="survival", event=event, time=time, select_by="metric")
    assert res.method == "PORPOISE" and res.task == "survival" and res.logits.shape == (20, 4)
    np.testing.assert_allclose(res.risk, -survival_curve(res.logits).sum(1), rtol=1e-9)
    df = res.to_frame(case_ids=[f"TCGA-00-{i:04d}" for i in range(60)])
    assert list(df.columns[:5]) == ["index", C.PATIENT_ID, "method", "task", "risk"]
    assert df[C.PATIENT_ID].iloc[0] == "TCGA-00-0040" and df.shape == (20, 9)


def test_overlapping_splits_are_rejected():
    items, y = _planted_mil(10, seed=2)
    with pytest.raises(ConfigError, match="overlap"):
        fit_supervised(ABMIL(D, 2, hidden=8, attn_dim=4), items, y, task="subtyping",
                       train_idx=[0, 1, 2, 3], val_idx=[3, 4], test_idx=[5, 6], epochs=1)
    with pytest.raises(ConfigError, match="event and time"):
        fit_supervised(ABMIL(D, 4, hidden=8, attn_dim=4), items, y, task="survival",
                       train_idx=[0, 1], val_idx=[4], test_idx=[5], epochs=1)


# --- survival pieces and predictions tables ---------------------------------------------------

def test_survival_curve_and_risk_agree_with_eval():
    logits = np.array([[0.0, 1.0, -1.0, 0.5], [30.0, -40.0, 0.0, 2.0]])
    one_minus_h = 1 / (1 + np.exp(logits))  # 1 - sigmoid(z), without the cancellation of 1 - h
    np.testing.assert_allclose(survival_curve(logits), np.cumprod(one_minus_h, axis=1), rtol=1e-12)
    res = BaselineResult("ABMIL", "survival", np.arange(2), logits)
    np.testing.assert_array_equal(res.risk, risk_from_logits(logits))
    np.testing.assert_allclose(res.risk, -survival_curve(logits).sum(1), rtol=1e-9, atol=1e-15)


def test_predictions_tables_feed_eval_metrics():
    patients = np.array([f"TCGA-00-{i:04d}" for i in range(6)])
    sub = BaselineResult("ABMIL", "subtyping", np.array([3, 4, 5]), np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]]))
    rows = sub.to_predictions(patients, fold=0, seed=42, labels=np.array([0, 1, 0, 0, 1, 1]),
                              classes=["IDC", "ILC"])
    assert list(rows["patient_id"]) == list(patients[3:]) and set(rows["modalities"]) == {"wsi"}
    assert list(rows["prediction"]) == ["IDC", "ILC", "ILC"] and list(rows["label"]) == ["IDC", "ILC", "ILC"]
    m = metrics_from_predictions(rows).set_index("metric")["value"]
    assert m["accuracy"] == pytest.approx(1.0)
    surv = BaselineResult("PORPOISE", "survival", np.array([0, 1, 2]), np.array([[3.0] * 4, [0.0] * 4, [-3.0] * 4]),
                          params={"train_median_risk": -2.0})
    rows = surv.to_predictions(patients, fold=1, seed=42, labels=np.zeros(6, int), time=np.arange(1.0, 7.0),
                               event=np.ones(6))
    assert list(rows["prediction"]) == ["high", "high", "low"] and set(rows["protocol"]) == {"supervised"}
    m = metrics_from_predictions(rows).set_index("metric")["value"]
    assert m["c_index"] == pytest.approx(1.0)


# --- Linear ----------------------------------------------------------------------------------

def test_mean_pooled_features_respect_mask():
    item = {C.PATCHES: torch.tensor([[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]),
            C.PATCH_MASK: torch.tensor([True, True, False]), C.RNA: torch.tensor([7.0])}
    np.testing.assert_allclose(mean_pooled_features([item]), [[2.0, 3.0, 7.0]])
    np.testing.assert_allclose(mean_pooled_features([item], with_rna=False), [[2.0, 3.0]])


def test_linear_subtyping_standardised_on_training_fold_only():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)) * [1, 1, 100, 1, 1, 1]
    y = (X[:, 0] + X[:, 2] / 100 > 0).astype(int)
    tr, te = np.arange(80), np.arange(80, 120)
    res = linear_subtyping(X, y, train_idx=tr, test_idx=te, inner_folds=3)
    assert res.method == "Linear" and res.logits.shape == (40, 2)
    assert np.mean(res.pred == y[te]) > 0.85
    assert res.params["C"] in res.params["Cs"]
    assert np.all(np.isfinite(res.logits)) and np.allclose(res.prob.sum(1), 1)
    # nothing is fitted on held-out rows: moving one leaves the other predictions as they were
    X2, y2 = X.copy(), y.copy()
    X2[119] += 1e3
    y2[te] = 0
    res2 = linear_subtyping(X2, y2, train_idx=tr, test_idx=te, inner_folds=3)
    np.testing.assert_allclose(res2.logits[:-1], res.logits[:-1])


def test_linear_survival_planted_risk():
    rng = np.random.default_rng(1)
    n = 160
    X = rng.normal(size=(n, 5))
    time = np.exp(-X[:, 0] + 0.3 * rng.normal(size=n)) * 10
    event = (rng.uniform(size=n) < 0.7).astype(int)
    edges = np.quantile(time[event == 1], [0.25, 0.5, 0.75])
    bins = np.searchsorted(edges, time)
    tr, te = np.arange(110), np.arange(110, n)
    res = linear_survival(X, bins, event=event, time=time, train_idx=tr, test_idx=te, inner_folds=3)
    assert res.task == "survival" and res.logits.shape == (50, 4)
    assert c_index(time[te], event[te], res.risk) > 0.75
    assert res.params["alpha"] in res.params["alphas"]
    b2, e2 = bins.copy(), event.copy()
    b2[te], e2[te] = -5, 9  # held-out targets are never read
    res2 = linear_survival(X, b2, event=e2, time=time, train_idx=tr, test_idx=te, inner_folds=3)
    np.testing.assert_allclose(res2.logits, res.logits)


def _dataset_like_items(n, seed=0):
    # the keys MirrorDataset items carry besides patches and RNA
    items, y = _planted_mil(n, seed)
    for i, it in enumerate(items):
        k = len(it[C.PATCHES])
        it.update({C.INDEX: i, C.SLIDE_ID: f"slide-{i}", C.COORDS: torch.zeros(k, 2, dtype=torch.long),
                   C.SLIDE_MASK_NOISE: torch.rand(k), C.RNA_MASK_NOISE: torch.rand(4)})
    return items, y


def test_pad_collate_handles_dataset_items():
    items, _ = _dataset_like_items(3)
    batch = pad_collate(items)
    n = max(len(it[C.PATCHES]) for it in items)
    assert batch[C.COORDS].shape == (3, n, 2) and batch[C.SLIDE_MASK_NOISE].shape == (3, n)
    assert batch[C.INDEX].tolist() == [0, 1, 2] and batch[C.SLIDE_ID] == ["slide-0", "slide-1", "slide-2"]
    assert batch[C.RNA].shape == (3, G) and batch[C.RNA_MASK_NOISE].shape == (3, 4)
    sub = pad_collate(items, n_patches=5, generator=torch.Generator().manual_seed(0))
    assert sub[C.PATCHES].shape[1] == 5 and sub[C.COORDS].shape[1] == 5 and sub[C.PATCH_MASK].all()


def test_fit_supervised_with_the_data_layer_collate():
    from mirror_model import data

    items, y = _dataset_like_items(20, seed=4)

    class Recorder(list):
        def set_epoch(self, epoch):
            self.epochs.append(epoch)

    ds = Recorder(items)
    ds.epochs = []
    idx = np.arange(20)
    res = fit_supervised(PORPOISE(D, G, 2, hidden=16, dim=12, attn_dim=8, reduced=4), ds, y, task="subtyping",
                         train_idx=idx[:10], val_idx=idx[10:14], test_idx=idx[14:], epochs=2, batch_size=3,
                         collate_fn=data.collate_bags)
    assert res.logits.shape == (6, 2) and ds.epochs == [0, 1]
