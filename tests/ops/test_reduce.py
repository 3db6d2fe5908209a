import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.ops import reduce as red
from opcheck import check, f64, randn

FLOATS = ["float32", "float16", "bfloat16"]
CASES = [((7,), None), ((7,), 0), ((3, 5), 0), ((3, 5), 1), ((3, 5), -1), ((2, 3, 4), 1), ((2, 3, 4), (0, 2)),
         ((2, 3, 4), None), ((1, 1), 0), ((4, 1000), 1), ((300, 3), 0), ((2, 3, 4, 5, 6), 2)]


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("shape,axis", CASES, ids=str)
def test_reductions_match_numpy(op, dtype, shape, axis, keepdim, rng):
    x = randn(rng, shape, dtype)
    fn = {"max": hv.amax, "min": hv.amin}.get(op, getattr(hv, op))  # numpy's max: torch's amax
    got = fn(hv.tensor(x), axis=axis, keepdim=keepdim)
    ref = getattr(np, {"sum": "sum", "mean": "mean", "max": "max", "min": "min"}[op])(
        f64(x), axis=axis, keepdims=keepdim)
    assert got.dtype.name == dtype
    check(got.numpy(), ref, dtype)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("shape,axis", [((7,), None), ((3, 5), 0), ((3, 5), 1), ((2, 3, 4), 2), ((50, 700), 1)],
                         ids=str)
def test_arg_reductions(op, shape, axis, rng):
    x = rng.integers(-5, 5, shape).astype(np.float32)  # many ties: the first index must win
    got = getattr(hv, op)(hv.tensor(x), axis=axis)
    assert got.dtype is hv.int64  # index tensors are int64, as torch
    np.testing.assert_array_equal(got.numpy(), getattr(np, op)(x, axis=axis))


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("axis", [None, 0, (0, 1)])
def test_var(axis, correction, rng):
    x = randn(rng, (6, 7, 3), "float32")
    check(hv.var(hv.tensor(x), axis, correction=correction).numpy(), np.var(f64(x), axis=axis, ddof=correction),
          "float32")


def test_long_axis_takes_two_passes_and_stays_accurate(monkeypatch, rng):
    monkeypatch.setattr(red, "MIN_CHUNK", 1000)
    x = randn(rng, (3, 25_001), "float16")
    for op in ("sum", "amax", "amin", "mean"):
        got = getattr(hv, op)(hv.tensor(x), axis=1)
        ref = {"sum": np.sum, "amax": np.max, "amin": np.min, "mean": np.mean}[op]
        check(got.numpy(), ref(f64(x), axis=1), "float16")
    full = hv.tensor(x).sum()
    check(full.numpy(), f64(x).sum(), "float16")


def test_strided_input_and_ints(rng):
    x = randn(rng, (8, 6), "float32")
    t = hv.tensor(x).T
    check(t.sum(axis=1).numpy(), f64(x).T.sum(axis=1), "float32")
    i = rng.integers(-100, 100, (5, 9)).astype(np.int32)
    np.testing.assert_array_equal(hv.sum(hv.tensor(i), axis=0).numpy(), i.sum(axis=0))
    np.testing.assert_array_equal(hv.amax(hv.tensor(i), axis=1).numpy(), i.max(axis=1))


def test_nan_propagates_and_argmax_picks_first_nan():
    x = np.array([[1, np.nan, 3, np.nan], [4, 5, 6, 7]], np.float32)
    t = hv.tensor(x)
    np.testing.assert_array_equal(np.isnan(t.amax(axis=1).numpy()), [True, False])
    np.testing.assert_array_equal(np.isnan(t.sum(axis=1).numpy()), [True, False])
    np.testing.assert_array_equal(t.argmax(axis=1).numpy(), np.argmax(x, axis=1))


def test_reductions_are_bitwise_deterministic(rng):
    x = hv.tensor(randn(rng, (64, 4097), "float32"))
    digests = {x.sum(axis=1).digest() for _ in range(3)} | {x.sum().digest() for _ in range(1)}
    assert len(digests) == 2


def test_bad_axes_are_refused():
    t = hv.randn(3, 4)
    with pytest.raises(errors.ShapeError, match="dim 2 is out of range"):
        t.sum(axis=2)
    with pytest.raises(errors.ShapeError, match="empty"):
        hv.zeros(0, 3).amax(axis=0)
    np.testing.assert_array_equal(hv.zeros(0, 3).sum(axis=0).numpy(), np.zeros(3))


@pytest.mark.parametrize("dtype", ["int32", "uint8", "uint32", "int8"])
def test_integer_extremes_and_their_indices(dtype, rng):
    """Integer max/min/argmax/argmin start from the type's own extremes (no float infinity), ties
    pick the first index."""
    info = np.iinfo(dtype)
    x = rng.integers(info.min, int(info.max) + 1, (5, 37), dtype=np.int64).astype(dtype)
    x[1, 3] = x[1, 20] = info.max   # ties at the type's limits
    x[2, 5] = x[2, 30] = info.min
    t = hv.tensor(x, dtype=dtype)
    for axis in (None, 0, 1):
        np.testing.assert_array_equal(t.amax(axis).numpy(), x.max(axis))
        np.testing.assert_array_equal(t.amin(axis).numpy(), x.min(axis))
        np.testing.assert_array_equal(t.argmax(axis).numpy(), np.argmax(x, axis))
        np.testing.assert_array_equal(t.argmin(axis).numpy(), np.argmin(x, axis))
