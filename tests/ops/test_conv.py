"""Convolutions, pooling, padding, resampling and batch/group norm against PyTorch in float64:
forward and gradients on fresh random inputs with odd shapes, strided views, groups, dilation,
stride, float16; outputs land on memory poisoned with NaN (an element left unwritten shows);
bits that do not depend on the batch; clear typed errors for bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.nn import functional as F

TF = torch.nn.functional
TOL = 1e-5       # float32 against float64, relative (norm)
GRAD_TOL = 1e-4


def _poison(*shapes, copies: int = 4):
    """Fill and free device memory of each shape's size with NaN, a few times over: freed ranges
    serve the next requests of their size class, so outputs of those shapes are carved from
    poison and an element a kernel forgets to write reads NaN."""
    junk = [hv.full(tuple(s), float("nan")) for s in shapes for _ in range(copies)]
    for j in junk:
        j.numpy()
    del junk


def _err(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"shape {got.shape} != reference {ref.shape}"
    assert np.isfinite(got).all() == np.isfinite(ref).all(), "non-finite values where the reference has none"
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12))


def check(ours, ref, shapes, rng, tol=TOL, grad_tol=GRAD_TOL, view=None, dtype="float32"):
    """Forward and the gradient of every input against torch in float64; ``view`` makes each
    input a strided view of a larger array first (a non-contiguous operand)."""
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if dtype != "float32":
        xs = [x.astype(hv.memory.dtype_of(dtype).numpy).astype(np.float32) for x in xs]
    hs = []
    for x in xs:
        t = hv.tensor(x, dtype=dtype)
        if view is not None and x.ndim == 4:
            t = hv.tensor(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), dtype=dtype).permute(0, 3, 1, 2)
            assert not t.is_contiguous()
        hs.append(t.requires_grad_())
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    ref = ref(*ts)
    _poison(ref.shape)
    out = ours(*hs)
    assert _err(out.numpy(), ref.detach().numpy()) < tol
    w = rng.standard_normal(ref.shape)
    _poison(*shapes)
    (out * hv.tensor(w.astype(np.float32), dtype=dtype)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    for i, (h, t) in enumerate(zip(hs, ts)):
        assert h.grad is not None, f"input {i} has no gradient"
        assert _err(h.grad.numpy(), t.grad.numpy()) < grad_tol, f"input {i}"
    return out


CONV2D = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    dict(padding="same"),
    dict(padding="same", dilation=2),
    dict(padding="valid", stride=3),
    dict(groups=3, padding=1),
    dict(groups=3, stride=2, dilation=2, padding=2),
]


@pytest.mark.parametrize("kw", CONV2D, ids=[str(k) for k in CONV2D])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_torch(kw, bias, rng):
    groups = kw.get("groups", 1)
    shapes = [(2, 6, 9, 7), (9, 6 // groups, 3, 4)] + ([(9,)] if bias else [])
    check(lambda *a: F.conv2d(*a[:2], a[2] if bias else None, **kw),
          lambda *a: TF.conv2d(*a[:2], a[2] if bias else None, **kw), shapes, rng)


def test_conv2d_on_strided_views_unbatched_and_1x1(rng):
    check(lambda x, w: F.conv2d(x, w, padding=1), lambda x, w: TF.conv2d(x, w, padding=1),
          [(3, 4, 6, 5), (5, 4, 3, 3)], rng, view=True)
    check(lambda x, w, b: F.conv2d(x, w, b), lambda x, w, b: TF.conv2d(x, w, b), [(3, 7, 5), (4, 3, 1, 1), (4,)], rng)
    check(lambda x, w: F.conv2d(x, w, stride=2), lambda x, w: TF.conv2d(x, w, stride=2),
          [(2, 5, 7, 6), (3, 5, 1, 1)], rng)


def test_conv2d_depthwise_and_float16(rng):
    check(lambda x, w: F.conv2d(x, w, padding=1, groups=4), lambda x, w: TF.conv2d(x, w, padding=1, groups=4),
          [(2, 4, 7, 6), (8, 1, 3, 3)], rng)
    out = check(lambda x, w: F.conv2d(x, w, padding=1), lambda x, w: TF.conv2d(x, w, padding=1),
                [(2, 3, 6, 5), (4, 3, 3, 3)], rng, tol=2e-3, grad_tol=5e-3, dtype="float16")
    assert out.dtype is hv.float16


CONV1D = [dict(), dict(stride=2, padding=2, dilation=2), dict(groups=3, padding="same"), dict(padding="valid")]


@pytest.mark.parametrize("kw", CONV1D, ids=[str(k) for k in CONV1D])
def test_conv1d_matches_torch(kw, rng):
    g = kw.get("groups", 1)
    check(lambda x, w, b: F.conv1d(x, w, b, **kw), lambda x, w, b: TF.conv1d(x, w, b, **kw),
          [(2, 6, 13), (9, 6 // g, 4), (9,)], rng)


CONVT = [dict(), dict(stride=2, padding=1, output_padding=1), dict(stride=(2, 3), padding=(0, 1), dilation=(2, 1)),
         dict(groups=2, stride=2), dict(groups=2, padding=1, output_padding=(0, 1), stride=(1, 2))]


@pytest.mark.parametrize("kw", CONVT, ids=[str(k) for k in CONVT])
def test_conv_transpose2d_matches_torch(kw, rng):
    check(lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), lambda x, w, b: TF.conv_transpose2d(x, w, b, **kw),
          [(2, 4, 5, 6), (4, 3, 3, 2), (3 * kw.get("groups", 1),)], rng)


def test_conv_transpose1d_and_unbatched(rng):
    check(lambda x, w: F.conv_transpose1d(x, w, stride=3, padding=1), lambda x, w: TF.conv_transpose1d(
        x, w, stride=3, padding=1), [(2, 3, 7), (3, 5, 4)], rng)
    check(lambda x, w: F.conv_transpose2d(x, w, stride=2), lambda x, w: TF.conv_transpose2d(x, w, stride=2),
          [(3, 5, 4), (3, 2, 3, 3)], rng)


def test_poison_lands_where_outputs_go():
    _poison((3, 5, 7))
    assert np.isnan(hv.empty(3, 5, 7).numpy()).all()


def test_weight_gradient_cut_by_images_matches_torch(rng, monkeypatch):
    """Long weight-gradient sums are cut into chunks of images (summed in chunk order): the
    gradient is torch's, for one group and several."""
    from hlx_vulkan.ops import conv as cv
    monkeypatch.setattr(cv, "MIN_CHUNK_COLUMNS", 20)
    assert cv._image_chunks(6, 4, 27, 30) == 6 and cv._image_chunks(6, 4, 27, 15) == 3
    check(lambda x, w, b: F.conv2d(x, w, b, padding=1), lambda x, w, b: TF.conv2d(x, w, b, padding=1),
          [(6, 3, 6, 5), (4, 3, 3, 3), (4,)], rng)
    check(lambda x, w: F.conv2d(x, w, stride=2, groups=2), lambda x, w: TF.conv2d(x, w, stride=2, groups=2),
          [(4, 4, 9, 9), (6, 2, 3, 3)], rng, view=True)


