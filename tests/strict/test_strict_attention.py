"""Attention in strict mode (ops/attention_composed.py): PyTorch's scaled_dot_product_attention in
float64, forward and the three gradients, causal and with masks (a row masked out entirely gives
zeros, as the fused kernel), on odd shapes; its kernels are the strict ones (no fused attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F


def _case(seed, B=2, H=3, L=7, S=9, E=5, EV=6):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in ((B, H, L, E), (B, H, S, E), (B, H, S, EV))]


def _mask(kind, L, S, seed):
    if kind == "bool":
        m = np.random.default_rng(seed).random((L, S)) < 0.7
        m[2] = False  # a row with no key
        return m
    if kind == "float":
        return np.random.default_rng(seed).standard_normal((L, S)).astype(np.float32)
    return None


@pytest.mark.parametrize("kind", ["causal", "bool", "float"])
def test_strict_attention_against_torch_float64(kind):
    L, S = (7, 7) if kind == "causal" else (7, 9)
    q, k, v = _case(len(kind), L=L, S=S)
    m = _mask(kind, L, S, 5)
    go = np.random.default_rng(9).standard_normal((2, 3, L, 6)).astype(np.float32)
    tq, tk, tv = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (q, k, v))
    tm = None if m is None else torch.tensor(m if m.dtype == bool else m.astype(np.float64))
    want = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=kind == "causal")
    if kind == "bool":  # torch gives NaN for a row with no key; the fused kernel and strict mode give zeros
        want = torch.nan_to_num(want, nan=0.0)
    want.backward(torch.tensor(go, dtype=torch.float64))
    hv.default_runtime().kernels.reset_usage()
    with hv.strict():
        hq, hk, hv_ = (hv.tensor(a, requires_grad=True) for a in (q, k, v))
        out = F.scaled_dot_product_attention(hq, hk, hv_, attn_mask=None if m is None else hv.tensor(m),
                                             is_causal=kind == "causal")
        out.backward(hv.tensor(go))
        used = {kern.name for kern in hv.default_runtime().kernels.used()}
    assert "attention/attention" not in used
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)
    for h, t in ((hq, tq), (hk, tk), (hv_, tv)):
        g = t.grad.numpy()
        if kind == "bool":
            g = np.nan_to_num(g)
        np.testing.assert_allclose(h.grad.numpy(), g, rtol=1e-4, atol=1e-4)
    if kind == "bool":
        assert np.all(out.numpy()[:, :, 2] == 0)


def test_strict_attention_gives_the_bits_of_its_composition():
    q, k, v = _case(3)
    with hv.strict():
        hq, hk, hv_ = (hv.tensor(a) for a in (q, k, v))
        got = F.scaled_dot_product_attention(hq, hk, hv_, is_causal=True).numpy()
        mask = hv.tensor(np.triu(np.full((7, 9), -np.inf, np.float32), 1))
        want = F.softmax(hv.matmul(hq * (1 / np.sqrt(5)), hk.transpose(-2, -1)) + mask, -1) @ hv_
    assert np.array_equal(got.view(np.uint32), want.numpy().view(np.uint32))
