"""Modules that scripts/fuzz.py found the loader accepting and the validation layer (or lavapipe) then
refusing: each is rebuilt here by mutating a compiled kernel the way the fuzzer did, and must now be
refused with InvalidShaderError before the driver sees it. The unmutated kernel is built into a
pipeline beside it, so the layer (which fails any test it reports an error in) checks the control."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from hlx_vulkan import ComputePipeline, DescriptorBindingBuilder, ShaderModule, compile_glsl, errors
from hlx_vulkan.vk import spirv as spirv_module
from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv
from hlx_vulkan.vk.spirv_cfg import cfg_problems
from spirv_words import OP_DECORATE, find, instr, instructions, mutated_modules, pack, words_of

OP_SOURCE, OP_MEMBER_DECORATE, OP_SPEC_CONSTANT, OP_LOOP_MERGE, OP_BRANCH = 3, 72, 50, 246, 249
OP_SELECTION_MERGE, OP_LABEL = 247, 248
ROOT = Path(__file__).resolve().parents[2]
DEC_BLOCK, DEC_SPEC_ID, ROW_MAJOR = 2, 1, 4

SPEC_ARRAYS = """
#version 450
layout(local_size_x = 1) in;
layout(constant_id = 0) const uint N = 8;
layout(constant_id = 1) const int M = 3;
layout(std430, binding = 0) buffer X { float x[]; };
shared float s[N];
float t[M];
void main() {
    s[5] = x[1];
    t[M - 1] = x[2];
    barrier();
    x[0] = s[uint(x[3])] + s[5] + t[uint(x[4])];
}
"""

LOOP = """
#version 450
layout(local_size_x = 1) in;
layout(std430, binding = 0) buffer X { int x[]; };
void main() {
    int acc = 0;
    for (int k = x[0]; k >= 0; k--) { acc += x[k + 1] * 3; }
    x[0] = acc;
}
"""

PUSH_SPEC = """
#version 450
layout(local_size_x = 1) in;
layout(constant_id = 0) const uint N = 4;
layout(push_constant) uniform P { uint n; uint a[N]; } p;
layout(std430, binding = 0) buffer B { uint b[]; };
void main() { b[0] = p.a[2] + p.n; }
"""

MATRIX = """
#version 450
layout(local_size_x = 1) in;
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer M { layout(row_major) mat4 m; };
void main() { x[0] = (m * vec4(x[1], x[2], x[3], 1.0)).y; }
"""


def _pipeline(ctx, spirv, nbindings=1, push=0, **kwargs):
    shader = ShaderModule(ctx.device, spirv)
    builder = DescriptorBindingBuilder()
    for b in range(nbindings):
        builder.add_storage_buffer(b)
    ComputePipeline(ctx.device, shader, builder.build(), push, **kwargs).destroy()
    shader.destroy()


def _spirv_opt(spirv, *flags):
    """The module through Debian's spirv-opt (the one beside the layer's vintage)."""
    out = subprocess.run([shutil.which("spirv-opt"), *flags, "-", "-o", "-"], input=spirv, capture_output=True,
                         check=True)
    return out.stdout


def _refused(ctx, spirv, match):
    with pytest.raises(errors.InvalidShaderError, match=match):
        ShaderModule(ctx.device, spirv)


def _spec_constant(words, spec_id):
    """Word index of the OpSpecConstant decorated SpecId ``spec_id``."""
    target = words[find(words, OP_DECORATE, lambda ops: ops[1] == DEC_SPEC_ID and ops[2] == spec_id) + 1]
    return find(words, OP_SPEC_CONSTANT, lambda ops: ops[1] == target)


def test_row_major_on_a_member_that_is_not_a_matrix(ctx):
    """spirv-1-21366, spirv-1-78410: RowMajor on a buffer's int64 runtime array passes every spirv-val;
    lavapipe's SPIR-V parser asserts glsl_type_is_matrix and the pipeline fails (VK_ERROR_UNKNOWN)."""
    spirv = compile_glsl(MATRIX)
    _pipeline(ctx, spirv, 2)  # row_major on a mat4 member: fine
    words = words_of(spirv)
    block = words[find(words, OP_DECORATE, lambda ops: ops[1] == DEC_BLOCK) + 1]  # X: { float x[]; }
    at = find(words, OP_DECORATE)
    bad = pack(words[:at] + instr(OP_MEMBER_DECORATE, block, 0, ROW_MAJOR) + words[at:])
    _refused(ctx, bad, r"RowMajor at word \d+ decorates member 0 of %\d+, which is not a matrix")
    on_an_id = pack(words[:at] + instr(OP_DECORATE, block, ROW_MAJOR) + words[at:])
    _refused(ctx, on_an_id, "applies only to structure members")


