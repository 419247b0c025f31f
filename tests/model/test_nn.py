"""mirror_model.nn: attention, encoders, MIRROR modules and losses (tiny configs, CPU, fast)."""

import math

import pytest
import torch
import torch.nn.functional as F

from mirror_model import ConfigError
from mirror_model import constants as C
from mirror_model.config import ModelConfig, resolve_config
from mirror_model.nn import (
    LOGIT_SCALE,
    PPEG,
    MirrorModule,
    NystromAttention,
    SelfAttention,
    SlideEncoder,
    StyleClustering,
    contrastive_loss,
    gaussian_kl,
    iterative_pinv,
    noise_mask,
    segment_plan,
    symmetric_kl,
)

PATCH_DIM, N_GENES = 12, 20
# Ragged-bag equality: exact logic is checked in float64; in float32 the 6-step pseudo-inverse
# of a near-singular landmark kernel amplifies rounding differences (batched vs single GEMMs,
# scatter vs mean sums) to ~1e-5, so float32 gets a looser bound.
TOL = {torch.float64: dict(atol=1e-9, rtol=1e-9), torch.float32: dict(atol=1e-4, rtol=1e-4)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**model):
    base = dict(patch_dim=PATCH_DIM, n_genes=N_GENES, dim=32, slide_heads=2, slide_head_dim=8, landmarks=8,
                residual_conv_kernel=5, rna_hidden=48, rna_heads=2, style_hidden=(24, 16), latent_dim=6,
                n_prototypes=10)
    return resolve_config(preset="small", model={**base, **model})[0]


def _batch(cfg, b=4, n=20, seed=0, noise=True):
    g = torch.Generator().manual_seed(seed)
    batch = {C.PATCHES: torch.randn(b, n, cfg.patch_dim, generator=g), C.RNA: torch.randn(b, cfg.n_genes, generator=g)}
    if noise:
        batch[C.SLIDE_MASK_NOISE] = torch.rand(b, n, generator=g)
        batch[C.RNA_MASK_NOISE] = torch.rand(b, cfg.dim, generator=g)
        batch[C.STYLE_EPS] = torch.randn(b, 2, cfg.latent_dim, generator=g)
    return batch


def _ragged(b_sizes, n, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(b_sizes), n, dim, generator=g)
    mask = torch.arange(n)[None, :] < torch.tensor(b_sizes)[:, None]
    return x, mask


# --- Nystrom attention --------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "m", "expected"), [(2117, 384, (6, 353)), (40, 8, (5, 8)), (23, 8, (3, 8)),
                                                    (9, 8, (2, 5)), (5, 8, (1, 5)), (16, 8, (2, 8))])
def test_segment_plan_drops_all_padding_segments(n, m, expected):
    seg, k = segment_plan(n, m)
    assert (seg, k) == expected
    assert (k - 1) * seg < n <= k * seg          # only the first segment is partial, none empty


