"""The cooperative-matrix-2 attention forward (ops/attention_cm2.py). No device here has
VK_NV_cooperative_matrix2 (benchmarks/check_attention_cm2.py runs it on a GPU), so every variant it
ships is compiled, checked by spirv-val and against its declaration, and the choice between it,
the cooperative-matrix-1 forward and the fused kernel is tested with stand-in devices."""

from __future__ import annotations

import types

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors, glslang_library
from hlx_vulkan.compiler import compile_file
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import attention_cm2 as cm2
from hlx_vulkan.ops import attention_coopmat as ac
from hlx_vulkan.runtime.kernels import slot_defines
from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv

PARTS = {f"cooperative_matrix2_{p}": True for p in cm2._PARTS}
H100_LIMITS = {"cooperative_matrix2_workgroup_scope_max_workgroup_size": 256,
               "cooperative_matrix2_flexible_dimensions_max_dimension": 256}


def _shape(a, threads, g=16):
    return {"M_granularity": g, "N_granularity": g, "K_granularity": g, "a": a, "b": a, "c": "float32",
            "result": "float32", "saturating": 0, "scope": 2, "workgroup_invocations": threads}


def fake_rt(features=None, limits=None, shapes=None):
    """What the choice reads of a runtime: enabled features, limits and cm2 shapes."""
    feats = {"cooperative_matrix2": True, "bfloat16_cooperative_matrix": True, **PARTS, **(features or {})}
    shapes = [_shape(a, t) for a in ("float16", "bfloat16") for t in (128, 256)] if shapes is None else shapes
    return types.SimpleNamespace(device=types.SimpleNamespace(enabled_features=feats),
                                 ctx=types.SimpleNamespace(physical_device=types.SimpleNamespace(
                                     limits={**H100_LIMITS, **(limits or {})}, cooperative_matrix2_shapes=shapes)))


@pytest.fixture()
def auto(monkeypatch):
    monkeypatch.delenv(cm2.ENV, raising=False)
    monkeypatch.delenv(cm2.ENV_BWD, raising=False)
    monkeypatch.setattr(cm2, "_failed", {"fwd": False, "bwd": False})
    monkeypatch.setattr(cm2, "FORCE_CONFIG", None)
    monkeypatch.setattr(cm2, "FORCE_BWD_CONFIG", None)
    monkeypatch.setattr(cm2, "BACKWARD", True)
    monkeypatch.setattr(glslang_library, "available", lambda: True)
    return monkeypatch


def _defines(dtype, e, ev, cfg, mask, causal, aligned):
    bq, bk, threads, rowsum = cfg
    return {"CT": "float", "OCT": "float", "E": e, "EV": ev, "BQ": bq, "BK": bk, "THREADS": threads,
            "ROWSUM_MMA": rowsum, "HAS_MASK": int(mask), "CAUSAL": int(causal), "ALIGNED": int(aligned),
            "AT_BF16": int(dtype == "bfloat16"), **slot_defines("A", getattr(hv, dtype)),
            **slot_defines("O", getattr(hv, dtype))}


def _check(spirv, mask, dtype):
    validate_spirv(spirv, "vulkan1.3")
    reflection = parse_spirv(spirv)
    assert {"CooperativeMatrixReductionsNV", "CooperativeMatrixPerElementOperationsNV",
            "TensorAddressingNV", "CooperativeMatrixConversionsNV"} <= set(reflection.capabilities)
    assert ("BFloat16CooperativeMatrixKHR" in reflection.capabilities) == (dtype == "bfloat16")
    cm2.FORWARD[mask].check(reflection)
    return reflection


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("e,ev", [(64, 64), (128, 128), (64, 128), (128, 64)])
def test_the_default_kernel_compiles_for_every_flag(dtype, e, ev):
    for mask in (False, True):
        for causal in (False, True):
            for aligned in (False, True):
                spirv = compile_file(cm2.FORWARD[mask].path, _defines(dtype, e, ev, cm2.DEFAULT_CONFIG, mask, causal,
                                                                      aligned), target_env="vulkan1.3")
                refl = _check(spirv, mask, dtype)
                assert refl.entry_point("main").local_size == (cm2.DEFAULT_CONFIG[2], 1, 1)


