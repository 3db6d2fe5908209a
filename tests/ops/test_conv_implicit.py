"""The implicit-GEMM convolution (ops/conv_implicit.py), forced on this device: forward and both
gradients against torch in float64 on odd shapes (stride, padding, dilation, groups; 1x1, 3x3,
7x7; strided views; float16) with outputs on NaN-poisoned memory; every tile; the forward's
bits equal the im2col path's (the same products in the same order, split-K included) and do
not depend on the tile or the batch; the input gradient's bits do not depend on the batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import conv_implicit as ci
from hlx_vulkan.ops.conv import pair
from hlx_vulkan.strict_mode import set_strict
from test_conv import check

TF = torch.nn.functional


@pytest.fixture
def implicit(monkeypatch):
    monkeypatch.setattr(ci, "IMPL", "implicit")
    calls = []  # the implicit kernel's launches: forward or input gradient ("x"), weight gradient ("w")
    launch, wgrad = ci._launch, ci._launch_wgrad
    monkeypatch.setattr(ci, "_launch", lambda *a: calls.append("x") or launch(*a))
    monkeypatch.setattr(ci, "_launch_wgrad", lambda *a: calls.append("w") or wgrad(*a))
    return calls


# (x shape, weight shape, kwargs): odd sizes, 1x1 to 7x7, stride, padding (more than the taps
# reach: the input gradient's padding is negative), dilation with strides (phases with no taps).
CASES = [
    ((2, 5, 9, 7), (7, 5, 3, 3), dict(padding=1)),
    ((3, 4, 11, 10), (6, 4, 3, 3), dict(stride=2, padding=1)),
    ((2, 6, 9, 7), (9, 2, 3, 4), dict(groups=3, padding=(1, 2), dilation=(2, 1))),
    ((2, 3, 13, 12), (5, 3, 7, 7), dict(stride=2, padding=3)),
    ((1, 5, 10, 9), (4, 5, 7, 7), dict(padding=3)),
    ((2, 9, 7, 5), (11, 9, 1, 1), dict()),
    ((2, 9, 7, 5), (3, 9, 1, 1), dict(stride=2, padding=1)),
    ((2, 4, 9, 11), (5, 4, 1, 1), dict(padding=2)),
    ((2, 4, 13, 12), (6, 2, 3, 2), dict(stride=(3, 2), padding=(2, 0), dilation=(2, 2), groups=2)),
    ((3, 4, 8, 9), (8, 1, 3, 3), dict(groups=4, padding=2, dilation=2)),
    ((2, 3, 10, 11), (4, 3, 2, 3), dict(stride=(3, 2), padding=(0, 1), dilation=(1, 3))),
]


@pytest.mark.parametrize("xs,ws,kw", CASES, ids=[f"{w[2]}x{w[3]}-{k}" for _, w, k in CASES])
def test_implicit_conv2d_matches_torch(xs, ws, kw, rng, implicit):
    check(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw),
          [xs, ws, (ws[0],)], rng)
    assert implicit, "the implicit kernel did not run"
    # The input gradient: one launch at stride 1, one per phase of dx with taps (at least one) otherwise.
    (sh, sw) = pair(kw.get("stride", 1), "s")
    assert implicit.count("w") == 1 and (implicit.count("x") == 2 if sh * sw == 1 else implicit.count("x") >= 2)


@pytest.mark.parametrize("tile", sorted(ci.TILES))
def test_every_tile_matches_torch_and_gives_the_same_bits(tile, rng, implicit, monkeypatch):
    """Split-K (K = 118 * 9 > 1024: two chunks), groups, a strided (channels-last) view."""
    monkeypatch.setattr(ci, "FORCE_TILE", tile)
    kw = dict(padding=1, groups=2)
    out = check(lambda x, w: F.conv2d(x, w, **kw), lambda x, w: TF.conv2d(x, w, **kw),
                [(2, 236, 7, 9), (6, 118, 3, 3)], rng, view=True)
    monkeypatch.setattr(ci, "IMPL", "im2col")
    x = hv.tensor(rng.standard_normal((3, 236, 7, 9)).astype(np.float32))
    w = hv.tensor(rng.standard_normal((6, 118, 3, 3)).astype(np.float32))
    ref = F.conv2d(x, w, **kw).numpy()
    monkeypatch.setattr(ci, "IMPL", "implicit")
    np.testing.assert_array_equal(F.conv2d(x, w, **kw).numpy(), ref)
    assert out.shape == (2, 6, 7, 9)


def test_weight_gradient_in_chunks_matches_torch_and_no_tile_changes_its_bits(rng, implicit, monkeypatch):
    """The weight gradient's sum over 3 * 11 * 13 pixels cut into 7 chunks of 64 (added in order by
    a second pass): torch's gradient, and the same bits from every tile (and so every device)."""
    monkeypatch.setattr(ci, "MIN_WGRAD_CHUNK", 20)
    assert ci._wgrad_chunks(5, 27, 429, 1) == (64, 7)
    kw = dict(padding=1, dilation=(1, 2), groups=1)
    check(lambda x, w: F.conv2d(x, w, **kw), lambda x, w: TF.conv2d(x, w, **kw), [(3, 3, 11, 15), (5, 3, 3, 3)], rng)
    x = hv.tensor(rng.standard_normal((3, 6, 11, 15)).astype(np.float32))
    w0 = rng.standard_normal((10, 3, 3, 3)).astype(np.float32)
    g = hv.tensor(rng.standard_normal((3, 10, 11, 13)).astype(np.float32))
    bits = {}
    for tile in sorted(ci.TILES):
        monkeypatch.setattr(ci, "FORCE_TILE", tile)
        w = hv.tensor(w0, requires_grad=True)
        F.conv2d(x, w, padding=1, dilation=(1, 2), groups=2).backward(g)
        bits[tile] = w.grad.numpy()
    for tile, gw in bits.items():
        np.testing.assert_array_equal(gw, bits["small"], err_msg=tile)
    assert implicit.count("x") == 2 + len(ci.TILES) and implicit.count("w") == 1 + len(ci.TILES)