def test_an_array_of_zero_elements_after_specialization(ctx):
    """spirv-1-25317: a shared array sized by a specialization constant whose default is 0. The
    newest spirv-val accepts it (the pipeline may specialize it); the layer freezes the defaults
    and reports VUID-VkPipelineShaderStageCreateInfo-pSpecializationInfo-06719."""
    spirv = compile_glsl(SPEC_ARRAYS)
    _pipeline(ctx, spirv)
    _pipeline(ctx, spirv, specialization={0: 6, 1: 1})
    words = words_of(spirv)
    words[_spec_constant(words, 0) + 3] = 0
    _refused(ctx, pack(words), r"default values, array type %\d+ has 0 elements")
    words = words_of(spirv)
    words[_spec_constant(words, 1) + 3] = 0xFFFFFFFF  # int M = -1
    _refused(ctx, pack(words), r"array type %\d+ has -1 elements")
    shader = ShaderModule(ctx.device, spirv)
    for spec, match in [({0: 0}, "has 0 elements"), ({1: -2}, "has -2 elements"),
                        ({0: 4}, r"indexes element 5 of a 4-element type")]:
        with pytest.raises(errors.InvalidShaderError, match="with this specialization the shader is invalid: .*" + match):
            ComputePipeline(ctx.device, shader, DescriptorBindingBuilder().add_storage_buffer(0).build(), 0,
                            specialization=spec)


def test_a_constant_index_past_an_array_sized_by_a_specialization_constant(ctx):
    """spirv-1-4277: a push-constant member's length became a specialization constant (default 1)
    while the shader reads element 4 of it: VUID-VkComputePipelineCreateInfo-layout-00703."""
    spirv = compile_glsl(SPEC_ARRAYS)
    words = words_of(spirv)
    words[_spec_constant(words, 0) + 3] = 5  # s[5] of s[5]
    _refused(ctx, pack(words), r"default values, access chain %\d+ indexes element 5 of a 5-element type")
    words[_spec_constant(words, 0) + 3] = 6
    _pipeline(ctx, pack(words))


def test_a_push_constant_block_sized_by_a_specialization_constant(ctx):
    """The layout's push-constant range could not follow the specialization: refused at load."""
    _refused(ctx, compile_glsl(PUSH_SPEC), "in the push-constant block is sized by a specialization constant")
    _pipeline(ctx, compile_glsl(PUSH_SPEC.replace("uint a[N]", "uint a[4]")), push=20)


def test_a_branch_to_the_continue_target_from_outside_the_loop(ctx):
    """spirv-1-41767, spirv-1-59916: the loop header branches straight to its continue target, so the
    body is unreachable and branches there from outside the loop construct. spirv-val 2025 accepts
    it; the spirv-val of Debian's spirv-tools 2023.1, of the layer's vintage, refuses it, and so did
    the layer. Every installed validator must accept a module."""
    spirv = compile_glsl(LOOP)
    _pipeline(ctx, spirv)
    words = words_of(spirv)
    merge = find(words, OP_LOOP_MERGE)
    continue_target = words[merge + 2]
    after = merge + (words[merge] >> 16)
    assert words[after] & 0xFFFF == OP_BRANCH
    words[after + 1] = continue_target
    bad = pack(words)
    parse_spirv(bad)
    _refused(ctx, bad, r"spirv-val \(vulkan1\.\d\) rejects the module: .*loop continue target")


