"""The cooperative-matrix attention forward (ops/attention_coopmat.py): it runs only where the device
has cooperative matrices (not lavapipe; benchmarks/check_attention_coopmat.py checks it on a GPU), so
here every variant is compiled and checked by spirv-val and against its declaration, and the choice
between it and the fused kernel is tested."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import hlx_vulkan as hv
from hlx_vulkan import strict_mode
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import attention_coopmat as ac
from hlx_vulkan.runtime.kernels import slot_defines

H100_SHARED = 49152


def _defines(dtype, e, ev, bk, mask, causal, vec, nsg=4, prefetch=0, rm=1):
    d = {"CT": "float", "OCT": "float", "E": e, "EV": ev, "BK": bk, "NSG": nsg, "PREFETCH": prefetch, "RM": rm,
         "HAS_MASK": int(mask), "CAUSAL": int(causal), "QKV_VEC": int(vec),
         **slot_defines("A", getattr(hv, dtype)), **slot_defines("O", getattr(hv, dtype))}
    if dtype == "bfloat16":
        d["HLX_COOPMAT_BF16"] = 1
    return d


VARIANTS = [(nsg, prefetch, bk, rm) for nsg in (4, 8) for prefetch in (0, 1) for bk in ac.KEY_TILES for rm in (1, 2)]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("e,ev", [(64, 64), (128, 128), (64, 128)])
def test_every_variant_is_valid_spirv(dtype, e, ev):
    """Every variant that fits 48 KiB, with and without mask, causal and vector loads (the default
    variant fits every pair of head dims)."""
    from hlx_vulkan.compiler import compile_file
    from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv
    fits = [c for c in VARIANTS if ac.shared_bytes(e, ev, c[2], c[0], c[3]) <= H100_SHARED]
    assert any(c in fits for c in ac.CONFIGS)
    flags = [(False, False, True), (True, False, False), (False, True, True), (True, True, True)]
    for i, (nsg, prefetch, bk, rm) in enumerate(fits):
        # float16: every flag set; bfloat16 (the same source, retyped): one a variant
        for mask, causal, vec in flags if dtype == "float16" else [flags[i % len(flags)]]:
            spirv = compile_file(ac.FORWARD[mask].path, _defines(dtype, e, ev, bk, mask, causal, vec, nsg, prefetch, rm),
                                 target_env="vulkan1.3")
            validate_spirv(spirv, "vulkan1.3")
            reflection = parse_spirv(spirv)
            assert "CooperativeMatrixKHR" in reflection.capabilities
            assert ("BFloat16CooperativeMatrixKHR" in reflection.capabilities) == (dtype == "bfloat16")
            ac.FORWARD[mask].check(reflection)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("e,ev", [(64, 64), (128, 128), (128, 64)])
def test_backward_kernels_are_valid_spirv(dtype, e, ev):
    """dQ (MODE 1) and dK/dV (MODE 2) at the tile the backward takes on 48 KiB, every flag set."""
    from hlx_vulkan.compiler import compile_file
    from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv
    bt = next(bt for bt in ac.KEY_TILES if ac.bwd_shared_bytes(e, ev, bt) <= H100_SHARED)
    flags = [(False, False, True), (True, True, False), (True, False, True), (False, True, True)]
    for mask, causal, vec in flags if dtype == "float16" else flags[:2]:
        for mode, specs in ((1, ac.GRAD_Q), (2, ac.GRAD_KV)):
            defines = {**_defines(dtype, e, ev, bt, mask, causal, vec), "BT": bt, "MODE": mode}
            spirv = compile_file(specs[mask].path, defines, target_env="vulkan1.3")
            validate_spirv(spirv, "vulkan1.3")
            reflection = parse_spirv(spirv)
            assert ("BFloat16CooperativeMatrixKHR" in reflection.capabilities) == (dtype == "bfloat16")
            specs[mask].check(reflection)


def test_shared_memory_sizes_fit_the_limit(monkeypatch):
    """The key tile shrinks to fit the device's shared memory (48 KiB on the H100)."""
    assert ac.shared_bytes(64, 64, 64) <= H100_SHARED
    assert ac.shared_bytes(128, 128, 64) > H100_SHARED >= ac.shared_bytes(128, 128, 32)

    class Rt:  # the device's limit is all config reads
        class ctx:
            class physical_device:
                limits = {"max_compute_shared_memory_size": H100_SHARED}
    assert ac.config(Rt, 64, 64) == (4, 0, 64, 1) and ac.config(Rt, 128, 128) == (4, 0, 32, 1)
    monkeypatch.setattr(ac, "FORCE_CONFIG", (8, 1, 32, 1))
    assert ac.config(Rt, 64, 64) == (8, 1, 32, 1)
    monkeypatch.setattr(ac, "FORCE_CONFIG", (8, 1, 64, 1))
    assert ac.config(Rt, 128, 128) is None
    monkeypatch.setattr(ac, "FORCE_CONFIG", None)
    assert ac.bwd_tile(Rt, 64, 64) == 64 and ac.bwd_tile(Rt, 128, 128) == 32
    Rt.ctx.physical_device.limits = {"max_compute_shared_memory_size": 1024}
    assert ac.config(Rt, 64, 64) is None and ac.bwd_tile(Rt, 64, 64) is None


