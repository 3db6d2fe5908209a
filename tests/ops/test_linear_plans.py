"""F.linear's layer plans (ops/linear.py): the calls after the first run the plans the composed ops
made; their results are torch's in float64 and the composed form's bits, over poisoned memory,
whichever inputs need a gradient, and a changed setting is not served an old plan."""

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import matmul as mm


def _poison(*shapes, copies: int = 3):
    """NaN in freed ranges of these sizes: the next outputs of those sizes are carved from it."""
    junk = [hv.full(tuple(s), float("nan")) for s in shapes for _ in range(copies)]
    for j in junk:
        j.numpy()
    del junk


def _plans(prefix):
    return [k for k in hv.default_runtime().plans if isinstance(k, tuple) and k[0] == prefix]


def _run(data, g, needs, composed):
    x, w, b = (hv.tensor(d, requires_grad=n) for d, n in zip(data, needs))
    y = (x @ w.T + b) if composed else F.linear(x, w, b)
    y.backward(hv.tensor(g))
    return [y.numpy()] + [t.grad.numpy() if n else None for t, n in zip((x, w, b), needs)]


@pytest.mark.parametrize("needs", [(True, True, True), (False, True, True), (True, False, False),
                                   (False, False, True)])
@pytest.mark.parametrize("rows,fin,fout", [(37, 19, 23), (5, 64, 130)])
def test_planned_layer_matches_torch_and_the_composed_bits(needs, rows, fin, fout, rng):
    data = [rng.standard_normal(s).astype(np.float32) for s in ((rows, fin), (fout, fin), (fout,))]
    g = rng.standard_normal((rows, fout)).astype(np.float32)
    first = _run(data, g, needs, composed=False)
    # Both directions are planned for these layouts and needs.
    assert any(k[1][1] == (rows, fin) and k[2][1] == (fout, fin) for k in _plans("linear"))
    assert any(k[1][1] == (rows, fout) and k[4] == needs for k in _plans("linear backward"))
    _poison((rows, fout), (rows, fin), (fin, fout), (fout,))
    planned = _run(data, g, needs, composed=False)
    composed = _run(data, g, needs, composed=True)
    tx, tw, tb = (torch.tensor(d, dtype=torch.float64, requires_grad=n) for d, n in zip(data, needs))
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(g, dtype=torch.float64))
    refs = [ty.detach().numpy()] + [t.grad.numpy() if n else None for t, n in zip((tx, tw, tb), needs)]
    for a, p, c, ref in zip(first, planned, composed, refs):
        if ref is None:
            assert a is None and p is None
            continue
        assert p.shape == ref.shape and np.isfinite(p).all()
        np.testing.assert_allclose(p, ref, rtol=1e-4, atol=1e-4)
        assert a.tobytes() == p.tobytes() == c.tobytes()


def test_a_changed_setting_gets_its_own_plan(monkeypatch, rng):
    """The chunk length (matmul's order) is part of the layer plan's key: a K of 200 in chunks of 64
    gives the composed form's bits under that setting, not the plan made without it."""
    data = [rng.standard_normal(s).astype(np.float32) for s in ((9, 200), (7, 200), (7,))]
    g = rng.standard_normal((9, 7)).astype(np.float32)
    needs = (True, True, True)
    for _ in range(2):
        default = _run(data, g, needs, composed=False)
    monkeypatch.setattr(mm, "CHUNK_K", {**mm.CHUNK_K, "float32": 64})
    monkeypatch.setattr(mm, "MAX_CHUNKS", 8)
    for _ in range(2):
        chunked = _run(data, g, needs, composed=False)
    composed = _run(data, g, needs, composed=True)
    assert all(a.tobytes() == c.tobytes() for a, c in zip(chunked, composed))
    assert any(a.tobytes() != d.tobytes() for a, d in zip(chunked, default))


def test_batched_input_and_a_two_dim_bias_keep_their_shapes(rng):
    """Layouts the backward plan does not cover (3-D input, a (1, out) bias) keep the composed rules."""
    for x_shape, b_shape in (((3, 5, 8), (6,)), ((4, 8), (1, 6))):
        data = [rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal((6, 8)).astype(np.float32),
                rng.standard_normal(b_shape).astype(np.float32)]
        g = rng.standard_normal(x_shape[:-1] + (6,)).astype(np.float32)
        runs = [_run(data, g, (True, True, True), composed=c) for c in (False, False, True)]
        for a, p, c in zip(*runs):
            assert a.shape == c.shape and a.tobytes() == p.tobytes() == c.tobytes()


@pytest.mark.parametrize("input_shape,beta,alpha", [((7,), 1, 1), ((5, 7), 1, 1), ((1, 7), 0.5, -2.0),
                                                    ((7,), 0, 3.0), ((5, 1), 1, 0.25)])
def test_addmm_matches_torch_and_is_a_linear_layer(input_shape, beta, alpha, rng):
    """torch.addmm's (input, mat1, mat2, beta, alpha) against float64, gradients included; with beta
    and alpha 1 and a row of biases it runs as F.linear (one launch) with the bits of mm + input."""
    from opcheck import check, f64
    from hlx_vulkan import errors
    a = rng.standard_normal(input_shape).astype(np.float32)
    if beta == 0:
        a[:] = np.nan  # ignored, NaN included, as torch
    m1, m2 = rng.standard_normal((5, 9)).astype(np.float32), rng.standard_normal((9, 7)).astype(np.float32)
    ha = [hv.tensor(x, requires_grad=True) for x in (a, m1, m2)]
    rt = hv.default_runtime()
    rt.kernels.reset_usage()
    out = hv.addmm(*ha, beta=beta, alpha=alpha)
    one_launch = input_shape == (7,) and beta == alpha == 1
    assert len(rt.kernels.used()) == 1 if one_launch else len(rt.kernels.used()) > 1
    ta = [torch.tensor(f64(x), requires_grad=True) for x in (a, m1, m2)]
    ref = torch.addmm(*ta, beta=beta, alpha=alpha)
    check(out.numpy(), ref.detach().numpy(), "float32", 1e-5)
    if one_launch:
        assert out.numpy().tobytes() == (hv.mm(ha[1], ha[2]) + ha[0]).numpy().tobytes()
    w = rng.standard_normal(ref.shape).astype(np.float32)
    (out * hv.tensor(w)).sum().backward()
    (ref * torch.tensor(f64(w))).sum().backward()
    for h, t in zip(ha if beta != 0 else ha[1:], ta if beta != 0 else ta[1:]):
        check(h.grad.numpy(), t.grad.numpy(), "float32", 1e-5)
    assert ha[0].addmm(ha[1], ha[2], beta=beta, alpha=alpha).shape == (5, 7)
    with pytest.raises(errors.ShapeError):
        hv.addmm(hv.zeros(4), ha[1], ha[2])
    with pytest.raises(errors.ShapeError):
        hv.addmm(ha[0], hv.zeros(3, 5, 9), ha[2])
    with pytest.raises(TypeError):
        hv.addmm(1.0, ha[1], ha[2])
