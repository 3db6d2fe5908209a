import gc
import struct

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan import VulkanContext
from hlx_vulkan.runtime import Runtime
from hlx_vulkan.vk import record
from conftest import requires_validation


def test_ops_are_batched_not_submitted_one_by_one():
    rt = hv.default_runtime()
    x = hv.randn(1000)
    rt.synchronize()
    submits = rt.stream.submits
    y = x
    for _ in range(50):
        y = y * 1.0001 + 0.5
    assert rt.stream.submits == submits  # nothing sent until a sync point
    ref = x.numpy().astype(np.float64)
    for _ in range(50):
        ref = (ref * np.float32(1.0001)).astype(np.float32) + np.float32(0.5)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6)
    assert rt.stream.submits == submits + 1


def test_read_after_write_write_after_read_and_write_after_write():
    """In-place writes between reads must see the right values: each hazard needs its barrier."""
    x = hv.tensor(np.arange(10_000, dtype=np.float32))
    y = x * 2                 # reads x
    x.copy_(hv.full((10_000,), 5.0))   # WAR on x
    z = x + y                 # RAW on x and y
    x.copy_(z)                # WAR on x (read by z) and WAW
    np.testing.assert_array_equal(y.numpy(), np.arange(10_000, dtype=np.float32) * 2)
    np.testing.assert_array_equal(x.numpy(), 5 + np.arange(10_000, dtype=np.float32) * 2)


def test_freed_memory_is_not_reused_while_in_flight():
    rt = hv.default_runtime()
    keep = []
    for i in range(200):
        t = hv.full((4096,), float(i))
        keep.append((t + 1).sum())
        del t
        gc.collect()
    got = [k.item() for k in keep]
    assert got == [4096.0 * (i + 1) for i in range(200)]
    assert rt.stream.submits >= 1


def test_a_runtime_of_its_own_closes_cleanly():
    ctx = VulkanContext()
    rt = Runtime(ctx)
    x = hv.randn(10, runtime=rt)
    assert x.runtime is rt and float((x * 0).sum().item()) == 0.0
    rt.close()
    ctx.cleanup()


def test_descriptor_set_cache_overflow_waits_and_starts_afresh(monkeypatch):
    from hlx_vulkan.runtime import kernels
    monkeypatch.setattr(kernels, "MAX_SETS", 3)
    ctx = VulkanContext()
    rt = Runtime(ctx)
    outs = []
    # A small block size gives each tensor a block of its own: a new descriptor set per dispatch.
    rt.memory.device_pool.block_size = 4096
    xs = [hv.full((2048,), float(i), runtime=rt) for i in range(8)]
    for x in xs:
        outs.append(x * 2)
    assert [o.numpy()[0] for o in outs] == [2.0 * i for i in range(8)]
    rt.close()
    ctx.cleanup()


@requires_validation
def test_synchronization_validation_reports_a_missing_barrier(validation_gate, monkeypatch):
    """The suite runs with the layer's synchronization checks on: a hazard recorded without its
    barrier is a validation error, on lavapipe too, where the missing barrier changes no result."""
    rt = hv.default_runtime()
    rt.synchronize()
    validation_gate.take_errors()
    monkeypatch.setattr(rt.stream, "barrier", lambda: None)

    def dispatch_without_barrier(cmd, pipeline, layout, descriptor_set, push, gx, gy, gz, bind, *tracking):
        record.dispatch(cmd, pipeline, layout, descriptor_set, push, gx, gy, gz, bind)
        return 0
    monkeypatch.setattr(record, "dispatch_tracked", dispatch_without_barrier)
    x = hv.randn(4096)
    y = (x + 1.0) * 2.0       # reads what the add wrote: read after write
    y.numpy()
    monkeypatch.undo()
    errs = validation_gate.take_errors()
    assert any("SYNC-HAZARD-READ-AFTER-WRITE" in m.text for m in errs), [m.text[:200] for m in errs]


def test_reused_memory_is_ordered_after_its_last_use():
    """Memory freed on the host serves the next allocation at once (stream order): a range whose
    last reader is still pending, reused and overwritten from the host, gives the reader the old
    values; so do pipelined ops on recycled ranges."""
    rt = hv.default_runtime()
    n = 1 << 16
    base = np.arange(n, dtype=np.float32)
    x = hv.tensor(base)
    temps = [x + float(i) for i in range(12)]
    rt.synchronize()                 # the temporaries hold their values; now only reads are pending
    outs = []
    for i in range(12):
        t = temps.pop(0)
        outs.append(t * 2.0)         # a pending read of t...
        del t                        # ...then t is freed: its range is free at once
        hv.tensor(np.full(n, np.nan, np.float32))  # takes the freed range and poisons it
        u = x + 100.0                # a temporary written and read while the poison is pending too
        outs.append(u * 1.0)
        del u
    blocks = rt.memory.device_pool.stats().new_blocks
    for i in range(12):
        np.testing.assert_array_equal(outs[2 * i].numpy(), (base + i) * 2)
        np.testing.assert_array_equal(outs[2 * i + 1].numpy(), base + 100)
    assert rt.memory.device_pool.stats().new_blocks == blocks


def test_a_write_after_read_gets_its_barrier(validation_gate):
    """A tensor read by one op and then overwritten by the next (nothing else between them): the
    write must wait for the read; synchronization validation reports it if it does not."""
    from hlx_vulkan.ops.pointwise import launch
    rt = hv.default_runtime()
    x, w = hv.randn(4096), hv.randn(4096)
    before = x.numpy()
    rt.synchronize()
    y = x * 2.0                                   # reads x
    launch("x + CT(1)", [w], out=x)               # writes x, reads only w: a pure write after read
    np.testing.assert_array_equal(y.numpy(), before * 2)
    np.testing.assert_array_equal(x.numpy(), w.numpy() + 1)
    assert not validation_gate.take_errors()