def test_conv_bits_do_not_depend_on_the_batch(rng):
    """Each output's sum runs over the kernel's taps alone: an image gives the same bits alone
    or in a batch, and so does its gradient."""
    x = rng.standard_normal((5, 3, 9, 8)).astype(np.float32)
    w = hv.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    full = F.conv2d(hv.tensor(x), w, padding=1, stride=2).numpy()
    one = F.conv2d(hv.tensor(x[2:3]), w, padding=1, stride=2).numpy()
    np.testing.assert_array_equal(full[2:3], one)
    np.testing.assert_array_equal(full, F.conv2d(hv.tensor(x), w, padding=1, stride=2).numpy())
    grads = []
    for batch in (x, x[2:3]):
        t = hv.tensor(batch, requires_grad=True)
        F.conv2d(t, w, padding=1, stride=2).sum().backward()
        grads.append(t.grad.numpy())
    np.testing.assert_array_equal(grads[0][2:3], grads[1])


def test_conv_errors_are_typed_and_clear():
    x, w = hv.randn(2, 4, 6, 6), hv.randn(5, 4, 3, 3)
    with pytest.raises(errors.ShapeError, match="does not fit an input of 4 channels"):
        F.conv2d(x, hv.randn(5, 3, 3, 3))
    with pytest.raises(errors.ShapeError, match="groups=3"):
        F.conv2d(x, w, groups=3)
    with pytest.raises(errors.ShapeError, match="larger than the padded input"):
        F.conv2d(x, hv.randn(5, 4, 7, 7))
    with pytest.raises(errors.ShapeError, match="bias"):
        F.conv2d(x, w, hv.randn(4))
    with pytest.raises(errors.ShapeError, match="3-D or 4-D input"):
        F.conv2d(hv.randn(4, 6), w)
    with pytest.raises(errors.DTypeError, match="floating-point"):
        F.conv2d(hv.ones(2, 4, 6, 6, dtype="int32"), hv.ones(5, 4, 3, 3, dtype="int32"))
    with pytest.raises(errors.DTypeError, match="do not match"):
        F.conv2d(x, w.half())
    with pytest.raises(ValueError, match="strided"):
        F.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be"):
        F.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="positive"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(errors.ShapeError, match="stride must be"):
        F.conv2d(x, w, stride=(1, 2, 3))
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(x, hv.randn(4, 2, 3, 3), output_padding=1)


