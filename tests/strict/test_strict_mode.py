"""Strict mode (hlx_vulkan/strict_mode.py): the switch, the compiler pass that enforces it, the
refusal of a device lacking a feature (simulated), fixed orders whatever the kernel, ops and
their gradients against float64 / torch / finite differences, the same bits in two processes,
and the default mode left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.compiler import compile_glsl
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import matmul as mm
from hlx_vulkan.ops.strict_expr import strict_expr
from hlx_vulkan.strict_mode import check_device, is_strict
from hlx_vulkan.vk.spirv import validate_spirv
from conftest import assert_clean_exit, run_python

_HEAD = """#version 450
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 1) in;
layout(std430, binding = 0) buffer O { float o[]; };
"""


def _words(spirv: bytes):
    w = list(memoryview(spirv).cast("I"))
    pos = 5
    while pos < len(w):
        n = w[pos] >> 16
        yield w[pos] & 0xFFFF, w[pos:pos + n]
        pos += n


# --- the switch --------------------------------------------------------------------------------

def test_set_strict_returns_the_previous_mode_and_the_context_restores_it():
    assert not is_strict()
    assert hv.set_strict(True) is False
    assert hv.set_strict(False) is True
    with pytest.raises(KeyError):
        with hv.strict():
            assert hv.is_strict()
            raise KeyError("inside")
    assert not hv.is_strict()
    with hv.strict():
        with hv.strict(False):
            assert not hv.is_strict()
        assert hv.is_strict()


def test_environment_variable_turns_strict_mode_on_and_two_processes_give_the_same_bits():
    code = ("import hlx_vulkan as hv; from hlx_vulkan.nn import functional as F; print(hv.is_strict()); "
            "hv.manual_seed(5); x = hv.randn(33, 47) * 4; print(F.softmax(x, -1).digest(), hv.tanh(x).digest())")
    proc = run_python(["-c", code], env={"HLX_STRICT": "1"})
    assert_clean_exit(proc)
    flag, digests = proc.stdout.split("\n", 1)
    assert flag == "True"
    with hv.strict():
        hv.manual_seed(5)
        x = hv.randn(33, 47) * 4
        here = f"{F.softmax(x, -1).digest()} {hv.tanh(x).digest()}"
    assert digests.strip() == here


# --- the compiler pass -----------------------------------------------------------------------------

@pytest.mark.parametrize("body, named", [
    ("o[0] = o[1] / o[2];", "OpFDiv"), ("o[0] = exp(o[1]);", "Exp"), ("o[0] = sqrt(o[1]);", "Sqrt"),
    ("o[0] = fma(o[1], o[2], o[3]);", "Fma"), ("o[0] = dot(vec2(o[1], o[2]), vec2(o[3], o[4]));", "OpDot"),
    ("o[0] = mod(o[1], o[2]);", "OpFMod"),
])
def test_a_kernel_with_an_instruction_drivers_round_their_own_way_is_refused(body, named):
    source = _HEAD + "void main() { " + body + " }\n"
    compile_glsl(source)  # fine in the default mode
    with pytest.raises(errors.StrictModeError, match=named):
        compile_glsl(source, {"HLX_STRICT": 1})


def test_subgroup_arithmetic_is_refused():
    source = _HEAD.replace("layout(local", "#extension GL_KHR_shader_subgroup_arithmetic : require\nlayout(local") + \
        "void main() { o[0] = subgroupAdd(o[1]); }\n"
    with pytest.raises(errors.StrictModeError, match="subgroup"):
        compile_glsl(source, {"HLX_STRICT": 1})


def test_the_pass_marks_every_float_op_no_contraction_and_flushes_each_result():
    source = _HEAD + '#include "float_controls.glsl"\n' + \
        "void main() { vec2 v = vec2(o[4], o[5]) * o[6]; o[0] = HLX_DIV(o[1], o[2]) + exp(o[3]) * v.y - sin(v.x); }\n"
    spirv = compile_glsl(source, {"HLX_STRICT": 1})
    validate_spirv(spirv)
    arith = [i[2] for op, i in _words(spirv) if op in (129, 131, 133, 142)]  # OpFAdd, OpFSub, OpFMul, OpVectorTimesScalar
    assert 142 in {op for op, _ in _words(spirv)}
    decorated = {i[1] for op, i in _words(spirv) if op == 71 and i[2] == 42}  # NoContraction
    assert len(arith) > 50 and set(arith) <= decorated
    selects = [i for op, i in _words(spirv) if op == 169]  # OpSelect: one flush per result and per load
    assert len(selects) >= len(arith)
    from hlx_vulkan.strict_spirv import EXACT_GLSL
    assert 136 not in {op for op, _ in _words(spirv)}  # no OpFDiv
    assert {i[4] for op, i in _words(spirv) if op == 12} <= set(EXACT_GLSL)  # floor, abs, clamp: exact ones only
    default = compile_glsl(source)
    assert 136 in {op for op, _ in _words(default)}  # the default mode keeps the device's division


def test_strict_expression_rewrites_each_division():
    assert strict_expr("y * CT(0.5) / x") == "HLX_DIV((y * CT(0.5)), x)"
    assert strict_expr("a / b / c") == "HLX_DIV(HLX_DIV(a, b), c)"
    assert strict_expr("x ? -a / b : c[1] / f(d, e)") == "(x ? HLX_DIV((-a), b) : HLX_DIV(c[1], f(d, e)))"
    assert strict_expr("x + y") == "x + y"
    with pytest.raises(ValueError):
        strict_expr("x / (y")


# --- device features ------------------------------------------------------------------------------

def test_a_device_without_rte_rounding_is_refused_naming_the_feature():
    from hlx_vulkan.ops.pointwise import SPECS
    from hlx_vulkan.runtime.kernels import KernelCache
    rt = hv.default_runtime()
    fc = dict(rt.ctx.physical_device.float_controls, rounding_mode_rte_float32=False)
    cache = KernelCache(rt.device, fc, rt.kernels.target_env)
    defines = {"NARGS": 1, "FLAT": 1, "CT": "float", "OCT": "float", "EXPR": "x * CT(3)", "SK": 0}
    try:
        with hv.strict(), pytest.raises(errors.StrictModeError, match="shaderRoundingModeRTEFloat32"):
            cache.get(SPECS[1], defines, {"O": hv.float32, "A": hv.float32})
        cache.get(SPECS[1], defines, {"O": hv.float32, "A": hv.float32})  # the default mode runs
    finally:
        cache.destroy()


def test_float16_tensors_need_16_bit_storage_and_rte_for_float16():
    fc = {"rounding_mode_rte_float32": True, "signed_zero_inf_nan_preserve_float32": True,
          "rounding_mode_rte_float16": True}
    check_device("dev", fc, {"storage_buffer_16bit": True}, {"float32"})
    check_device("dev", fc, {"storage_buffer_16bit": True}, {"float16"})
    with pytest.raises(errors.StrictModeError, match="storageBuffer16BitAccess"):
        check_device("dev", fc, {}, {"float16", "float32"})
    with pytest.raises(errors.StrictModeError, match="shaderRoundingModeRTEFloat16"):
        check_device("dev", dict(fc, rounding_mode_rte_float16=False), {"storage_buffer_16bit": True}, {"float16"})
    with pytest.raises(errors.StrictModeError, match="shaderSignedZeroInfNanPreserveFloat32"):
        check_device("dev", dict(fc, signed_zero_inf_nan_preserve_float32=False), {}, {"float32"})


def test_float16_arithmetic_has_no_strict_path_and_is_refused():
    x = hv.tensor(np.linspace(-2, 2, 37, dtype=np.float16))
    previous = hv.set_float16_arithmetic(True)
    try:
        with hv.strict(), pytest.raises(errors.StrictModeError, match="float16 arithmetic"):
            hv.exp(x)
    finally:
        hv.set_float16_arithmetic(previous)
    with hv.strict():  # float16 storage with float32 arithmetic is strict
        got = (hv.exp(x) / 3).numpy()
    want = (np.exp(x.numpy().astype(np.float64)) / 3).astype(np.float16)
    assert np.abs(got.astype(np.float64) - want.astype(np.float64)).max() <= 2 ** -10 * np.abs(want).max()


def test_outputs_are_fully_written_over_poison():
    from hlx_vulkan.ops.pointwise import launch
    rng = np.random.default_rng(21)
    a = rng.standard_normal((33, 17)).astype(np.float32)
    b = rng.standard_normal((17, 65)).astype(np.float32)
    with hv.strict():
        out = hv.full((33, 65), np.nan)
        hv.matmul(hv.tensor(a), hv.tensor(b), out=out)
        ew = hv.full((33, 17), np.nan)
        launch("exp(x) / (y * y + CT(1))", [hv.tensor(a), hv.tensor(a[::-1].copy())], out=ew)
        got, got_ew = out.numpy(), ew.numpy()
    assert not np.isnan(got).any() and not np.isnan(got_ew).any()
    assert np.allclose(got, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    a64 = a.astype(np.float64)
    assert np.allclose(got_ew, np.exp(a64) / (a64[::-1] ** 2 + 1), rtol=4e-7)


# --- fixed orders ------------------------------------------------------------------------------

@pytest.mark.parametrize("K", [45, 700])
def test_matmul_gives_the_same_bits_with_every_kernel_and_stays_within_its_bound(K, monkeypatch):
    rng = np.random.default_rng(K)
    a = rng.standard_normal((37, K)).astype(np.float32)
    b = rng.standard_normal((K, 29)).astype(np.float32)
    monkeypatch.setattr(mm, "CHUNK_K", {**mm.CHUNK_K, "float32": 64})  # several chunks: split-K on the tiled kernel
    results = {}
    with hv.strict():
        for tile in [None, *mm.TILES]:
            monkeypatch.setattr(mm, "FORCE_TILE", tile)
            results[tile] = (hv.tensor(a) @ hv.tensor(b)).numpy()
    for tile, r in results.items():
        np.testing.assert_array_equal(r, results[None], err_msg=f"tile {tile} against the default choice")
    want = a.astype(np.float64) @ b.astype(np.float64)
    bound = K * 2.0 ** -24 * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))
    assert np.all(np.abs(results[None] - want) <= bound)


@pytest.mark.parametrize("n", [1, 37, 5003, 100_001])
def test_sum_and_softmax_against_float64(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 10
    with hv.strict():
        t = hv.tensor(x)
        s = t.sum().item()
        sm = F.softmax(t.reshape(1, n), -1).numpy()[0]
        lsm = F.log_softmax(t.reshape(1, n), -1).numpy()[0]
    x64 = x.astype(np.float64)
    assert abs(s - x64.sum()) <= n * 2.0 ** -24 * np.abs(x64).sum()
    e = np.exp(x64 - x64.max())
    assert np.allclose(sm, e / e.sum(), rtol=1e-5, atol=1e-30)
    assert np.allclose(lsm, x64 - x64.max() - np.log(e.sum()), rtol=1e-6, atol=4e-6)


# --- gradients ------------------------------------------------------------------------------

def _loss(mod, x, w, y):
    h = mod.tanh(x @ w) * mod.sigmoid(x @ w) / (1 + (x @ w) ** 2)
    return h.sum() + mod.sqrt((x * x).sum() + 1) + (mod.exp(-x.abs()) * mod.log(x.abs() + 1)).mean()


def test_gradients_against_torch_in_float64_and_finite_differences():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 13)).astype(np.float32)
    w = (rng.standard_normal((13, 5)) * 0.5).astype(np.float32)
    y = rng.integers(0, 5, 7).astype(np.int32)
    with hv.strict():
        hx, hw = hv.tensor(x).requires_grad_(), hv.tensor(w).requires_grad_()
        loss = _loss(hv, hx, hw, y) + F.cross_entropy(hx @ hw, hv.tensor(y))
        loss.backward()
        gx, gw = hx.grad.numpy(), hw.grad.numpy()

        def value(xv):
            return float((_loss(hv, hv.tensor(xv), hv.tensor(w), y) + F.cross_entropy(hv.tensor(xv) @ hv.tensor(w),
                                                                                  hv.tensor(y))).item())
        eps, i, j = 1e-2, 3, 8
        xp, xm = x.copy(), x.copy()
        xp[i, j] += eps
        xm[i, j] -= eps
        fd = (value(xp) - value(xm)) / (2 * eps)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    tl = _loss(torch, tx, tw, y) + torch.nn.functional.cross_entropy(tx @ tw, torch.tensor(y, dtype=torch.long))
    tl.backward()
    assert abs(loss.item() - tl.item()) <= 1e-5 * abs(tl.item())
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert abs(fd - tx.grad.numpy()[i, j]) <= 2e-3 * max(1.0, abs(fd))


# --- the default mode -------------------------------------------------------------------------

def test_the_default_mode_is_unchanged_by_strict_runs():
    hv.manual_seed(8)
    x = hv.randn(19, 23)
    before = (F.softmax(x, -1).digest(), (x / 3).digest(), hv.exp(x).digest())
    with hv.strict():
        strict = (F.softmax(x, -1).digest(), (x / 3).digest(), hv.exp(x).digest())
    after = (F.softmax(x, -1).digest(), (x / 3).digest(), hv.exp(x).digest())
    assert before == after
    assert strict != before  # a different kernel ran (softmax, exp differ in the last bits here)


def test_a_graph_replays_only_in_the_mode_it_was_captured_in_and_jit_keeps_one_per_mode():
    x = hv.tensor(np.linspace(-3, 3, 41, dtype=np.float32))
    with hv.capture() as graph:
        y = hv.exp(x) / 3
    try:
        with hv.strict(), pytest.raises(errors.StrictModeError, match="captured in the default mode"):
            graph.replay()
        graph.replay()
    finally:
        graph.destroy()
    fn = hv.jit(lambda t: hv.exp(t) / 3, warmup=0)
    default = fn(x).numpy().copy()
    with hv.strict():
        strict = fn(x).numpy().copy()
        with hv.capture() as g2:
            z = hv.exp(x) / 3
        g2.replay()
        np.testing.assert_array_equal(z.numpy(), strict)
        g2.destroy()
    np.testing.assert_array_equal(default, y.numpy())
    assert len(fn.graphs) == 2
    fn.reset()