def test_a_source_language_older_validators_do_not_know(ctx):
    """spirv-1-96379: OpSource language 8 (HERO_C, added in 2023) passes spirv-val 2025; the layer's
    validator and its spirv-opt refuse it."""
    spirv = compile_glsl(LOOP)
    words = words_of(spirv)
    words[find(words, OP_SOURCE) + 1] = 8
    _refused(ctx, pack(words), "Invalid source language operand: 8")


def test_every_installed_validator_runs(tmp_path, monkeypatch):
    """A module must pass each spirv-val: the second one's refusal is reported, naming it."""
    assert [t for t, _ in spirv_module._validators()][-1] == shutil.which("spirv-val")
    newest = spirv_module._spirv_val()
    strict = tmp_path / "spirv-val"
    strict.write_text("#!/bin/sh\necho 'error: too new for me' >&2; exit 1\n")
    strict.chmod(0o755)
    monkeypatch.setattr(spirv_module, "_validators", lambda: [newest, (str(strict), None)])
    with pytest.raises(errors.InvalidShaderError, match=f"{strict} .* rejects the module: error: too new for me"):
        validate_spirv(compile_glsl(LOOP), "vulkan1.3")


def test_the_module_is_validated_with_its_specialization_constants_frozen(tmp_path, monkeypatch):
    """The frozen module is what the layer validates at pipeline creation; a validator that refuses
    only modules without OpSpecConstant sees it (and only where the module has some)."""
    words = words_of(compile_glsl(SPEC_ARRAYS))
    assert spirv_module._has_specialization(pack(words))
    picky = tmp_path / "spirv-val"
    picky.write_text("#!/bin/sh\n" + shutil.which("spirv-dis") + " \"$3\" | grep -q OpSpecConstant || "
                     "{ echo 'error: frozen' >&2; exit 1; }\n")
    picky.chmod(0o755)
    monkeypatch.setattr(spirv_module, "_validators", lambda: [(str(picky), None)])
    with pytest.raises(errors.InvalidShaderError, match="frozen to their defaults: error: frozen"):
        validate_spirv(pack(words), "vulkan1.3")
    assert not spirv_module._has_specialization(compile_glsl(LOOP))


def test_the_layer_agrees_with_the_specialized_checks(ctx):
    """A constant index inside the specialized length: no refusal, and the layer stays silent."""
    _pipeline(ctx, compile_glsl(SPEC_ARRAYS), specialization={0: 6, 1: 2})


def test_older_validators_do_not_judge_capabilities_younger_than_them(tmp_path, monkeypatch):
    """Debian's spirv-val 2023.1 refuses cooperative-matrix and bfloat16 kernels for the capability
    alone; those are for drivers newer than it, and only the newest validator judges them."""
    tools = []
    for name, script in [("new", "exit 0"), ("old", "echo 'error: unknown capability' >&2; exit 1")]:
        tool = tmp_path / name / "spirv-val"
        tool.parent.mkdir()
        tool.write_text(f"#!/bin/sh\n{script}\n")
        tool.chmod(0o755)
        tools.append((str(tool), None))
    monkeypatch.setattr(spirv_module, "_validators", lambda: tools)
    words = words_of(compile_glsl(LOOP))
    with pytest.raises(errors.InvalidShaderError, match="old/spirv-val .* unknown capability"):
        validate_spirv(pack(words), "vulkan1.3")
    at = find(words, 17)  # the first OpCapability
    validate_spirv(pack(words[:at] + instr(17, 6022) + words[at:]), "vulkan1.3")  # CooperativeMatrixKHR


