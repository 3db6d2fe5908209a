"""Convolutional-net modules against torch.nn with the same weights: a torch module's state_dict
loads into ours (same keys, same order), and outputs, input and parameter gradients, and running
statistics match; initialisation follows torch's defaults and the seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors, nn

TOL = 1e-5
GRAD_TOL = 1e-4


def _err(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"shape {got.shape} != {ref.shape}"
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12))


def _load_from_torch(ours: nn.Module, theirs: torch.nn.Module) -> None:
    state = theirs.state_dict()
    assert list(ours.state_dict()) == list(state), "state_dict keys (and their order) differ from torch's"
    ours.load_state_dict({k: v.detach().numpy() for k, v in state.items()})


def _compare(ours, theirs, shape, rng, steps: int = 1):
    """Load torch's weights into ours (torch in float64 from the same float32 values), run
    ``steps`` forward/backward passes, compare outputs, gradients and the final state."""
    theirs = theirs.double()
    _load_from_torch(ours, theirs.float())
    theirs = theirs.double()
    for _ in range(steps):
        x = rng.standard_normal(shape).astype(np.float32)
        hx = hv.tensor(x, requires_grad=True)
        tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        y, ty = ours(hx), theirs(tx)
        assert _err(y.numpy(), ty.detach().numpy()) < TOL
        g = rng.standard_normal(ty.shape)
        (y * hv.tensor(g.astype(np.float32))).sum().backward()
        (ty * torch.tensor(g)).sum().backward()
        assert _err(hx.grad.numpy(), tx.grad.numpy()) < GRAD_TOL
    tp = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert _err(p.grad.numpy(), tp[name].grad.numpy()) < GRAD_TOL, name
    ts = theirs.state_dict()
    for name, t in ours.state_dict().items():
        assert _err(t.numpy(), ts[name].numpy()) < TOL, name


MODULES = {
    "conv2d": (lambda m: m.Conv2d(4, 6, 3, stride=2, padding=1), (2, 4, 9, 7)),
    "conv2d_groups_dilation": (lambda m: m.Conv2d(4, 6, (3, 2), padding=(2, 1), dilation=2, groups=2, bias=False),
                               (2, 4, 9, 7)),
    "conv2d_same": (lambda m: m.Conv2d(3, 5, 4, padding="same"), (2, 3, 6, 7)),
    "conv1d": (lambda m: m.Conv1d(3, 4, 5, stride=2, padding=2), (2, 3, 13)),
    "conv_transpose2d": (lambda m: m.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1), (2, 4, 5, 6)),
    "conv_transpose2d_groups": (lambda m: m.ConvTranspose2d(4, 6, 2, stride=2, groups=2), (2, 4, 3, 5)),
    "maxpool": (lambda m: m.MaxPool2d(3, 2, padding=1, ceil_mode=True), (2, 3, 9, 8)),
    "avgpool": (lambda m: m.AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 3, 9, 8)),
    "adaptive": (lambda m: m.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    "groupnorm": (lambda m: m.GroupNorm(2, 6), (3, 6, 4, 5)),
    "batchnorm1d": (lambda m: m.BatchNorm1d(5, momentum=0.2), (7, 5)),
    "batchnorm1d_3d": (lambda m: m.BatchNorm1d(4), (3, 4, 6)),
    "batchnorm2d": (lambda m: m.BatchNorm2d(4), (3, 4, 5, 6)),
    "batchnorm2d_no_affine": (lambda m: m.BatchNorm2d(3, affine=False), (4, 3, 3, 5)),
    "batchnorm2d_untracked": (lambda m: m.BatchNorm2d(3, track_running_stats=False), (4, 3, 3, 5)),
    "batchnorm2d_cumulative": (lambda m: m.BatchNorm2d(3, momentum=None), (4, 3, 3, 5)),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_matches_torch_with_the_same_weights(name, rng):
    make, shape = MODULES[name]
    torch.manual_seed(int(rng.integers(1 << 30)))
    theirs = make(torch.nn)
    # Move torch's running statistics and affine parameters off their defaults, so loading shows.
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        if getattr(theirs, "running_mean", None) is not None:
            theirs.running_mean.add_(torch.randn_like(theirs.running_mean))
            theirs.running_var.mul_(torch.rand_like(theirs.running_var) + 0.5)
            theirs.num_batches_tracked.add_(3)
    _compare(make(nn), theirs, shape, rng, steps=2)


def test_batchnorm_in_eval_uses_running_stats_and_a_net_matches_torch(rng):
    def net(m):
        return m.Sequential(m.Conv2d(2, 4, 3, padding=1, bias=False), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2),
                            m.Conv2d(4, 3, 1), m.GroupNorm(1, 3), m.Tanh(), m.AdaptiveAvgPool2d(1), m.Flatten(), m.Linear(3, 2))
    theirs, ours = net(torch.nn), net(nn)
    _compare(ours, theirs, (3, 2, 6, 5), rng, steps=2)
    theirs.eval()
    ours.eval()
    theirs.zero_grad()
    ours.zero_grad()
    _compare(ours, theirs, (2, 2, 6, 5), rng)
    assert list(ours.state_dict())[:6] == ["0.weight", "1.weight", "1.bias", "1.running_mean",
                                           "1.running_var", "1.num_batches_tracked"]
    assert int(ours.state_dict()["1.num_batches_tracked"].item()) == 2
    assert [n for n, _ in ours.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert len(ours.parameters()) == len(list(theirs.parameters()))


def test_initialisation_follows_torch_defaults_and_the_seed():
    hv.manual_seed(5)
    a = nn.Conv2d(12, 40, (3, 5), groups=2)
    hv.manual_seed(5)
    b = nn.Conv2d(12, 40, (3, 5), groups=2)
    bound = 1 / math.sqrt(6 * 15)
    w = a.weight.numpy()
    assert w.shape == (40, 6, 3, 5) and a.bias.shape == (40,)
    assert np.abs(w).max() <= bound and np.abs(a.bias.numpy()).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    np.testing.assert_array_equal(w, b.weight.numpy())
    t = nn.ConvTranspose2d(6, 8, 3, groups=2)
    assert t.weight.shape == (6, 4, 3, 3) and np.abs(t.weight.numpy()).max() <= 1 / math.sqrt(4 * 9)
    bn = nn.BatchNorm2d(3)
    assert list(bn.state_dict()) == list(torch.nn.BatchNorm2d(3).state_dict())
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(3, np.float32))
    np.testing.assert_array_equal(bn.weight.numpy(), np.ones(3, np.float32))
    assert bn.num_batches_tracked.shape == () and int(bn.num_batches_tracked.item()) == 0
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]


def test_dropout2d_module_and_errors():
    d = nn.Dropout2d(0.5)
    x = hv.ones(2, 40, 2, 2)
    y = d(x).numpy().reshape(2, 40, 4)
    assert np.all((y == 0).all(-1) | (y == 2.0).all(-1)) and 0 < (y == 0).mean() < 1
    d.eval()
    np.testing.assert_array_equal(d(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="divisible"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(errors.ShapeError, match="4-D input"):
        nn.BatchNorm2d(3)(hv.randn(2, 3))
    with pytest.raises(errors.ShapeError, match="shape"):
        nn.Conv2d(3, 4, 3).load_state_dict({"weight": np.zeros((4, 3, 2, 2), np.float32),
                                            "bias": np.zeros(4, np.float32)})


def test_a_batchnorm_state_round_trips_through_a_checkpoint(tmp_path):
    """num_batches_tracked is 0-d: it keeps its shape (and digest) in the safetensors file."""
    from hlx_vulkan.checkpoint import load_checkpoint, save_checkpoint
    bn = nn.BatchNorm2d(3)
    bn(hv.randn(4, 3, 2, 2))
    entries = save_checkpoint(tmp_path / "bn.safetensors", bn.state_dict())
    assert entries["num_batches_tracked"]["shape"] == []
    loaded = load_checkpoint(tmp_path / "bn.safetensors", manifest={"tensors": entries})
    assert loaded["num_batches_tracked"].shape == () and int(loaded["num_batches_tracked"]) == 1
    other = nn.BatchNorm2d(3)
    other.load_state_dict(loaded)
    np.testing.assert_array_equal(other.running_mean.numpy(), bn.running_mean.numpy())
    assert int(other.num_batches_tracked.item()) == 1