@pytest.mark.parametrize("e", [64, 128])
def test_every_swept_variant_compiles(e):
    """The variants the check script sweeps (float16), each with one set of flags."""
    for i, cfg in enumerate(cm2.VARIANTS):
        mask, causal, aligned = bool(i & 1), bool(i & 2), bool(i & 4)
        spirv = compile_file(cm2.FORWARD[mask].path, _defines("float16", e, e, cfg, mask, causal, aligned),
                             target_env="vulkan1.3")
        assert _check(spirv, mask, "float16").entry_point("main").local_size == (cfg[2], 1, 1)


def test_the_defines_the_launcher_passes_compile(auto):
    """kernel() hands the runtime a complete set of defines (what a device with cm2 would build)."""
    seen = []

    def get(spec, defines, dtypes, workgroup, target_env):
        all_defines = {**{k: v for slot, dt in dtypes.items() for k, v in slot_defines(slot, dt).items()}, **defines}
        seen.append((defines, workgroup))
        return compile_file(spec.path, all_defines, target_env=target_env)

    rt = fake_rt()
    rt.kernels = types.SimpleNamespace(get=get)
    for dtype in (hv.float16, hv.bfloat16):
        spirv, bq = cm2.kernel(rt, dtype, 64, 128, True, True, 100, 300)
        _check(spirv, True, dtype.name)
        assert bq == cm2.DEFAULT_CONFIG[0]
    assert seen[0][0]["ALIGNED"] == 0 and seen[0][1] == (cm2.DEFAULT_CONFIG[2], 1, 1)
    cm2.kernel(rt, hv.float16, 64, 64, False, False, 128, 256)
    assert seen[-1][0]["ALIGNED"] == 1 and seen[-1][0]["HAS_MASK"] == 0


def test_choice(auto):
    rt = fake_rt()
    assert cm2.available(rt, hv.float16, 64, 64) and cm2.available(rt, hv.bfloat16, 128, 64)
    assert cm2.chosen(rt, hv.float16, 64, 64, [0, 8, 4096])
    assert not cm2.chosen(rt, hv.float16, 64, 64, [0, 4, 0])           # a 16-byte base: coopmat-1
    assert not cm2.available(rt, hv.float32, 64, 64)
    assert not cm2.available(fake_rt({"cooperative_matrix2": False}), hv.float16, 64, 64)
    for part in cm2._PARTS:
        assert not cm2.available(fake_rt({f"cooperative_matrix2_{part}": False}), hv.float16, 64, 64), part
    assert not cm2.available(fake_rt({"bfloat16_cooperative_matrix": False}), hv.bfloat16, 64, 64)
    assert cm2.available(fake_rt({"bfloat16_cooperative_matrix": False}), hv.float16, 64, 64)
    # the device's limits and flexible dimensions
    assert not cm2.available(fake_rt(limits={"cooperative_matrix2_workgroup_scope_max_workgroup_size": 64}),
                             hv.float16, 64, 64)
    assert not cm2.available(fake_rt(limits={"cooperative_matrix2_flexible_dimensions_max_dimension": 64}),
                             hv.float16, 128, 128)
    # no 128-thread combination: the first variant of 256 threads
    assert cm2.config(fake_rt(shapes=[_shape("float16", 256)]), hv.float16, 64, 64) == (64, 32, 256, 1)
    assert cm2.config(fake_rt(), hv.float16, 64, 64) == cm2.DEFAULT_CONFIG
    assert cm2.config(fake_rt(shapes=[]), hv.float16, 64, 64) == cm2.DEFAULT_CONFIG  # none listed: the limits decide
    assert not cm2.available(fake_rt(shapes=[_shape("float16", 64)]), hv.float16, 64, 64)
    assert not cm2.available(fake_rt(shapes=[_shape("float16", 128, 48)]), hv.float16, 64, 64)
    assert not cm2.available(fake_rt(shapes=[_shape("float16", 128)]), hv.bfloat16, 64, 64)
    auto.setattr(cm2, "FORCE_CONFIG", (128, 64, 256, 1))
    assert cm2.config(fake_rt(shapes=[_shape("float16", 256)]), hv.float16, 64, 64) == (128, 64, 256, 1)
    assert cm2.config(fake_rt(shapes=[_shape("float16", 128)]), hv.float16, 64, 64) is None
    auto.setattr(cm2, "FORCE_CONFIG", None)
    # no glslang library: never chosen
    auto.setattr(glslang_library, "available", lambda: False)
    assert not cm2.chosen(rt, hv.float16, 64, 64, [0, 0, 0])


