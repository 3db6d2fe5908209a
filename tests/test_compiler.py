import subprocess

import pytest

from hlx_vulkan import compiler, errors
from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv

SRC = """
#version 450
layout(local_size_x = 32) in;
layout(std430, binding = 0) buffer B { float b[]; };
void main() { b[gl_GlobalInvocationID.x] *= SCALE; }
"""


@pytest.fixture()
def counted(monkeypatch, tmp_path):
    """Compile into a fresh cache and count compiler runs."""
    monkeypatch.setenv("HLX_CACHE_DIR", str(tmp_path))
    compiler._memory.clear()
    calls = []
    real = compiler._compile

    def spy(*args):
        calls.append(args)
        return real(*args)
    monkeypatch.setattr(compiler, "_compile", spy)
    return calls


def test_compiles_valid_spirv(counted):
    spirv = compiler.compile_glsl(SRC, {"SCALE": 2.0})
    assert spirv[:4] == compiler.SPIRV_MAGIC and len(spirv) % 4 == 0
    validate_spirv(spirv, "vulkan1.2")
    assert parse_spirv(spirv).entry_point("main").local_size == (32, 1, 1)
    assert compiler.compiler_version().startswith("glslang 1")


def test_cache_hits_in_memory_and_on_disk(counted, tmp_path):
    a = compiler.compile_glsl(SRC, {"SCALE": 2.0})
    b = compiler.compile_glsl(SRC, {"SCALE": 2.0})
    assert a == b and len(counted) == 1
    compiler._memory.clear()
    assert compiler.compile_glsl(SRC, {"SCALE": 2.0}) == a and len(counted) == 1
    assert len(list((tmp_path / "spirv").glob("*.spv"))) == 1


def test_changes_to_source_defines_or_includes_recompile(counted, tmp_path):
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "scale.glsl").write_text("#define SCALE 3.0\n")
    src = SRC.replace("#version 450", '#version 450\n#extension GL_GOOGLE_include_directive : require\n#include "scale.glsl"')
    first = compiler.compile_glsl(src, include_dirs=[inc])
    compiler.compile_glsl(src, include_dirs=[inc])
    assert len(counted) == 1
    (inc / "scale.glsl").write_text("#define SCALE 4.0\n")
    assert compiler.compile_glsl(src, include_dirs=[inc]) != first and len(counted) == 2
    compiler.compile_glsl(SRC, {"SCALE": 2.0})
    compiler.compile_glsl(SRC, {"SCALE": 5.0})
    compiler.compile_glsl(SRC + "\n// changed\n", {"SCALE": 5.0})
    assert len(counted) == 5


def test_corrupt_cache_entry_is_recompiled(counted, tmp_path):
    good = compiler.compile_glsl(SRC, {"SCALE": 1.5})
    (entry,) = (tmp_path / "spirv").glob("*.spv")
    entry.write_bytes(b"garbage")
    compiler._memory.clear()
    assert compiler.compile_glsl(SRC, {"SCALE": 1.5}) == good
    assert len(counted) == 2 and entry.read_bytes() == good


def test_errors_name_the_problem(counted):
    with pytest.raises(errors.ShaderCompileError) as info:
        compiler.compile_glsl("#version 450\nvoid main() { undefined_thing(); }\n")
    msg = str(info.value)
    assert "undefined_thing" in msg and "<source>" in msg and "/tmp/" not in msg
    with pytest.raises(ValueError, match="identifier"):
        compiler.compile_glsl(SRC, {"2BAD": 1})


def test_cooperative_matrix_compiles(counted):
    src = """
    #version 450
    #extension GL_KHR_cooperative_matrix : require
    #extension GL_KHR_memory_scope_semantics : require
    #extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
    layout(local_size_x = 32) in;
    layout(std430, binding = 0) buffer A { float16_t a[]; };
    layout(std430, binding = 1) buffer C { float c[]; };
    void main() {
        coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> m;
        coopMatLoad(m, a, 0, 16, gl_CooperativeMatrixLayoutRowMajor);
        coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> acc = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
        coopMatStore(acc, c, 0, 16, gl_CooperativeMatrixLayoutRowMajor);
    }
    """
    spirv = compiler.compile_glsl(src, target_env="vulkan1.3")
    assert "CooperativeMatrixKHR" in parse_spirv(spirv).capabilities


def test_float_controls_header_declares_the_modes(counted):
    src = """
    #version 450
    #extension GL_GOOGLE_include_directive : require
    #include "float_controls.glsl"
    layout(local_size_x = 32) in;
    layout(std430, binding = 0) buffer B { float b[]; };
    void main() { b[gl_GlobalInvocationID.x] *= 3.0; }
    """
    spirv = compiler.compile_glsl(src, {"HLX_FC_RTE_32": 1, "HLX_FC_PRESERVE_32": 1})
    validate_spirv(spirv, "vulkan1.2")
    r = parse_spirv(spirv)
    modes = dict(r.execution_modes["main"])
    assert modes["RoundingModeRTE"] == (32,) and modes["SignedZeroInfNanPreserve"] == (32,)
    assert {"RoundingModeRTE", "SignedZeroInfNanPreserve"} <= r.capabilities
    plain = parse_spirv(compiler.compile_glsl(src))
    assert "RoundingModeRTE" not in dict(plain.execution_modes["main"])
