"""Ops beyond the single functions in strict mode, against float64 on fresh odd-shaped inputs:
each within a stated bound in units of float32's epsilon scaled by the op's condition (the
reduction length, the magnitudes summed), and the optimizer steps against their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import optim

EPS = 2.0 ** -24
SHAPE = (23, 41)


def _x(seed=0):
    return (np.random.default_rng(seed).standard_normal(SHAPE) * 3).astype(np.float32)


# name -> (strict op on a tensor, float64 reference on an array, error bound given the array)
OPS = {
    "mean": (lambda t: hv.mean(t, 1), lambda a: a.mean(1), lambda a: 2 * a.shape[1] * EPS * np.abs(a).mean(1)),
    "var": (lambda t: hv.var(t, 1), lambda a: a.var(1, ddof=1), lambda a: 8 * a.shape[1] * EPS * (a ** 2).mean(1)),
    "std": (lambda t: hv.std(t, 0), lambda a: a.std(0, ddof=1), lambda a: 8 * a.shape[0] * EPS * np.abs(a).max(0)),
    "norm": (lambda t: hv.norm(t, dim=1), lambda a: np.sqrt((a ** 2).sum(1)),
             lambda a: 4 * a.shape[1] * EPS * np.sqrt((a ** 2).sum(1))),
    "logsumexp": (lambda t: hv.logsumexp(t, 1), lambda a: np.log(np.exp(a).sum(1)),
                  lambda a: 8 * a.shape[1] * EPS * np.abs(a).max(1)),
    "cumsum": (lambda t: hv.cumsum(t, 1), lambda a: np.cumsum(a, 1),
               lambda a: 2 * a.shape[1] * EPS * np.cumsum(np.abs(a), 1)),
    "floor_divide": (lambda t: hv.floor_divide(t, 0.37), lambda a: np.floor(a / np.float32(0.37)),
                     lambda a: np.where(np.abs(a / 0.37 - np.round(a / 0.37)) < 1e-5, 1.0, 0.0)),
    "remainder": (lambda t: hv.remainder(t, 1.7), lambda a: np.mod(a, np.float32(1.7)),
                  lambda a: 4 * EPS * np.abs(a) + np.where(np.abs(np.mod(a, 1.7) - 1.7) < 1e-5, 1.7, 0)),
    "clamp/max/min (exact)": (lambda t: hv.maximum(hv.clamp(t, -2.5, 1.5), t * 0.5),
                              lambda a: np.maximum(np.clip(a, -2.5, 1.5), a * np.float32(0.5)), lambda a: 0 * a),
    "gelu tanh": (lambda t: hv.gelu(t, approximate="tanh"),
                  lambda a: 0.5 * a * (1 + np.tanh(0.7978845608028654 * (a + 0.044715 * a ** 3))),
                  lambda a: 16 * EPS * (np.abs(a) + 1)),
    "silu": (lambda t: hv.nn.functional.silu(t), lambda a: a / (1 + np.exp(-a)), lambda a: 8 * EPS * np.abs(a)),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_against_float64_within_its_bound(name):
    op, ref, bound = OPS[name]
    a = _x(len(name))
    with hv.strict():
        got = op(hv.tensor(a)).numpy().astype(np.float64)
    a64 = a.astype(np.float64)
    want = ref(a64)
    err = np.abs(got - want)
    b = bound(a64) + 2 * EPS * np.abs(want)  # the final rounding
    worst = np.unravel_index(np.argmax(err - b), err.shape)
    assert np.all(err <= b), f"{name}: {got[worst]!r} against {want[worst]!r} (bound {b[worst]!r})"


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "AdamW"])
def test_optimizer_steps_against_torch_in_float64(opt_name):
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((13, 7)).astype(np.float32)
    grads = [rng.standard_normal((13, 7)).astype(np.float32) for _ in range(3)]
    kw = {"SGD": dict(lr=0.1, momentum=0.9, weight_decay=1e-2), "Adam": dict(lr=1e-2, weight_decay=1e-2),
          "AdamW": dict(lr=1e-2, weight_decay=1e-1)}[opt_name]
    with hv.strict():
        p = hv.tensor(w0).requires_grad_()
        opt = getattr(optim, opt_name)([p], **kw)
        for g in grads:
            p.grad = hv.tensor(g)
            opt.step()
        got = p.detach().numpy().astype(np.float64)
    tp = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    topt = getattr(torch.optim, opt_name)([tp], **kw)
    for g in grads:
        tp.grad = torch.tensor(g, dtype=torch.float64)
        topt.step()
    want = tp.detach().numpy()
    assert np.all(np.abs(got - want) <= 64 * EPS * (np.abs(want) + np.abs(w0))), np.abs(got - want).max()