def test_the_environment_overrides(auto):
    rt, off = fake_rt(), [0, 0, 0]
    auto.setenv(cm2.ENV, "1")
    assert not cm2.chosen(rt, hv.float16, 64, 64, off)
    auto.setenv(cm2.ENV, "2")
    assert cm2.chosen(rt, hv.float16, 64, 64, off)
    with pytest.raises(errors.HlxError, match="HLX_ATTENTION_COOPMAT=2 but"):
        cm2.chosen(fake_rt({"cooperative_matrix2": False}), hv.float16, 64, 64, off)
    with pytest.raises(errors.HlxError, match="HLX_ATTENTION_COOPMAT=2 but"):
        cm2.chosen(rt, hv.float16, 64, 64, [0, 2, 0])
    auto.setenv(cm2.ENV, "auto")
    assert cm2.chosen(rt, hv.float16, 64, 64, off)
    auto.setenv(cm2.ENV, "3")
    with pytest.raises(errors.HlxError, match="1 .cooperative-matrix-1., 2 .cooperative-matrix-2. or auto"):
        cm2.chosen(rt, hv.float16, 64, 64, off)


def _sdpa_through_the_coopmat_path(monkeypatch, rng):
    """sdpa with the cooperative-matrix path chosen on this device (it has none): the coopmat-1 launch
    is stood in for by a kernel writing 0.25, so which forward ran shows in the output."""
    calls = []

    def cm1_stand_in(rt, e, ev):
        calls.append("cm1")
        raise _Cm1Reached
    monkeypatch.setattr(ac, "usable", lambda rt, dtype, e, ev, p: p == 0)
    monkeypatch.setattr(ac, "config", cm1_stand_in)
    monkeypatch.setattr(cm2, "available", lambda rt, dtype, e, ev, backward=False: True)
    q = hv.tensor(rng.standard_normal((2, 3, 37, 64)).astype(np.float16))
    kv = hv.tensor(rng.standard_normal((2, 3, 45, 64)).astype(np.float16))
    with hv.no_grad():
        try:
            out = F.scaled_dot_product_attention(q, kv, kv, is_causal=True)
        except _Cm1Reached:
            out = None
    return out, calls


class _Cm1Reached(Exception):
    pass


def test_sdpa_takes_the_cm2_forward(auto, rng):
    """The choice reaches the launch: cm2's kernel (stood in for: it cannot run here) gets the tensors,
    push fields and grid, and what it writes is sdpa's answer."""
    seen, outs = {}, []
    rt = hv.default_runtime()
    real_run, real_forward = rt.run, cm2.forward

    def fake_run(kernel, tensors, *args, **kwargs):
        if kernel != "cm2 kernel":
            return real_run(kernel, tensors, *args, **kwargs)
        seen.update(tensors=sorted(tensors), fields=args[0], groups=args[1])
        hv.ops.elementwise.launch("CT(0.5)", [outs[0]], out=outs[0])

    def fake_kernel(rt, dtype, e, ev, has_mask, causal, L, S):
        seen.update(dtype=dtype.name, e=e, ev=ev, mask=has_mask, causal=causal, L=L, S=S)
        return "cm2 kernel", 32

    auto.setattr(rt, "run", fake_run)
    auto.setattr(cm2, "kernel", fake_kernel)
    auto.setattr(cm2, "forward", lambda q, k, v, mask, plan, out, lse: outs.append(out) or
                 real_forward(q, k, v, mask, plan, out, lse))
    out, calls = _sdpa_through_the_coopmat_path(auto, rng)
    assert not calls and out is not None and np.all(out.to(hv.float32).numpy() == 0.5)
    assert seen["dtype"] == "float16" and (seen["e"], seen["ev"], seen["L"], seen["S"]) == (64, 64, 37, 45)
    assert seen["causal"] and not seen["mask"]
    assert seen["tensors"] == ["K", "Lse", "O", "Q", "V"] and seen["groups"] == (2, 6, 1)
    assert seen["fields"]["N"] == 6 and abs(seen["fields"]["scale2"] - 1.4426950408889634 / 8) < 1e-12


