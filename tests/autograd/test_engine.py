"""The tape and the backward pass: accumulation, grad mode, graph lifetime, determinism, misuse."""

from __future__ import annotations

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors


def _leaf(rng, *shape):
    return hv.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)


def test_gradients_accumulate_across_backward_calls_until_cleared(rng):
    w = _leaf(rng, 5)
    (w * 3.0).sum().backward()
    (w * 2.0).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.full(5, 5.0, np.float32))
    w.grad = None
    (w * 2.0).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.full(5, 2.0, np.float32))


def test_a_tensor_used_many_times_sums_its_gradients_in_a_fixed_order(rng):
    x = rng.standard_normal(4096).astype(np.float32)

    def grad_bits():
        w = hv.tensor(x, requires_grad=True)
        y = (w * w).exp() * w.tanh() + w.sigmoid() * (w * 0.3).sin() - w / 3.0
        y.sum().backward()
        return w.grad.numpy().tobytes()

    first = grad_bits()
    assert all(grad_bits() == first for _ in range(3))


def test_no_grad_records_nothing_and_enable_grad_restores(rng):
    w = _leaf(rng, 3)
    with hv.no_grad():
        y = w * 2.0
        assert not y.requires_grad and y._node is None
        with hv.enable_grad():
            z = w * 2.0
            assert z.requires_grad
    assert hv.is_grad_enabled()

    @hv.no_grad()
    def f(t):
        return t * 2.0
    assert not f(w).requires_grad


def test_detach_cuts_the_graph_and_shares_memory(rng):
    w = _leaf(rng, 4)
    d = (w * 2.0).detach()
    assert not d.requires_grad
    (w * d).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * w.numpy(), rtol=1e-6)


def test_inputs_that_do_not_require_grad_get_none(rng):
    w = _leaf(rng, 3)
    c = hv.tensor(rng.standard_normal(3).astype(np.float32))
    (w * c).sum().backward()
    assert c.grad is None and w.grad is not None


def test_backward_needs_a_scalar_or_a_gradient(rng):
    w = _leaf(rng, 3)
    y = w * 2.0
    with pytest.raises(errors.ShapeError, match="one-element"):
        y.backward()
    y.backward(hv.ones(3))
    np.testing.assert_array_equal(w.grad.numpy(), np.full(3, 2.0, np.float32))
    with pytest.raises(errors.ShapeError, match="gradient of shape"):
        (w * 2.0).backward(hv.ones(4))


def test_backward_twice_needs_retain_graph(rng):
    w = _leaf(rng, 3)
    y = (w * w).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(w.grad.numpy(), 4 * w.numpy(), rtol=1e-6)
    with pytest.raises(errors.HlxError, match="already freed"):
        y.backward()


def test_backward_on_a_tensor_without_grad_is_an_error(rng):
    with pytest.raises(errors.HlxError, match="does not require grad"):
        hv.tensor([1.0, 2.0]).sum().backward()


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(errors.DTypeError):
        hv.tensor([1, 2, 3]).requires_grad_()


def test_in_place_writes_into_grad_tensors_are_refused_outside_no_grad(rng):
    w = _leaf(rng, 3)
    with pytest.raises(errors.HlxError, match="in-place"):
        w.copy_(np.zeros(3, np.float32))
    with pytest.raises(errors.HlxError, match="in-place"):
        w[0] = 1.0
    before = w.numpy()
    with hv.no_grad():
        w.copy_(np.zeros(3, np.float32))
    assert not np.array_equal(before, w.numpy())


def test_gradient_through_a_float16_cast_comes_back_in_the_leaf_dtype(rng):
    w = _leaf(rng, 8)
    (w.to(hv.float16) * 2.0).to(hv.float32).sum().backward()
    assert w.grad.dtype is hv.float32
    np.testing.assert_array_equal(w.grad.numpy(), np.full(8, 2.0, np.float32))


def test_keyword_and_default_arguments_reach_the_backward_rule(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    a = hv.tensor(x, requires_grad=True)
    b = hv.tensor(x, requires_grad=True)
    a.sum(axis=1, keepdim=True).sum().backward()
    hv.sum(b, 1, True).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())


def test_creation_functions_take_requires_grad():
    for t in (hv.randn(3, requires_grad=True), hv.rand(3, requires_grad=True), hv.zeros(3, requires_grad=True),
              hv.ones(2, 2, requires_grad=True), hv.full((2,), 3.0, requires_grad=True)):
        assert t.requires_grad
        (t * 2.0).sum().backward()
        np.testing.assert_array_equal(t.grad.numpy(), np.full(t.shape, 2.0, np.float32))
    with pytest.raises(errors.DTypeError):
        hv.zeros(3, dtype=hv.int32, requires_grad=True)
