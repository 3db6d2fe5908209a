import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors
from opcheck import check, f64, randn

FLOATS = ["float32", "float16", "bfloat16"]
SHAPES = [(0,), (1,), (257,), (3, 5), (2, 3, 4), (2, 1, 3, 1, 2, 2)]
BROADCASTS = [((3, 1), (1, 4)), ((5,), (2, 3, 5)), ((2, 1, 4), (3, 1)), ((1,), (7,)), ((), (3, 2)),
              ((4, 1, 1, 2, 3), (5, 1, 3))]

UNARY = {
    "exp": (hv.exp, np.exp, False), "log": (hv.log, np.log, True), "sqrt": (hv.sqrt, np.sqrt, True),
    "rsqrt": (hv.rsqrt, lambda x: 1 / np.sqrt(x), True), "tanh": (hv.tanh, np.tanh, False),
    "sigmoid": (hv.sigmoid, lambda x: 1 / (1 + np.exp(-x)), False), "abs": (hv.abs, np.abs, False),
    "neg": (hv.neg, np.negative, False), "relu": (hv.relu, lambda x: np.maximum(x, 0), False),
}


def _gelu_ref(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unary(name, dtype, shape, rng):
    fn, ref, positive = UNARY[name]
    x = randn(rng, shape, dtype, positive)
    check(fn(hv.tensor(x)).numpy(), ref(f64(x)), dtype)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_gelu(approximate, dtype, rng):
    x = randn(rng, (513,), dtype)
    check(hv.gelu(hv.tensor(x), approximate).numpy(), _gelu_ref(f64(x), approximate), dtype)


BINARY = {"add": (np.add, lambda a, b: a + b), "sub": (np.subtract, lambda a, b: a - b),
          "mul": (np.multiply, lambda a, b: a * b), "div": (np.divide, lambda a, b: a / b),
          "maximum": (np.maximum, hv.maximum), "minimum": (np.minimum, hv.minimum)}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("sa,sb", BROADCASTS, ids=str)
def test_binary_broadcasting(name, dtype, sa, sb, rng):
    ref, fn = BINARY[name]
    a, b = randn(rng, sa, dtype), randn(rng, sb, dtype, positive=name == "div")
    check(fn(hv.tensor(a), hv.tensor(b)).numpy(), ref(f64(a), f64(b)), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_scalars_on_either_side_and_pow(dtype, rng):
    x = randn(rng, (4, 33), dtype, positive=True)
    t, d = hv.tensor(x), f64(x)
    for out, ref in [(t + 2, d + 2), (2 + t, 2 + d), (t - 1.5, d - 1.5), (1.5 - t, 1.5 - d), (t * 3, d * 3),
                     (3 * t, 3 * d), (t / 4, d / 4), (4 / t, 4 / d), (t ** 2, d ** 2), (t ** 0.5, d ** 0.5),
                     (t ** 3, d ** 3), (t ** -1.5, d ** -1.5), (-t, -d), (t.clamp(0.5, 1.0), np.clip(d, 0.5, 1.0))]:
        check(out.numpy(), ref, dtype)


def test_int_arithmetic_is_exact(rng):
    a = rng.integers(-1000, 1000, (5, 7)).astype(np.int32)
    b = rng.integers(-1000, 1000, (7,)).astype(np.int32)
    ta, tb = hv.tensor(a), hv.tensor(b)
    np.testing.assert_array_equal((ta + tb).numpy(), a + b)
    np.testing.assert_array_equal((ta * tb).numpy(), a * b)
    np.testing.assert_array_equal((ta - 3).numpy(), a - 3)
    np.testing.assert_array_equal(hv.maximum(ta, tb).numpy(), np.maximum(a, b))
    np.testing.assert_array_equal(abs(ta).numpy(), np.abs(a))


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons_and_where(op, rng):
    a = rng.integers(-3, 3, (4, 5)).astype(np.float32)
    b = rng.integers(-3, 3, (5,)).astype(np.float32)
    ref = getattr(np, {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
                       "ge": "greater_equal"}[op])
    got = getattr(hv, op)(hv.tensor(a), hv.tensor(b))
    assert got.dtype is hv.bool
    np.testing.assert_array_equal(got.numpy(), ref(a, b))
    np.testing.assert_array_equal(getattr(hv, op)(hv.tensor(a), 1.0).numpy(), ref(a, 1.0))
    w = hv.where(got, hv.tensor(a), hv.tensor(b))
    np.testing.assert_array_equal(w.numpy(), np.where(ref(a, b), a, b))


def test_nan_and_inf_propagate_like_numpy():
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -2.0], np.float32)
    t = hv.tensor(x)
    with np.errstate(all="ignore"):
        for got, ref in [(hv.exp(t), np.exp(x)), (t + 1, x + 1), (t * 0, x * 0), (hv.maximum(t, hv.tensor(x[::-1].copy())),
                         np.maximum(x, x[::-1])), (hv.relu(t), np.where(x < 0, 0, x)), (hv.log(t), np.log(x)),
                         (hv.sqrt(t), np.sqrt(x)), (hv.tanh(t), np.tanh(x)), (hv.sigmoid(t), 1 / (1 + np.exp(-x)))]:
            g = got.numpy()
            np.testing.assert_array_equal(np.isnan(g), np.isnan(ref))
            fin = ~np.isnan(ref)
            np.testing.assert_allclose(g[fin], ref[fin], rtol=1e-6)
    neg_zero = (hv.tensor(np.array([-0.0], np.float32)) * 1.0).numpy()
    assert np.signbit(neg_zero[0])