def test_choice(monkeypatch):
    rt = hv.default_runtime()
    have = ac.coopmat_available(rt, hv.float16)
    assert ac.usable(rt, hv.float16, 64, 64, 0.0) == have
    monkeypatch.setattr(ac, "coopmat_available", lambda rt, dtype: dtype.name in ("float16", "bfloat16"))
    assert ac.usable(rt, hv.float16, 64, 64, 0.0) and ac.usable(rt, hv.bfloat16, 128, 64, 0.0)
    assert not ac.usable(rt, hv.float32, 64, 64, 0.0)
    assert not ac.usable(rt, hv.float16, 96, 96, 0.0)      # other head dims: the fused kernel
    assert not ac.usable(rt, hv.float16, 64, 32, 0.0)
    assert not ac.usable(rt, hv.float16, 64, 64, 0.1)      # dropout: the fused kernel
    with strict_mode.strict():
        assert not ac.usable(rt, hv.float16, 64, 64, 0.0)


def test_lavapipe_falls_back_to_the_fused_kernel(rng):
    """Without cooperative matrices sdpa takes the fused kernel for float16 too (and agrees with torch)."""
    rt = hv.default_runtime()
    if ac.coopmat_available(rt, hv.float16):
        pytest.skip("this device has cooperative matrices: benchmarks/check_attention_coopmat.py covers it")
    q, k, v = (rng.standard_normal((1, 2, 19, 64)).astype(np.float16) for _ in range(3))
    rt.kernels.reset_usage()
    out = F.scaled_dot_product_attention(hv.tensor(q), hv.tensor(k), hv.tensor(v), is_causal=True)
    ref = TF.scaled_dot_product_attention(*(torch.tensor(x, dtype=torch.float64) for x in (q, k, v)), is_causal=True)
    np.testing.assert_allclose(out.to(hv.float32).numpy(), ref.numpy(), atol=2e-3, rtol=2e-3)
    names = {kern.name for kern in rt.kernels.used()}
    assert "attention/attention" in names and "attention/attention_coopmat" not in names


def test_sdpa_takes_the_coopmat_forward_when_usable(monkeypatch, rng):
    """The choice reaches the launch: with the kernel stood in for (it cannot run here), sdpa hands it the
    plan, contiguous operands, the float mask and outputs of the right shapes, and uses what it writes."""
    seen = {}

    def fake(q, k, v, mask, plan, out, lse):
        seen.update(q=q.shape, k=k.shape, v=v.shape, mask=None if mask is None else mask.shape, E=plan.E,
                    EV=plan.EV, causal=plan.causal, out=out.shape, lse=lse.shape)
        hv.ops.elementwise.launch("CT(0.5)", [out], out=out)

    monkeypatch.setattr(ac, "usable", lambda rt, dtype, e, ev, p: dtype.name == "float16" and p == 0)
    monkeypatch.setattr(ac, "forward", fake)
    q = hv.tensor(rng.standard_normal((2, 3, 5, 64)).astype(np.float16))
    kv = hv.tensor(rng.standard_normal((2, 3, 7, 64)).astype(np.float16))
    m = hv.tensor(rng.standard_normal((3, 5, 7)) > 0)
    out = F.scaled_dot_product_attention(q, kv, kv, attn_mask=m)
    assert seen == {"q": (2, 3, 5, 64), "k": (2, 3, 7, 64), "v": (2, 3, 7, 64), "mask": (2, 3, 5, 7), "E": 64,
                    "EV": 64, "causal": False, "out": (2, 3, 5, 64), "lse": (2, 3, 5)}
    assert np.all(out.to(hv.float32).numpy() == 0.5)
    seen.clear()
    F.scaled_dot_product_attention(q, kv, kv, dropout_p=0.2)
    assert not seen  # dropout: the fused kernel


def test_float16_bits_decode_in_integer_code():
    """The float16 forward sums each row's P as rounded to float16 (the P that multiplies V) through
    dtypes.glsl's f16_to_f32, integer code, because NVIDIA's compiler folds float(float16_t(x)) back
    to x (on the H100 the sum was unrounded: benchmarks/NOTES.md, tenth stop). Every one of the 65536
    bit patterns decodes to numpy's value of it, NaNs to NaNs."""
    from hlx_vulkan.ops import pointwise as pw
    bits = np.arange(1 << 16, dtype=np.int32)
    got = pw.launch("f16_to_f32(uint(x))", [hv.tensor(bits)], out_dtype=hv.float32, compute=hv.float32).numpy()
    want = bits.astype(np.uint16).view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
