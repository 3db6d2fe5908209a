"""A layer run twice, fused and composed: its launches, its output and its gradients, compared bit for bit."""

from __future__ import annotations

import numpy as np

import hlx_vulkan as hv


def launches_output_grads(fn, x: np.ndarray, g: np.ndarray, params) -> tuple:
    """``fn(x)``'s launches, then its output and (after ``backward(g)``) the gradients of ``x`` and
    of ``params`` (cleared first), as numpy arrays."""
    rt = hv.default_runtime()
    for p in params:
        p.grad = None
    xt = hv.tensor(x).requires_grad_()
    dispatched = rt.stream.dispatches
    y = fn(xt)
    launches = rt.stream.dispatches - dispatched
    y.backward(hv.tensor(g))
    return launches, y.numpy(), [t.grad.numpy() for t in (xt, *params)]


def assert_same_bits(mine: tuple, theirs: tuple) -> None:
    """Two results of :func:`launches_output_grads` with the same output and gradient bits."""
    for a, b in zip([mine[1], *mine[2]], [theirs[1], *theirs[2]]):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
