import struct

import numpy as np
import pytest

from hlx_vulkan import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, ShaderModule,
                        compile_glsl, errors, vk)
from kernels import SCALE_UNIFORM, VECTOR_ADD

HOST = vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT


def _add_bindings():
    return DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).add_storage_buffer(2).build()


def test_builder():
    b = DescriptorBindingBuilder().add_storage_buffer(1).add_storage_buffer(0).add_uniform_buffer(2).build()
    assert [s.binding for s in b] == [0, 1, 2]
    assert b[2].descriptor_type == vk.DescriptorType.UNIFORM_BUFFER
    with pytest.raises(ValueError, match="already"):
        DescriptorBindingBuilder().add_storage_buffer(0).add_uniform_buffer(0)


@pytest.mark.parametrize("n,wg", [(1, 64), (1000, 64), (4097, 256)])
def test_vector_add_matches_numpy(ctx, n, wg):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    shader = ShaderModule(ctx.device, compile_glsl(VECTOR_ADD))
    pipe = ComputePipeline(ctx.device, shader, _add_bindings(), 4, workgroup_size=(wg,))
    assert pipe.workgroup_size == (wg, 1, 1)
    bufs = [Buffer(ctx.device, 4 * n, vk.BufferUsageFlags.STORAGE_BUFFER, HOST) for _ in range(3)]
    bufs[0].upload(a); bufs[1].upload(b); bufs[2].upload(np.full(n, np.nan, np.float32))
    ds = pipe.allocate_descriptor_set()
    pipe.update_descriptor_set(ds, [(i, bufs[i].buffer) for i in range(3)])
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 2)
    cmd = pool.begin_command_buffer()
    pipe.record_dispatch(cmd, ds, struct.pack("<I", n), (-(-n // wg), 1, 1))
    pipe.record_barrier(cmd, vk.AccessFlags.SHADER_WRITE, vk.AccessFlags.HOST_READ,
                        dst_stage=vk.PipelineStageFlags.HOST)
    pool.end_command_buffer(cmd)
    pool.submit_and_wait(cmd, ctx.compute_queue)
    out = np.frombuffer(bufs[2].download(), np.float32)
    ref = a.astype(np.float64) + b.astype(np.float64)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-7
    np.testing.assert_array_equal(out, a + b)
    for obj in (pool, pipe, *bufs, shader):
        obj.destroy()


def test_uniform_buffer_and_fixed_local_size(ctx):
    n = 200
    x = np.random.default_rng(5).standard_normal(n).astype(np.float32)
    shader = ShaderModule(ctx.device, compile_glsl(SCALE_UNIFORM))
    assert shader.local_size == (64, 1, 1)
    bindings = DescriptorBindingBuilder().add_storage_buffer(0).add_uniform_buffer(1).build()
    pipe = ComputePipeline(ctx.device, shader, bindings, 0)
    xb = Buffer(ctx.device, 4 * n, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)
    ub = Buffer(ctx.device, 16, vk.BufferUsageFlags.UNIFORM_BUFFER, HOST)
    xb.upload(x); ub.upload(struct.pack("<fIII", 2.5, n, 0, 0))
    ds = pipe.allocate_descriptor_set()
    pipe.update_descriptor_set(ds, [(0, xb), (1, ub)])
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 1)
    cmd = pool.begin_command_buffer()
    pipe.record_dispatch(cmd, ds, None, (-(-n // 64),))
    pool.end_command_buffer(cmd)
    pool.submit_and_wait(cmd)
    np.testing.assert_array_equal(np.frombuffer(xb.download(), np.float32), x * np.float32(2.5))
    with pytest.raises(errors.PipelineLayoutError, match="fixes it at 64"):
        ComputePipeline(ctx.device, shader, bindings, 0, workgroup_size=(128,))
    for obj in (pool, pipe, xb, ub, shader):
        obj.destroy()


def test_layout_mismatches_are_refused(ctx):
    shader = ShaderModule(ctx.device, compile_glsl(VECTOR_ADD))
    missing = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).build()
    with pytest.raises(errors.PipelineLayoutError, match="binding 2"):
        ComputePipeline(ctx.device, shader, missing, 4)
    wrong_type = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).add_uniform_buffer(2).build()
    with pytest.raises(errors.PipelineLayoutError, match="uniform_buffer"):
        ComputePipeline(ctx.device, shader, wrong_type, 4)
    with pytest.raises(errors.PipelineLayoutError, match="push-constant block is 4 bytes"):
        ComputePipeline(ctx.device, shader, _add_bindings(), 0)
    with pytest.raises(errors.LimitExceededError, match="invocations|limit"):
        ComputePipeline(ctx.device, shader, _add_bindings(), 4, workgroup_size=(1 << 20,))
    pipe = ComputePipeline(ctx.device, shader, _add_bindings(), 4, workgroup_size=(64,))
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 1)
    cmd = pool.begin_command_buffer()
    ds = pipe.allocate_descriptor_set()
    with pytest.raises(errors.LimitExceededError, match="exceeds"):
        pipe.record_dispatch(cmd, ds, struct.pack("<I", 1), (1 << 31, 1, 1))
    with pytest.raises(errors.PipelineLayoutError, match="push constants"):
        pipe.record_dispatch(cmd, ds, b"12345678", (1, 1, 1))
    with pytest.raises(errors.PipelineLayoutError, match="binding 7"):
        pipe.update_descriptor_set(ds, [(7, None)])
    pool.end_command_buffer(cmd)
    for obj in (pool, pipe, shader):
        obj.destroy()
    with pytest.raises(errors.DestroyedError):
        pipe.allocate_descriptor_set()


def test_descriptor_pool_exhaustion_is_an_error(ctx):
    shader = ShaderModule(ctx.device, compile_glsl(VECTOR_ADD))
    pipe = ComputePipeline(ctx.device, shader, _add_bindings(), 4, max_sets=2)
    s1, s2 = pipe.allocate_descriptor_set(), pipe.allocate_descriptor_set()
    with pytest.raises(errors.OutOfDeviceMemoryError, match="descriptor sets"):
        pipe.allocate_descriptor_set()
    pipe.free_descriptor_set(s1)
    pipe.allocate_descriptor_set()
    pipe.destroy(); shader.destroy()


def test_the_builder_refuses_what_a_driver_need_not_survive():
    with pytest.raises(errors.LimitExceededError, match="binding number 4294967295 is past the 1023"):
        DescriptorBindingBuilder().add_storage_buffer(0xFFFFFFFF)
    with pytest.raises(ValueError, match="count >= 1"):
        DescriptorBindingBuilder().add_storage_buffer(0, count=0)
    with pytest.raises(TypeError):
        DescriptorBindingBuilder().add_storage_buffer(1.5)
    assert DescriptorBindingBuilder().add_storage_buffer(1023).build()[0].binding == 1023


def test_a_layout_past_the_limits_never_reaches_the_driver(ctx):
    """lavapipe's vkCreateDescriptorSetLayout segfaults on binding 0xFFFFFFFF: this test would not end."""
    from hlx_vulkan.vk.pipeline import BindingSpec
    shader = ShaderModule(ctx.device, compile_glsl(VECTOR_ADD))
    storage = vk.DescriptorType.STORAGE_BUFFER
    huge = _add_bindings() + (BindingSpec(0xFFFFFFFF, storage),)
    with pytest.raises(errors.LimitExceededError, match="binding 4294967295"):
        ComputePipeline(ctx.device, shader, huge, 4)
    many = ctx.device.limits["max_per_stage_descriptor_storage_buffers"]
    with pytest.raises(errors.LimitExceededError, match=f"{many + 2} storage_buffer descriptors"):
        ComputePipeline(ctx.device, shader, _add_bindings()[:2] + (BindingSpec(2, storage, many),), 4)
    with pytest.raises(errors.LimitExceededError, match="max_sets 0"):
        ComputePipeline(ctx.device, shader, _add_bindings(), 4, max_sets=0)
    shader.destroy()


def test_a_shader_array_of_buffers_needs_as_many_descriptors(ctx):
    src = VECTOR_ADD.replace("buffer C { float c[]; };", "buffer C { float c[]; } outs[3];").replace(
        "c[i] = a[i] + b[i]", "outs[2].c[i] = a[i] + b[i]")
    shader = ShaderModule(ctx.device, compile_glsl(src))
    with pytest.raises(errors.PipelineLayoutError, match="binding 2 is an array of 3 in the shader"):
        ComputePipeline(ctx.device, shader, _add_bindings(), 4)
    three = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).add_storage_buffer(2, 3).build()
    ComputePipeline(ctx.device, shader, three, 4).destroy()
    shader.destroy()


SHARED_PER_THREAD = """
#version 450
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(std430, binding = 0) buffer X { vec4 x[]; };
shared vec4 s[WG * PER_THREAD];
void main() {
    s[gl_LocalInvocationID.x] = x[gl_GlobalInvocationID.x];
    barrier();
    x[gl_GlobalInvocationID.x] = s[(gl_LocalInvocationID.x + 1u) % WG];
}
"""


def test_shared_memory_is_checked_with_the_specialization(ctx):
    """The module fits at its default workgroup; a larger one specialised in must fit too."""
    lim = ctx.device.limits
    limit = lim["max_compute_shared_memory_size"]
    fits = min(lim["max_compute_workgroup_invocations"], lim["max_compute_workgroup_size"][0]) // 2
    per_thread = limit // (16 * fits)  # vec4s: twice the workgroup needs twice the limit
    shader = ShaderModule(ctx.device, compile_glsl(SHARED_PER_THREAD, {"PER_THREAD": f"{per_thread}u"}))
    bindings = DescriptorBindingBuilder().add_storage_buffer(0).build()
    ComputePipeline(ctx.device, shader, bindings, workgroup_size=(fits,)).destroy()
    with pytest.raises(errors.LimitExceededError, match=f"{2 * fits * per_thread * 16} bytes of shared memory"):
        ComputePipeline(ctx.device, shader, bindings, workgroup_size=(2 * fits,))
    shader.destroy()


def test_specialization_values_that_do_not_fit_32_bits(ctx):
    shader = ShaderModule(ctx.device, compile_glsl(SHARED_PER_THREAD, {"PER_THREAD": "1u"}))
    bindings = DescriptorBindingBuilder().add_storage_buffer(0).build()
    for value in (2 ** 40, 1e39):
        with pytest.raises(errors.LimitExceededError, match="does not fit 32 bits"):
            ComputePipeline(ctx.device, shader, bindings, specialization={7: value})
    shader.destroy()


def test_pipeline_statistics_are_empty_unless_asked_for_and_offered(ctx, monkeypatch):
    """Without HLX_PIPELINE_STATS=1 (or, with it, on a device without
    VK_KHR_pipeline_executable_properties: lavapipe) a pipeline reports no statistics."""
    shader = ShaderModule(ctx.device, compile_glsl(VECTOR_ADD))
    pipe = ComputePipeline(ctx.device, shader, _add_bindings(), 4)
    offered = "VK_KHR_pipeline_executable_properties" in ctx.physical_device.extensions
    assert ctx.device.pipeline_statistics is False
    assert pipe.statistics() == {}
    monkeypatch.setenv("HLX_PIPELINE_STATS", "1")
    device = vk.Device(ctx.instance, ctx.physical_device)
    try:
        assert device.pipeline_statistics is offered
        stats_pipe = ComputePipeline(device, ShaderModule(device, compile_glsl(VECTOR_ADD)), _add_bindings(), 4)
        stats = stats_pipe.statistics()
        assert bool(stats) is offered
        stats_pipe.destroy()
    finally:
        device.destroy()
    pipe.destroy()
    shader.destroy()
    with pytest.raises(errors.DestroyedError):
        pipe.statistics()


def test_pipeline_statistics_are_asked_for_at_device_creation(ctx, monkeypatch):
    """With HLX_PIPELINE_STATS=1 on a device that offers the extension, vkCreateDevice gets its
    name and its feature (pipelineExecutableInfo) in the pNext chain. The device is claimed to
    offer it; the call itself is stood in for."""
    import dataclasses

    import vulkan as vkb

    from conftest import CreateDeviceReached, stop_at_create_device
    from hlx_vulkan.vk import device as device_module

    stype = vkb.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR

    def requested(info):
        names = [vkb.ffi.string(info.ppEnabledExtensionNames[i]).decode() for i in range(info.enabledExtensionCount)]
        enabled, node = None, info.pNext
        while node != vkb.ffi.NULL:
            base = vkb.ffi.cast("VkBaseInStructure *", node)
            if base.sType == stype:
                enabled = vkb.ffi.cast("VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR *",
                                       node).pipelineExecutableInfo
            node = base.pNext
        return names, enabled
    stop_at_create_device(monkeypatch, requested)
    monkeypatch.setenv("HLX_PIPELINE_STATS", "1")
    physical = dataclasses.replace(ctx.physical_device, extensions=frozenset(
        set(ctx.physical_device.extensions) | {"VK_KHR_pipeline_executable_properties"}))
    with pytest.raises(CreateDeviceReached) as reached:
        device_module.Device(ctx.instance, physical)
    names, enabled = reached.value.args[0]
    assert "VK_KHR_pipeline_executable_properties" in names and enabled == 1
    monkeypatch.delenv("HLX_PIPELINE_STATS")
    with pytest.raises(CreateDeviceReached) as reached:
        device_module.Device(ctx.instance, physical)
    names, enabled = reached.value.args[0]
    assert "VK_KHR_pipeline_executable_properties" not in names and enabled is None


@pytest.mark.parametrize("fmt,field,value", [("BOOL32", "b32", True), ("INT64", "i64", -5), ("UINT64", "u64", 2**40),
                                             ("FLOAT64", "f64", 0.25)])
def test_a_pipeline_statistic_reads_as_its_format_says(fmt, field, value):
    import vulkan as vkb

    from hlx_vulkan.vk.pipeline import _c_text, _statistic_value

    stat = vkb.ffi.new("VkPipelineExecutableStatisticKHR *")
    stat.format = getattr(vkb, f"VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_{fmt}_KHR")
    setattr(stat.value, field, value)
    stat.name = b"Register Count"
    assert _statistic_value(stat) == value and type(_statistic_value(stat)) is type(value)
    assert _c_text(stat.name) == "Register Count" and _c_text("already text") == "already text"
