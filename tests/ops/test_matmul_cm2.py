"""The cooperative-matrix-2 GEMM (ops/matmul/matmul_cm2.comp): it runs only where the device has
VK_NV_cooperative_matrix2 (not lavapipe; benchmarks/check_gemm_cm2.py checks it there), so here
every shipped variant is compiled and validated, and the selection is driven through a stand-in
runtime describing such a device: tile choice, forcing, strict mode, split-K, fallbacks."""

from types import SimpleNamespace

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.compiler import compile_file
from hlx_vulkan.ops import elementwise as ew
from hlx_vulkan.ops import matmul as mm
from hlx_vulkan.runtime.kernels import slot_defines
from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv
from opcheck import check, f64, randn

FLAG_SETS = [{}, {"A_VEC": 1, "B_VEC": 1}, {"A_COLS": 1, "B_COLS": 1, "A_VEC": 1, "B_VEC": 1, "SPLIT": 1},
             {"A_COLS": 1, "SPLIT": 1}, {"B_COLS": 1}]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("tile", list(mm.CM2_TILES))
def test_every_cm2_variant_is_valid_spirv(dtype, tile):
    rt = hv.default_runtime()
    bm, bn, bk, threads, group_m = mm.CM2_TILES[tile]
    assert 64 % bk == 0 and all(mm.CHUNK_K[d] % 64 == 0 for d in ("float16", "bfloat16"))  # whole steps a chunk
    for flags in FLAG_SETS:
        dt = getattr(hv, dtype)
        defines = {**rt.kernels.fc_defines, **slot_defines("A", dt), **slot_defines("B", dt),
                   **slot_defines("O", hv.float32 if flags.get("SPLIT") else dt),
                   "BM": bm, "BN": bn, "BK": bk, "THREADS": threads, "GROUP_M": group_m,
                   "A_COLS": 0, "B_COLS": 0, "A_VEC": 0, "B_VEC": 0, "SPLIT": 0, **flags}
        if dtype == "bfloat16":
            defines["HLX_CM2_BF16"] = 1
        spirv = compile_file(mm.CM2.path, defines, target_env="vulkan1.3")
        validate_spirv(spirv, "vulkan1.3")
        refl = parse_spirv(spirv)
        mm.CM2.check(refl)
        assert refl.entry_point("main").local_size == (threads, 1, 1)
        assert {"CooperativeMatrixKHR", "CooperativeMatrixTensorAddressingNV"} <= set(refl.capabilities)
        assert ("BFloat16CooperativeMatrixKHR" in refl.capabilities) == (dtype == "bfloat16")


def test_no_cm2_without_the_extension():
    rt = hv.default_runtime()
    assert not mm.cm2_available(rt, hv.float32)
    if not rt.device.enabled_features.get("cooperative_matrix2"):
        assert not mm.cm2_available(rt, hv.float16) and not mm.cm2_available(rt, hv.bfloat16)
        # a forced cm2 tile falls back to what the device has
        rng = np.random.default_rng(3)
        a, b = randn(rng, (19, 40), "float16"), randn(rng, (40, 23), "float16")
        mm.FORCE_TILE = "cm2_64x64"
        try:
            rt.kernels.reset_usage()
            got = hv.tensor(a) @ hv.tensor(b)
            check(got.numpy(), f64(a) @ f64(b), "float16", 1e-2)
            assert "matmul/matmul_cm2" not in {k.name for k in rt.kernels.used()}
        finally:
            mm.FORCE_TILE = None


def _shape(dtype, threads, gran=16):
    return {"M_granularity": gran, "N_granularity": gran, "K_granularity": gran, "a": dtype, "b": dtype,
            "c": "float32", "result": "float32", "saturating": 0, "scope": 2, "workgroup_invocations": threads}


class _Kernels:
    """Records what the planner asks for; ``fail``: specs whose build raises."""

    def __init__(self, fail=()):
        self.asked, self.fail = [], fail

    def get(self, spec, defines=None, dtypes=None, workgroup=(256, 1, 1), target_env=None):
        self.asked.append(spec)
        if spec in self.fail:
            raise errors.ShaderCompileError("glslang failed (stand-in)")
        return SimpleNamespace(spec=spec, defines=dict(defines or {}), dtypes=dtypes, workgroup=workgroup)