# --- pooling -----------------------------------------------------------------------------------
MAXPOOL = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=2, ceil_mode=True),
           dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1)),
           dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)]


def _distinct(rng, shape):
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.37 - 3.0).astype(np.float32)


@pytest.mark.parametrize("kw", MAXPOOL, ids=[str(k) for k in MAXPOOL])
def test_max_pool2d_values_indices_and_gradient(kw, rng):
    x = _distinct(rng, (2, 3, 9, 8))
    t = hv.tensor(x, requires_grad=True)
    ref = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ry, ridx = TF.max_pool2d(ref, return_indices=True, **kw)
    _poison(ry.shape, x.shape)
    y, idx = F.max_pool2d(t, return_indices=True, **kw)
    np.testing.assert_array_equal(y.numpy(), ry.detach().numpy().astype(np.float32))
    np.testing.assert_array_equal(idx.numpy(), ridx.numpy())
    assert idx.dtype is hv.int64 or idx.dtype is hv.int32
    g = rng.standard_normal(ry.shape)
    (y * hv.tensor(g.astype(np.float32))).sum().backward()
    (ry * torch.tensor(g)).sum().backward()
    assert _err(t.grad.numpy(), ref.grad.numpy()) < GRAD_TOL


def test_max_pool_ties_nan_and_1d(rng):
    x = np.zeros((1, 2, 4, 4), np.float32)
    x[0, 1, 1, 2] = np.nan
    t = hv.tensor(x, requires_grad=True)
    y, idx = F.max_pool2d(t, 2, return_indices=True)
    ry, ridx = TF.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), ridx.numpy())  # ties: the first in the window; NaN wins
    np.testing.assert_array_equal(np.isnan(y.numpy()), np.isnan(ry.numpy()))
    y.sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    TF.max_pool2d(tx, 2).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), tx.grad.numpy())
    check(lambda a: F.max_pool1d(a, 3, 2, 1), lambda a: TF.max_pool1d(a, 3, 2, 1), [(2, 3, 11)], rng)


AVGPOOL = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
           dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
           dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
           dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
           dict(kernel_size=(2, 3), stride=(2, 1), divisor_override=5)]


@pytest.mark.parametrize("kw", AVGPOOL, ids=[str(k) for k in AVGPOOL])
def test_avg_pool2d_matches_torch(kw, rng):
    check(lambda a: F.avg_pool2d(a, **kw), lambda a: TF.avg_pool2d(a, **kw), [(2, 3, 9, 8)], rng)


def test_avg_pool1d_and_adaptive_pools(rng):
    check(lambda a: F.avg_pool1d(a, 3, 2, 1), lambda a: TF.avg_pool1d(a, 3, 2, 1), [(2, 3, 10)], rng)
    for size in [(3, 4), 1, (5, None), (9, 8), (4, 3)]:
        check(lambda a: F.adaptive_avg_pool2d(a, size), lambda a: TF.adaptive_avg_pool2d(a, size),
              [(2, 3, 9, 8)], rng, view=True)
    check(lambda a: F.adaptive_avg_pool1d(a, 4), lambda a: TF.adaptive_avg_pool1d(a, 4), [(2, 3, 11)], rng)


def test_pool_errors():
    x = hv.randn(2, 3, 6, 6)
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(errors.ShapeError, match="would be empty"):
        F.max_pool2d(x, 7)
    with pytest.raises(errors.ShapeError, match=r"\(N, C, H, W\)"):
        F.avg_pool2d(hv.randn(6, 6), 2)
    with pytest.raises(errors.DTypeError):
        F.max_pool2d(hv.ones(1, 1, 4, 4, dtype="int32"), 2)
    with pytest.raises(errors.ShapeError, match="positive"):
        F.adaptive_avg_pool2d(x, 0)


# --- padding and resampling ----------------------------------------------------------------------
PADS = [((1, 2), "constant", 0.0), ((1, 2, 0, 3), "constant", -1.5), ((2, -1, -1, 1), "constant", 0.25),
        ((2, 1, 1, 3), "reflect", 0.0), ((2, 3, 3, 1), "replicate", 0.0), ((2, 1, 3, 2), "circular", 0.0)]


@pytest.mark.parametrize("pad,mode,value", PADS, ids=[f"{m}{p}" for p, m, _ in PADS])
def test_pad_matches_torch(pad, mode, value, rng):
    kw = dict(value=value) if mode == "constant" else {}
    check(lambda a: F.pad(a, pad, mode, **kw), lambda a: TF.pad(a, pad, mode, **kw), [(2, 3, 5, 6)], rng, view=True)