@pytest.mark.parametrize("method", ["iterate", "spectral"])
def test_iterative_pinv_inverts_a_well_conditioned_kernel_and_rhs_form_agrees(method):
    torch.manual_seed(0)
    a = (torch.eye(12) * 6 + torch.randn(3, 12, 12)).softmax(-1)
    z = iterative_pinv(a, 6)
    torch.testing.assert_close(z, torch.linalg.inv(a.double()).float(), atol=1e-5, rtol=1e-4)
    # the fused pinv(a) @ rhs form equals the explicit one, also on an ill-conditioned kernel
    for mat in (a, torch.randn(3, 30, 30).softmax(-1)):
        rhs = torch.randn(3, mat.shape[-1], 4)
        torch.testing.assert_close(iterative_pinv(mat, 6, rhs=rhs, method=method), iterative_pinv(mat, 6) @ rhs,
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["iterate", "spectral"])
@pytest.mark.parametrize("iterations", [1, 2, 6])
def test_pinv_rhs_hand_written_backward_equals_autograd_of_the_iteration(iterations, method):
    # pinv(a) @ r has hand-written backwards (symmetric iterates; eigenbasis); autograd through
    # the plain Z iteration is the reference. float64, random (ill-conditioned) row-stochastic
    # kernels; 19 of them, so the chunked path (PINV_CHUNK at a time) is crossed too.
    torch.manual_seed(0)
    a = torch.randn(19, 10, 10, dtype=torch.float64).softmax(-1).requires_grad_()
    r = torch.randn(19, 10, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(19, 10, 4, dtype=torch.float64)
    fast = iterative_pinv(a, iterations, rhs=r, method=method)
    fast_grads = torch.autograd.grad(fast, (a, r), g)
    plain = iterative_pinv(a, iterations) @ r
    plain_grads = torch.autograd.grad(plain, (a, r), g)
    torch.testing.assert_close(fast, plain, atol=1e-9, rtol=1e-9)
    for got, want in zip(fast_grads, plain_grads):
        torch.testing.assert_close(got, want, atol=1e-8 * want.abs().max().item(), rtol=1e-8)


def test_spectral_pinv_handles_repeated_eigenvalues_and_splits_over_threads():
    # a masked bag's empty landmarks form an identity block: many equal eigenvalues, where the
    # divided differences must fall back to the derivative. Gradients equal the iteration's
    # (float64), and the threaded eigendecomposition (2 threads) equals the single-threaded one.
    torch.manual_seed(0)
    a = torch.randn(4, 12, 12, dtype=torch.float64).softmax(-1)
    a[:, 7:, :] = 0.0
    a[:, :7, 7:] = 0.0
    a[:, :7, :7] = a[:, :7, :7].softmax(-1)
    a[:, 7:, 7:] = torch.eye(5, dtype=torch.float64)
    a.requires_grad_()
    r = torch.randn(4, 12, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 12, 3, dtype=torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        spec = iterative_pinv(a, 6, rhs=r, method="spectral")
        spec_grads = torch.autograd.grad(spec, (a, r), g)
    finally:
        torch.set_num_threads(threads)
    single = iterative_pinv(a, 6, rhs=r, method="spectral")
    torch.testing.assert_close(spec, single, atol=1e-12, rtol=1e-12)
    it = iterative_pinv(a, 6, rhs=r, method="iterate")
    it_grads = torch.autograd.grad(it, (a, r), g)
    torch.testing.assert_close(spec, it, atol=1e-9, rtol=1e-9)
    for got, want in zip(spec_grads, it_grads):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, atol=1e-8 * want.abs().max().item(), rtol=1e-8)


def test_spectral_pinv_keeps_a_non_finite_kernel_to_its_own_bag():
    # a diverging run: NaN/Inf in one kernel gives NaN for that bag only (so the loop's
    # non-finite check reports it), never an exception from the eigendecomposition
    torch.manual_seed(0)
    a = torch.randn(4, 9, 9).softmax(-1)
    a[1] = float("nan")
    a[2, 3, 5] = float("inf")
    a.requires_grad_()
    r = torch.randn(4, 9, 2, requires_grad=True)
    out = iterative_pinv(a, 6, rhs=r, method="spectral")
    out.sum().backward()
    assert torch.isfinite(out).flatten(1).all(1).tolist() == [True, False, False, True]
    assert torch.isfinite(a.grad).flatten(1).all(1).tolist() == [True, False, False, True]


def test_spectral_pinv_in_float32_is_as_accurate_as_the_iteration():
    # float32 against the float64 result on attention-like kernels: the float64
    # eigendecomposition keeps the spectral path within the iteration's own rounding error
    # (a float32 one is ~10x worse: its normwise error meets the steep polynomial near 0)
    torch.manual_seed(0)
    q, k = (F.layer_norm(torch.randn(4, 120, 32), (32,)) for _ in range(2))
    a0 = (q @ k.mT / math.sqrt(32)).softmax(-1)
    r0, g = torch.randn(4, 120, 8), torch.randn(4, 120, 8)

    def run(method, dtype):
        a, r = a0.to(dtype).requires_grad_(), r0.to(dtype).requires_grad_()
        out = iterative_pinv(a, 6, rhs=r, method=method)
        return (out, *torch.autograd.grad(out, (a, r), g.to(dtype)))

    truth = run("iterate", torch.float64)
    err = {m: [((x.double() - t).norm() / t.norm()).item() for x, t in zip(run(m, torch.float32), truth)]
           for m in ("iterate", "spectral")}
    for spec, it in zip(err["spectral"], err["iterate"]):
        assert spec < 3.0 * it + 1e-7


@pytest.mark.parametrize("method", ["iterate", "spectral"])
def test_pinv_rhs_backward_passes_gradcheck(method):
    from mirror_model.nn._pinv import _PinvApply, _start
    from mirror_model.nn._pinv_spectral import PinvApplySpectral

    fn = {"iterate": _PinvApply, "spectral": PinvApplySpectral}[method]
    torch.manual_seed(0)
    a = torch.randn(2, 7, 7, dtype=torch.float64).softmax(-1).requires_grad_()
    r = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    # the scale c is an input of its own: through _start, the tied row sums (all 1) of a
    # row-stochastic matrix make finite differences of the max meaningless
    c = _start(a).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, r, c: fn.apply(a, c, r, 4), (a, r, c))


