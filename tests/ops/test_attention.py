"""scaled_dot_product_attention (the fused kernel) and baddbmm against PyTorch in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import attention

from tests.ops.opcheck import check, f64, randn

# (q shape, k shape, v shape): odd lengths, L != S, E != EV, several key tiles, no or one batch dim
SHAPES = {
    "heads": ((2, 3, 7, 5), (2, 3, 11, 5), (2, 3, 11, 6)),
    "long_keys": ((1, 2, 9, 8), (1, 2, 77, 8), (1, 2, 77, 8)),
    "long_queries": ((2, 1, 45, 4), (2, 1, 3, 4), (2, 1, 3, 7)),
    "no_heads": ((3, 13, 16), (3, 17, 16), (3, 17, 16)),
    "unbatched": ((6, 3), (5, 3), (5, 2)),
    "size1": ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1, 1, 1)),
}


def _run(rng, shapes, dtype="float32", mask=None, causal=False, scale=None, mask_np=None):
    xs = [randn(rng, s, dtype) for s in shapes]
    g = randn(rng, shapes[0][:-1] + (shapes[2][-1],), dtype)
    hs = [hv.tensor(x, requires_grad=True) for x in xs]
    hm = None if mask_np is None else hv.tensor(mask_np)
    out = F.scaled_dot_product_attention(*hs, attn_mask=hm, is_causal=causal, scale=scale)
    out.backward(hv.tensor(g))
    ts = [torch.tensor(f64(x), requires_grad=True) for x in xs]
    tm = None if mask_np is None else torch.tensor(mask_np if mask_np.dtype == bool else f64(mask_np))
    ref = TF.scaled_dot_product_attention(*ts, attn_mask=tm, is_causal=causal, scale=scale)
    ref.backward(torch.tensor(f64(g)))
    return out, hs, ref, ts


def _compare(out, hs, ref, ts, dtype, tol=None):
    assert out.dtype is hv.memory.dtype_of(dtype)
    check(out.to(hv.float32).numpy(), ref.detach().numpy(), dtype, tol)
    for name, h, t in zip("qkv", hs, ts):
        assert h.grad is not None and h.grad.dtype is h.dtype, name
        check(h.grad.to(hv.float32).numpy(), t.grad.numpy(), dtype, tol)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_matches_torch_float64(name, causal, rng):
    _compare(*_run(rng, SHAPES[name], causal=causal), "float32", 1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("causal", [False, True])
def test_half_precision_inputs_accumulate_in_float32(dtype, causal, rng):
    tol = 2e-3 if dtype == "float16" else 1e-2  # rounding the result (and the gradients) to the dtype
    _compare(*_run(rng, ((2, 2, 37, 64), (2, 2, 29, 64), (2, 2, 29, 64)), dtype, causal=causal), dtype, tol)


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("mshape", [(9, 12), (2, 1, 1, 12), (3, 9, 12), (2, 3, 9, 12), (1, 12)])
def test_masks_broadcast_as_torch(kind, mshape, rng):
    if kind == "bool":
        mask = rng.random(mshape) > 0.35
    else:
        mask = (rng.standard_normal(mshape) * 2).astype(np.float32)
        mask[rng.random(mshape) < 0.2] = -np.inf
    _compare(*_run(rng, ((2, 3, 9, 8), (2, 3, 12, 8), (2, 3, 12, 5)), mask_np=mask), "float32", 1e-5)


def test_a_row_with_every_key_masked_gives_zeros_and_zero_gradients(rng):
    mask = rng.random((6, 7)) > 0.3
    mask[2] = False
    out, hs, ref, ts = _run(rng, ((1, 2, 6, 4), (1, 2, 7, 4), (1, 2, 7, 4)), mask_np=mask)
    assert np.all(out.numpy()[:, :, 2] == 0) and np.all(hs[0].grad.numpy()[:, :, 2] == 0)
    _compare(out, hs, ref, ts, "float32", 1e-5)


def test_long_keys_with_wide_heads(rng):
    """Regression: on lavapipe, a head-dim loop run once per key passed llvmpipe's silent 65535-iteration
    loop limit past about 500 keys at head dim 128, and the outputs went unwritten."""
    _compare(*_run(rng, ((1, 1, 5, 128), (1, 1, 600, 128), (1, 1, 600, 128))), "float32", 1e-5)
    _compare(*_run(rng, ((1, 1, 3, 8), (1, 1, 700, 8), (1, 1, 700, 128)), causal=False), "float32", 1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_shared_memory_tiles_path(causal, rng, monkeypatch):
    """The tiled path GPUs take (tiles in shared memory, barriers), forced on this CPU device."""
    monkeypatch.setattr(attention, "FORCE_SHARED", True)
    _compare(*_run(rng, ((2, 2, 45, 16), (2, 2, 70, 16), (2, 2, 70, 8)), causal=causal), "float32", 1e-5)
    mask = rng.random((45, 70)) > 0.3
    _compare(*_run(rng, ((2, 2, 45, 16), (2, 2, 70, 16), (2, 2, 70, 8)), mask_np=mask), "float32", 1e-5)


def test_scale_is_used(rng):
    _compare(*_run(rng, SHAPES["heads"], scale=0.37), "float32", 1e-5)
    _compare(*_run(rng, SHAPES["heads"], scale=2.5, causal=True), "float32", 1e-5)


def test_large_scores_stay_finite(rng):
    """Scores in the hundreds: the running maximum keeps every exponential in range."""
    q = randn(rng, (1, 1, 40, 8), "float32") * 30
    k = randn(rng, (1, 1, 70, 8), "float32") * 30
    v = randn(rng, (1, 1, 70, 8), "float32")
    out = F.scaled_dot_product_attention(hv.tensor(q), hv.tensor(k), hv.tensor(v))
    ref = TF.scaled_dot_product_attention(*(torch.tensor(f64(x)) for x in (q, k, v)))
    check(out.numpy(), ref.numpy(), "float32", 1e-4)


def test_non_contiguous_views_are_taken(rng):
    """(B, L, H, E) permuted to (B, H, L, E): the layout MultiheadAttention passes."""
    x = [randn(rng, (2, 11, 3, 4), "float32") for _ in range(3)]
    hs = [hv.tensor(a).permute(0, 2, 1, 3) for a in x]
    out = F.scaled_dot_product_attention(*hs, is_causal=True)
    ref = TF.scaled_dot_product_attention(*(torch.tensor(f64(a)).permute(0, 2, 1, 3) for a in x), is_causal=True)
    check(out.numpy(), ref.numpy(), "float32", 1e-5)


def test_every_output_is_written_over_poison(rng):
    shapes = ((2, 3, 19, 8), (2, 3, 23, 8), (2, 3, 23, 8))
    xs = [hv.tensor(randn(rng, s, "float32"), requires_grad=True) for s in shapes]
    poison = hv.full((4096,), np.nan)
    del poison  # its range goes back to the pool: the next outputs take it, NaN-filled
    out = F.scaled_dot_product_attention(*xs, is_causal=True)
    out.sum().backward()
    for t in [out] + [x.grad for x in xs]:
        assert not np.isnan(t.numpy()).any()


def test_deterministic_and_independent_of_the_batch(rng):
    """Each row's bits depend on its own (batch, head) only: not on how many there are, nor the run."""
    shapes = ((3, 2, 21, 8), (3, 2, 40, 8), (3, 2, 40, 8))
    xs = [randn(rng, s, "float32") for s in shapes]
    g = randn(rng, (3, 2, 21, 8), "float32")

    def run(n):
        hs = [hv.tensor(x[:n], requires_grad=True) for x in xs]
        out = F.scaled_dot_product_attention(*hs, is_causal=True)
        out.backward(hv.tensor(g[:n]))
        return [t.numpy()[:1].view(np.uint32) for t in [out] + [h.grad for h in hs]]

    full, again, one = run(3), run(3), run(1)
    for a, b, c in zip(full, again, one):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def _dropped_probabilities(seed, p, L=13, S=17):
    """With V the identity, the output is the dropped attention weights themselves."""
    gen = hv.Generator(seed)
    q = hv.tensor(np.linspace(-1, 1, 2 * L * 4, dtype=np.float32).reshape(2, L, 4))
    k = hv.tensor(np.cos(np.arange(2 * S * 4, dtype=np.float32)).reshape(2, S, 4))
    v = hv.tensor(np.broadcast_to(np.eye(S, dtype=np.float32), (2, S, S)).copy())
    return q, k, v, F.scaled_dot_product_attention(q, k, v, dropout_p=p, generator=gen).numpy()