def test_a_compile_failure_falls_back_to_coopmat1_once(auto, rng):
    tries = []

    def broken(*a):
        tries.append(a)
        raise errors.ShaderCompileError("no glslang library")
    auto.setattr(cm2, "kernel", broken)
    out, calls = _sdpa_through_the_coopmat_path(auto, rng)
    assert calls == ["cm1"] and len(tries) == 1 and cm2._failed["fwd"] and not cm2._failed["bwd"]
    out, calls = _sdpa_through_the_coopmat_path(auto, rng)
    assert calls == ["cm1"] and len(tries) == 1  # not tried again
    cm2._failed["fwd"] = False
    auto.setenv(cm2.ENV, "2")  # required: the failure is the caller's
    with pytest.raises(errors.ShaderCompileError, match="no glslang library"):
        _sdpa_through_the_coopmat_path(auto, rng)
    auto.setenv(cm2.ENV, "1")
    out, calls = _sdpa_through_the_coopmat_path(auto, rng)
    assert calls == ["cm1"] and len(tries) == 2


def test_this_device_runs_neither_coopmat_forward(rng):
    """Lavapipe: no cooperative matrices at all; sdpa takes the fused kernel, cm2 is not chosen."""
    rt = hv.default_runtime()
    if rt.device.enabled_features.get("cooperative_matrix2"):
        pytest.skip("this device has cooperative-matrix-2: benchmarks/check_attention_cm2.py covers it")
    assert not cm2.available(rt, hv.float16, 64, 64)
    q, k, v = (hv.tensor(rng.standard_normal((1, 2, 21, 64)).astype(np.float16)) for _ in range(3))
    rt.kernels.reset_usage()
    with hv.no_grad():
        F.scaled_dot_product_attention(q, k, v)
    names = {kern.name for kern in rt.kernels.used()}
    assert "attention/attention" in names and "attention/attention_cm2" not in names


def _bwd_defines(dtype, e, ev, cfg, mode, mask, causal, aligned):
    br, bt, threads = cfg
    return {"CT": "float", "OCT": "float", "E": e, "EV": ev, "BR": br, "BT": bt, "THREADS": threads, "MODE": mode,
            "HAS_MASK": int(mask), "CAUSAL": int(causal), "ALIGNED": int(aligned),
            "AT_BF16": int(dtype == "bfloat16"), **slot_defines("A", getattr(hv, dtype)),
            **slot_defines("O", getattr(hv, dtype))}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("e,ev", [(64, 64), (128, 128), (64, 128), (128, 64)])
def test_the_default_backward_compiles_for_every_flag(dtype, e, ev):
    for mode, specs in ((1, cm2.GRAD_Q), (2, cm2.GRAD_KV)):
        for mask in (False, True):
            for causal, aligned in ((False, False), (True, True), (True, False)):
                spirv = compile_file(specs[mask].path, _bwd_defines(dtype, e, ev, cm2.BWD_DEFAULT_CONFIG, mode, mask,
                                                                     causal, aligned), target_env="vulkan1.3")
                validate_spirv(spirv, "vulkan1.3")
                refl = parse_spirv(spirv)
                assert ("BFloat16CooperativeMatrixKHR" in refl.capabilities) == (dtype == "bfloat16")
                specs[mask].check(refl)


@pytest.mark.parametrize("e", [64, 128])
def test_every_swept_backward_variant_compiles(e):
    for i, cfg in enumerate(cm2.BWD_VARIANTS):
        for mode, specs in ((1, cm2.GRAD_Q), (2, cm2.GRAD_KV)):
            mask, causal = bool(i & 1), bool(i & 2)
            spirv = compile_file(specs[mask].path, _bwd_defines("float16", e, e, cfg, mode, mask, causal, i % 3 == 0),
                                 target_env="vulkan1.3")
            validate_spirv(spirv, "vulkan1.3")
            refl = parse_spirv(spirv)
            specs[mask].check(refl)
            assert refl.entry_point("main").local_size == (cfg[2], 1, 1)


