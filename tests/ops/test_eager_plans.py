"""Eager plans (hlx_vulkan/ops/eager.py and matmul's front): a call served by a kept plan gives the
same bits, the same dtype and shape, and the same dispatches (kernel, push constants, grid, which
input is bound where) as the op's written path, over many layouts; taping, freed inputs and
scalars of equal value but other bits never take another layout's plan."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.ops import elementwise as ew
from hlx_vulkan.ops import matmul as mm
from hlx_vulkan.ops import pointwise as pw

BINARY = {"add": ew.add, "sub": ew.sub, "mul": ew.mul, "div": ew.div, "maximum": ew.maximum, "lt": ew.lt,
          "eq": ew.eq}
UNARY = {"relu": ew.relu, "exp": ew.exp, "neg": ew.neg, "abs": ew.abs, "sigmoid": ew.sigmoid, "floor": ew.floor,
         "copy": ew.copy}
DTYPES = ("float32", "float16", "int32", "bool")


class DispatchLog:
    """Every dispatch the stream records: kernel, push bytes, grid, and which of ``watch``'s
    allocations each binding is (-1: another, such as a fresh output)."""

    def __init__(self, monkeypatch, rt):
        self.entries, self.watch = [], []
        inner = rt.stream.dispatch

        def logged(kernel, allocations, push, groups):
            keys = [w.buf.allocation.key for w in self.watch]
            where = [keys.index(a.key) if a.key in keys else -1 for a in allocations]
            self.entries.append((kernel, push, tuple(groups), where, [a.size for a in allocations]))
            return inner(kernel, allocations, push, groups)
        monkeypatch.setattr(rt.stream, "dispatch", logged)

    def take(self):
        entries, self.entries = self.entries, []
        return entries


def _bits(t):
    return t.dtype.name, t.shape, t.numpy().tobytes()


def _array(rng, shape, dtype):
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype == "int32":
        return rng.integers(-9, 10, shape).astype(np.int32)
    return (rng.standard_normal(shape) * 3).astype(dtype)


def _layout(rng, shape, dtype, how):
    """A tensor of ``shape`` made as ``how`` says: contiguous, a transposed view, or an offset slice."""
    if how == "transposed" and len(shape) >= 2:
        order = tuple(reversed(range(len(shape))))
        return hv.tensor(_array(rng, shape[::-1], dtype)).permute(*order)
    if how == "offset" and shape:
        return hv.tensor(_array(rng, (shape[0] + 2,) + shape[1:], dtype))[2:]
    return hv.tensor(_array(rng, shape, dtype))


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except (errors.HlxError, TypeError, ZeroDivisionError) as exc:
        return "raised", type(exc)


def _check_same(rt, log, written, fast, args, tensors):
    """``fast(*args)`` twice (learning, then from its plan) against ``written(*args)``."""
    log.watch = tensors
    log.take()  # what making the operands recorded
    ref_kind, ref = _outcome(written, *args)
    ref_log = log.take()
    for _ in range(2):
        kind, got = _outcome(fast, *args)
        assert kind == ref_kind
        if kind == "raised":
            assert got is ref
            continue
        assert log.take() == ref_log
        assert _bits(got) == _bits(ref)
        assert got.grad_fn is None and not got.requires_grad


shapes = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)
hows = st.sampled_from(["contiguous", "transposed", "offset"])
scalars = st.sampled_from([0.0, -0.0, 2.5, -1.0, 3, 0, -7, 1e30])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), shape=shapes, how_a=hows, how_b=hows, da=st.sampled_from(DTYPES),
       db=st.sampled_from(DTYPES), op=st.sampled_from(sorted(BINARY)), other=st.sampled_from(["tensor", "suffix",
                                                                                               "ones", "scalar",
                                                                                               "scalar_left"]),
       scalar=scalars)
def test_a_binary_plan_gives_the_written_path_s_bits_and_dispatches(monkeypatch, seed, shape, how_a, how_b, da, db,
                                                                      op, other, scalar):
    rng = np.random.default_rng(seed)
    rt = hv.default_runtime()
    log = DispatchLog(monkeypatch, rt)
    a = _layout(rng, shape, da, how_a)
    fast = BINARY[op]
    if other.startswith("scalar"):
        args = (a, scalar) if other == "scalar" else (scalar, a)
        tensors = [a]
    else:
        b_shape = {"tensor": shape, "suffix": shape[1:], "ones": tuple(1 for _ in shape)}[other]
        b = _layout(rng, b_shape, db, how_b)
        args, tensors = (a, b), [a, b]
    _check_same(rt, log, fast.__wrapped__, fast, args, tensors)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), shape=shapes, how=hows, dt=st.sampled_from(DTYPES),
       op=st.sampled_from(sorted(UNARY)))
def test_a_unary_plan_gives_the_written_path_s_bits_and_dispatches(monkeypatch, seed, shape, how, dt, op):
    rng = np.random.default_rng(seed)
    rt = hv.default_runtime()
    log = DispatchLog(monkeypatch, rt)
    x = _layout(rng, shape, dt, how)
    fast = UNARY[op]
    _check_same(rt, log, fast.__wrapped__, fast, (x,), [x])


@pytest.mark.parametrize("shapes", [((7, 5), (5, 3)), ((5,), (5, 3)), ((2, 7, 5), (5, 3)), ((64, 64), (64, 64))])
def test_a_matmul_plan_gives_the_written_path_s_bits_and_dispatches(monkeypatch, shapes):
    rng = np.random.default_rng(3)
    rt = hv.default_runtime()
    log = DispatchLog(monkeypatch, rt)
    a, b = (hv.tensor(rng.standard_normal(s).astype(np.float32)) for s in shapes)
    _check_same(rt, log, mm._matmul_op, mm.matmul, (a, b), [a, b])
    _check_same(rt, log, mm._matmul_op, mm.matmul, (a, b.T.contiguous().T), [a])


def test_plans_are_kept_and_served():
    a, b = hv.randn(13), hv.randn(13)
    rt = a.runtime
    a + b
    assert any(type(k) is tuple and k and k[0] is ew.add and k[1] == a.buf.geometry for k in rt.plans)
    dispatched = rt.stream.dispatches
    c = a + b
    assert rt.stream.dispatches == dispatched + 1
    np.testing.assert_array_equal(c.numpy(), a.numpy() + b.numpy())


def test_a_zero_scalar_s_sign_picks_its_own_plan():
    x = hv.tensor(np.array([1.0, -2.0, 3.0, -4.0, 5.0], np.float32))
    for first, second in ((0.0, -0.0), (-0.0, 0.0)):
        for _ in range(2):
            np.testing.assert_array_equal(np.signbit((x * first).numpy()), np.signbit(x.numpy() * np.float32(first)))
            np.testing.assert_array_equal(np.signbit((x * second).numpy()),
                                          np.signbit(x.numpy() * np.float32(second)))
            np.testing.assert_array_equal(np.signbit((second * x).numpy()),
                                          np.signbit(np.float32(second) * x.numpy()))


def test_a_number_s_type_picks_its_own_plan():
    x = hv.tensor(np.array([1, 2, 3], np.int32))
    for _ in range(2):
        assert (x * 2).dtype.name == "int32"
        assert (x * 2.0).dtype.name == "float32"
        assert (x + True).dtype.name == "int32"


def test_taping_is_never_skipped_by_a_plan():
    w = hv.randn(9, requires_grad=True)
    x = hv.randn(9)
    for _ in range(2):  # plans for these layouts are kept by the untaped calls
        with hv.no_grad():
            assert (w * x).grad_fn is None
            assert w.relu().grad_fn is None
            assert (w @ x).grad_fn is None
    y = (w * x).relu() * 3.0 + (w @ x)
    assert y.grad_fn is not None
    y.sum().backward()
    wn, xn = w.detach().numpy(), x.numpy()
    expected = np.where(wn * xn > 0, 3.0 * xn, 0.0) + 9 * xn  # w @ x is broadcast over the 9 elements
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-6)


def test_a_freed_input_is_refused_on_the_plan_s_path():
    a, b = hv.randn(11), hv.randn(11)
    a + b
    b.buf.free()
    with pytest.raises(errors.DestroyedError):
        a + b
    m = hv.randn(4, 4)
    n = hv.randn(4, 4)
    m @ n
    n.buf.free()
    with pytest.raises(errors.DestroyedError):
        m @ n


def test_vector_loads_off_take_their_own_plan(monkeypatch):
    a, b = hv.randn(64), hv.randn(64)
    with_vec = a + b
    monkeypatch.setattr(pw, "VECTOR", False)
    without = a + b
    assert _bits(with_vec) == _bits(without)
    assert any(type(k) is tuple and k and k[0] is ew.add and k[-1] is False for k in a.runtime.plans)


def _taped_run(fn, make_args, g):
    """``fn`` over fresh operands, then backward with ``g``: the node's record, the output's bits and
    every operand's gradient bits."""
    args = make_args()
    y = fn(*args)
    ctx = y.grad_fn.ctx
    record = (y.grad_fn.name, ctx.shapes, ctx.dtypes, ctx.args, ctx.needs, len(ctx.saved))
    y.backward(hv.tensor(g))
    grads = [t.grad.numpy().tobytes() if isinstance(t, hv.Tensor) and t.grad is not None else None for t in args]
    return record, _bits(y), grads