def test_dropout_drops_weights_and_scales_the_rest(rng):
    p = 0.3
    q, k, v, got = _dropped_probabilities(5, p)
    probs = TF.softmax(torch.tensor(f64(q.numpy())) @ torch.tensor(f64(k.numpy())).transpose(1, 2) / 2, -1).numpy()
    kept = got != 0
    np.testing.assert_allclose(got[kept], probs[kept] / (1 - p), rtol=1e-5)
    assert abs(kept.mean() - (1 - p)) < 0.06, kept.mean()
    _, _, _, again = _dropped_probabilities(5, p)
    np.testing.assert_array_equal(got, again)                 # the seed decides the mask
    assert not np.array_equal(kept, _dropped_probabilities(6, p)[3] != 0)


def test_dropout_gradients_use_the_same_mask(rng):
    p, L, S = 0.25, 11, 14
    xs = [randn(rng, (2, L, 6), "float32"), randn(rng, (2, S, 6), "float32"), randn(rng, (2, S, 5), "float32")]
    g = randn(rng, (2, L, 5), "float32")
    # The mask, read off with V the identity (same generator state, same counters).
    eye = hv.tensor(np.broadcast_to(np.eye(S, dtype=np.float32), (2, S, S)).copy())
    keep = F.scaled_dot_product_attention(hv.tensor(xs[0]), hv.tensor(xs[1]), eye, dropout_p=p,
                                          generator=hv.Generator(11)).numpy() != 0
    hs = [hv.tensor(x, requires_grad=True) for x in xs]
    out = F.scaled_dot_product_attention(*hs, dropout_p=p, generator=hv.Generator(11))
    out.backward(hv.tensor(g))
    ts = [torch.tensor(f64(x), requires_grad=True) for x in xs]
    w = TF.softmax(ts[0] @ ts[1].transpose(1, 2) / math.sqrt(6), -1) * torch.tensor(keep / (1 - p))
    ref = w @ ts[2]
    ref.backward(torch.tensor(f64(g)))
    _compare(out, hs, ref, ts, "float32", 1e-5)