def test_a_constant_with_more_literal_words_than_its_type(ctx):
    """spirv-1-796648 (the million-case campaign): an OpSpecConstant grown to thousands of literal
    words made an integer too long to print in the loader's own message (a ValueError, not the
    library's error). A constant's literal words must match its type's width."""
    spirv = compile_glsl(SPEC_ARRAYS)
    words = words_of(spirv)
    at = _spec_constant(words, 0)
    count = words[at] >> 16
    grown = words[:at] + [((count + 2000) << 16) | OP_SPEC_CONSTANT] + words[at + 1:at + count] + \
        [0xFFFFFFFF] * 2000 + words[at + count:]
    _refused(ctx, pack(grown), r"constant %\d+ at word \d+ has 2001 literal words; its type %\d+ takes 1")


IF_ELSE = """
#version 450
layout(local_size_x = 1) in;
layout(std430, binding = 0) buffer X { int x[]; };
void main() {
    int a = x[1];
    if (x[0] > 2) { a += x[2]; } else { a *= x[3]; }
    x[0] = a;
}
"""

# Structured control flow whose blocks are entered from several places, each a construct's exit:
# switch fallthrough (into the default too), breaks and continues from nested constructs, early returns.
CONTROL_FLOW = {
    "switch_fallthrough": "int a = 0; switch (x[0]) { case 0: a += 1; case 1: a += 2; break; "
                          "case 2: case 3: a = 7; default: a += x[1]; } x[0] = a;",
    "nested_loops": "int a = 0; for (int i = 0; i < x[0]; i++) { if (x[i] == 3) continue; "
                    "for (int j = 0; j < i; j++) { if (x[j] > 5) break; a += j; if (a > 100) { x[1] = a; return; } } "
                    "if (a > 50) break; } x[0] = a;",
    "do_while_short_circuit": "int a = 0; do { a++; if (a > 3 && x[a] > 0 || x[0] == 2) a += 2; "
                              "else if (x[1] < 0) a--; } while (a < x[0] && a < 100); x[0] = a > 3 ? a : -a;",
    "switch_in_loop": "int a = 0; for (int i = 0; i < 8; i++) { switch (x[i]) { case 1: continue; "
                      "case 2: a += 1; break; default: if (a > 3) break; a += 2; } a++; } x[0] = a;",
}


def test_a_cross_edge_from_one_arm_of_an_if_into_the_other(ctx):
    """spirv-1-509439 and spirv-2-301055: the else arm's last block branches into the then arm
    instead of to the merge block. Every spirv-val accepts it; lavapipe's SPIR-V parser prints
    "Invalid back or cross-edge in the CFG" and the pipeline fails (VK_ERROR_UNKNOWN)."""
    spirv = compile_glsl(IF_ELSE)
    _pipeline(ctx, spirv)
    words = words_of(spirv)
    header = find(words, OP_SELECTION_MERGE)
    merge, then_arm, else_arm = words[header + 1], words[header + 5], words[header + 6]  # OpBranchConditional follows
    assert merge not in (then_arm, else_arm)
    else_label = find(words, OP_LABEL, lambda ops: ops[0] == else_arm)
    branch = next(i for i, op, ops in instructions(words) if op == OP_BRANCH and i > else_label)
    assert words[branch + 1] == merge
    words[branch + 1] = then_arm
    bad = pack(words)
    validate_spirv(bad, "vulkan1.3")  # spirv-val has no objection
    _refused(ctx, bad, rf"cannot follow this control flow: block %{then_arm} is entered from %\d+ and %\d+ .*"
                       "cross edge")


@pytest.mark.parametrize("name", sorted(CONTROL_FLOW))
def test_control_flow_the_driver_follows_is_not_a_cross_edge(ctx, name):
    """Blocks that glslang (and spirv-opt after it) enter from several places, each as a construct's
    exit, pass the check and build on the driver, the validation layer on."""
    spirv = compile_glsl(IF_ELSE.split("void main")[0] + "void main() { " + CONTROL_FLOW[name] + " }")
    assert cfg_problems(spirv) == []
    _pipeline(ctx, spirv)
    optimized = _spirv_opt(spirv, "-O")
    assert cfg_problems(optimized) == []
    _pipeline(ctx, optimized)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_modules([compile_glsl(IF_ELSE), compile_glsl(LOOP)]))
