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