def test_manual_attention_from_the_building_blocks_agrees(rng):
    """tril, masked_fill, softmax, bmm and baddbmm cover the unfused form."""
    q, k, v = (randn(rng, s, "float32") for s in ((3, 10, 4), (3, 10, 4), (3, 10, 6)))
    hq, hk, hvv = hv.tensor(q), hv.tensor(k), hv.tensor(v)
    allowed = hv.tril(hv.ones(10, 10)) > 0
    bias = hv.zeros(3, 10, 10)
    scores = hv.baddbmm(bias, hq, hk.transpose(1, 2), alpha=0.5).masked_fill(~allowed, -math.inf)
    manual = hv.bmm(F.softmax(scores, dim=-1), hvv)
    fused = F.scaled_dot_product_attention(hq, hk, hvv, is_causal=True, scale=0.5)
    check(manual.numpy(), fused.numpy(), "float32", 1e-5)


@pytest.mark.parametrize("beta,alpha", [(1, 1), (0.5, -2.0), (0, 3.0)])
def test_baddbmm_matches_torch(beta, alpha, rng):
    a, b1, b2 = randn(rng, (5, 1), "float32"), randn(rng, (3, 5, 7), "float32"), randn(rng, (3, 7, 2), "float32")
    if beta == 0:
        a = np.full((5, 1), np.nan, np.float32)  # ignored, NaN included, as torch
    ha = [hv.tensor(x, requires_grad=True) for x in (a, b1, b2)]
    out = hv.baddbmm(*ha, beta=beta, alpha=alpha)
    ta = [torch.tensor(f64(x), requires_grad=True) for x in (a, b1, b2)]
    ref = torch.baddbmm(*ta, beta=beta, alpha=alpha)
    check(out.numpy(), ref.detach().numpy(), "float32", 1e-5)
    w = randn(rng, ref.shape, "float32")
    (out * hv.tensor(w)).sum().backward()
    (ref * torch.tensor(f64(w))).sum().backward()
    for h, t in zip(ha[1:], ta[1:]):
        check(h.grad.numpy(), t.grad.numpy(), "float32", 1e-5)
    if beta != 0:
        check(ha[0].grad.numpy(), ta[0].grad.numpy(), "float32", 1e-5)
    assert ha[0].baddbmm(ha[1], ha[2], beta=beta, alpha=alpha).shape == (3, 5, 2)
    with pytest.raises(errors.ShapeError):
        hv.baddbmm(hv.zeros(4, 3), hv.zeros(3, 5, 7), hv.zeros(3, 7, 2))