@pytest.mark.parametrize("which", ["a", "b", "both", "scalar", "scalar_left"])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum"])
def test_a_taped_plan_gives_the_written_path_s_node_and_gradients(op, which):
    rng = np.random.default_rng(7)
    da, db = rng.standard_normal((4, 5)).astype(np.float32), rng.standard_normal((5,)).astype(np.float32)
    g = rng.standard_normal((4, 5)).astype(np.float32)

    def make_args():
        a = hv.tensor(da, requires_grad=which in ("a", "both", "scalar", "scalar_left"))
        if which == "scalar":
            return a, 2.5
        if which == "scalar_left":
            return -1.5, a
        return a, hv.tensor(db, requires_grad=which in ("b", "both"))
    fast = BINARY[op]
    ref = _taped_run(fast.__wrapped__, make_args, g)
    for _ in range(2):  # learning, then from the plan
        assert _taped_run(fast, make_args, g) == ref


@pytest.mark.parametrize("op", sorted(UNARY))
def test_a_taped_unary_plan_gives_the_written_path_s_node_and_gradients(op):
    rng = np.random.default_rng(8)
    dx, g = (rng.standard_normal((3, 7)).astype(np.float32) for _ in range(2))
    fast = UNARY[op]
    ref = _taped_run(fast.__wrapped__, lambda: (hv.tensor(dx, requires_grad=True),), g)
    for _ in range(2):
        assert _taped_run(fast, lambda: (hv.tensor(dx, requires_grad=True),), g) == ref


@pytest.mark.parametrize("needs", [(True, False), (False, True), (True, True)])
def test_taped_matmul_and_linear_plans_give_the_written_path_s_nodes_and_gradients(needs):
    from hlx_vulkan.ops import linear as lin
    rng = np.random.default_rng(9)
    dx, dw, db = (rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (3, 5), (3,)))
    g = rng.standard_normal((6, 3)).astype(np.float32)

    def product_args():
        return hv.tensor(dx, requires_grad=needs[0]), hv.tensor(dw.T.copy(), requires_grad=needs[1])

    def linear_args():
        return (hv.tensor(dx, requires_grad=needs[0]), hv.tensor(dw, requires_grad=needs[1]),
                hv.tensor(db, requires_grad=needs[1]))
    for written, fast, make_args in ((mm._matmul_op, mm.matmul, product_args),
                                     (lin._linear_op, lin.linear, linear_args)):
        ref = _taped_run(written, make_args, g)
        for _ in range(2):
            assert _taped_run(fast, make_args, g) == ref
