"""The activations of ops/activations.py, cumprod, the loss options of nn/losses.py, and the
PyTorch idioms issue 13 lists (gelu tanh, std with correction, logsumexp, isnan/isinf/isfinite,
rounding, remainder's sign rule, clone, where with numbers, split/chunk, cumsum over any dim),
each against PyTorch in float64: odd shapes, NaN and infinities, 16-bit floats, empty and
size-1 dims, non-contiguous views; clear errors for bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.nn import functional as F

TF = torch.nn.functional

ACTIVATIONS = {
    "elu": (F.elu, TF.elu), "elu_alpha": (lambda t: F.elu(t, 0.3), lambda t: TF.elu(t, 0.3)),
    "selu": (F.selu, TF.selu), "celu": (lambda t: F.celu(t, 1.7), lambda t: TF.celu(t, 1.7)),
    "softplus": (F.softplus, TF.softplus),
    "softplus_beta": (lambda t: F.softplus(t, 2.5, 4.0), lambda t: TF.softplus(t, 2.5, 4.0)),
    "mish": (F.mish, TF.mish), "hardswish": (F.hardswish, TF.hardswish), "hardsigmoid": (F.hardsigmoid, TF.hardsigmoid),
    "hardtanh": (lambda t: F.hardtanh(t, -0.5, 2.0), lambda t: TF.hardtanh(t, -0.5, 2.0)), "relu6": (F.relu6, TF.relu6),
    "logsigmoid": (F.logsigmoid, TF.logsigmoid), "softsign": (F.softsign, TF.softsign), "erf": (hv.erf, torch.erf),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"), lambda t: TF.gelu(t, approximate="tanh")),
}


def _wide(rng, shape):
    """Values over -40..40 with the kinks (0, +-3) and NaN, +-inf among them."""
    x = rng.standard_normal(shape) * 4
    flat = x.reshape(-1)
    flat[:6] = [np.nan, np.inf, -np.inf, 0.0, 3.0, -3.0]
    flat[6:8] = [-40.0, 40.0]
    return x.astype(np.float32)


def _close(got, ref, rtol=2e-6, atol=1e-6):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forward_and_gradient_match_torch(rng, name):
    ours, ref = ACTIVATIONS[name]
    x = _wide(rng, (5, 11))
    xt = hv.tensor(x, requires_grad=True)
    out = ours(xt)
    xr = torch.tensor(x.astype(np.float64), requires_grad=True)
    rout = ref(xr)
    _close(out.numpy(), rout.detach().numpy())
    w = rng.standard_normal(x.shape)
    (out * hv.tensor(w)).sum().backward()
    (rout * torch.tensor(w)).sum().backward()
    finite = np.isfinite(x)  # torch's gradient at +-inf differs by convention (inf * 0)
    _close(xt.grad.numpy()[finite], xr.grad.numpy()[finite], 2e-6, 1e-5)  # 1e-5: gelu_tanh's 1 + tanh cancels


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_activation_16_bit(rng, name, dtype):
    ours, ref = ACTIVATIONS[name]
    x = (rng.standard_normal((3, 7)) * 3).astype(np.float32)
    out = ours(hv.tensor(x).to(dtype)).transpose(0, 1)
    assert out.dtype.name == dtype
    rout = ref(torch.tensor(x).to(getattr(torch, dtype)).double())
    tol = 1e-2 if dtype == "float16" else 2e-2
    _close(out.to(hv.float32).numpy(), rout.T.numpy(), rtol=tol, atol=tol)


def test_activations_refuse_integers_and_erf_promotes():
    with pytest.raises(errors.DTypeError):
        F.elu(hv.tensor([1, 2]))
    with pytest.raises(ValueError):
        F.hardtanh(hv.ones(2), 1.0, -1.0)
    e = hv.erf(hv.tensor([0, 1]))
    assert e.dtype is hv.float32
    _close(e.numpy(), torch.erf(torch.tensor([0.0, 1.0], dtype=torch.float64)).numpy())
    np.testing.assert_array_equal(F.elu(hv.zeros(0, 3)).shape, (0, 3))


@pytest.mark.parametrize("shape,dim", [((4, 7), 1), ((4, 7), 0), ((2, 3, 5), 1), ((9,), 0), ((3, 1), 1), ((0, 3), 1)])
def test_cumprod_matches_torch_with_zeros(rng, shape, dim):
    x = (rng.standard_normal(shape) * 1.5).astype(np.float32)
    if x.size:
        x.flat[rng.choice(x.size, min(3, x.size), replace=False)] = 0.0   # exact gradients at zeros
    xt = hv.tensor(x, requires_grad=True)
    out = hv.cumprod(xt, dim)
    xr = torch.tensor(x.astype(np.float64), requires_grad=True)
    ref = torch.cumprod(xr, dim)
    _close(out.numpy(), ref.detach().numpy(), 1e-5, 1e-6)
    w = rng.standard_normal(shape)
    (out * hv.tensor(w)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    _close(xt.grad.numpy(), xr.grad.numpy(), 1e-5, 1e-5)


def test_cumprod_dtypes_views_and_fixed_order(rng):
    i = rng.integers(-3, 4, (3, 6))
    got = hv.tensor(i).cumprod(1)
    assert got.dtype is hv.int64
    np.testing.assert_array_equal(got.numpy(), torch.tensor(i).cumprod(1).numpy())
    x = (rng.uniform(0.5, 1.5, (6, 5))).astype(np.float32)
    np.testing.assert_allclose(hv.tensor(x).T.cumprod(1).numpy(), np.cumprod(x.T.astype(np.float64), 1), rtol=1e-5)
    seq = np.cumprod(x[:, 0])  # numpy's float32 loop multiplies in order: the same bits
    np.testing.assert_array_equal(hv.cumprod(hv.tensor(x), 0).numpy()[:, 0], seq)
    h = hv.tensor(x).half().cumprod(0)
    assert h.dtype is hv.float16


# --- losses -----------------------------------------------------------------------------------------
def _both(rng, shape, low=None):
    x = rng.standard_normal(shape).astype(np.float32) if low is None else rng.uniform(low, 1 - low, shape).astype(
        np.float32)
    return hv.tensor(x, requires_grad=True), torch.tensor(x.astype(np.float64), requires_grad=True)


def _check_loss(ours, ref, inputs, rng, rtol=1e-5):
    out, rout = ours(*[a for a, _ in inputs]), ref(*[b for _, b in inputs])
    _close(out.numpy(), rout.detach().numpy(), rtol, 1e-6)
    w = rng.standard_normal(out.shape)
    (out * hv.tensor(w)).sum().backward()
    (rout * torch.tensor(w)).sum().backward()
    for a, b in inputs:
        if b.requires_grad:
            _close(a.grad.numpy(), b.grad.numpy(), 1e-4, 1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.15}, {"weight": True}, {"ignore_index": 2},
                                  {"weight": True, "ignore_index": 1, "label_smoothing": 0.3}])
@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4), (2, 5, 3, 2), (5,)])
def test_cross_entropy_and_nll_options_match_torch(rng, reduction, opts, shape):
    c = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    target = rng.integers(0, c, tshape)
    if "ignore_index" in opts and target.size > 1:
        target.flat[0] = opts["ignore_index"]
    w = rng.uniform(0.2, 2.0, c).astype(np.float32)
    kw = dict(opts, reduction=reduction)
    ours_kw, ref_kw = dict(kw), dict(kw)
    if opts.get("weight"):
        ours_kw["weight"], ref_kw["weight"] = hv.tensor(w), torch.tensor(w.astype(np.float64))
    inputs = [_both(rng, shape)]
    _check_loss(lambda x: F.cross_entropy(x, hv.tensor(target), **ours_kw),
                lambda x: TF.cross_entropy(x, torch.tensor(target), **ref_kw), inputs, rng)
    if "label_smoothing" not in opts:
        inputs = [_both(rng, shape)]
        _check_loss(lambda x: F.nll_loss(F.log_softmax(x, 1 if len(shape) > 1 else 0), target, **ours_kw),
                    lambda x: TF.nll_loss(TF.log_softmax(x, 1 if len(shape) > 1 else 0), torch.tensor(target),
                                          **ref_kw), inputs, rng)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_with_probability_targets(rng, smoothing):
    p = rng.dirichlet(np.ones(5), 4).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 5).astype(np.float32)
    for weight in (None, w):
        inputs = [_both(rng, (4, 5))]
        _check_loss(lambda x: F.cross_entropy(x, hv.tensor(p), None if weight is None else hv.tensor(weight),
                                              label_smoothing=smoothing),
                    lambda x: TF.cross_entropy(x, torch.tensor(p.astype(np.float64)),
                                               None if weight is None else torch.tensor(weight.astype(np.float64)),
                                               label_smoothing=smoothing), inputs, rng)


def test_cross_entropy_all_ignored_is_nan_as_torch():
    got = F.cross_entropy(hv.ones(2, 3), [-100, -100]).item()
    assert np.isnan(got) and np.isnan(TF.cross_entropy(torch.ones(2, 3), torch.tensor([-100, -100])).item())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pointwise_losses_match_torch(rng, reduction):
    shape = (4, 7)
    w = rng.uniform(0.2, 2, shape).astype(np.float32)
    pw = rng.uniform(0.5, 3, (7,)).astype(np.float32)
    t01 = rng.uniform(0, 1, shape).astype(np.float32)
    cases = [
        (lambda x, t: F.binary_cross_entropy(x, t, reduction=reduction),
         lambda x, t: TF.binary_cross_entropy(x, t, reduction=reduction), 0.02),
        (lambda x, t: F.binary_cross_entropy(x, t, hv.tensor(w), reduction=reduction),
         lambda x, t: TF.binary_cross_entropy(x, t, torch.tensor(w, dtype=torch.float64), reduction=reduction), 0.02),
        (lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction=reduction, pos_weight=hv.tensor(pw)),
         lambda x, t: TF.binary_cross_entropy_with_logits(x, t, reduction=reduction,
                                                          pos_weight=torch.tensor(pw, dtype=torch.float64)), None),
        (lambda x, t: F.binary_cross_entropy_with_logits(x * 30, t, hv.tensor(w), reduction=reduction),
         lambda x, t: TF.binary_cross_entropy_with_logits(x * 30, t, torch.tensor(w, dtype=torch.float64),
                                                          reduction=reduction), None),
        (lambda x, t: F.l1_loss(x, t, reduction=reduction), lambda x, t: TF.l1_loss(x, t, reduction=reduction), None),
        (lambda x, t: F.smooth_l1_loss(x * 2, t, reduction=reduction, beta=0.7),
         lambda x, t: TF.smooth_l1_loss(x * 2, t, reduction=reduction, beta=0.7), None),
        (lambda x, t: F.smooth_l1_loss(x, t, reduction=reduction, beta=0.0),
         lambda x, t: TF.smooth_l1_loss(x, t, reduction=reduction, beta=0.0), None),
        (lambda x, t: F.huber_loss(x * 2, t, reduction=reduction, delta=0.6),
         lambda x, t: TF.huber_loss(x * 2, t, reduction=reduction, delta=0.6), None),
    ]
    for ours, ref, low in cases:
        inputs = [_both(rng, shape, low), (hv.tensor(t01, requires_grad=True),
                                           torch.tensor(t01.astype(np.float64), requires_grad=True))]
        _check_loss(ours, ref, inputs, rng)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")  # torch's note on kl_div's "mean"
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(rng, reduction, log_target):
    logp = np.log(rng.dirichlet(np.ones(6), 3)).astype(np.float32)
    q = rng.dirichlet(np.ones(6), 3).astype(np.float32)
    q[0, 2] = 0.0
    if log_target:
        q = np.log(q + 0.1).astype(np.float32)
    inputs = [(hv.tensor(logp, requires_grad=True), torch.tensor(logp.astype(np.float64), requires_grad=True)),
              (hv.tensor(q, requires_grad=True), torch.tensor(q.astype(np.float64), requires_grad=log_target))]
    _check_loss(lambda x, t: F.kl_div(x, t, reduction=reduction, log_target=log_target),
                lambda x, t: TF.kl_div(x, t, reduction=reduction, log_target=log_target), inputs, rng)


def test_loss_arguments_are_checked():
    x = hv.ones(3, 4)
    with pytest.raises(ValueError):
        F.cross_entropy(x, [0, 1, 2], reduction="avg")
    with pytest.raises(errors.ShapeError):
        F.cross_entropy(x, [0, 1, 2], weight=hv.ones(3))
    with pytest.raises(errors.ShapeError):
        F.cross_entropy(hv.ones(2, 4, 5), [[0, 1, 2, 3, 0]])
    with pytest.raises(ValueError):
        F.cross_entropy(x, [0, 1, 2], label_smoothing=1.5)
    with pytest.raises(errors.IndexOutOfRangeError):
        F.cross_entropy(x, [0, 4, 2])
    with pytest.raises(errors.ShapeError):
        F.l1_loss(x, hv.ones(4))
    with pytest.raises(TypeError):
        F.nll_loss(x, [0, 1, 2], size_average=True)
    with pytest.raises(ValueError):
        F.kl_div(x, x, reduction="batch")


# --- the idioms issue 13 lists ------------------------------------------------------------------
IDIOMS = {
    "std_unbiased_false": (lambda t: t.std(dim=1, unbiased=False), lambda t: t.std(dim=1, unbiased=False)),
    "std_correction2": (lambda t: t.std(dim=0, correction=2), lambda t: t.std(dim=0, correction=2)),
    "logsumexp_dims": (lambda t: t.logsumexp(dim=(0, 1)), lambda t: t.logsumexp(dim=(0, 1))),
    "isnan": (lambda t: t.isnan(), torch.isnan), "isinf": (hv.isinf, torch.isinf),
    "isfinite": (hv.isfinite, torch.isfinite),
    "floor": (hv.floor, torch.floor), "ceil": (lambda t: t.ceil(), torch.ceil), "round": (hv.round, torch.round),
    "trunc": (hv.trunc, torch.trunc),
    "remainder_neg_divisor": (lambda t: hv.remainder(t, -1.5), lambda t: torch.remainder(t, -1.5)),
    "remainder_tensor": (lambda t: t % (t.T[:1].T + 5.0), lambda t: t % (t.T[:1].T + 5.0)),
    "clone": (hv.clone, torch.clone),
    "where_numbers": (lambda t: hv.where(t > 0, 1.5, -2.0), lambda t: torch.where(t > 0, 1.5, -2.0)),
    "where_ints": (lambda t: hv.where(t > 0, 3, 0), lambda t: torch.where(t > 0, 3, 0)),
    "split_sizes": (lambda t: t.split([1, 3, 1], dim=1)[1], lambda t: t.split([1, 3, 1], dim=1)[1]),
    "chunk_dim1": (lambda t: t.chunk(2, 1)[1], lambda t: t.chunk(2, 1)[1]),
    "cumsum_dim0": (lambda t: t.cumsum(dim=0), lambda t: t.cumsum(dim=0)),
    "cumsum_neg_dim_3d": (lambda t: t.reshape(2, 2, 5).cumsum(-2), lambda t: t.reshape(2, 2, 5).cumsum(-2)),
}


@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idioms_match_torch(rng, name):
    ours, ref = IDIOMS[name]
    x = (rng.standard_normal((4, 5)) * 3).astype(np.float32)
    x[0, 0], x[1, 1], x[2, 2] = np.nan, np.inf, 2.5   # 2.5: round half to even
    if name.startswith(("std", "logsumexp", "cumsum", "remainder")):
        x[0, 0], x[1, 1] = 0.7, -1.2
    got = ours(hv.tensor(x))
    exp = ref(torch.tensor(x.astype(np.float64)))
    if exp.dtype == torch.bool:
        assert got.dtype is hv.bool
        np.testing.assert_array_equal(got.numpy(), exp.numpy())
    elif exp.dtype == torch.int64:
        assert got.dtype is hv.int64
        np.testing.assert_array_equal(got.numpy(), exp.numpy())
    else:
        _close(got.numpy(), exp.numpy(), 1e-5, 1e-5)