def test_the_control_flow_check_raises_only_the_library_error(blob):
    """On any bytes, cfg_problems returns its findings or raises InvalidShaderError (for the header)."""
    try:
        assert isinstance(cfg_problems(blob), list)
    except errors.InvalidShaderError:
        pass


def test_the_fuzz_harness_retires_a_worker_whose_memory_grows():
    """The campaigns' crashes (two of 532,316 cases, six of a million, in pairs: both workers at once)
    were their workers reaching the 4 GiB address-space cap: lavapipe keeps memory for every pipeline
    it builds. A worker now retires once it has grown by half its headroom; --selftest checks that a
    growing worker is replaced and every case still counted."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--selftest"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "replaced" in out.stdout and "workers that outgrew" in out.stdout, out.stdout


UNROLLED = """
#version 450
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 1) in;
layout(std430, binding = 0) buffer X { uint x[]; };
void main() {
    uint acc = x[1];
    [[unroll]] for (uint j = 0u; j < 4u; ++j) acc = acc * 3u + x[2 + j];
    x[0] = acc;
}
"""
LOOP_CONTROL_UNROLL, LOOP_CONTROL_PEEL, LOOP_CONTROL_PARTIAL = 0x1, 0x80, 0x100


def _loop_controls(spirv):
    words = words_of(spirv)
    return [words[i + 3:i + (words[i] >> 16)] for i, op, _ in instructions(words) if op == OP_LOOP_MERGE]


def test_a_loop_marked_unroll_with_a_huge_trip_count_is_built_without_the_hint(ctx):
    """spirv-2-589628: the constant 4 of a kernel's [[unroll]] loops mutated to 65,536. The module is
    valid, and lavapipe, obeying the hint, was still unrolling after five minutes. A caller's module
    loses its unroll hints (they never change results), so the pipeline builds at once; this
    library's own kernels keep theirs."""
    from hlx_vulkan.vk.shader import spirv_digest
    spirv = compile_glsl(UNROLLED)
    assert any(c[0] & LOOP_CONTROL_UNROLL for c in _loop_controls(spirv))
    words = words_of(spirv)
    four = find(words, 43, lambda ops: ops[2] == 4)  # OpConstant %uint 4: the trip count
    words[four + 3] = 65536
    huge = pack(words)
    validate_spirv(huge, "vulkan1.3")
    shader = ShaderModule(ctx.device, huge)
    assert shader.digest == spirv_digest(huge)  # the caller's module, as given, names it
    assert all(c[0] & (LOOP_CONTROL_UNROLL | LOOP_CONTROL_PEEL | LOOP_CONTROL_PARTIAL) == 0
               for c in _loop_controls(shader.spirv))
    shader.destroy()
    _pipeline(ctx, huge)  # builds (with the hint, this call did not return within five minutes)
    kept = ShaderModule(ctx.device, spirv, trusted=True)
    assert any(c[0] & LOOP_CONTROL_UNROLL for c in _loop_controls(kept.spirv))
    kept.destroy()


def test_dropping_hints_removes_their_literals_and_keeps_the_others():
    """PeelCount and PartialCount carry a literal each: dropping them must drop exactly those words
    and keep the other loop controls' literals in order (MaxIterations here)."""
    from hlx_vulkan.vk.spirv_hints import drop_unroll_hints
    words = words_of(compile_glsl(UNROLLED))
    at = find(words, OP_LOOP_MERGE)
    merge, cont = words[at + 1], words[at + 2]
    control = LOOP_CONTROL_UNROLL | 0x20 | LOOP_CONTROL_PEEL | LOOP_CONTROL_PARTIAL  # + MaxIterations
    new = [((4 + 3) << 16) | OP_LOOP_MERGE, merge, cont, control, 4, 2, 9]  # max 4, peel 2, partial 9
    words = list(words[:at]) + new + list(words[at + (words[at] >> 16):])
    out = drop_unroll_hints(pack(words))
    assert _loop_controls(out) == [[0x20, 4]]
    assert drop_unroll_hints(out) == out  # nothing left to drop: the same bytes