@pytest.mark.parametrize("src,dst", [("float32", "float16"), ("float32", "bfloat16"), ("float16", "float32"),
                                     ("bfloat16", "float32"), ("float32", "int32"), ("int32", "float32"),
                                     ("int32", "int8"), ("uint8", "float32")])
def test_casts_match_numpy(src, dst, rng):
    x = (rng.standard_normal(300) * 50).astype(hv.memory.dtype_of(src).numpy) if "float" in src \
        else rng.integers(0, 100, 300).astype(hv.memory.dtype_of(src).numpy)
    got = hv.tensor(x).to(dst)
    assert got.dtype.name == dst
    want = x.astype(hv.memory.dtype_of(dst).numpy)
    assert got.numpy().tobytes() == want.tobytes()


def test_outputs_are_fully_written_over_poison(rng):
    """Copy into a NaN-poisoned tensor, strided and broadcast, and check every element landed."""
    src = rng.standard_normal((6, 1, 5)).astype(np.float32)
    dst = hv.full((6, 4, 5), np.nan)
    dst.copy_(hv.tensor(src))
    np.testing.assert_array_equal(dst.numpy(), np.broadcast_to(src, (6, 4, 5)))
    ones = hv.ones(70_000 * 2)
    np.testing.assert_array_equal((ones * 2).numpy(), np.full(140_000, 2, np.float32))


def test_errors_before_recording():
    a, b = hv.randn(3, 4), hv.randn(5, 4)
    ints, u32, flags = hv.tensor([1, 2], dtype=hv.int32), hv.tensor([1, 2], dtype=hv.uint32), hv.tensor([True])
    dispatched = a.runtime.stream.dispatches
    with pytest.raises(errors.ShapeError, match=r"\(3, 4\) and \(5, 4\)"):
        a + b
    with pytest.raises(errors.DTypeError, match="uint32"):
        ints + u32
    with pytest.raises(errors.DTypeError, match="overflow"):
        ints + 2**40
    with pytest.raises(errors.DTypeError, match="bool"):
        flags - flags
    with pytest.raises(errors.DTypeError, match="bool"):
        -flags
    with pytest.raises(errors.DTypeError, match="negative integer powers"):
        ints ** -1
    with pytest.raises(TypeError):
        a + "x"
    assert a.runtime.stream.dispatches == dispatched


def test_same_input_same_bits(rng):
    x = randn(rng, (1000,), "float32")
    t = hv.tensor(x)
    first = (hv.tanh(t) * hv.sigmoid(t) + hv.exp(t / 3)).digest()
    assert first == (hv.tanh(t) * hv.sigmoid(t) + hv.exp(t / 3)).digest()


def test_float16_arithmetic_mode(rng):
    x, y = randn(rng, (300,), "float16", positive=True), randn(rng, (300,), "float16")
    previous = hv.set_float16_arithmetic(True)
    try:
        tx, ty = hv.tensor(x), hv.tensor(y)
        for got, ref in [(tx * ty + 1, f64(x) * f64(y) + 1), (hv.exp(ty), np.exp(f64(y))),
                         (hv.sqrt(tx), np.sqrt(f64(x))), (hv.sigmoid(ty), 1 / (1 + np.exp(-f64(y)))),
                         (hv.maximum(tx, ty), np.maximum(f64(x), f64(y))), (tx / 3, f64(x) / 3)]:
            check(got.numpy(), ref, "float16")
        assert hv.precision_report()["float16_arithmetic"] is True
        native = [k for k in tx.runtime.kernels.kernels() if k.defines.get("CT") == "float16_t"]
        assert native and all("Float16" in k.shader.reflection.capabilities for k in native)
    finally:
        hv.set_float16_arithmetic(previous)
    assert hv.precision_report()["float16_arithmetic"] is previous