def test_capture_replays_what_eager_computes(rng):
    shapes = ((1, 2, 9, 4), (1, 2, 12, 4), (1, 2, 12, 4))
    xs = [hv.tensor(randn(rng, s, "float32")) for s in shapes]
    eager = F.scaled_dot_product_attention(*xs, is_causal=True).numpy()
    with hv.capture() as graph:
        out = F.scaled_dot_product_attention(*xs, is_causal=True)
    graph.replay()
    np.testing.assert_array_equal(out.numpy().view(np.uint32), eager.view(np.uint32))
    with pytest.raises(errors.CaptureError, match="dropout"):
        with hv.capture():
            F.scaled_dot_product_attention(*xs, dropout_p=0.1)


def test_bad_input_gets_typed_errors():
    q, k, v = hv.zeros(2, 3, 4), hv.zeros(2, 5, 4), hv.zeros(2, 5, 6)
    with pytest.raises(errors.DTypeError):
        F.scaled_dot_product_attention(q, k.to(hv.float16), v)
    with pytest.raises(errors.DTypeError):
        F.scaled_dot_product_attention(hv.zeros(2, 3, 4, dtype="int32"), k, v)
    with pytest.raises(errors.ShapeError):
        F.scaled_dot_product_attention(q, hv.zeros(2, 5, 3), v)          # key's E differs
    with pytest.raises(errors.ShapeError):
        F.scaled_dot_product_attention(q, k, hv.zeros(2, 4, 6))          # value's S differs
    with pytest.raises(errors.ShapeError):
        F.scaled_dot_product_attention(q, hv.zeros(3, 5, 4), hv.zeros(3, 5, 6))  # batch differs
    with pytest.raises(errors.ShapeError):
        F.scaled_dot_product_attention(hv.zeros(4), k, v)
    with pytest.raises(errors.ShapeError):
        F.scaled_dot_product_attention(q, k, v, attn_mask=hv.zeros(3, 4))  # does not broadcast to (3, 5)
    with pytest.raises(errors.ShapeError):
        F.scaled_dot_product_attention(q, k, v, attn_mask=hv.zeros(3, 5), is_causal=True)
    with pytest.raises(errors.DTypeError):
        F.scaled_dot_product_attention(q, k, v, attn_mask=hv.zeros(3, 5, dtype="int32"))
    with pytest.raises(ValueError):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.0)
    with pytest.raises(errors.LimitExceededError):
        F.scaled_dot_product_attention(hv.zeros(1, 2, 300), hv.zeros(1, 2, 300), hv.zeros(1, 2, 300))
    with pytest.raises(errors.HlxError, match="no gradient"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=hv.zeros(3, 5, requires_grad=True))
    with pytest.raises(TypeError):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.zeros((3, 5)))


def test_empty_queries_and_keys():
    out = F.scaled_dot_product_attention(hv.zeros(2, 0, 4), hv.zeros(2, 5, 4), hv.zeros(2, 5, 3))
    assert out.shape == (2, 0, 3)
    out = F.scaled_dot_product_attention(hv.ones(2, 3, 4), hv.zeros(2, 0, 4), hv.zeros(2, 0, 3))
    ref = TF.scaled_dot_product_attention(torch.ones(2, 3, 4), torch.zeros(2, 0, 4), torch.zeros(2, 0, 3))
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
