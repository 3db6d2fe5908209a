"""MultiheadAttention, TransformerEncoderLayer, TransformerEncoder, ModuleList and ModuleDict
against torch.nn in float64, with the torch module's state_dict loaded into ours."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors

TOL = 2e-5


def _load(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy().astype(np.float32) for k, v in theirs.state_dict().items()})
    theirs.double()


def _close(a, b, what, tol=TOL):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    err = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
    assert err < tol, f"{what}: relative error {err:.3g}"


def _inputs(rng, *shapes):
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    return [hv.tensor(x, requires_grad=True) for x in xs], [torch.tensor(x, dtype=torch.float64, requires_grad=True)
                                                            for x in xs]


def _check_grads(ours, theirs, hs, ts, out, ref, rng):
    w = rng.standard_normal(ref.shape)
    (out * hv.tensor(w.astype(np.float32))).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    for i, (h, t) in enumerate(zip(hs, ts)):
        if t.grad is not None:
            _close(h.grad.numpy(), t.grad.numpy(), f"input {i} gradient")
    theirs_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad.numpy(), theirs_grads[name].grad.numpy(), f"{name} gradient")


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_self_attention_with_masks(batch_first, need_weights, rng):
    E, H, B, L = 12, 3, 2, 7
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=batch_first)
    ours = hv.nn.MultiheadAttention(E, H, batch_first=batch_first)
    _load(ours, theirs)
    shape = (B, L, E) if batch_first else (L, B, E)
    (hx,), (tx,) = _inputs(rng, shape)
    kpm = rng.random((B, L)) < 0.3
    kpm[:, 0] = False
    am = np.triu(np.ones((L, L), bool), 1)
    out, wts = ours(hx, hx, hx, key_padding_mask=hv.tensor(kpm), attn_mask=hv.tensor(am), need_weights=need_weights)
    ref, rw = theirs(tx, tx, tx, key_padding_mask=torch.tensor(kpm), attn_mask=torch.tensor(am),
                     need_weights=need_weights)
    _close(out.numpy(), ref.detach().numpy(), "output")
    if need_weights:
        _close(wts.numpy(), rw.detach().numpy(), "weights")
    else:
        assert wts is None and rw is None
    _check_grads(ours, theirs, [hx], [tx], out, ref, rng)


@pytest.mark.parametrize("mask", ["none", "float2d", "bool3d", "float_kpm"])
def test_cross_attention_L_not_S(mask, rng):
    E, H, B, L, S = 8, 2, 3, 5, 9
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=True)
    ours = hv.nn.MultiheadAttention(E, H, batch_first=True)
    _load(ours, theirs)
    hs, ts = _inputs(rng, (B, L, E), (B, S, E), (B, S, E))
    kw_h, kw_t = {}, {}
    if mask == "float2d":
        m = rng.standard_normal((L, S)).astype(np.float32)
        kw_h["attn_mask"], kw_t["attn_mask"] = hv.tensor(m), torch.tensor(m, dtype=torch.float64)
    elif mask == "bool3d":
        m = rng.random((B * H, L, S)) < 0.4
        m[..., 2] = False
        kw_h["attn_mask"], kw_t["attn_mask"] = hv.tensor(m), torch.tensor(m)
    elif mask == "float_kpm":
        m = rng.standard_normal((B, S)).astype(np.float32)
        kw_h["key_padding_mask"], kw_t["key_padding_mask"] = hv.tensor(m), torch.tensor(m, dtype=torch.float64)
    out, w = ours(*hs, average_attn_weights=False, **kw_h)
    ref, rw = theirs(*ts, average_attn_weights=False, **kw_t)
    _close(out.numpy(), ref.detach().numpy(), "output")
    _close(w.numpy(), rw.detach().numpy(), "per-head weights")
    _check_grads(ours, theirs, hs, ts, out, ref, rng)


def test_unbatched_input_and_causal_hint(rng):
    E, H, L = 6, 2, 5
    theirs, ours = torch.nn.MultiheadAttention(E, H), hv.nn.MultiheadAttention(E, H)
    _load(ours, theirs)
    (hx,), (tx,) = _inputs(rng, (L, E))
    causal = hv.nn.generate_square_subsequent_mask(L)
    tc = torch.nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64)
    np.testing.assert_array_equal(causal.numpy(), tc.numpy())
    out, _ = ours(hx, hx, hx, attn_mask=causal, is_causal=True, need_weights=False)
    ref, _ = theirs(tx, tx, tx, attn_mask=tc, is_causal=True, need_weights=False)
    _close(out.numpy(), ref.detach().numpy(), "output")
    _check_grads(ours, theirs, [hx], [tx], out, ref, rng)
    with pytest.raises(errors.HlxError, match="is_causal"):
        ours(hx, hx, hx, is_causal=True)


def test_initialisation_and_state_dict_keys_follow_torch():
    hv.manual_seed(0)
    ours = hv.nn.MultiheadAttention(16, 4)
    theirs = torch.nn.MultiheadAttention(16, 4)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    w = ours.in_proj_weight.numpy()
    bound = math.sqrt(6 / (16 + 48))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound and abs(w.mean()) < 0.05
    assert not ours.in_proj_bias.numpy().any() and not ours.out_proj.bias.numpy().any()
    with pytest.raises(ValueError):
        hv.nn.MultiheadAttention(10, 3)
    with pytest.raises(errors.HlxError):
        hv.nn.MultiheadAttention(8, 2, kdim=4)
    with pytest.raises(errors.ShapeError):
        ours(hv.zeros(3, 2, 8), hv.zeros(3, 2, 8), hv.zeros(3, 2, 8))
    x = hv.zeros(3, 2, 16)
    with pytest.raises(errors.ShapeError):
        ours(x, x, x, key_padding_mask=hv.zeros(3, 2, dtype="bool"))
    with pytest.raises(errors.ShapeError):
        ours(x, x, x, attn_mask=hv.zeros(2, 3))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_torch(norm_first, activation, rng):
    d, H, B, L = 12, 3, 2, 6
    theirs = torch.nn.TransformerEncoderLayer(d, H, dim_feedforward=20, dropout=0.0, activation=activation,
                                              batch_first=True, norm_first=norm_first)
    ours = hv.nn.TransformerEncoderLayer(d, H, dim_feedforward=20, dropout=0.0, activation=activation,
                                         batch_first=True, norm_first=norm_first)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _load(ours, theirs)
    (hx,), (tx,) = _inputs(rng, (B, L, d))
    kpm = np.zeros((B, L), bool)
    kpm[1, -2:] = True
    out = ours(hx, src_key_padding_mask=hv.tensor(kpm))
    ref = theirs(tx, src_key_padding_mask=torch.tensor(kpm))
    _close(out.numpy(), ref.detach().numpy(), "output")
    _check_grads(ours, theirs, [hx], [tx], out, ref, rng)


def test_feed_forward_block_runs_linear1_and_relu_as_one_launch(rng):
    """The encoder layer's feed-forward block with relu (the default) runs linear1 and relu as one
    launch (ops.linear's linear_relu) with the bits of the two, forward and backward, on a 3-D
    input; with gelu it runs them as they are."""
    from hlx_vulkan.nn import functional as F
    from layer_runs import assert_same_bits, launches_output_grads
    layer = hv.nn.TransformerEncoderLayer(12, 3, dim_feedforward=20, dropout=0.0, batch_first=True)
    x = rng.standard_normal((2, 7, 12)).astype(np.float32)
    g = rng.standard_normal((2, 7, 12)).astype(np.float32)
    l1, l2 = layer.linear1, layer.linear2
    params = [l1.weight, l1.bias, l2.weight, l2.bias]
    fused, composed = (launches_output_grads(block, x, g, params) for block in (
        layer._ff_block, lambda h: F.linear(F.relu(F.linear(h, l1.weight, l1.bias)), l2.weight, l2.bias)))
    assert fused[0] == composed[0] - 1
    assert_same_bits(fused, composed)
    layer.activation = F.gelu
    assert launches_output_grads(layer._ff_block, x, g, params)[0] == composed[0]


def test_encoder_stack_in_eval_mode_with_dropout_configured(rng):
    d, H, L, B = 8, 2, 5, 3
    layer = torch.nn.TransformerEncoderLayer(d, H, dim_feedforward=16, dropout=0.2)
    theirs = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(d), enable_nested_tensor=False)
    ours = hv.nn.TransformerEncoder(hv.nn.TransformerEncoderLayer(d, H, dim_feedforward=16, dropout=0.2), 2,
                                    norm=hv.nn.LayerNorm(d))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    s = ours.state_dict()  # the layers start as copies of one layer, with their own memory
    np.testing.assert_array_equal(s["layers.0.linear1.weight"].numpy(), s["layers.1.linear1.weight"].numpy())
    assert ours.layers[0].linear1.weight is not ours.layers[1].linear1.weight
    _load(ours, theirs)
    ours.eval()
    theirs.eval()
    (hx,), (tx,) = _inputs(rng, (L, B, d))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64)
    out = ours(hx, mask=hv.nn.generate_square_subsequent_mask(L), is_causal=True)
    with torch.no_grad():
        ref = theirs(tx, mask=mask, is_causal=True)
    _close(out.numpy(), ref.numpy(), "output")


def test_dropout_in_training_is_seeded(rng):
    layer = hv.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.3, batch_first=True)
    x = hv.tensor(rng.standard_normal((2, 5, 8)).astype(np.float32))
    hv.manual_seed(3)
    a = layer(x).numpy()
    hv.manual_seed(3)
    b = layer(x).numpy()
    c = layer(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())


def test_module_list_and_dict_register_as_torch():
    ours = hv.nn.ModuleList([hv.nn.Linear(2, 3), hv.nn.Linear(3, 1)])
    ours.append(hv.nn.LayerNorm(1))
    theirs = torch.nn.ModuleList([torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)])
    theirs.append(torch.nn.LayerNorm(1))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert len(ours) == 3 and isinstance(ours[1], hv.nn.Linear) and len(ours[1:]) == 2
    assert [type(m).__name__ for m in ours] == ["Linear", "Linear", "LayerNorm"]
    d = hv.nn.ModuleDict({"enc": hv.nn.Linear(2, 2), "head": hv.nn.Linear(2, 1)})
    td = torch.nn.ModuleDict({"enc": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 1)})
    assert [n for n, _ in d.named_parameters()] == [n for n, _ in td.named_parameters()]
    assert "enc" in d and list(d) == ["enc", "head"] and len(d) == 2
    del d["enc"]
    assert list(d.keys()) == ["head"] and [n for n, _ in d.named_parameters()] == ["head.weight", "head.bias"]
