"""The fused layer norm (ops/layer_norm.py): forward and backward against torch in float64 on
odd row lengths, each path forced (scalar or vector loads, the row in registers or read again
per pass, backward chunk sizes), same bits across paths and batch sizes, poisoned outputs,
non-contiguous inputs, 16-bit storage, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import layer_norm as ln

from opcheck import check, f64

TF = torch.nn.functional
TOL = {"float32": 2e-6, "float16": 2e-3, "bfloat16": 1.5e-2}
PATHS = {"auto": {}, "scalar": {"FORCE_SCALAR": True}, "stream": {"FORCE_STREAM": True},
         "scalar_stream_chunk3": {"FORCE_SCALAR": True, "FORCE_STREAM": True, "FORCE_CHUNK": 3}}


def _force(monkeypatch, path):
    for name, value in PATHS[path].items():
        monkeypatch.setattr(ln, name, value)


def _poison(nbytes: int) -> None:
    """Fill a block with NaN and free it: the next allocations of the stream reuse its range."""
    p = hv.full((max(1, nbytes // 4),), np.nan)
    del p


def _inputs(rng, rows, D, dtype):
    npdt = hv.memory.dtype_of(dtype).numpy
    x = (rng.standard_normal((rows, D)) * 2 + 0.5).astype(npdt)
    w = rng.standard_normal(D).astype(npdt)
    b = rng.standard_normal(D).astype(npdt)
    g = rng.standard_normal((rows, D)).astype(npdt)
    return x, w, b, g


def _run(x, w, b, g, eps=1e-5):
    tx, tw, tb = (hv.tensor(a, requires_grad=True) for a in (x, w, b))
    _poison(x.nbytes * 3)
    y = F.layer_norm(tx, (x.shape[-1],), tw, tb, eps)
    y.backward(hv.tensor(g))
    return y, tx.grad, tw.grad, tb.grad


def _reference(x, w, b, g, eps=1e-5):
    tx, tw, tb = (torch.tensor(f64(a), requires_grad=True) for a in (x, w, b))
    y = TF.layer_norm(tx, (x.shape[-1],), tw, tb, eps)
    y.backward(torch.tensor(f64(g)))
    return [t.detach().numpy() for t in (y, tx.grad, tw.grad, tb.grad)]


def _f(t):
    return t.to(hv.float32).numpy()


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("D", [1, 17, 1023, 4097])
def test_matches_torch_float64(rng, monkeypatch, path, D):
    _force(monkeypatch, path)
    x, w, b, g = _inputs(rng, 5, D, "float32")
    got = _run(x, w, b, g)
    for name, out, ref in zip(("y", "dx", "dweight", "dbias"), got, _reference(x, w, b, g)):
        assert not np.isnan(_f(out)).any(), f"{name}: an element was not written"
        if np.abs(ref).max() < 1e-9:   # dx of rows of one element: 0 (torch's float64 leaves 1e-13)
            assert np.abs(_f(out)).max() < 1e-6
        else:
            check(_f(out), ref, "float32", TOL["float32"] * (20 if name != "y" else 1))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("D", [16, 33])
def test_16_bit_storage(rng, dtype, D):
    x, w, b, g = _inputs(rng, 7, D, dtype)
    got = _run(x, w, b, g)
    assert all(t.dtype.name == dtype for t in got)
    for out, ref in zip(got, _reference(x, w, b, g)):
        check(_f(out), ref, dtype, TOL[dtype])


def test_row_of_a_million(rng):
    x, w, b, g = _inputs(rng, 2, 1_000_003, "float32")
    for out, ref in zip(_run(x, w, b, g), _reference(x, w, b, g)):
        check(_f(out), ref, "float32", 1e-5)


def _bits(ts):
    return [_f(t).view(np.uint32).copy() for t in ts]


@pytest.mark.parametrize("D", [12, 1024, 4100])
def test_same_bits_on_every_path(rng, monkeypatch, D):
    x, w, b, g = _inputs(rng, 6, D, "float32")
    want = _bits(_run(x, w, b, g))
    for path in ("scalar", "stream"):
        with monkeypatch.context() as m:
            _force(m, path)
            for a, c in zip(want, _bits(_run(x, w, b, g))):
                np.testing.assert_array_equal(a, c)


def test_same_bits_whatever_the_batch(rng, monkeypatch):
    """A row gives the same y and dx alone, in a batch of 37 and in chunks of any size."""
    x, w, b, g = _inputs(rng, 37, 300, "float32")
    y1, dx1, _, _ = _bits(_run(x[:1], w, b, g[:1]))
    y37, dx37, dw, db = _bits(_run(x, w, b, g))
    np.testing.assert_array_equal(y1[0], y37[0])
    np.testing.assert_array_equal(dx1[0], dx37[0])
    assert not np.array_equal(y37[0], y37[1])
    monkeypatch.setattr(ln, "FORCE_CHUNK", 5)
    y5, dx5, dw5, db5 = _bits(_run(x, w, b, g))
    np.testing.assert_array_equal(dx5, dx37)
    np.testing.assert_array_equal(y5, y37)
    again = _bits(_run(x, w, b, g))
    for a, c in zip((y5, dx5, dw5, db5), again):
        np.testing.assert_array_equal(a, c)


def test_many_chunks_of_dweight_and_dbias(rng, monkeypatch):
    """200 chunks of one row: eight runs of 25 chunks, then the tree of layer_norm_wb.comp."""
    monkeypatch.setattr(ln, "FORCE_CHUNK", 1)
    x, w, b, g = _inputs(rng, 200, 70, "float32")
    for out, ref in zip(_run(x, w, b, g)[2:], _reference(x, w, b, g)[2:]):
        check(_f(out), ref, "float32", 1e-5)


def test_chunk_rule_depends_on_rows_alone():
    assert [ln.rows_per_chunk(n) for n in (1, 1023, 1024, 5000, 10**6)] == [1, 1, 1, 4, 64]
    assert [ln.workgroup(d) for d in (1, 256, 257, 1024, 2048, 10**6)] == [32, 32, 64, 128, 256, 256]


def test_non_contiguous_and_offset_inputs(rng):
    base = rng.standard_normal((9, 21)).astype(np.float32)
    w = rng.standard_normal(8).astype(np.float32)
    tb = hv.tensor(base, requires_grad=True)
    view = tb[1:, 3:11]   # an offset, rows strided by 21
    y = F.layer_norm(view, (8,), hv.tensor(w))
    g = rng.standard_normal((8, 8)).astype(np.float32)
    y.backward(hv.tensor(g))
    rx = torch.tensor(f64(base), requires_grad=True)
    ry = TF.layer_norm(rx[1:, 3:11], (8,), torch.tensor(f64(w)))
    ry.backward(torch.tensor(f64(g)))
    check(y.numpy(), ry.detach().numpy(), "float32", 1e-5)
    check(tb.grad.numpy(), rx.grad.numpy(), "float32", 1e-5)
    t = hv.tensor(base.T.copy()).transpose(0, 1)          # column-major
    check(F.layer_norm(t, (21,)).numpy(), TF.layer_norm(torch.tensor(f64(base)), (21,)).numpy(), "float32", 1e-5)


def test_several_normalized_dims_and_module(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    r = rng.standard_normal((3, 4, 5)).astype(np.float32)
    m = hv.nn.LayerNorm((4, 5))
    tx = hv.tensor(x, requires_grad=True)
    y = m(tx)
    (y * y * hv.tensor(r)).sum().backward()
    rm = torch.nn.LayerNorm((4, 5)).double()
    rx = torch.tensor(f64(x), requires_grad=True)
    ry = rm(rx)
    (ry * ry * torch.tensor(f64(r))).sum().backward()
    check(y.numpy(), ry.detach().numpy(), "float32", 1e-5)
    check(tx.grad.numpy(), rx.grad.numpy(), "float32", 1e-4)
    check(m.weight.grad.numpy(), rm.weight.grad.numpy(), "float32", 1e-4)
    check(m.bias.grad.numpy(), rm.bias.grad.numpy(), "float32", 1e-4)


def test_errors():
    x = hv.randn(3, 5)
    with pytest.raises(errors.ShapeError, match="does not match"):
        F.layer_norm(x, (4,))
    with pytest.raises(errors.ShapeError, match="weight"):
        F.layer_norm(x, (5,), hv.ones(4))
    with pytest.raises(errors.DTypeError, match="int32"):
        F.layer_norm(hv.tensor(np.ones((2, 3), np.int32)), (3,))
    with pytest.raises(errors.ShapeError, match="zero"):
        F.layer_norm(hv.zeros(2, 0), (0,))
