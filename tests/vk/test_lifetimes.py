import gc
import textwrap

import pytest

from hlx_vulkan import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, ShaderModule,
                        VulkanContext, compile_glsl, errors, vk)
from hlx_vulkan.vk import live_objects
from kernels import VECTOR_ADD
from conftest import assert_clean_exit, run_python

HOST = vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT
BINDINGS = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).add_storage_buffer(2).build()


@pytest.fixture(scope="module")
def spirv():
    return compile_glsl(VECTOR_ADD)


def _makers(ctx, spirv):
    shader = ShaderModule(ctx.device, spirv)
    return shader, {
        "Buffer": lambda: Buffer(ctx.device, 256, vk.BufferUsageFlags.STORAGE_BUFFER, HOST),
        "StagedBuffer": lambda: Buffer(ctx.device, 256, vk.BufferUsageFlags.STORAGE_BUFFER, HOST, mappable=False),
        "ShaderModule": lambda: ShaderModule(ctx.device, spirv),
        "ComputePipeline": lambda: ComputePipeline(ctx.device, shader, BINDINGS, 4),
        "CommandBufferPool": lambda: CommandBufferPool(ctx.device, ctx.compute_queue_family, 2),
        "Fence": lambda: vk.Fence(ctx.device),
    }


@pytest.mark.parametrize("how", ["destroy", "drop"])
def test_create_destroy_100_times_returns_to_baseline(ctx, spirv, how):
    shader, makers = _makers(ctx, spirv)
    gc.collect()
    baseline = live_objects()
    for name, make in makers.items():
        for _ in range(100):
            obj = make()
            if name == "StagedBuffer":
                obj.upload(b"abcd" * 64)
                assert obj.download() == b"abcd" * 64
            if how == "destroy":
                obj.destroy()
                obj.destroy()
            del obj
        gc.collect()
        assert live_objects() == baseline, f"{name} leaked"
    shader.destroy()


def test_holding_a_reference_keeps_it_alive(ctx):
    """The meta-test: the live count does see an object that is still referenced."""
    gc.collect()
    baseline = live_objects()
    kept = Buffer(ctx.device, 64, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)
    gc.collect()
    assert live_objects() != baseline
    kept.destroy()
    assert live_objects() == baseline


def test_closing_the_context_destroys_children_and_blocks_use():
    c = VulkanContext()
    buf = Buffer(c.device, 64, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)
    pool = CommandBufferPool(c.device, c.compute_queue_family, 2)
    before = live_objects()
    assert before.get("Buffer", 0) >= 1
    c.cleanup()
    c.cleanup()
    after = live_objects()
    assert after.get("Buffer", 0) == before["Buffer"] - 1
    assert after.get("Device", 0) == before["Device"] - 1
    with pytest.raises(errors.DestroyedError):
        buf.download()
    with pytest.raises(errors.DestroyedError):
        pool.begin_command_buffer()
    with pytest.raises(errors.DestroyedError):
        Buffer(c.device, 64, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)
    buf.destroy()


def test_dropping_the_context_frees_the_device():
    gc.collect()
    baseline = live_objects()
    c = VulkanContext()
    Buffer(c.device, 64, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)  # dropped at once
    del c
    gc.collect()
    assert live_objects() == baseline


def test_exit_with_live_resources_is_clean(tmp_path):
    script = textwrap.dedent("""
        import struct
        from hlx_vulkan import *
        from hlx_vulkan import vk
        import sys
        sys.path.insert(0, %r)
        from kernels import VECTOR_ADD
        from hlx_vulkan.vk import validation
        validation.add_listener(lambda m: print("VALIDATION", m.severity, m.text, file=sys.stderr))
        ctx = VulkanContext()
        HOST = vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT
        bufs = [Buffer(ctx.device, 1024, vk.BufferUsageFlags.STORAGE_BUFFER, HOST) for _ in range(3)]
        shader = ctx.get_shader(ctx.load_shader(compile_glsl(VECTOR_ADD)))
        b = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).add_storage_buffer(2).build()
        pipe = ComputePipeline(ctx.device, shader, b, 4)
        ds = pipe.allocate_descriptor_set()
        pipe.update_descriptor_set(ds, [(i, bufs[i]) for i in range(3)])
        pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 2)
        cmd = pool.begin_command_buffer()
        pipe.record_dispatch(cmd, ds, struct.pack("<I", 256), (1, 1, 1))
        pool.end_command_buffer(cmd)
        pool.submit(cmd)  # still in flight, maybe, at exit
        print("done")
    """) % (str(__import__("pathlib").Path(__file__).parents[1]),)
    proc = run_python(["-c", script], timeout=120)
    assert_clean_exit(proc)
    assert proc.stdout.strip() == "done"
    assert "VALIDATION" not in proc.stderr and "VUID" not in proc.stderr + proc.stdout
