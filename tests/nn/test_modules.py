"""nn modules: the parameter tree, state dicts, PyTorch's initialisation, train/eval, losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors, nn



def _mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 3))


def test_parameters_are_found_by_name_in_registration_order():
    m = _mlp()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias", "5.weight", "5.bias"]
    assert len(m.parameters()) == 8 and all(p.requires_grad for p in m.parameters())
    assert list(m.state_dict()) == names


def test_linear_initialisation_follows_torch_defaults_and_the_seed():
    hv.manual_seed(3)
    a = nn.Linear(400, 300)
    hv.manual_seed(3)
    b = nn.Linear(400, 300)
    w = a.weight.numpy()
    bound = 1 / math.sqrt(400)
    assert w.shape == (300, 400) and a.bias.shape == (300,)
    assert np.abs(w).max() <= bound and np.abs(a.bias.numpy()).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound  # the std of U(-b, b)
    np.testing.assert_array_equal(w, b.weight.numpy())
    ln, emb = nn.LayerNorm(5), nn.Embedding(1000, 16)
    np.testing.assert_array_equal(ln.weight.numpy(), np.ones(5, np.float32))
    np.testing.assert_array_equal(ln.bias.numpy(), np.zeros(5, np.float32))
    e = emb.weight.numpy()
    assert abs(e.mean()) < 0.03 and abs(e.std() - 1) < 0.03


def test_forward_and_gradients_match_torch_modules(rng):
    m = _mlp()
    tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.GELU(),
                             torch.nn.LayerNorm(8), torch.nn.Linear(8, 3)).double()
    tm.load_state_dict({k: torch.tensor(v.numpy(), dtype=torch.float64) for k, v in m.state_dict().items()})
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y = np.array([0, 2, 1, 1, 0])
    loss = nn.CrossEntropyLoss()(m(hv.tensor(x)), hv.tensor(y))
    loss.backward()
    tloss = torch.nn.CrossEntropyLoss()(tm(torch.tensor(x, dtype=torch.float64)), torch.tensor(y))
    tloss.backward()
    assert abs(loss.item() - tloss.item()) < 1e-5 * abs(tloss.item())
    for (name, p), (_, tp) in zip(m.named_parameters(), tm.named_parameters()):
        ref = tp.grad.numpy()
        assert np.linalg.norm(p.grad.numpy() - ref) <= 1e-4 * np.linalg.norm(ref), name


def test_sequential_runs_linear_then_relu_as_one_layer(rng):
    """A Linear followed by a ReLU in a Sequential is one launch and one tape node (ops.linear's
    linear_relu), with the bits of the two modules run one after the other, forward and backward;
    a trailing Linear, a ReLU after something else and a Linear whose forward was replaced run as
    they are."""
    from hlx_vulkan.nn import functional as F
    from layer_runs import assert_same_bits, launches_output_grads

    class Scaled(nn.Linear):  # its own forward: not fused
        def forward(self, x):
            return super().forward(x) * 2.0

    m = nn.Sequential(nn.Linear(9, 17), nn.ReLU(), nn.Linear(17, 13, bias=False), nn.ReLU(inplace=True),
                      Scaled(13, 7), nn.ReLU(), nn.Tanh(), nn.ReLU(), nn.Linear(7, 5))
    x = rng.standard_normal((11, 9)).astype(np.float32)
    g = rng.standard_normal((11, 5)).astype(np.float32)

    def by_hand(xt):
        h = F.relu(F.linear(xt, m[0].weight, m[0].bias))
        h = F.relu(F.linear(h, m[2].weight))
        h = F.relu(F.linear(h, m[4].weight, m[4].bias) * 2.0)
        return F.linear(F.relu(F.tanh(h)), m[8].weight, m[8].bias)

    fused, composed = (launches_output_grads(fn, x, g, m.parameters()) for fn in (m, by_hand))
    assert fused[0] == composed[0] - 2  # the first two layers' relus
    assert_same_bits(fused, composed)
    h = np.maximum(x.astype(np.float64) @ m[0].weight.numpy().T.astype(np.float64) + m[0].bias.numpy(), 0)
    np.testing.assert_allclose(m[:2](hv.tensor(x)).numpy(), h, rtol=1e-5, atol=1e-6)


def test_embedding_gradient_sums_repeated_indices(rng):
    emb = nn.Embedding(7, 3)
    idx = np.array([[1, 4, 1], [6, 1, 0]])
    w = rng.standard_normal((2, 3, 3))
    (emb(hv.tensor(idx)) * hv.tensor(w)).sum().backward()
    ref = np.zeros((7, 3))
    np.add.at(ref, idx.reshape(-1), w.reshape(-1, 3))
    np.testing.assert_allclose(emb.weight.grad.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_load_state_dict_round_trip_and_mismatches():
    a, b = _mlp(), _mlp()
    b.load_state_dict(a.state_dict())
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    b.load_state_dict({k: v.numpy() for k, v in a.state_dict().items()})
    state = a.state_dict()
    with pytest.raises(errors.ShapeError, match="missing"):
        b.load_state_dict({k: v for k, v in state.items() if k != "0.bias"})
    with pytest.raises(errors.ShapeError, match="0.weight"):
        b.load_state_dict({**state, "0.weight": np.zeros((8, 5), np.float32)})
    with pytest.raises(errors.DTypeError, match="0.weight"):
        b.load_state_dict({**state, "0.weight": np.zeros((8, 6), np.float16)})


def test_dropout_is_seeded_scaled_and_off_in_eval():
    d = nn.Dropout(0.25)
    x = hv.ones(10_000)
    hv.manual_seed(1)
    y1 = d(x).numpy()
    hv.manual_seed(1)
    y2 = d(x).numpy()
    np.testing.assert_array_equal(y1, y2)
    assert set(np.unique(y1)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y1 == 0).mean() - 0.25) < 0.02
    d.eval()
    np.testing.assert_array_equal(d(x).numpy(), x.numpy())
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


def test_train_and_eval_reach_every_submodule():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5)))
    m.eval()
    assert all(not s.training for s in m.modules())
    m.train()
    assert all(s.training for s in m.modules())


def test_mse_loss_module_matches_numpy(rng):
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    out = nn.MSELoss()(hv.tensor(a), hv.tensor(b)).item()
    assert abs(out - ((a.astype(np.float64) - b) ** 2).mean()) < 1e-6
