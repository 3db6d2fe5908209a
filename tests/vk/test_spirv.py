import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlx_vulkan import compile_glsl, errors
from hlx_vulkan.vk import spirv as spirv_module
from hlx_vulkan.vk.spirv import MAX_NESTING, max_spirv_version_for, parse_spirv, validate_spirv
from spirv_words import (DEC_BINDING, OP_ACCESS_CHAIN, OP_CAPABILITY, OP_CONSTANT, OP_CONSTANT_COMPOSITE,
                         OP_DECORATE, OP_ENTRY_POINT, OP_EXECUTION_MODE, OP_EXECUTION_MODE_ID, OP_NAME, OP_NOP,
                         OP_TYPE_ARRAY, OP_TYPE_FLOAT, OP_TYPE_INT, OP_TYPE_POINTER, OP_TYPE_STRUCT, OP_TYPE_VECTOR,
                         OP_SPEC_CONSTANT_OP, OP_VARIABLE, find, instr, module, mutated_modules, pack, string,
                         words_of)

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


SHARED = """
#version 450
layout(constant_id = 0) const uint WG = 4;
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer X { float x[]; };
shared float red[WG];
shared vec3 tail[WG * 2u + 1u];
void main() {
    float mine[10];
    for (int k = 0; k < 10; ++k) mine[k] = x[k];
    red[gl_LocalInvocationID.x] = mine[gl_LocalInvocationID.x % 10u];
    tail[gl_LocalInvocationID.x] = vec3(1.0);
    barrier();
    x[gl_GlobalInvocationID.x] = red[0] + tail[1].y;
}
"""


def _refuses(data, match):
    with pytest.raises(errors.InvalidShaderError, match=match):
        parse_spirv(data)


def test_an_instruction_without_the_operands_it_needs():
    """A truncated OpCapability: one word, no capability (was an IndexError)."""
    words = words_of(compile_glsl(SPEC))
    at = find(words, OP_CAPABILITY)
    words[at:at + 2] = instr(OP_CAPABILITY) + instr(OP_NOP)
    _refuses(pack(words), "opcode 17.* 0 operand words, fewer than the 1")


def test_a_self_referencing_struct():
    """A struct that contains itself (was a RecursionError)."""
    words = words_of(compile_glsl(LAYOUTS))
    at = find(words, OP_TYPE_STRUCT, lambda ops: len(ops) > 1)
    words[at + 2] = words[at + 1]
    _refuses(pack(words), "uses %[0-9]+ before it is defined")


@pytest.mark.parametrize("ops", [[(3, 3, 3)], [(3, 5, 5), (5, 3, 3)]], ids=["itself", "a cycle of two"])
def test_a_specialization_constant_defined_in_terms_of_itself(ops):
    """Found by the property below: OpSpecConstantOp IAdd whose operands lead back to it, sizing a
    workgroup array (was a RecursionError when the array's bytes were worked out)."""
    body = [instr(OP_TYPE_INT, 2, 32, 0)] + [instr(OP_SPEC_CONSTANT_OP, 2, r, 128, a, b) for r, a, b in ops]
    body += [instr(OP_TYPE_ARRAY, 4, 2, 3), instr(OP_TYPE_POINTER, 6, 4, 4), instr(OP_VARIABLE, 6, 7, 4)]
    with pytest.raises(errors.InvalidShaderError, match="%3 is defined in terms of itself"):
        parse_spirv(module(*body)).storage_bytes()


def test_a_type_defined_twice():
    """A second definition of an id could close a cycle through types defined in between."""
    words = words_of(compile_glsl(LAYOUTS))
    first = find(words, OP_TYPE_INT)
    later = find(words, OP_TYPE_STRUCT)
    words[later + 1] = words[first + 1]
    _refuses(pack(words), "defined twice")


def test_nesting_past_the_bound():
    body = [instr(OP_TYPE_INT, 2, 32, 0), instr(OP_CONSTANT, 2, 3, 4)]
    for k in range(MAX_NESTING + 1):
        body.append(instr(OP_TYPE_ARRAY, 10 + k, 2 if k == 0 else 9 + k, 3))
    _refuses(module(*body), "nests")
    parse_spirv(module(*body[:MAX_NESTING]))


