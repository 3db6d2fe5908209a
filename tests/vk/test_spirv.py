import struct

import pytest

from hlx_vulkan import compile_glsl, errors
from hlx_vulkan.vk.spirv import max_spirv_version_for, parse_spirv, validate_spirv

LAYOUTS = """
#version 450
layout(local_size_x = 64, local_size_y = 2) in;
layout(std430, set = 0, binding = 0) readonly buffer In { float x[]; } src;
layout(std430, set = 0, binding = 1) writeonly buffer Out { float y[]; } dst;
layout(std140, set = 0, binding = 2) uniform U { vec4 scale; } u;
layout(std430, set = 1, binding = 3) buffer Extra { uint z[]; };
layout(push_constant) uniform P { uint n; float alpha; vec4 v; float arr[3]; } p;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < p.n) dst.y[i] = src.x[i] * p.alpha * u.scale.x + p.v.y + p.arr[2] + float(z[0]);
}
"""

SPEC = """
#version 450
layout(local_size_x_id = 3, local_size_y = 1) in;
layout(constant_id = 7) const uint K = 5;
layout(std430, binding = 0) buffer B { uint b[]; };
void main() { b[gl_GlobalInvocationID.x] = K; }
"""


def words_of(spirv):
    return list(struct.unpack(f"<{len(spirv) // 4}I", spirv))


def pack(words):
    return struct.pack(f"<{len(words)}I", *words)


def test_reflects_bindings_push_constants_and_workgroup():
    r = parse_spirv(compile_glsl(LAYOUTS))
    assert r.version >= (1, 0) and r.bound > 0 and "Shader" in r.capabilities
    assert [(b.set, b.binding, b.descriptor_type) for b in r.bindings] == [
        (0, 0, "storage_buffer"), (0, 1, "storage_buffer"), (0, 2, "uniform_buffer"), (1, 3, "storage_buffer")]
    # std430 push constants: n@0, alpha@4, v@16 (vec4 align 16), arr@32 (stride 4) -> 44 bytes
    assert r.push_constant_size == 44
    ep = r.entry_point("main")
    assert ep.execution_model == "GLCompute" and ep.local_size == (64, 2, 1)
    assert ep.local_size_spec_ids == (None, None, None)


def test_reflects_specialization_constants():
    r = parse_spirv(compile_glsl(SPEC))
    ep = r.entry_point("main")
    assert ep.local_size_spec_ids[0] == 3 and ep.local_size[1:] == (1, 1)
    assert r.spec_constants[7] == 5
    assert r.push_constant_size == 0


def test_byte_swapped_module_parses_identically():
    spirv = compile_glsl(LAYOUTS)
    swapped = struct.pack(f">{len(spirv) // 4}I", *words_of(spirv))
    assert parse_spirv(swapped) == parse_spirv(spirv)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"\x03\x02\x23\x07abc", "length 7"),
    (pack([0x07230203, 0x10000, 0]), "fewer than the 5"),
    (pack([0x12345678, 0x10000, 0, 10, 0]), "0x07230203"),
])
def test_malformed_headers(data, match):
    with pytest.raises(errors.InvalidShaderError, match=match):
        parse_spirv(data)


def test_truncated_and_zero_length_instructions():
    words = words_of(compile_glsl(SPEC))
    i = 5
    while words[i] >> 16 < 3:  # find an instruction of 3+ words and cut the module inside it
        i += words[i] >> 16
    with pytest.raises(errors.InvalidShaderError, match="runs past the end"):
        parse_spirv(pack(words[:i + 2]))
    zeroed = words[:5] + [0] + words[6:]
    with pytest.raises(errors.InvalidShaderError, match="word count of 0"):
        parse_spirv(pack(zeroed))


def test_no_entry_point():
    words = words_of(compile_glsl(SPEC))
    out, i = words[:5], 5
    while i < len(words):
        count, op = words[i] >> 16, words[i] & 0xFFFF
        if op not in (15, 16):  # drop OpEntryPoint and OpExecutionMode
            out += words[i:i + count]
        i += count
    with pytest.raises(errors.InvalidShaderError, match="no entry point"):
        parse_spirv(pack(out))


def test_spirv_val_rejects_what_parses():
    words = words_of(compile_glsl(SPEC))
    i = 5
    while i < len(words):
        count, op = words[i] >> 16, words[i] & 0xFFFF
        if op == 15:
            words[i + 2] = words[3] + 7  # entry point names an id past the bound
            break
        i += count
    bad = pack(words)
    parse_spirv(bad)
    with pytest.raises(errors.InvalidShaderError, match="spirv-val"):
        validate_spirv(bad, "vulkan1.2")
    validate_spirv(compile_glsl(SPEC), "vulkan1.2")


def test_spirv_version_table():
    v = lambda major, minor: (major << 22) | (minor << 12)
    assert max_spirv_version_for(v(1, 0)) == (1, 0)
    assert max_spirv_version_for(v(1, 1)) == (1, 3)
    assert max_spirv_version_for(v(1, 2)) == (1, 5)
    assert max_spirv_version_for(v(1, 3)) == (1, 6)
    assert max_spirv_version_for(v(1, 4)) == (1, 6)