def test_pad_errors():
    x = hv.randn(1, 2, 3, 3)
    with pytest.raises(errors.ShapeError, match="smaller than"):
        F.pad(x, (3, 0), "reflect")
    with pytest.raises(ValueError, match="mode"):
        F.pad(x, (1, 1), "mirror")
    with pytest.raises(errors.ShapeError, match="even number"):
        F.pad(x, (1, 1, 1))


INTERP = [dict(size=(7, 5)), dict(scale_factor=2), dict(scale_factor=0.6), dict(size=(11, 4), mode="bilinear"),
          dict(scale_factor=1.7, mode="bilinear"), dict(size=(7, 9), mode="bilinear", align_corners=True),
          dict(size=(3, 2), mode="bilinear", align_corners=False)]


@pytest.mark.parametrize("kw", INTERP, ids=[str(k) for k in INTERP])
def test_interpolate_matches_torch(kw, rng):
    check(lambda a: F.interpolate(a, **kw), lambda a: TF.interpolate(a, **kw), [(2, 3, 5, 6)], rng, view=True)


def test_interpolate_1d_and_errors(rng):
    check(lambda a: F.interpolate(a, size=9, mode="linear"), lambda a: TF.interpolate(a, size=9, mode="linear"),
          [(2, 3, 5)], rng)
    check(lambda a: F.interpolate(a, scale_factor=3), lambda a: TF.interpolate(a, scale_factor=3), [(2, 3, 5)], rng)
    x = hv.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="exactly one"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(errors.ShapeError, match="does not apply"):
        F.interpolate(x, size=3, mode="linear")
    with pytest.raises(ValueError, match="mode"):
        F.interpolate(x, size=3, mode="bicubic")


# --- normalisation ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (7, 4), (3, 5, 6)])
def test_batch_norm_training_updates_running_stats_as_torch(shape, rng):
    c = shape[1]
    rm0, rv0 = rng.standard_normal(c).astype(np.float32), (rng.random(c) + 0.5).astype(np.float32)
    rm, rv = hv.tensor(rm0), hv.tensor(rv0)
    trm, trv = torch.tensor(rm0, dtype=torch.float64), torch.tensor(rv0, dtype=torch.float64)
    check(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3),
          lambda x, w, b: TF.batch_norm(x, trm, trv, w, b, training=True, momentum=0.3),
          [shape, (c,), (c,)], rng)
    assert _err(rm.numpy(), trm.numpy()) < TOL and _err(rv.numpy(), trv.numpy()) < TOL
    check(lambda x, w, b: F.batch_norm(x, rm, rv, w, b), lambda x, w, b: TF.batch_norm(x, trm, trv, w, b),
          [shape, (c,), (c,)], rng)


def test_batch_norm_and_group_norm_errors_and_group_norm(rng):
    check(lambda x, w, b: F.group_norm(x, 3, w, b), lambda x, w, b: TF.group_norm(x, 3, w, b),
          [(2, 6, 5, 3), (6,), (6,)], rng, view=True)
    check(lambda x: F.group_norm(x, 1), lambda x: TF.group_norm(x, 1), [(3, 4, 7)], rng)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(hv.randn(1, 3), None, None, training=True)
    with pytest.raises(errors.ShapeError, match=r"\(3,\)"):
        F.batch_norm(hv.randn(4, 3), hv.zeros(2), hv.ones(3))
    with pytest.raises(errors.ShapeError, match="groups"):
        F.group_norm(hv.randn(2, 6, 3), 4)


def test_dropout2d_drops_whole_channels():
    x = hv.ones(4, 50, 3, 3)
    y = F.dropout2d(x, 0.5).numpy()
    per_channel = y.reshape(4, 50, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
    assert 0.25 < (per_channel[..., 0] == 0).mean() < 0.75
    np.testing.assert_array_equal(F.dropout2d(x, 0.5, training=False).numpy(), x.numpy())


def test_conv2d_of_no_input_channels_is_the_bias():
    """A sum over no input channels is zero: the output is the bias everywhere (it raised
    ZeroDivisionError while planning the weight gradient's chunks), and the gradients flow."""
    x = hv.randn(2, 0, 5, 5, requires_grad=True)
    w = hv.randn(3, 0, 3, 3, requires_grad=True)
    b = hv.randn(3, requires_grad=True)
    y = F.conv2d(x, w, b, padding=1)
    assert y.shape == (2, 3, 5, 5)
    np.testing.assert_array_equal(y.numpy(), np.broadcast_to(b.numpy()[None, :, None, None], (2, 3, 5, 5)))
    y.sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), np.full(3, 50.0, np.float32))
    assert x.grad.shape == (2, 0, 5, 5) and w.grad.shape == (3, 0, 3, 3)