def test_backward_choice(auto):
    rt, off = fake_rt(), [0, 0, 0, 8]
    assert cm2.chosen(rt, hv.float16, 64, 64, off, backward=True)
    assert not cm2.chosen(rt, hv.float16, 64, 64, [0, 0, 0, 3], backward=True)  # dO off 16 bytes
    auto.setattr(cm2, "BACKWARD", False)
    assert not cm2.chosen(rt, hv.float16, 64, 64, off, backward=True)  # auto: coopmat-1's backward
    assert cm2.chosen(rt, hv.float16, 64, 64, off)                      # the forward is another choice
    auto.setenv(cm2.ENV_BWD, "2")
    assert cm2.chosen(rt, hv.float16, 64, 64, off, backward=True)
    auto.setattr(cm2, "BACKWARD", True)
    auto.setenv(cm2.ENV_BWD, "1")
    assert not cm2.chosen(rt, hv.float16, 64, 64, off, backward=True)
    auto.setenv(cm2.ENV_BWD, "auto")
    # the backward's own tile: 256 threads by default, else the first variant that fits
    rt128 = fake_rt(shapes=[_shape("float16", 128)])
    assert cm2.bwd_config(fake_rt(), hv.float16, 64, 64) == cm2.BWD_DEFAULT_CONFIG
    assert cm2.bwd_config(rt128, hv.float16, 64, 64) == (64, 32, 128)
    auto.setattr(cm2, "FORCE_BWD_CONFIG", (64, 64, 256))
    assert not cm2.chosen(rt128, hv.float16, 64, 64, off, backward=True)
    auto.setattr(cm2, "FORCE_BWD_CONFIG", None)
    assert cm2.chosen(rt128, hv.float16, 64, 64, off, backward=True)
    cm2._failed["bwd"] = True
    assert not cm2.chosen(rt128, hv.float16, 64, 64, off, backward=True)


def test_sdpa_backward_takes_the_cm2_kernels(auto, rng):
    """Forward and backward through the stand-in cm2 kernels: the gradients are what they write."""
    outs = {}

    def fake_forward(q, k, v, mask, plan, out, lse):
        hv.ops.elementwise.launch("CT(0.5)", [out], out=out)
        hv.ops.elementwise.launch("CT(0.0)", [lse], out=lse)
        return True

    def fake_backward(q, k, v, g, mask, plan, lse, delta, dq, dk, dv):
        outs["bwd"] = (q.shape, g.shape, lse.shape, delta.shape, plan.causal)
        for t, value in ((dq, 1.0), (dk, 2.0), (dv, 3.0)):
            hv.ops.elementwise.launch(f"CT({value})", [t], out=t)
        return True

    auto.setattr(ac, "usable", lambda rt, dtype, e, ev, p: p == 0)
    auto.setattr(ac, "config", lambda rt, e, ev: pytest.fail("coopmat-1 forward"))
    auto.setattr(ac, "bwd_tile", lambda rt, e, ev: 32)  # the gate sdpa asks first (coopmat-1's tile fits)
    auto.setattr(cm2, "available", lambda rt, dtype, e, ev, backward=False: True)
    auto.setattr(cm2, "forward", fake_forward)
    auto.setattr(cm2, "backward", fake_backward)
    q = hv.tensor(rng.standard_normal((2, 3, 37, 64)).astype(np.float16), requires_grad=True)
    kv = hv.tensor(rng.standard_normal((2, 3, 45, 64)).astype(np.float16), requires_grad=True)
    out = F.scaled_dot_product_attention(q, kv, kv, is_causal=True)
    assert np.all(out.to(hv.float32).numpy() == 0.5)
    out.backward(hv.tensor(rng.standard_normal((2, 3, 37, 64)).astype(np.float16)))
    assert outs["bwd"] == ((2, 3, 37, 64), (2, 3, 37, 64), (2, 3, 37), (2, 3, 37), True)
    assert np.all(q.grad.to(hv.float32).numpy() == 1.0)
    assert np.all(kv.grad.to(hv.float32).numpy() == 5.0)  # k and v are one tensor: dK + dV


def test_a_backward_compile_failure_falls_back_to_coopmat1(auto, monkeypatch):
    tries = []

    def broken(*a):
        tries.append(a)
        raise errors.ShaderCompileError("broken")
    auto.setattr(cm2, "bwd_kernels", broken)
    plan = types.SimpleNamespace(E=64, EV=64, causal=False, L=10, S=10, N=1, scale=0.125)
    q = types.SimpleNamespace(runtime=fake_rt(), dtype=hv.float16)
    assert cm2.backward(q, q, q, q, None, plan, None, None, None, None, None) is False
    assert cm2._failed == {"fwd": False, "bwd": True}
    auto.setenv(cm2.ENV_BWD, "2")
    with pytest.raises(errors.ShaderCompileError, match="broken"):
        cm2.backward(q, q, q, q, None, plan, None, None, None, None, None)
