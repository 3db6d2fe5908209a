import struct

import numpy as np
import pytest

from hlx_vulkan import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, ShaderModule,
                        compile_glsl, errors, vk)
from kernels import SPIN

HOST = vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT


@pytest.fixture()
def spin(ctx):
    shader = ShaderModule(ctx.device, compile_glsl(SPIN))
    pipe = ComputePipeline(ctx.device, shader, DescriptorBindingBuilder().add_storage_buffer(0).build(), 4)
    buf = Buffer(ctx.device, 4, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)
    ds = pipe.allocate_descriptor_set()
    pipe.update_descriptor_set(ds, [(0, buf)])
    yield pipe, ds, buf
    for obj in (pipe, buf, shader):
        obj.destroy()


def _lcg(x, iters):
    for _ in range(iters):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
    return x


def test_round_robin_reuse_waits_for_in_flight_work(ctx, spin):
    pipe, ds, buf = spin
    buf.upload(struct.pack("<I", 7))
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 2)
    seen = []
    subs = []
    for _ in range(5):
        cmd = pool.begin_command_buffer()
        seen.append(pool._key(cmd))
        pipe.record_dispatch(cmd, ds, struct.pack("<I", 1000), (1, 1, 1))
        pipe.record_barrier(cmd)
        pool.end_command_buffer(cmd)
        subs.append(pool.submit(cmd, ctx.compute_queue))
    assert seen[0] == seen[2] == seen[4] and seen[1] == seen[3] and seen[0] != seen[1]
    subs[-1].wait()
    pool.wait_all()
    assert all(s.done() for s in subs[-2:])
    # Each submission ran in order on one queue: five chained updates.
    assert struct.unpack("<I", buf.download())[0] == _lcg(7, 5000)
    pool.destroy()


def test_misuse_is_refused(ctx, spin):
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 1)
    other = CommandBufferPool(ctx.device, ctx.compute_queue_family, 1)
    cmd = pool.begin_command_buffer()
    with pytest.raises(RuntimeError, match="end_command_buffer"):
        pool.submit(cmd)
    pool.end_command_buffer(cmd)
    with pytest.raises(RuntimeError, match="not recording"):
        pool.end_command_buffer(cmd)
    foreign = other.begin_command_buffer()
    with pytest.raises(ValueError, match="does not belong"):
        pool.end_command_buffer(foreign)
    other.end_command_buffer(foreign)
    pool.submit_and_wait(cmd)
    with pytest.raises(ValueError, match="at least 1"):
        CommandBufferPool(ctx.device, ctx.compute_queue_family, 0)
    pool.destroy(); other.destroy()
    with pytest.raises(errors.DestroyedError):
        pool.begin_command_buffer()


def test_wait_times_out_with_typed_error(ctx, spin):
    """The work waits on an event only the host sets, so it cannot finish before the timed wait
    (a long-running shader could, on a fast device or a busy host thread)."""
    import vulkan as vkb
    pipe, ds, buf = spin
    buf.upload(struct.pack("<I", 1))
    event = vkb.vkCreateEvent(ctx.device.handle, vkb.VkEventCreateInfo(), None)
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 1)
    try:
        cmd = pool.begin_command_buffer()
        vkb.vkCmdWaitEvents(cmd, 1, [event], vkb.VK_PIPELINE_STAGE_HOST_BIT, vkb.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                            0, None, 0, None, 0, None)
        pipe.record_dispatch(cmd, ds, struct.pack("<I", 10), (1, 1, 1))
        pool.end_command_buffer(cmd)
        sub = pool.submit(cmd)
        with pytest.raises(errors.FenceTimeoutError, match="did not finish"):
            sub.wait(timeout=0.0)
        assert not sub.done()
        vkb.vkSetEvent(ctx.device.handle, event)
        sub.wait(timeout=120)
        assert sub.done()
        assert struct.unpack("<I", buf.download())[0] == _lcg(1, 10)
    finally:
        pool.destroy()
        vkb.vkDestroyEvent(ctx.device.handle, event, None)


@pytest.fixture()
def held_by_event(ctx, spin):
    """Work that waits on an event only the host sets: it cannot finish until the test says so."""
    import vulkan as vkb
    pipe, ds, buf = spin
    buf.upload(struct.pack("<I", 1))
    event = vkb.vkCreateEvent(ctx.device.handle, vkb.VkEventCreateInfo(), None)
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 1)
    cmd = pool.begin_command_buffer()
    vkb.vkCmdWaitEvents(cmd, 1, [event], vkb.VK_PIPELINE_STAGE_HOST_BIT, vkb.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                        0, None, 0, None, 0, None)
    pipe.record_dispatch(cmd, ds, struct.pack("<I", 10), (1, 1, 1))
    pool.end_command_buffer(cmd)
    sub = pool.submit(cmd)
    yield sub, lambda: vkb.vkSetEvent(ctx.device.handle, event)
    vkb.vkSetEvent(ctx.device.handle, event)
    pool.destroy()
    vkb.vkDestroyEvent(ctx.device.handle, event, None)


def _fence_of(sub):
    return sub._pool._fences[sub._slot]


def _count_waits(monkeypatch, after=None):
    """Count the driver waits a fence wait makes; ``after(n)`` runs once the n-th one timed out."""
    import vulkan as vkb
    from hlx_vulkan.vk import commands
    real, calls = commands._wait_for_fences, []

    def wait_for_fences(device, fences, timeout_ns):
        calls.append(timeout_ns)
        result = real(device, fences, timeout_ns)
        if result == vkb.VK_TIMEOUT and after is not None:
            after(len(calls))
        return result
    monkeypatch.setattr(commands, "_wait_for_fences", wait_for_fences)
    return calls


