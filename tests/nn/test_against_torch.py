"""Modules against torch.nn with the same weights: torch's state_dict is loaded into the hlx
module (the keys map one to one), then outputs and the gradients of inputs and parameters are
compared, torch in float64. Covers Linear, LayerNorm, Embedding, every activation module and
every loss module with its options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors, nn

TN = torch.nn


def _load(ours, theirs):
    """torch's weights into ours, by torch's state_dict keys."""
    state = theirs.state_dict()
    assert list(state) == list(ours.state_dict()), "state_dict keys differ from torch's"
    ours.load_state_dict({k: v.detach().float().numpy() for k, v in state.items()})
    theirs.double()


def _compare(got, ref, what, tol=1e-5):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=what)
    fin = np.isfinite(ref)
    err = np.linalg.norm(got[fin] - ref[fin]) / max(np.linalg.norm(ref[fin]), 1e-6)
    assert err < tol, f"{what}: relative error {err:.3g}"


def _run(ours, theirs, inputs, rng, grad_inputs=(0,), index_inputs=()):
    """Call both modules on ``inputs`` (numpy), backpropagate a random weighting of the output,
    and compare outputs, input gradients and parameter gradients."""
    hs, ts = [], []
    for i, x in enumerate(inputs):
        if i in index_inputs:
            hs.append(hv.tensor(x))
            ts.append(torch.tensor(x))
        else:
            hs.append(hv.tensor(x.astype(np.float32), requires_grad=i in grad_inputs))
            ts.append(torch.tensor(x.astype(np.float32).astype(np.float64), requires_grad=i in grad_inputs))
    out, ref = ours(*hs), theirs(*ts)
    _compare(out.numpy(), ref.detach().numpy(), "output")
    w = rng.standard_normal(tuple(ref.shape))
    (out * hv.tensor(w)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    for i in grad_inputs:
        _compare(hs[i].grad.numpy(), ts[i].grad.numpy(), f"input {i} gradient", 1e-4)
    for (name, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        _compare(p.grad.numpy(), tp.grad.numpy(), f"{name} gradient", 1e-4)


def test_linear(rng):
    for bias in (True, False):
        theirs = TN.Linear(7, 5, bias=bias)
        ours = nn.Linear(7, 5, bias=bias)
        _load(ours, theirs)
        _run(ours, theirs, [rng.standard_normal((3, 2, 7))], rng)


def test_layer_norm(rng):
    theirs = TN.LayerNorm((4, 6))
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours = nn.LayerNorm((4, 6))
    _load(ours, theirs)
    _run(ours, theirs, [rng.standard_normal((3, 4, 6))], rng)


def test_embedding(rng):
    theirs = TN.Embedding(11, 5)
    ours = nn.Embedding(11, 5)
    _load(ours, theirs)
    _run(ours, theirs, [rng.integers(0, 11, (4, 3))], rng, grad_inputs=(), index_inputs=(0,))


def test_sequential_keys_and_training_step(rng):
    theirs = TN.Sequential(TN.Linear(6, 9), TN.Mish(), TN.LayerNorm(9), TN.Hardswish(), TN.Linear(9, 4), TN.ELU(0.5))
    ours = nn.Sequential(nn.Linear(6, 9), nn.Mish(), nn.LayerNorm(9), nn.Hardswish(), nn.Linear(9, 4), nn.ELU(0.5))
    _load(ours, theirs)
    _run(ours, theirs, [rng.standard_normal((5, 6))], rng)


ACTIVATIONS = [
    ("ELU", (), {}), ("ELU", (0.4,), {}), ("CELU", (), {"alpha": 1.3}), ("SELU", (), {}),
    ("Softplus", (), {}), ("Softplus", (2.0,), {"threshold": 3.0}), ("Mish", (), {}), ("Hardswish", (), {}),
    ("Hardsigmoid", (), {}), ("Hardtanh", (-0.3, 0.8), {}), ("ReLU6", (), {}), ("LogSigmoid", (), {}),
    ("Softsign", (), {}), ("SiLU", (), {}), ("GELU", (), {"approximate": "tanh"}), ("GELU", (), {}),
    ("LeakyReLU", (0.2,), {}), ("ReLU", (), {}), ("Tanh", (), {}), ("Sigmoid", (), {}), ("Identity", (), {}),
    ("Softmax", (), {"dim": 1}), ("Flatten", (), {}),
]


@pytest.mark.parametrize("name,args,kwargs", ACTIVATIONS, ids=[f"{a[0]}{i}" for i, a in enumerate(ACTIVATIONS)])
def test_activation_modules(rng, name, args, kwargs):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(TN, name)(*args, **kwargs)
    x = rng.standard_normal((3, 5, 4)) * 3
    x[0, 0, 0] = 0.5 + 1e-3   # off the kinks
    _run(ours, theirs, [x], rng)


LOSSES = [
    ("CrossEntropyLoss", {}, "classes"), ("CrossEntropyLoss", {"label_smoothing": 0.1, "reduction": "sum"}, "classes"),
    ("CrossEntropyLoss", {"weight": "w", "ignore_index": 1}, "classes"),
    ("CrossEntropyLoss", {"weight": "w", "label_smoothing": 0.2, "reduction": "none"}, "classes"),
    ("NLLLoss", {"weight": "w", "reduction": "sum"}, "log_probs"), ("NLLLoss", {"ignore_index": 0}, "log_probs"),
    ("BCELoss", {}, "probs"), ("BCELoss", {"weight": "wx", "reduction": "none"}, "probs"),
    ("BCEWithLogitsLoss", {"pos_weight": "pw"}, "logits"), ("BCEWithLogitsLoss", {"reduction": "sum"}, "logits"),
    ("L1Loss", {}, "values"), ("SmoothL1Loss", {"beta": 0.5}, "values"), ("HuberLoss", {"delta": 0.7}, "values"),
    ("MSELoss", {"reduction": "sum"}, "values"), ("KLDivLoss", {"reduction": "batchmean"}, "kl"),
    ("KLDivLoss", {"reduction": "sum", "log_target": True}, "kl"),
]


@pytest.mark.parametrize("name,kwargs,kind", LOSSES, ids=[f"{a[0]}{i}" for i, a in enumerate(LOSSES)])
def test_loss_modules(rng, name, kwargs, kind):
    n, c = 6, 5
    tensors = {"w": rng.uniform(0.3, 2, c), "wx": rng.uniform(0.3, 2, (n, c)), "pw": rng.uniform(0.5, 3, c)}
    ours_kw = {k: hv.tensor(tensors[v].astype(np.float32)) if v in tensors else v for k, v in kwargs.items()}
    torch_kw = {k: torch.tensor(tensors[v].astype(np.float32).astype(np.float64)) if v in tensors else v
                for k, v in kwargs.items()}
    ours, theirs = getattr(nn, name)(**ours_kw), getattr(TN, name)(**torch_kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())   # class weights are buffers, as torch's
    x = rng.standard_normal((n, c))
    if kind in ("classes", "log_probs"):
        target = rng.integers(0, c, n)
        target[0] = kwargs.get("ignore_index", 0)
        if kind == "log_probs":
            x = np.log(rng.dirichlet(np.ones(c), n))
        _run(ours, theirs, [x, target], rng, index_inputs=(1,))
        return
    if kind == "probs":
        x = rng.uniform(0.05, 0.95, (n, c))
    if kind == "kl":
        x = np.log(rng.dirichlet(np.ones(c), n))
        target = rng.dirichlet(np.ones(c), n)
        target = np.log(target) if kwargs.get("log_target") else target
    else:
        target = rng.uniform(0, 1, (n, c))
    _run(ours, theirs, [x, target], rng, grad_inputs=(0, 1))


def test_loss_modules_refuse_legacy_arguments():
    with pytest.raises(TypeError):
        nn.CrossEntropyLoss(size_average=False)
    with pytest.raises(TypeError):
        nn.ELU(1.0, 2.0)
    with pytest.raises(errors.ShapeError):
        nn.CrossEntropyLoss(weight=hv.ones(3))(hv.ones(2, 4), [0, 1])