@pytest.mark.parametrize("name,match", [
    (b"mainmain", "no terminating nul"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_bad_string_literals(name, match):
    words = [0x07230203, 0x00010500, 0, 10, 0] + instr(OP_CAPABILITY, 1)
    raw = string(name)
    if match == "no terminating nul":
        raw = raw[:-1]  # the padding word that holds the nul
    words += instr(OP_ENTRY_POINT, 5, 1, *raw)
    _refuses(pack(words), match)
    _refuses(module(instr(OP_NAME, 1, *raw)), match)


@pytest.mark.parametrize("header,match", [
    ([0x07230203, 0x00010501, 0, 10, 0], "version"),
    ([0x07230203, 0x00020000, 0, 10, 0], "version"),
    ([0x07230203, 0x00010500, 0, 0, 0], "bound"),
    ([0x07230203, 0x00010500, 0, 0xFFFFFFFF, 0], "bound"),
    ([0x07230203, 0x00010500, 0, 10, 1], "schema"),
])
def test_wrong_header_words(header, match):
    _refuses(pack(header + words_of(module())[5:]), match)


def test_malformed_operands_named():
    int32 = instr(OP_TYPE_INT, 2, 32, 0)
    _refuses(module(instr(OP_EXECUTION_MODE, 1, 17, 64, 1)), "needs 3 sizes")
    _refuses(module(instr(OP_DECORATE, 7, DEC_BINDING)), "has no value")
    _refuses(module(int32, instr(OP_VARIABLE, 2, 7, 12)), "not a pointer type")
    _refuses(module(int32, instr(OP_TYPE_ARRAY, 3, 2, 2)), "length %2 that is not a constant")
    _refuses(module(instr(OP_TYPE_INT, 2, 7, 0)), "7 bits wide")
    _refuses(module(int32, instr(OP_TYPE_INT, 200, 32, 0)), "outside the module's bound")


def test_a_constant_index_past_the_end_of_an_array():
    """Found by scripts/fuzz.py: spirv-val passes p.a[4] into uint a[4]; the validation layer does not."""
    body = [instr(OP_TYPE_INT, 2, 32, 0), instr(OP_CONSTANT, 2, 3, 4), instr(OP_TYPE_ARRAY, 4, 2, 3),
            instr(OP_TYPE_STRUCT, 5, 2, 4), instr(OP_TYPE_POINTER, 6, 9, 5), instr(OP_VARIABLE, 6, 7, 9),
            instr(OP_TYPE_POINTER, 8, 9, 2), instr(OP_CONSTANT, 2, 10, 1), instr(OP_CONSTANT, 2, 11, 3)]
    parse_spirv(module(*body, instr(OP_ACCESS_CHAIN, 8, 12, 7, 10, 11)))
    _refuses(module(*body, instr(OP_ACCESS_CHAIN, 8, 12, 7, 10, 3)), "indexes element 4 of a 4-element type")


def test_local_size_id_of_anything_but_integer_constants():
    """Found by scripts/fuzz.py: LocalSizeId naming a composite passes spirv-val, not the layer's parser."""
    body = [instr(OP_TYPE_INT, 2, 32, 0), instr(OP_CONSTANT, 2, 3, 8), instr(OP_TYPE_VECTOR, 4, 2, 3),
            instr(OP_CONSTANT_COMPOSITE, 4, 5, 3, 3, 3)]
    parse_spirv(module(instr(OP_EXECUTION_MODE_ID, 1, 38, 3, 3, 3), *body))
    _refuses(module(instr(OP_EXECUTION_MODE_ID, 1, 38, 3, 3, 5), *body), "LocalSizeId names .* not 3 integer")


def test_shared_and_private_bytes_follow_specialization():
    r = parse_spirv(compile_glsl(SHARED))
    # red: WG floats; tail: (2 WG + 1) vec3s at a 16-byte stride; per invocation: mine and the loop's k.
    assert r.storage_bytes() == {"workgroup": 4 * 4 + 9 * 16, "private": 44}
    assert r.storage_bytes({0: 64}) == {"workgroup": 64 * 4 + 129 * 16, "private": 44}


def test_a_64_bit_array_length_counts_both_words():
    body = [instr(OP_TYPE_FLOAT, 2, 32), instr(OP_TYPE_INT, 3, 64, 0), instr(OP_CONSTANT, 3, 4, 0, 1),
            instr(OP_TYPE_ARRAY, 5, 2, 4), instr(OP_TYPE_POINTER, 6, 6, 5), instr(OP_VARIABLE, 6, 7, 6)]
    assert parse_spirv(module(*body)).storage_bytes()["private"] == 4 << 32


def test_an_array_length_that_cannot_be_evaluated_cannot_be_bounded():
    src = SHARED.replace("shared vec3 tail[WG * 2u + 1u];", "shared vec3 tail[WG > 4u ? 8 : 2];")
    r = parse_spirv(compile_glsl(src))
    with pytest.raises(errors.InvalidShaderError, match="cannot evaluate"):
        r.storage_bytes()


def _fake_spirv_val(tmp_path, monkeypatch, script):
    tool = tmp_path / "spirv-val"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    monkeypatch.setattr(spirv_module, "_spirv_val", lambda: (str(tool), None))


def test_spirv_val_output_that_is_not_utf8(tmp_path, monkeypatch):
    _fake_spirv_val(tmp_path, monkeypatch, "printf 'error: \\377\\376 at id 3' >&2; exit 1\n")
    with pytest.raises(errors.InvalidShaderError, match="error: \ufffd\ufffd at id 3"):
        validate_spirv(compile_glsl(SPEC))


def test_spirv_val_that_does_not_finish(tmp_path, monkeypatch):
    _fake_spirv_val(tmp_path, monkeypatch, "exec sleep 30\n")
    monkeypatch.setattr(spirv_module, "VALIDATE_TIMEOUT_S", 0.2)
    with pytest.raises(errors.InvalidShaderError, match="did not finish"):
        validate_spirv(compile_glsl(SPEC))


# Property: whatever the bytes, the parser returns a reflection or raises InvalidShaderError.

_SEEDS = [compile_glsl(src) for src in (LAYOUTS, SPEC, SHARED)]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_modules(_SEEDS))
def test_the_parser_raises_only_invalid_shader_error(data):
    try:
        parse_spirv(data).storage_bytes()
    except errors.InvalidShaderError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=256))
def test_arbitrary_bytes_after_a_valid_header(tail):
    try:
        parse_spirv(pack([0x07230203, 0x00010500, 0, 64, 0]) + tail)
    except errors.InvalidShaderError:
        pass