def test_a_wait_without_timeout_lasts_as_long_as_the_work(monkeypatch, held_by_event):
    """Many slices pass while the work is held; none of them ends the wait with an error."""
    from hlx_vulkan.vk import commands
    sub, release = held_by_event
    _fence_of(sub)._spin_s = 0.0   # the blocking slices alone (a GPU polls first)
    monkeypatch.setattr(commands, "WAIT_SLICE_S", 0.001)
    calls = _count_waits(monkeypatch, after=lambda n: n == 20 and release())
    sub.wait()
    assert sub.done() and len(calls) > 20
    assert all(t == 1_000_000 for t in calls[:20])


def test_an_explicit_timeout_still_times_out_across_slices(monkeypatch, held_by_event):
    from hlx_vulkan.vk import commands
    sub, release = held_by_event
    _fence_of(sub)._spin_s = 0.0
    monkeypatch.setattr(commands, "WAIT_SLICE_S", 0.001)
    calls = _count_waits(monkeypatch)
    with pytest.raises(errors.FenceTimeoutError, match="within 0.05 s"):
        sub.wait(timeout=0.05)
    assert len(calls) > 1 and not sub.done()
    release()
    sub.wait()
    assert sub.done()


def test_a_lost_device_is_reported_once_as_device_lost(monkeypatch, held_by_event):
    import vulkan as vkb
    from hlx_vulkan.vk import commands
    sub, release = held_by_event
    calls = []

    def wait_for_fences(*args):
        calls.append(args)
        return vkb.VK_ERROR_DEVICE_LOST
    monkeypatch.setattr(commands, "_wait_for_fences", wait_for_fences)
    with pytest.raises(errors.DeviceLostError, match="vkWaitForFences failed with VK_ERROR_DEVICE_LOST"):
        sub.wait()
    assert len(calls) == 1


def test_a_gpu_wait_polls_the_fence_before_it_blocks(monkeypatch, held_by_event):
    """On a GPU a wait first polls (zero-timeout driver waits): a blocking wait wakes the thread
    late. The work finishes during the poll: no blocking wait is made."""
    sub, release = held_by_event
    _fence_of(sub)._spin_s = 30.0
    calls = _count_waits(monkeypatch, after=lambda n: n == 50 and release())
    sub.wait()
    assert sub.done() and len(calls) > 50
    assert set(calls) == {0}


def test_a_poll_that_outlasts_its_budget_falls_back_to_blocking_slices(monkeypatch, held_by_event):
    from hlx_vulkan.vk import commands
    sub, release = held_by_event
    _fence_of(sub)._spin_s = 0.01
    monkeypatch.setattr(commands, "WAIT_SLICE_S", 0.001)
    calls = _count_waits(monkeypatch, after=lambda n: calls[-1] > 0 and n > 3 and release())
    sub.wait()
    assert sub.done()
    first_block = next(i for i, t in enumerate(calls) if t > 0)
    assert first_block > 0 and set(calls[:first_block]) == {0}
    assert all(t == 1_000_000 for t in calls[first_block:-1])


def test_a_timeout_shorter_than_the_poll_budget_still_times_out(monkeypatch, held_by_event):
    sub, release = held_by_event
    _fence_of(sub)._spin_s = 30.0
    with pytest.raises(errors.FenceTimeoutError, match="within 0.02 s"):
        sub.wait(timeout=0.02)
    assert not sub.done()
    release()
    sub.wait()
    assert sub.done()


def test_a_device_lost_during_the_poll_is_reported_as_device_lost(monkeypatch, held_by_event):
    import vulkan as vkb
    from hlx_vulkan.vk import commands
    sub, release = held_by_event
    _fence_of(sub)._spin_s = 30.0
    calls = []

    def wait_for_fences(*args):
        calls.append(args)
        return vkb.VK_ERROR_DEVICE_LOST if len(calls) == 3 else vkb.VK_TIMEOUT
    monkeypatch.setattr(commands, "_wait_for_fences", wait_for_fences)
    with pytest.raises(errors.DeviceLostError, match="VK_ERROR_DEVICE_LOST"):
        sub.wait()
    assert len(calls) == 3


def test_fences_poll_on_a_gpu_and_not_on_a_cpu_device(ctx):
    from hlx_vulkan.vk import commands
    fence = commands.Fence(ctx.device)
    want = 0.0 if ctx.device.physical.type == "cpu" else commands.SPIN_S
    assert fence._spin_s == want
    fence.destroy()


def test_a_recycled_buffer_is_reset_at_the_wait_not_at_the_next_begin(ctx, spin, monkeypatch):
    from hlx_vulkan.vk import commands
    resets = []
    reset = commands._reset_command_buffer
    monkeypatch.setattr(commands, "_reset_command_buffer", lambda cmd: resets.append(cmd) or reset(cmd))
    pipe, ds, buf = spin
    buf.upload(struct.pack("<I", 3))
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 1)

    def one_run():
        cmd = pool.begin_command_buffer()
        pipe.record_dispatch(cmd, ds, struct.pack("<I", 10), (1, 1, 1))
        pool.end_command_buffer(cmd)
        return pool.submit(cmd, ctx.compute_queue)

    first = one_run()
    assert resets == []          # a new buffer starts in the initial state
    first.wait()
    first.recycle()
    assert len(resets) == 1
    second = one_run()
    assert len(resets) == 1      # recycled: its begin did not reset it again
    second.wait()
    third = one_run()            # not recycled: the begin resets it
    assert len(resets) == 2
    second.recycle()             # a stale submission: the slot was begun again since
    assert len(resets) == 2
    third.wait()
    assert struct.unpack("<I", buf.download())[0] == _lcg(3, 30)
    pool.destroy()