def _device(threads=(128, 256), max_wg=256, fail=()):
    """A stand-in runtime of a device with cooperative matrices 1 and 2 (an H100's, as far as matmul looks)."""
    shapes = [_shape(d, t) for d in ("float16", "bfloat16") for t in threads]
    coop = [{"M": 16, "N": 16, "K": 16, "a": d, "b": d, "c": "float32", "result": "float32", "scope": 3}
            for d in ("float16", "bfloat16")]
    physical = SimpleNamespace(limits={"subgroup_size": 32, "cooperative_matrix2_workgroup_scope_max_workgroup_size":
                                       max_wg, "max_compute_shared_memory_size": 49152},
                               cooperative_matrix_shapes=coop, cooperative_matrix2_shapes=shapes)
    feats = {"cooperative_matrix": True, "bfloat16_cooperative_matrix": True, "cooperative_matrix2": True}
    return SimpleNamespace(device=SimpleNamespace(enabled_features=feats, physical=SimpleNamespace(type="discrete")),
                           ctx=SimpleNamespace(physical_device=physical), kernels=_Kernels(fail),
                           max_groups=(65535, 65535, 65535))


def _plan(rt, M, N, K, dtype=hv.float16, batch=1, a_strides=None, b_strides=None, offsets=(0, 0, 0)):
    a3 = SimpleNamespace(strides=a_strides or (K, 1))
    b3 = SimpleNamespace(strides=b_strides or (N, 1))
    return mm._plan(rt, dtype, M, N, K, batch, a3, b3, M * K, K * N, list(offsets))


@pytest.fixture()
def clean(monkeypatch):
    monkeypatch.setattr(mm, "CM2_FAILED", {})
    monkeypatch.setattr(mm, "FORCE_TILE", None)
    monkeypatch.setattr(mm, "CM2_AUTO", True)  # the automatic choice as $HLX_MATMUL_CM2=1 makes it
    monkeypatch.setattr(mm.glslang_library, "available", lambda: True)


def test_the_default_choice_is_coopmat1_and_a_forced_cm2_tile_still_runs(clean, monkeypatch):
    monkeypatch.setattr(mm, "CM2_AUTO", False)
    rt = _device()
    for M, N in ((512, 1024), (4096, 4096)):
        assert _plan(rt, M, N, 1024)[0].spec is mm.COOPMAT
    monkeypatch.setattr(mm, "FORCE_TILE", "cm2_128x128")
    kernel = _plan(rt, 4096, 4096, 1024)[0]
    assert kernel.spec is mm.CM2 and (kernel.defines["BM"], kernel.defines["BN"]) == (128, 128)


