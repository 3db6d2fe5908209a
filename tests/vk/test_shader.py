import struct

import pytest

from hlx_vulkan import ShaderModule, VulkanContext, compile_glsl, errors
from kernels import VECTOR_ADD


@pytest.fixture(scope="module")
def spirv():
    return compile_glsl(VECTOR_ADD)


def test_reflection(ctx, spirv):
    shader = ShaderModule(ctx.device, spirv, "main")
    assert [(b.set, b.binding, b.descriptor_type) for b in shader.bindings] == [
        (0, 0, "storage_buffer"), (0, 1, "storage_buffer"), (0, 2, "storage_buffer")]
    assert shader.push_constant_size == 4
    assert shader.entry.local_size_spec_ids[0] is not None
    assert len(shader.digest) == 64
    shader.destroy()


def test_load_shader_is_content_addressed(ctx, spirv):
    first = ctx.load_shader(spirv, "main")
    again = ctx.load_shader(bytearray(spirv), "main")
    assert first == again
    assert ctx.get_shader(first) is ctx.get_shader(again)
    with pytest.raises(KeyError, match="no shader"):
        ctx.get_shader("0" * 64)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"\x03\x02\x23\x07\x00\x00", "multiple of 4"),
    (struct.pack("<3I", 0x07230203, 0x10000, 0), "5"),
    (struct.pack("<5I", 0xDEADBEEF, 0x10000, 0, 1, 0), "magic"),
])
def test_malformed_spirv_is_refused_before_the_driver(ctx, data, match):
    with pytest.raises(errors.InvalidShaderError, match=match):
        ShaderModule(ctx.device, data)


def test_wrong_entry_point_and_type(ctx, spirv):
    with pytest.raises(errors.InvalidShaderError, match="main"):
        ShaderModule(ctx.device, spirv, "not_main")
    with pytest.raises(errors.InvalidShaderError, match="bytes"):
        ShaderModule(ctx.device, "not bytes")


def test_spirv_version_newer_than_device(ctx, spirv):
    words = bytearray(spirv)
    words[4:8] = struct.pack("<I", (1 << 16) | (9 << 8))
    with pytest.raises(errors.InvalidShaderError, match="1.9"):
        ShaderModule(ctx.device, bytes(words))


def test_spirv_val_rejects_invalid_module(ctx, spirv):
    # Point the entry point at an id past the module's bound: parses, but is invalid.
    words = list(struct.unpack(f"<{len(spirv) // 4}I", spirv))
    bound = words[3]
    i = 5
    while i < len(words):
        count, op = words[i] >> 16, words[i] & 0xFFFF
        if op == 15:  # OpEntryPoint: model, function id, name...
            words[i + 2] = bound + 5
            break
        i += count
    bad = struct.pack(f"<{len(words)}I", *words)
    with pytest.raises(errors.InvalidShaderError):
        ShaderModule(ctx.device, bad)
