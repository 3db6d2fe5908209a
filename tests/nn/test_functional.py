import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.nn import functional as F

TOL = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}


def _check(out, ref, dtype):
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert err < TOL[dtype], err


def _logsumexp(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_and_log_softmax(dtype, axis, rng):
    x = (rng.standard_normal((6, 9)) * 4).astype(hv.memory.dtype_of(dtype).numpy)
    d = x.astype(np.float64)
    ref = d - _logsumexp(d, axis)
    _check(F.log_softmax(hv.tensor(x), axis).numpy(), ref, dtype)
    _check(F.softmax(hv.tensor(x), axis).numpy(), np.exp(ref), dtype)


def test_softmax_is_stable_for_large_inputs():
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]], np.float32)
    out = F.softmax(hv.tensor(x), -1).numpy()
    assert np.isfinite(out).all()
    _check(out, np.exp(x - _logsumexp(x.astype(np.float64), -1)), "float32")


@pytest.mark.parametrize("scale", [1.0, 0.01])  # at 0.01 the variance is ~1e-4 and eps=1e-5 shows
def test_layer_norm(rng, scale):
    x = (rng.standard_normal((4, 5, 8)) * scale).astype(np.float32)
    w, b = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    d = x.astype(np.float64)
    ref = (d - d.mean(-1, keepdims=True)) / np.sqrt(d.var(-1, keepdims=True) + 1e-5) * w + b
    _check(F.layer_norm(hv.tensor(x), 8, hv.tensor(w), hv.tensor(b)).numpy(), ref, "float32")
    module = hv.nn.LayerNorm(8)
    _check(module(hv.tensor(x)).numpy(), (d - d.mean(-1, keepdims=True)) / np.sqrt(d.var(-1, keepdims=True) + 1e-5),
           "float32")
    with pytest.raises(errors.ShapeError, match="does not match"):
        F.layer_norm(hv.tensor(x), 5)


def test_cross_entropy_and_mse(rng):
    logits = rng.standard_normal((16, 10)).astype(np.float32)
    target = rng.integers(0, 10, 16)
    d = logits.astype(np.float64)
    ref = -(d - _logsumexp(d, 1))[np.arange(16), target].mean()
    _check(F.cross_entropy(hv.tensor(logits), target).numpy(), ref, "float32")
    _check(F.cross_entropy(hv.tensor(logits), hv.tensor(target.astype(np.int32)), reduction="sum").numpy(),
           ref * 16, "float32")
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    _check(F.mse_loss(hv.tensor(a), hv.tensor(b)).numpy(), ((a.astype(np.float64) - b) ** 2).mean(), "float32")
    with pytest.raises(errors.ShapeError, match="index 10 is out of range"):
        F.cross_entropy(hv.tensor(logits), [10] * 16)
    with pytest.raises(errors.ShapeError, match="target"):
        F.cross_entropy(hv.tensor(logits), [1, 2])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_softmax_on_strided_views_along_any_axis(axis, rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    view = hv.tensor(x).transpose(0, 2)
    d = x.swapaxes(0, 2).astype(np.float64)
    _check(F.log_softmax(view, axis).numpy(), d - _logsumexp(d, axis), "float32")
    _check(F.softmax(view, axis).numpy(), np.exp(d - _logsumexp(d, axis)), "float32")