def test_cm2_tile_follows_the_problem_size(clean):
    rt = _device()
    for (M, N), tile in [((512, 1024), (64, 64)), ((1024, 1024), (64, 64)), ((2048, 2048), (128, 128)),
                         ((4096, 4096), (128, 256)), ((8192, 8192), (128, 256))]:
        kernel, groups, kc, nsplit, reduce_kernel = _plan(rt, M, N, 1024)
        assert kernel.spec is mm.CM2 and (kernel.defines["BM"], kernel.defines["BN"]) == tile, (M, N)
        assert groups == (-(-N // tile[1]), -(-M // tile[0]), 1) and nsplit == 1 and reduce_kernel is None
        assert kernel.workgroup == (kernel.defines["THREADS"], 1, 1) and kernel.dtypes["O"] is hv.float16


def test_cm2_split_k_keeps_the_chunk_order(clean):
    rt = _device()
    K = 3 * mm.CHUNK_K["float16"] + 5
    kernel, groups, kc, nsplit, reduce_kernel = _plan(rt, 64, 64, K, batch=3)
    assert kernel.spec is mm.CM2 and kernel.defines["SPLIT"] == 1 and kernel.dtypes["O"] is hv.float32
    assert (kc, nsplit) == (mm.chunk_length(K, "float16"), -(-K // mm.chunk_length(K, "float16")))
    assert groups[2] == 3 * nsplit and reduce_kernel.spec is mm.SPLITK


def test_cm2_layouts_and_dtypes(clean):
    rt = _device()
    M, N, K = 96, 80, 48
    k = _plan(rt, M, N, K, a_strides=(1, M), b_strides=(1, K))[0]  # both transposed views
    assert k.spec is mm.CM2 and (k.defines["A_COLS"], k.defines["B_COLS"]) == (1, 1)
    assert (k.defines["A_VEC"], k.defines["B_VEC"]) == (1, 1)
    k = _plan(rt, M, N, K, offsets=(3, 0, 0))[0]
    assert (k.defines["A_VEC"], k.defines["B_VEC"]) == (0, 1)
    k = _plan(rt, M, N, K, dtype=hv.bfloat16)[0]
    assert k.defines.get("HLX_CM2_BF16") == 1 and "HLX_COOPMAT_BF16" not in k.defines
    assert "HLX_CM2_BF16" not in _plan(rt, M, N, K)[0].defines
    # no unit stride (matmul copies such an operand first): coopmat-1, which takes any strides
    assert _plan(rt, M, N, K, a_strides=(2 * K, 2))[0].spec is mm.COOPMAT
    assert _plan(rt, M, N, K, dtype=hv.float32)[0].spec is not mm.CM2


def test_cm2_forcing_and_strict_mode(clean, monkeypatch):
    rt = _device(threads=(128,))  # 256-thread tiles are not listed
    assert _plan(rt, 4096, 4096, 512)[0].defines["THREADS"] == 128  # auto: only listed tiles
    monkeypatch.setattr(mm, "FORCE_TILE", "cm2_128x256")  # forced: taken whether listed or not
    assert _plan(rt, 64, 64, 64)[0].defines["BN"] == 256
    monkeypatch.setattr(mm, "FORCE_TILE", "coop_large")
    assert _plan(rt, 4096, 4096, 512)[0].spec is mm.COOPMAT
    monkeypatch.setattr(mm, "FORCE_TILE", "small")
    assert _plan(rt, 4096, 4096, 512)[0].spec is mm.TILED
    monkeypatch.setattr(mm, "FORCE_TILE", None)
    monkeypatch.setattr(mm, "is_strict", lambda: True)
    assert _plan(rt, 4096, 4096, 512)[0].spec is mm.TILED  # strict: no cooperative matrices at all


def test_cm2_needs_a_listed_shape_the_library_and_the_extension(clean, monkeypatch):
    assert _plan(_device(threads=(64,)), 512, 512, 512)[0].spec is mm.COOPMAT
    assert _plan(_device(max_wg=64), 512, 512, 512)[0].spec is mm.COOPMAT
    rt = _device()
    rt.device.enabled_features["cooperative_matrix2"] = False
    assert _plan(rt, 512, 512, 512)[0].spec is mm.COOPMAT
    monkeypatch.setattr(mm.glslang_library, "available", lambda: False)
    assert not mm.cm2_available(_device(), hv.float16)
    assert _plan(_device(), 512, 512, 512)[0].spec is mm.COOPMAT


def test_a_failed_cm2_build_falls_back_to_coopmat1(clean, monkeypatch):
    rt = _device(fail=(mm.CM2,))
    kernel = _plan(rt, 512, 1024, 1024)[0]
    assert kernel.spec is mm.COOPMAT and rt.kernels.asked[0] is mm.CM2
    assert "float16" in mm.CM2_FAILED and "ShaderCompileError" in mm.CM2_FAILED["float16"]
    assert not mm.cm2_available(rt, hv.float16) and mm.cm2_available(rt, hv.bfloat16)
    rt.kernels.asked.clear()
    assert _plan(rt, 512, 1024, 1024)[0].spec is mm.COOPMAT and mm.CM2 not in rt.kernels.asked  # not tried again
    monkeypatch.setattr(mm, "FORCE_TILE", "cm2_64x64")  # a forced tile's failure is the caller's to see
    with pytest.raises(errors.ShaderCompileError):
        _plan(rt, 512, 1024, 1024, dtype=hv.bfloat16)


def test_operands_without_a_unit_stride_are_copied_for_cm2(monkeypatch, rng):
    """matmul_cm2.comp's tensor layouts take a unit stride in one dimension: other operands are copied
    (here on whatever kernel the device runs, with matmul told that cm2 is wanted)."""
    monkeypatch.setattr(mm, "_cm2_wanted", lambda rt, dtype: True)
    copies = []
    real = ew.copy
    monkeypatch.setattr(ew, "copy", lambda t, *a, **k: copies.append(t.strides) or real(t, *a, **k))
    a = randn(rng, (2, 21, 70), "float16")
    b = randn(rng, (35, 17), "float16")
    ha = hv.tensor(a)[..., ::2]  # strides (1470, 70, 2): no unit stride
    got = ha @ hv.tensor(b)
    check(got.numpy(), f64(a[..., ::2]) @ f64(b), "float16", 1e-2)
    assert copies == [(21 * 70, 70, 2)]
    copies.clear()
    hv.tensor(a)[..., :35] @ hv.tensor(b)  # a unit stride: read in place
    assert copies == []