def test_pinv_method_is_checked():
    with pytest.raises(ValueError, match="method"):
        iterative_pinv(torch.eye(3)[None], 6, rhs=torch.ones(1, 3, 1), method="svd")
    with pytest.raises(ConfigError, match="pinv_method"):
        ModelConfig(pinv_method="svd")


def _manual_exact(attn, x):
    """Plain softmax attention with the module's projections and residual convolution."""
    h, d = attn.heads, attn.head_dim
    q, k, v = (t.unflatten(-1, (h, d)).transpose(1, 2) for t in attn.to_qkv(x).chunk(3, -1))
    weights = (q @ k.transpose(-1, -2) / math.sqrt(d)).softmax(-1)
    out = weights @ v + attn.res_conv(v)
    return attn.to_out(out.transpose(1, 2).flatten(2))


def test_nystrom_equals_exact_attention_when_landmarks_cover_the_tokens():
    torch.manual_seed(0)
    attn = NystromAttention(32, heads=2, head_dim=8, landmarks=64, kernel=5, dropout=0.0).eval()
    exact = NystromAttention(32, heads=2, head_dim=8, landmarks=64, kernel=5, dropout=0.0, exact=True).eval()
    exact.load_state_dict(attn.state_dict())
    x = torch.randn(3, 40, 32)
    with torch.no_grad():
        ref = _manual_exact(attn, x)
        torch.testing.assert_close(attn(x), ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(exact(x), ref, atol=1e-4, rtol=1e-4)


def test_nystrom_approximation_is_exact_on_segment_constant_tokens():
    # Tokens constant within each segment and a well-conditioned landmark kernel (q = k, distant
    # tokens): landmarks are exact and pinv converges, so Nystrom must equal softmax attention.
    torch.manual_seed(0)
    attn = NystromAttention(32, heads=2, head_dim=8, landmarks=4, kernel=5, dropout=0.0).eval()
    with torch.no_grad():
        attn.to_qkv.weight[16:32] = attn.to_qkv.weight[:16]
        base = torch.linalg.qr(torch.randn(32, 32))[0][:4] * 6
        x = base.repeat_interleave(5, 0)[None].repeat(2, 1, 1)      # 20 tokens, 4 segments of 5
        torch.testing.assert_close(attn(x), _manual_exact(attn, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("exact", [False, True])
def test_attention_padded_bag_equals_bag_alone(exact, dtype):
    torch.manual_seed(0)
    attn = NystromAttention(32, heads=2, head_dim=8, landmarks=8, kernel=5, dropout=0.0, exact=exact)
    attn = attn.eval().to(dtype)
    sizes = [40, 23, 9, 5]
    x, mask = _ragged(sizes, 40, 32)
    x = x.to(dtype)
    with torch.no_grad():
        out = attn(x, mask)
        first = attn(x, mask, rows=3)
        for i, s in enumerate(sizes):
            torch.testing.assert_close(out[i, :s], attn(x[i:i + 1, :s])[0], **TOL[dtype])
        torch.testing.assert_close(first, out[:, :3], **TOL[dtype])
        # an all-True mask is the same as no mask
        torch.testing.assert_close(attn(x, torch.ones_like(mask)), attn(x), **TOL[dtype])


def test_attention_row_index_frozen_rows_and_distinct_rows_equal_the_full_output():
    torch.manual_seed(0)
    attn = NystromAttention(32, heads=2, head_dim=8, landmarks=8, kernel=5, dropout=0.0).double()
    x = torch.randn(2, 30, 32, dtype=torch.float64)
    full = attn(x)
    rows = torch.tensor([[0, 3, 7], [1, 2, 29]])
    frozen = torch.tensor([[1, 2], [0, 5]])
    out, out_frozen = attn(x, rows=rows, frozen=frozen)
    torch.testing.assert_close(out, full.gather(1, rows[..., None].expand(-1, -1, 32)))
    torch.testing.assert_close(out_frozen, full.gather(1, frozen[..., None].expand(-1, -1, 32)))
    assert out.requires_grad and not out_frozen.requires_grad
    # a sequence given as distinct rows plus an index equals the laid-out sequence, values and
    # gradients (repeated keys attended once with log-count weights, repeated queries once)
    distinct = torch.randn(5, 32, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 5, (2, 30), generator=torch.Generator().manual_seed(1))
    assert all(len(set(row.tolist())) == 5 for row in index)
    for r in (None, rows):
        inputs = [distinct, *attn.parameters()]
        got = attn(distinct, index=index, rows=r)
        want = attn(distinct[index], rows=r)
        torch.testing.assert_close(got, want)
        for g, w in zip(torch.autograd.grad(got.sum(), inputs), torch.autograd.grad(want.sum(), inputs)):
            torch.testing.assert_close(g, w)


def _plain_slide_retention(ret, cls, tokens, masked, patch_mask):
    """The retention loss written as the reference does: every position embedded and attended."""
    x = torch.where(masked[..., None], ret.mask_token, ret.embed(tokens))
    x = torch.cat([ret.embed(cls)[:, None], x], 1)
    seq_mask = None if patch_mask is None else torch.cat([patch_mask.new_ones(len(x), 1), patch_mask], 1)
    pred = ret.head(ret.norm(ret.layer(x, seq_mask)[:, 1:][masked]))
    return F.mse_loss(pred, tokens.detach()[masked])


@pytest.mark.parametrize("ragged", [False, True])
def test_slide_retention_distinct_rows_give_the_plain_loss_and_gradients(ragged):
    from mirror_model.nn import SlideRetention

    torch.manual_seed(0)
    ret = SlideRetention(_cfg(dropout=0.0)).double()
    cls = torch.randn(3, 32, dtype=torch.float64, requires_grad=True)
    tokens = torch.randn(3, 20, 32, dtype=torch.float64, requires_grad=True)
    patch_mask = torch.arange(20)[None] < torch.tensor([20, 13, 9])[:, None] if ragged else None
    masked = ret.mask(torch.rand(3, 20, dtype=torch.float64), patch_mask)
    inputs = [cls, tokens, *ret.parameters()]
    got = ret(cls, tokens, masked, patch_mask)
    got_grads = torch.autograd.grad(got, inputs)
    want = _plain_slide_retention(ret, cls, tokens, masked, patch_mask)
    want_grads = torch.autograd.grad(want, inputs)
    torch.testing.assert_close(got, want)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


def test_slide_encoder_grad_tokens_same_values_and_gradients_where_used():
    torch.manual_seed(0)
    enc = SlideEncoder(_cfg(dropout=0.0)).double()
    patches = torch.randn(2, 30, PATCH_DIM, dtype=torch.float64, requires_grad=True)
    grad_tokens = torch.rand(2, 30, generator=torch.Generator().manual_seed(2)).argsort(1) < 8
    weights = torch.randn(2, 30, 32, dtype=torch.float64)

    def loss(cls, tokens):   # uses the [CLS] and only the grad_tokens rows, like the retention
        return (cls ** 2).sum() + (weights * tokens)[grad_tokens].sum()

    inputs = [patches, *enc.parameters()]
    cls, tokens = enc(patches, grad_tokens=grad_tokens)
    got_grads = torch.autograd.grad(loss(cls, tokens), inputs)
    cls_all, tokens_all = enc(patches)
    want_grads = torch.autograd.grad(loss(cls_all, tokens_all), inputs)
    torch.testing.assert_close(cls, cls_all)
    torch.testing.assert_close(tokens, tokens_all)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("n", [1, 3, 4])
def test_tiny_bags_train_where_no_token_is_visible_to_the_retention(n):
    # 75 % of 1 or 3 patches masks all of them: no token keeps a gradient path (empty splits)
    torch.manual_seed(0)
    module = MirrorModule(_cfg())
    out = module(_batch(module.cfg, b=2, n=n))
    out[C.LOSS].backward()
    assert torch.isfinite(out[C.LOSS]) and torch.isfinite(out[C.LOSS_WSI_RETENTION])
    assert module.slide_encoder.fc.weight.grad is not None


# --- slide encoder --------------------------------------------------------------------------------

def test_ppeg_merged_kernel_equals_three_convolutions_plus_identity():
    torch.manual_seed(0)
    ppeg = PPEG(6)
    x = torch.randn(2, 1 + 25, 6)
    grid = x[:, 1:].transpose(1, 2).reshape(2, 6, 5, 5)
    ref = ppeg.proj7(grid) + ppeg.proj5(grid) + ppeg.proj3(grid) + grid
    out = ppeg(x, 5)
    torch.testing.assert_close(out[:, 1:], ref.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 0], x[:, 0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("attention", ["nystrom", "exact"])
def test_slide_encoder_padded_bags_equal_bags_alone(attention, dtype):
    torch.manual_seed(0)
    enc = SlideEncoder(_cfg(attention=attention)).eval().to(dtype)
    sizes = [40, 23, 9, 5, 1]
    x, mask = _ragged(sizes, 40, PATCH_DIM)
    x = x.to(dtype)
    with torch.no_grad():
        cls, tokens = enc(x, mask)
        cls_only, none = enc(x, mask, tokens=False)
        assert cls.shape == (5, 32) and tokens.shape == (5, 40, 32) and none is None
        torch.testing.assert_close(cls_only, cls, **TOL[dtype])
        for i, s in enumerate(sizes):
            c1, t1 = enc(x[i:i + 1, :s])
            torch.testing.assert_close(cls[i], c1[0], **TOL[dtype])
            torch.testing.assert_close(tokens[i, :s], t1[0], **TOL[dtype])
            assert torch.all(tokens[i, s:] == 0)


def test_slide_encoder_shapes_real_rows_only_and_mask_anywhere():
    torch.manual_seed(0)
    enc = SlideEncoder(_cfg()).eval()
    x = torch.randn(3, 30, PATCH_DIM)           # 30 patches -> 36-token square, 6 repeats dropped
    with torch.no_grad():
        cls, tokens = enc(x)
        assert cls.shape == (3, 32) and tokens.shape == (3, 30, 32)
        # real patches need not come first: a scattered mask gives the compacted bag's outputs
        mask = torch.zeros(1, 30, dtype=torch.bool)
        mask[0, [2, 5, 6, 11, 29]] = True
        c2, t2 = enc(x[:1], mask)
        c3, t3 = enc(x[:1, mask[0]])
        torch.testing.assert_close(c2, c3, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(t2[0, mask[0]], t3[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at least one real patch"):
        enc(x[:1], torch.zeros(1, 30, dtype=torch.bool))


def test_single_token_attention_shortcut_equals_full_attention():
    torch.manual_seed(0)
    attn = SelfAttention(16, 4).eval()
    x = torch.randn(5, 1, 16)
    q, k, v = (t.unflatten(-1, (4, 4)).transpose(1, 2) for t in attn.qkv(x).chunk(3, -1))
    ref = attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(attn(x), ref, atol=1e-6, rtol=1e-6)


# --- losses ------------------------------------------------------------------------------------------

def test_contrastive_loss_matched_near_zero_and_unrelated_near_log_batch():
    torch.manual_seed(0)
    b = 8
    pairs = torch.linalg.qr(torch.randn(32, 32))[0][:b]            # orthonormal: well separated
    assert contrastive_loss(pairs, pairs, torch.tensor(100.0)) < 1e-6
    shuffled = pairs[torch.roll(torch.arange(b), 1)]
    assert contrastive_loss(pairs, shuffled, torch.tensor(100.0)) > 50
    # uninformative pairs (near-orthogonal random directions, unit scale): chance level log(B)
    a, r = F.normalize(torch.randn(b, 4096), dim=1), F.normalize(torch.randn(b, 4096), dim=1)
    assert abs(float(contrastive_loss(a, r, torch.tensor(1.0))) - math.log(b)) < 0.05


def test_contrastive_gather_over_fake_ranks_equals_full_batch():
    torch.manual_seed(0)
    b, half = 8, 4
    wsi = F.normalize(torch.randn(b, 16), dim=1).requires_grad_()
    rna = F.normalize(torch.randn(b, 16), dim=1).requires_grad_()
    scale = torch.tensor(5.0, requires_grad=True)
    full = contrastive_loss(wsi, rna, scale)
    g_full = torch.autograd.grad(full, (wsi, rna, scale))

    def rank_loss(rank):
        sl = slice(rank * half, (rank + 1) * half)
        source = {}

        def gather(x):   # rows of both "ranks", this rank's own rows in its slot
            full_x = source[id(x)]
            parts = [x if r == rank else full_x[r * half:(r + 1) * half] for r in range(2)]
            return torch.cat(parts), rank * half

        lw, lr = wsi[sl], rna[sl]
        source[id(lw)], source[id(lr)] = wsi, rna
        return contrastive_loss(lw, lr, scale, gather)

    avg = 0.5 * (rank_loss(0) + rank_loss(1))
    torch.testing.assert_close(avg, full, atol=1e-6, rtol=1e-6)
    for g_avg, g_ref in zip(torch.autograd.grad(avg, (wsi, rna, scale)), g_full):
        torch.testing.assert_close(g_avg, g_ref, atol=1e-6, rtol=1e-5)


def test_style_kl_of_standard_normal_is_zero_and_reduction_is_documented():
    assert torch.all(gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)) == 0)
    torch.testing.assert_close(gaussian_kl(torch.ones(2, 4), torch.zeros(2, 4)), torch.full((2,), 2.0))
    torch.manual_seed(0)
    cfg = _cfg()
    sc = StyleClustering(cfg)
    wsi, rna = torch.randn(3, 32), torch.randn(3, 32)
    style, cluster = sc(wsi, rna, torch.randn(3, 2, cfg.latent_dim))
    per = [gaussian_kl(sc.mu(sc.mlp(x)), sc.logvar(sc.mlp(x))).mean() for x in (wsi, rna)]
    torch.testing.assert_close(style, 0.5 * (per[0] + per[1]))          # mean over the two modalities
    assert cluster >= 0


def test_symmetric_kl():
    p = torch.randn(4, 7)
    assert float(symmetric_kl(p, p + 3.0)) == pytest.approx(0.0, abs=1e-6)   # same distribution
    q = torch.randn(4, 7)
    lp, lq = p.log_softmax(-1), q.log_softmax(-1)
    ref = 0.5 * (F.kl_div(lq, lp, log_target=True, reduction="batchmean")
                 + F.kl_div(lp, lq, log_target=True, reduction="batchmean"))
    torch.testing.assert_close(symmetric_kl(p, q), ref)


def test_noise_mask_masks_the_smallest_real_units():
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4]])
    m = noise_mask(noise, 0.75)
    assert m.sum() == 6 and not m[0, 0] and not m[0, 6]                 # keep int(8 * 0.25) = 2
    valid = torch.tensor([[True] * 4 + [False] * 4])
    m = noise_mask(noise, 0.75, valid)
    assert m.sum() == 3 and not m[0, 4:].any() and not m[0, 0]          # 4 real: keep 1 (largest)


# --- MirrorModule ---------------------------------------------------------------------------------

def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    cfg = _cfg()
    model = MirrorModule(cfg)
    out = model(_batch(cfg))
    assert set(out) == {C.LOSS, *C.LOSS_TERMS, LOGIT_SCALE}
    out[C.LOSS].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_total_is_the_weighted_sum_and_noise_comes_from_the_batch():
    torch.manual_seed(0)
    cfg = _cfg()
    model = MirrorModule(cfg).eval()
    batch = _batch(cfg)
    with torch.no_grad():
        out, again = model(batch), model(batch)
        total = sum(w * out[name] for name, w in cfg.enabled_losses().items())
        torch.testing.assert_close(out[C.LOSS], total)
        for key in out:
            torch.testing.assert_close(out[key], again[key])
        drawn = model({C.PATCHES: batch[C.PATCHES], C.RNA: batch[C.RNA]})     # noise drawn when absent
        assert torch.isfinite(drawn[C.LOSS])
        assert drawn[C.LOSS_WSI_RETENTION] != out[C.LOSS_WSI_RETENTION]
    assert float(out[LOGIT_SCALE]) == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        model.alignment.logit_scale.fill_(10.0)
        assert float(model.alignment.scale()) == pytest.approx(100.0)            # clamped at log(100)


@pytest.mark.parametrize(("flag", "term", "prefixes"), [
    ("use_alignment", C.LOSS_ALIGN, ["alignment."]),
    ("use_wsi_retention", C.LOSS_WSI_RETENTION, ["slide_retention."]),
    ("use_rna_retention", C.LOSS_RNA_RETENTION, ["rna_retention."]),
    ("use_style", C.LOSS_STYLE, []),
    ("use_cluster", C.LOSS_CLUSTER, ["style.decoder.", "style.prototypes."]),
])
def test_switching_a_module_off_removes_its_parameters_and_loss(flag, term, prefixes):
    torch.manual_seed(0)
    on, off = MirrorModule(_cfg()), MirrorModule(_cfg(**{flag: False}))
    names_on = {n for n, _ in on.named_parameters()}
    names_off = {n for n, _ in off.named_parameters()}
    assert names_off <= names_on
    for prefix in prefixes:
        assert any(n.startswith(prefix) for n in names_on)
        assert not any(n.startswith(prefix) for n in names_off)
    out = off(_batch(off.cfg))
    assert term not in out and C.LOSS in out
    assert (LOGIT_SCALE in out) == (flag != "use_alignment")
    out[C.LOSS].backward()
    assert all(p.grad is not None for p in off.parameters())


def test_style_and_cluster_both_off_removes_the_style_encoder():
    model = MirrorModule(_cfg(use_style=False, use_cluster=False))
    assert model.style is None and not any(n.startswith("style.") for n, _ in model.named_parameters())
    model.normalize_prototypes_()        # harmless no-op


def test_prototype_rows_are_unit_norm_after_normalize():
    torch.manual_seed(0)
    model = MirrorModule(_cfg())
    w = model.style.prototypes.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(len(w)))
    with torch.no_grad():
        w.mul_(torch.rand(len(w), 1) * 3)
    model.normalize_prototypes_()
    torch.testing.assert_close(w.norm(dim=1), torch.ones(len(w)))


def test_encode_single_modalities_deterministic_in_eval():
    torch.manual_seed(0)
    cfg = _cfg()
    model = MirrorModule(cfg).eval()
    batch = _batch(cfg, noise=False)
    with torch.no_grad():
        slides = model.encode({C.PATCHES: batch[C.PATCHES]})
        assert set(slides) == {C.KIND_SLIDE, C.KIND_ALIGNED_SLIDE}
        rna = model.encode({C.RNA: batch[C.RNA]})
        assert set(rna) == {C.KIND_RNA, C.KIND_ALIGNED_RNA}
        both, again = model.encode(batch), model.encode(batch)
        for key in both:
            assert torch.equal(both[key], again[key])
        torch.testing.assert_close(both[C.KIND_SLIDE], slides[C.KIND_SLIDE])
        torch.testing.assert_close(both[C.KIND_ALIGNED_RNA].norm(dim=1), torch.ones(4))
        cls, _ = model.slide_encoder(batch[C.PATCHES])
        torch.testing.assert_close(both[C.KIND_SLIDE], cls, atol=1e-6, rtol=1e-5)
    plain = MirrorModule(_cfg(use_alignment=False)).eval()
    assert set(plain.encode(batch)) == {C.KIND_SLIDE, C.KIND_RNA}
    with pytest.raises(KeyError):
        model.encode({})
    with pytest.raises(KeyError):
        model({C.PATCHES: batch[C.PATCHES]})


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ragged_batch_losses_and_encodings_match_unpadded_bags(dtype):
    torch.manual_seed(0)
    cfg = _cfg()
    model = MirrorModule(cfg).eval().to(dtype)
    sizes = [20, 11, 6]
    x, mask = _ragged(sizes, 20, PATCH_DIM, seed=1)
    x, rna = x.to(dtype), torch.randn(3, N_GENES, dtype=dtype)
    with torch.no_grad():
        enc = model.encode({C.PATCHES: x, C.PATCH_MASK: mask, C.RNA: rna})
        for i, s in enumerate(sizes):
            alone = model.encode({C.PATCHES: x[i:i + 1, :s]})
            for key in (C.KIND_SLIDE, C.KIND_ALIGNED_SLIDE):
                torch.testing.assert_close(enc[key][i], alone[key][0], **TOL[dtype])
        out = model({C.PATCHES: x, C.PATCH_MASK: mask, C.RNA: rna, C.SLIDE_MASK_NOISE: torch.rand(3, 20, dtype=dtype)})
    assert all(torch.isfinite(v) for v in out.values())


def test_mixed_precision_autocast_gives_finite_float32_losses():
    torch.manual_seed(0)
    cfg = _cfg()
    model = MirrorModule(cfg)
    x, mask = _ragged([20, 11, 6], 20, PATCH_DIM)
    for batch in (_batch(cfg), {C.PATCHES: x, C.PATCH_MASK: mask, C.RNA: torch.randn(3, N_GENES)}):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch)
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
        out[C.LOSS].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    plain = MirrorModule(_cfg(dropout=0.0))
    ckpt = MirrorModule(_cfg(dropout=0.0, activation_checkpointing=True))
    ckpt.load_state_dict(plain.state_dict())
    batch = _batch(plain.cfg)
    grads = []
    for model in (plain, ckpt):
        out = model(batch)
        out[C.LOSS].backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-5, rtol=1e-4)


def test_tiny_model_overfits_a_tiny_paired_dataset():
    torch.manual_seed(0)
    cfg = _cfg(dropout=0.0)
    model = MirrorModule(cfg)
    batch = _batch(cfg, b=8, n=16, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        model.normalize_prototypes_()
        out = model(batch)
        first = float(out[C.LOSS].detach()) if first is None else first
        opt.zero_grad()
        out[C.LOSS].backward()
        opt.step()
    with torch.no_grad():
        model.normalize_prototypes_()
        out = model(batch)
    assert float(out[C.LOSS]) < first / 10       # total loss falls by at least 10x
    assert float(out[C.LOSS_ALIGN]) < 0.05       # the 8 pairs are told apart