def test_steady_state_loop_allocates_no_new_device_memory():
    rt = hv.default_runtime()
    x, y = hv.randn(1 << 20), hv.randn(1 << 20)   # 4 MiB each: pooled in shared blocks
    big_x, big_y = hv.randn(12 << 20), hv.randn(12 << 20)   # 48 MiB: dedicated blocks
    z = w = None
    for i in range(12):
        z = x + y
        w = big_x * big_y
        if i == 1:
            stats = rt.memory.device_pool.stats()
    rt.synchronize()
    after = rt.memory.device_pool.stats()
    assert after.new_blocks == stats.new_blocks and after.reserved == stats.reserved
    np.testing.assert_array_equal(z.numpy(), x.numpy() + y.numpy())
    np.testing.assert_array_equal(w.numpy(), big_x.numpy() * big_y.numpy())


def _unsynchronized_dispatches(ctx) -> None:
    """c = a + b, then a = c + b with no barrier between: a READ_AFTER_WRITE on c."""
    from hlx_vulkan import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, compile_glsl,
                            vk)
    from kernels import VECTOR_ADD
    host = vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT
    a, b, c = (Buffer(ctx.device, 1024, vk.BufferUsageFlags.STORAGE_BUFFER, host) for _ in range(3))
    bindings = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).add_storage_buffer(2).build()
    pipe = ComputePipeline(ctx.device, ctx.get_shader(ctx.load_shader(compile_glsl(VECTOR_ADD))), bindings, 4,
                           workgroup_size=(64,))
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 1)
    cmd = pool.begin_command_buffer()
    for src, dst in ((a, c), (c, a)):
        ds = pipe.allocate_descriptor_set()
        pipe.update_descriptor_set(ds, [(0, src, 0, 1024), (1, b, 0, 1024), (2, dst, 0, 1024)])
        pipe.record_dispatch(cmd, ds, struct.pack("<I", 256), (4, 1, 1))
    pool.end_command_buffer(cmd)
    pool.submit_and_wait(cmd, ctx.compute_queue)
    for obj in (pool, pipe, a, b, c):
        obj.destroy()


@requires_validation
def test_every_hazard_gets_its_barrier_under_synchronization_validation(monkeypatch, validation_gate):
    """With the layer's synchronization validation on (as HLX_VALIDATION turns it on), ops chained
    through read-after-write, write-after-read and write-after-write report no hazard: the stream
    put in each barrier. Tensors share pool blocks; each descriptor binds its tensor's range."""
    ctx = VulkanContext()
    rt = Runtime(ctx)
    try:
        _unsynchronized_dispatches(ctx)  # first: the layer does see a missing barrier
        seen = validation_gate.take_errors()
        assert any("SYNC-HAZARD-READ-AFTER-WRITE" in m.text for m in seen), [m.text for m in seen]

        n = 1000
        x = hv.tensor(np.arange(n, dtype=np.float32), runtime=rt)
        y = x * 2                                   # reads x
        x.copy_(hv.full((n,), 5.0, runtime=rt))     # WAR on x
        z = x + y                                   # RAW on x and y
        x.copy_(z)                                  # WAR and WAW on x
        w = hv.randn(16, 9, runtime=rt)
        h = (x[:144].reshape(16, 9) * w * 1e-3).tanh()
        p = hv.nn.functional.softmax(h.T @ w, axis=-1)   # matmul then softmax of its output
        s = (p * 3.0).sum(axis=1)
        np.testing.assert_array_equal(x.numpy(), 5 + 2 * np.arange(n, dtype=np.float32))
        np.testing.assert_allclose(s.numpy(), np.full(9, 3.0), rtol=1e-5)
        assert rt.stream.barriers > 0
    finally:
        rt.close()
        ctx.cleanup()


def test_large_ops_are_submitted_early_and_stay_ordered(monkeypatch):
    """Past SUBMIT_BYTES of touched memory a batch goes to the device before the sync point when the
    queue has room, so the device works while the host records; freed ranges reused across those
    submissions still see the right values."""
    from hlx_vulkan.runtime import stream as stream_module
    monkeypatch.setattr(stream_module, "SUBMIT_BYTES", 3 * 4 * 4099)
    rt = hv.default_runtime()
    rng = np.random.default_rng(7)
    a_np = rng.standard_normal(4099).astype(np.float32)
    x = hv.tensor(a_np)
    rt.synchronize()
    submits = rt.stream.submits
    y, ref = x, a_np.copy()
    for i in range(20):
        y = y * 0.5 + float(i)     # each result frees the last: its range is reused in stream order
        ref = (ref * np.float32(0.5)).astype(np.float32) + np.float32(i)
    # Submitted while recording, before any sync (as often as the queue had room: at least twice).
    assert rt.stream.submits >= submits + 2
    np.testing.assert_array_equal(y.numpy(), ref)


def test_no_early_submission_inside_a_capture(monkeypatch):
    from hlx_vulkan.runtime import stream as stream_module
    monkeypatch.setattr(stream_module, "SUBMIT_BYTES", 1)
    x = hv.randn(4099)
    out = hv.zeros(4099)
    rt = hv.default_runtime()
    rt.synchronize()
    with hv.capture() as graph:
        before = rt.stream._ops
        out.copy_(x * 2.0 + 1.0)
        assert rt.stream._ops == before + 3  # all three dispatches in one open segment
    graph.replay()
    np.testing.assert_array_equal(out.numpy(), x.numpy() * np.float32(2.0) + np.float32(1.0))
    graph.destroy()
