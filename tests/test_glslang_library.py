"""The glslang library path (cooperative-matrix-2 kernels): compile, includes, defines, errors,
caching, and what the loader makes of such a module on a device without the extension."""

import pytest

from hlx_vulkan import compiler, errors, glslang_library
from hlx_vulkan.vk.physical import raw_fields, raw_struct
from hlx_vulkan.vk.shader import ShaderModule
from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv

CM2 = """#version 450
#extension GL_EXT_shader_explicit_arithmetic_types : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#include "cm2_test_tile.glsl"
layout(local_size_x = 128) in;
layout(std430, binding = 0) readonly buffer A { float16_t a[]; };
layout(std430, binding = 1) writeonly buffer C { float c[]; };
void main() {
    tensorLayoutNV<2> t = createTensorLayoutNV(2);
    t = setTensorLayoutDimensionNV(t, N, N);
    coopmat<float16_t, gl_ScopeWorkgroup, TILE, 32, gl_MatrixUseA> ma;
    coopmat<float16_t, gl_ScopeWorkgroup, 32, TILE, gl_MatrixUseB> mb;
    coopmat<float, gl_ScopeWorkgroup, TILE, TILE, gl_MatrixUseAccumulator> acc =
        coopmat<float, gl_ScopeWorkgroup, TILE, TILE, gl_MatrixUseAccumulator>(0.0);
    coopMatLoadTensorNV(ma, a, 0, sliceTensorLayoutNV(t, 0, TILE, 0, 32));
    coopMatLoadTensorNV(mb, a, 0, sliceTensorLayoutNV(t, 0, 32, 0, TILE));
    acc = coopMatMulAdd(ma, mb, acc);
    coopMatStoreTensorNV(acc, c, 0, sliceTensorLayoutNV(t, 0, TILE, 0, TILE));
}
"""


@pytest.fixture()
def include_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HLX_CACHE_DIR", str(tmp_path / "cache"))
    compiler._memory.clear()
    (tmp_path / "cm2_test_tile.glsl").write_text("#define TILE 64\n")
    return tmp_path


def test_the_library_is_installed():
    # The test extra installs slangpy: this path must be exercised wherever the suite runs.
    assert glslang_library.available(), "slangpy (glslang 16 as a library) is not installed"


def test_cm2_source_compiles_through_the_library(include_dir, monkeypatch):
    runs = []
    real = glslang_library.compile_source
    monkeypatch.setattr(glslang_library, "compile_source", lambda *a: runs.append(a) or real(*a))
    monkeypatch.setattr(compiler, "_compile", lambda *a: pytest.fail("glslangValidator must not see a cm2 source"))
    spirv = compiler.compile_glsl(CM2, {"N": 256}, include_dirs=[include_dir], target_env="vulkan1.3")
    assert len(runs) == 1 and "#define N 256" in runs[0][0] and "#define TILE 64" in runs[0][0]
    validate_spirv(spirv, "vulkan1.3")
    refl = parse_spirv(spirv)
    assert {"CooperativeMatrixTensorAddressingNV", "TensorAddressingNV"} <= set(refl.capabilities)
    assert "SPV_NV_cooperative_matrix2" in refl.extensions
    assert refl.entry_point("main").local_size == (128, 1, 1)
    # a cache hit: the same inputs do not compile again, other defines do
    assert compiler.compile_glsl(CM2, {"N": 256}, include_dirs=[include_dir], target_env="vulkan1.3") == spirv
    assert len(runs) == 1
    compiler.compile_glsl(CM2, {"N": 128}, include_dirs=[include_dir], target_env="vulkan1.3")
    assert len(runs) == 2


def test_errors_name_the_file_and_line(include_dir):
    bad = CM2.replace("acc = coopMatMulAdd(ma, mb, acc);", "acc = coopMatMulAdd(ma, mb, nope);")
    line = bad.splitlines().index("    acc = coopMatMulAdd(ma, mb, nope);") + 1
    with pytest.raises(errors.ShaderCompileError, match=rf"shader:{line}: 'nope' : undeclared"):
        compiler.compile_glsl(bad, {"N": 256}, include_dirs=[include_dir], target_env="vulkan1.3")
    (include_dir / "cm2_test_tile.glsl").write_text("#define TILE 64\n#error broken include\n")
    with pytest.raises(errors.ShaderCompileError, match=r"cm2_test_tile.glsl:2: '#error' : broken include"):
        compiler.compile_glsl(CM2, {"N": 256}, include_dirs=[include_dir], target_env="vulkan1.3")
    with pytest.raises(errors.ShaderCompileError, match='cannot find #include "cm2_test_tile.glsl"'):
        compiler.compile_glsl(CM2, {"N": 256}, target_env="vulkan1.3")


def test_a_missing_library_is_a_clear_error(include_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(glslang_library.ENV_LIBRARY, str(tmp_path / "absent.so"))
    for fn in (glslang_library.library_path, glslang_library.identity, glslang_library._entry_point):
        fn.cache_clear()
    try:
        assert not glslang_library.available()
        with pytest.raises(errors.ShaderCompileError, match="needs glslang 15.1 or newer: pip install slangpy"):
            compiler.compile_glsl(CM2, {"N": 64}, include_dirs=[include_dir], target_env="vulkan1.3")
    finally:
        monkeypatch.undo()
        for fn in (glslang_library.library_path, glslang_library.identity, glslang_library._entry_point):
            fn.cache_clear()


def test_a_device_without_cm2_refuses_the_module_clearly(ctx, include_dir):
    spirv = compiler.compile_glsl(CM2, {"N": 64}, include_dirs=[include_dir], target_env="vulkan1.3")
    if ctx.device.enabled_features.get("cooperative_matrix2"):
        ShaderModule(ctx.device, spirv).destroy()  # a device with the extension takes it
    else:
        with pytest.raises(errors.InvalidShaderError, match="cooperative_matrix2"):
            ShaderModule(ctx.device, spirv)


def test_raw_struct_layout():
    buf = raw_struct(1000593000, [1, 0, 1])
    assert buf[0] == 1000593000 and raw_fields(buf, 3) == [1, 0, 1]
    assert len(buf) == 8  # sType, padding, pNext (8 bytes), three fields, padding to 8 bytes
    inner = raw_struct(7, [])
    outer = raw_struct(9, [5], pNext=inner)
    import vulkan as vkb
    assert vkb.ffi.cast("void **", outer + 2)[0] == vkb.ffi.cast("void *", inner)
    # chained after one of the binding's structs (values, not pointers), and chained before one
    v12 = vkb.VkPhysicalDeviceVulkan12Features()
    mid = raw_struct(11, [0, 0], pNext=v12)
    assert vkb.ffi.cast("void **", mid + 2)[0] == vkb.ffi.cast("void *", vkb.ffi.addressof(v12))
    head = vkb.VkPhysicalDeviceFeatures2(pNext=mid)
    assert vkb.ffi.cast("uint32_t *", head.pNext)[0] == 11


def test_workgroup_scope_matrices_count_per_invocation(include_dir):
    # A 128x128 float32 accumulator is 64 KiB for the whole workgroup, not for each invocation.
    (include_dir / "cm2_test_tile.glsl").write_text("#define TILE 128\n")
    spirv = compiler.compile_glsl(CM2, {"N": 256}, include_dirs=[include_dir], target_env="vulkan1.3")
    private = parse_spirv(spirv).storage_bytes({})["private"]
    assert 128 * 128 * 4 // 32 <= private < 64 * 1024