def test_forward_bits_equal_the_im2col_path(rng, implicit, monkeypatch):
    for xs, ws, kw in CASES:
        x = hv.tensor(rng.standard_normal(xs).astype(np.float32))
        w = hv.tensor(rng.standard_normal(ws).astype(np.float32))
        got = F.conv2d(x, w, **kw).numpy()
        monkeypatch.setattr(ci, "IMPL", "im2col")
        ref = F.conv2d(x, w, **kw).numpy()
        monkeypatch.setattr(ci, "IMPL", "implicit")
        np.testing.assert_array_equal(got, ref, err_msg=str(kw))
    assert len(implicit) == len(CASES)


@pytest.mark.parametrize("stride", [1, 2])
def test_bits_do_not_depend_on_the_batch(stride, rng, implicit):
    """Output and input gradient of one image, alone and in a batch of 5 (so other tiles and grids)."""
    x = rng.standard_normal((5, 6, 9, 8)).astype(np.float32)
    w = hv.tensor(rng.standard_normal((7, 6, 3, 3)).astype(np.float32))
    outs, grads = [], []
    for batch in (x, x[3:4]):
        t = hv.tensor(batch, requires_grad=True)
        y = F.conv2d(t, w, padding=1, stride=stride)
        (y * y).sum().backward()
        outs.append(y.numpy())
        grads.append(t.grad.numpy())
    np.testing.assert_array_equal(outs[0][3:4], outs[1])
    np.testing.assert_array_equal(grads[0][3:4], grads[1])
    assert implicit == (["x", "x"] * 2 if stride == 1 else ["x"] * 5 * 2)


def test_float16_and_unbatched(rng, implicit):
    out = check(lambda x, w: F.conv2d(x, w, padding=1), lambda x, w: TF.conv2d(x, w, padding=1),
                [(2, 3, 7, 6), (4, 3, 3, 3)], rng, tol=2e-3, grad_tol=5e-3, dtype="float16")
    assert out.dtype is hv.float16
    out = check(lambda x, w: F.conv2d(x, w, stride=2), lambda x, w: TF.conv2d(x, w, stride=2),
                [(2, 3, 7, 6), (4, 3, 3, 3)], rng, tol=1e-2, grad_tol=3e-2, dtype="bfloat16")
    assert out.dtype is hv.bfloat16
    check(lambda x, w, b: F.conv2d(x, w, b, stride=2), lambda x, w, b: TF.conv2d(x, w, b, stride=2),
          [(3, 9, 8), (5, 3, 3, 3), (5,)], rng)
    assert implicit == ["x", "x", "w"] + ["x"] * 5 + ["w"] + ["x"] * 5 + ["w"]  # stride 2: four phases of dx


def test_which_path_runs(monkeypatch):
    x, w = hv.randn(1, 2, 5, 5), hv.randn(3, 2, 3, 3)
    monkeypatch.setattr(ci, "IMPL", "implicit")
    assert ci.use_implicit(x)
    previous = set_strict(True)
    try:
        assert not ci.use_implicit(x)  # strict mode keeps the im2col path (and its strict digests)
    finally:
        set_strict(previous)
    monkeypatch.setattr(ci, "IMPL", "im2col")
    assert not ci.use_implicit(x)
    monkeypatch.setattr(ci, "IMPL", "winograd")
    with pytest.raises(ValueError, match="HLX_CONV_IMPL"):
        F.conv2d(x, w)
