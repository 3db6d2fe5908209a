"""Issue 14, the runtime's part: every failure is this library's error, nothing is lost, no input
crashes the process. Out of device memory, indices checked on the device, teardown with work in
flight, eager work beside live graphs."""

from __future__ import annotations

import gc
import re
import textwrap

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import VulkanContext, errors
from hlx_vulkan.memory import pool as pool_module
from hlx_vulkan.runtime import Runtime
from conftest import assert_clean_exit, run_python


@pytest.fixture
def own_runtime():
    """A runtime on a context of its own, closed after the test."""
    ctx = VulkanContext()
    rt = Runtime(ctx)
    yield rt
    rt.close()
    ctx.cleanup()


# --- out of device memory -----------------------------------------------------------------

def _cap_device_memory(monkeypatch, pool, budget: int) -> list:
    """Make block creation in ``pool`` fail as the driver does once its blocks would pass ``budget``
    bytes; returns the list of refused sizes."""
    real, refused = pool_module.Buffer, []

    def capped(device, size, *args, **kwargs):
        live = sum(b.buffer.size for b in pool._blocks if b.buffer.alive)
        if live + size > budget:
            refused.append(size)
            raise errors.OutOfDeviceMemoryError("vkAllocateMemory", "VK_ERROR_OUT_OF_DEVICE_MEMORY")
        return real(device, size, *args, **kwargs)

    monkeypatch.setattr(pool_module, "Buffer", capped)
    return refused


def test_out_of_device_memory_syncs_gives_back_cached_ranges_retries_then_raises(own_runtime, monkeypatch):
    rt = own_runtime
    pool = rt.memory.device_pool
    pool.block_size = 1 << 20
    refused = _cap_device_memory(monkeypatch, pool, 4 << 20)
    n = (1 << 20) // 4 // 2                      # half a block: two per block
    a = hv.tensor(np.arange(n, dtype=np.float32), runtime=rt)
    held = []
    with pytest.raises(errors.OutOfDeviceMemoryError, match="could not reserve") as info:
        for _ in range(100):
            held.append(a + 1.0)                 # pending work on each
    assert isinstance(info.value, MemoryError) and refused
    assert 6 <= len(held) <= 8                   # the budget held 4 blocks of 2 (a is one of them)
    in_use = pool.stats().in_use
    # The library keeps working: the failed request left nothing behind...
    np.testing.assert_array_equal(held[-1].numpy(), np.arange(n, dtype=np.float32) + 1)
    # ...and once the tensors go, a request of another size class (which no cached range serves)
    # gets memory: the pool waits for the device, gives the cached ranges back, retries.
    held.pop()
    pending = held[0] * 2.0                      # work in flight on a range about to be cached
    del held
    gc.collect()
    assert pool.stats().in_use < in_use and pool.stats().cached > 0
    big = hv.full((3 << 16,), 3.0, runtime=rt)   # 768 KiB: a new class, a block of its own
    np.testing.assert_array_equal((big + 1.0).numpy(), np.full(3 << 16, 4.0, np.float32))
    np.testing.assert_array_equal(pending.numpy(), (np.arange(n, dtype=np.float32) + 1) * 2)
    # A request past the budget even with everything given back still raises, and changes nothing.
    before = pool.stats().in_use
    with pytest.raises(errors.OutOfDeviceMemoryError):
        rt.memory.empty(((8 << 20) // 4,))
    assert pool.stats().in_use == before


def test_out_of_memory_frees_blocks_emptied_by_an_earlier_coalescing(own_runtime, monkeypatch):
    """Cached ranges given back to their blocks (to serve a request of another class) leave empty
    blocks behind: the retry after the driver's refusal frees them too."""
    rt = own_runtime
    pool = rt.memory.device_pool
    pool.block_size = 1 << 20
    _cap_device_memory(monkeypatch, pool, 3 << 20)
    x = hv.full((3 << 16,), 1.0, runtime=rt)            # 768 KiB: a dedicated block
    y = x + 1.0                                          # another one
    del x
    gc.collect()
    assert pool.stats().blocks == 2 and pool.stats().cached == 3 << 18
    z = hv.full((250 << 10,), 2.0, runtime=rt)          # 1000 KiB: a new dedicated block
    del y
    gc.collect()
    # 1000 KiB again: the two cached 768 KiB ranges go back to their (dedicated) blocks, which
    # cannot serve another size; the new block passes the budget until those empty blocks go.
    w = hv.full((250 << 10,), 5.0, runtime=rt)
    np.testing.assert_array_equal((z + w).numpy(), np.full(250 << 10, 7.0, np.float32))


def test_the_drivers_out_of_memory_is_a_typed_error_and_the_next_allocation_works():
    """A real refusal by the driver: the process's address space capped (RLIMIT_AS) past what it
    already uses, tensors allocated until vkAllocateMemory fails."""
    script = textwrap.dedent("""
        import gc, resource
        import hlx_vulkan as hv
        from hlx_vulkan import errors
        from hlx_vulkan.vk import validation
        (hv.ones(1 << 16) * 2.0).sum().item()          # kernels built, driver threads started
        vm = int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize")][0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20),) * 2)
        start = validation.mark()
        held = []
        try:
            for _ in range(64):
                held.append(hv.ones(4 << 20))           # 16 MiB each
            print("no error")
        except errors.OutOfDeviceMemoryError as e:
            print("oom", len(held), isinstance(e, MemoryError))
        # The layer reports each refused vkAllocateMemory (the first try and the retry): expected here.
        refused = validation.claim_errors(start)
        print("layer", all("OUT_OF_DEVICE_MEMORY" in m.text for m in refused))
        del held
        gc.collect()
        print("after", (hv.ones(2 << 20) * 3.0).sum().item())
    """)
    out = run_python(["-c", script])
    assert_clean_exit(out)
    lines = out.stdout.split("\n")
    assert lines[0].startswith("oom ") and lines[0].endswith(" True"), out.stdout
    assert 2 <= int(lines[0].split()[1]) < 16
    assert lines[1] == "layer True", out.stdout
    assert lines[2] == f"after {3.0 * (2 << 20)}", out.stdout


# --- teardown with work in flight ---------------------------------------------------------

def test_cleanup_with_recorded_work_waits_for_it_then_tensors_raise_destroyed():
    from hlx_vulkan.vk import live_objects
    gc.collect()
    baseline = live_objects()
    ctx = VulkanContext()
    rt = Runtime(ctx)
    x = hv.tensor(np.arange(100_000, dtype=np.float32), runtime=rt)
    y = x * 2.0 + 1.0
    assert rt.stream.recording
    submits = rt.stream.submits
    ctx.cleanup()                      # before: aborted the process at y.numpy() below
    assert rt.stream.submits == submits + 1 and rt.stream.completed == rt.stream.serial - 1
    with pytest.raises(errors.DestroyedError):
        y.numpy()
    with pytest.raises(errors.DestroyedError):
        y + 1.0
    with pytest.raises(errors.DestroyedError):
        hv.ones(4, runtime=rt)
    with pytest.raises(errors.DestroyedError):
        rt.synchronize()
    rt.close()                         # nothing left to do, and no error
    del x, y
    gc.collect()
    assert live_objects() == baseline


def test_a_failing_user_of_the_device_does_not_stop_its_teardown():
    from hlx_vulkan.vk import live_objects
    gc.collect()
    baseline = live_objects()
    ctx = VulkanContext()
    rt = Runtime(ctx)
    (hv.ones(8, runtime=rt) * 2.0).numpy()

    def lost(hold):
        raise errors.DeviceLostError("vkQueueSubmit", "VK_ERROR_DEVICE_LOST")
    ctx.device.on_close(lost)
    with pytest.raises(errors.DeviceLostError):
        ctx.cleanup()
    assert not ctx.device.alive and rt.stream.submits >= 1
    with pytest.raises(errors.DestroyedError):
        rt.synchronize()
    del rt
    gc.collect()
    assert live_objects() == baseline


def test_tensors_of_two_runtimes_in_one_op_are_refused_and_both_go_on():
    """Was a crash under the validation layer: a descriptor set of one device written with another
    device's buffer. Every op family meets the check where it first binds a range."""
    other = Runtime()
    try:
        x = hv.tensor(np.arange(6, dtype=np.float32))
        y = hv.tensor(np.arange(6, dtype=np.float32), runtime=other)
        for op in (lambda: x + y, lambda: y * x, lambda: x @ y.reshape(6, 1), lambda: x.copy_(y),
                   lambda: hv.cat([x, y]), lambda: hv.where(x > 2, x, y)):
            with pytest.raises(errors.DeviceMismatchError, match="different runtimes"):
                op()
        np.testing.assert_array_equal((x + x).numpy(), 2 * np.arange(6))
        np.testing.assert_array_equal((y * 3).numpy(), 3 * np.arange(6))
    finally:
        other.close()


def test_runtime_close_and_context_exit_finish_recorded_work():
    with VulkanContext() as ctx:
        rt = Runtime(ctx)
        y = hv.ones(1000, runtime=rt).sum()
        with hv.capture(rt) as graph:
            z = y * 3.0
        graph.replay()
        rt.close()
        assert not graph.alive
        with pytest.raises(errors.DestroyedError):
            z.numpy()
        with pytest.raises(errors.DestroyedError):
            graph.replay()
        with pytest.raises(errors.DestroyedError):
            hv.ones(4, runtime=rt)          # the context lives on; the runtime's pools are gone


@pytest.mark.parametrize("how", ["memory pools destroyed", "context cleaned up"])
def test_replay_after_its_memory_is_gone_raises_destroyed(how):
    ctx = VulkanContext()
    rt = Runtime(ctx)
    x = hv.ones(4096, runtime=rt)
    with hv.capture(rt) as graph:
        y = (x * 2.0).sum()
    graph.replay()
    assert y.item() == 8192.0
    graph.replay()                     # in flight while its memory goes
    if how == "memory pools destroyed":
        rt.memory.destroy()            # before: the next replay segfaulted
    else:
        ctx.cleanup()
    with pytest.raises(errors.DestroyedError):
        graph.replay()
    with pytest.raises(errors.DestroyedError):
        y.item()
    graph.destroy()
    rt.close()
    ctx.cleanup()


@pytest.mark.parametrize("submitted", [False, True])
def test_memory_freed_while_pending_work_reads_it_is_safe(submitted):
    """``free()`` while a recorded (or submitted, unfinished) op reads the memory, then a new
    allocation takes the same range and is filled from the host: the op still sees the old values."""
    rt = hv.default_runtime()
    n = 1 << 16
    a = hv.tensor(np.arange(n, dtype=np.float32))
    rt.synchronize()
    y = a * 2.0
    if submitted:
        rt.stream.submit()
    key = a.buf.allocation.key
    a.buf.free()
    b = hv.tensor(np.full(n, np.nan, np.float32))     # the freed range, overwritten from the host
    assert b.buf.allocation.key == key
    c = b + 1.0
    np.testing.assert_array_equal(y.numpy(), np.arange(n, dtype=np.float32) * 2)
    assert np.isnan(c.numpy()).all()


_DAEMON = """
import sys, threading, time
import numpy as np
import hlx_vulkan as hv
mode = sys.argv[1]
x = hv.randn(4096)
if mode == "replay":
    with hv.capture() as graph:
        y = (x * 1.5 + 2.0).sum()
started = threading.Event()
def work():
    i = 0
    while True:
        if mode == "replay":
            graph.replay()
        else:
            y = x * 1.5 + 2.0
        if mode == "item" and i % 10 == 0:
            y.sum().item()
        if mode == "upload":
            hv.tensor(np.ones(1000 + i % 7, np.float32)).numpy()
        i += 1
        started.set()
threading.Thread(target=work, daemon=True).start()
started.wait()
time.sleep(0.2)
print("exit")
"""


@pytest.mark.parametrize("mode", ["ops", "item", "upload", "replay"])
def test_exit_with_a_daemon_thread_still_computing_is_clean(mode):
    """Before: 6 of 11 such exits crashed (segfault or abort) or printed DestroyedError from the thread."""
    for _ in range(3):
        out = run_python(["-c", _DAEMON, mode])
        assert_clean_exit(out)
        assert out.stdout == "exit\n"
        assert out.stderr == "", out.stderr[-3000:]


# --- eager work beside live graphs --------------------------------------------------------

def test_eager_work_goes_on_beside_a_live_graph_past_the_descriptor_set_cache(own_runtime, monkeypatch):
    """Before: once a kernel's set cache was full (MAX_SETS; 4096, some 8,000 new large tensors)
    with a graph alive, every op raised LimitExceededError. Now the pool a graph uses is set
    aside, untouched, and eager work takes another; replays stay right throughout."""
    from hlx_vulkan.runtime import kernels
    monkeypatch.setattr(kernels, "MAX_SETS", 4)
    rt = own_runtime
    rt.memory.device_pool.block_size = 8192     # a block per tensor: new ranges, new sets, every op
    x = hv.full((2048,), 1.0, runtime=rt)
    rt.kernels.reset_usage()
    with hv.capture(rt) as graph:
        y = x * 3.0
    (kernel,) = rt.kernels.used()
    keep = []
    for i in range(40):                          # ten pools' worth of sets for the same kernel
        t = hv.full((2048,), float(i), runtime=rt)
        keep.append(t * 3.0)
        if i % 7 == 0:
            x.copy_(np.full(2048, float(i), np.float32))
            graph.replay()
            np.testing.assert_array_equal(y.numpy(), np.full(2048, 3.0 * i, np.float32))
    assert [k.numpy()[0] for k in keep] == [3.0 * i for i in range(40)]
    pools = kernel.descriptor_pools
    assert 2 <= pools <= 3                       # the graph's pool set aside; eager pools recycled
    graph.destroy()
    for i in range(20):                          # the graph's pool is recycled too, once it is gone
        keep[i] = hv.full((2048,), float(i), runtime=rt) * 3.0
    assert [k.numpy()[0] for k in keep[:20]] == [3.0 * i for i in range(20)]
    assert kernel.descriptor_pools == pools


def test_a_capture_that_fills_a_set_cache_takes_a_new_pool_without_a_sync(own_runtime, monkeypatch):
    from hlx_vulkan.runtime import kernels
    monkeypatch.setattr(kernels, "MAX_SETS", 2)
    rt = own_runtime
    rt.memory.device_pool.block_size = 8192
    xs = [hv.full((2048,), float(i), runtime=rt) for i in range(5)]
    with hv.capture(rt) as graph:
        ys = [x * 2.0 for x in xs]               # five sets: three pools, none reset mid-capture
    for x in xs:
        x.copy_(np.full(2048, 7.0, np.float32))
    graph.replay()
    assert [y.numpy()[0] for y in ys] == [14.0] * 5
    graph.destroy()


# --- indices checked on the device ---------------------------------------------------------

def _dev(values):
    return hv.tensor(np.asarray(values, np.int32))


_TABLE = np.arange(40, dtype=np.float32).reshape(10, 4)

# op name -> (what it raises under, a function of a device index tensor)
_DEVICE_INDEXED = {
    "index_select": lambda i: hv.index_select(hv.tensor(_TABLE), 0, i),
    "getitem": lambda i: hv.tensor(_TABLE)[i],
    "embedding": lambda i: _embedding()(i),
    "one_hot": lambda i: hv.one_hot(i, 10),
    "cross_entropy": lambda i: hv.nn.functional.cross_entropy(hv.ones(len(i), 10), i),
    "nll_loss": lambda i: hv.nn.functional.nll_loss(hv.ones(len(i), 10), i, reduction="none"),
    "index_select (backward)": lambda i: _backward_of_index_select(i),
}


def _embedding():
    emb = hv.nn.Embedding(10, 4)
    emb.weight.requires_grad_(False)
    return emb


def _backward_of_index_select(i):
    x = hv.tensor(_TABLE, requires_grad=True)
    with hv.no_grad():
        good = hv.zeros(len(i), dtype="int32")     # forward on good indices...
    y = hv.index_select(x, 0, good)
    with hv.no_grad():
        good.copy_(i)                               # ...backward reads the bad ones
    y.sum().backward()
    return x.grad


@pytest.mark.parametrize("op", list(_DEVICE_INDEXED))
@pytest.mark.parametrize("bad", [10, -11, 1 << 30])
def test_a_device_index_out_of_range_raises_at_the_next_sync_naming_the_op(op, bad):
    rt = hv.default_runtime()
    rt.synchronize()
    out = _DEVICE_INDEXED[op](_dev([1, bad, 3]))       # recorded: no host sync, no error yet
    with pytest.raises(errors.DeviceIndexError, match=rf"^{re.escape(op)}: .*out of range") as info:
        out.numpy()                                 # never a number
    assert isinstance(info.value, IndexError) and info.value.ops == (op,)
    assert str(bad) in str(info.value)
    # The words start afresh: the next sync is clean, and the op gives right results again.
    rt.synchronize()
    ok = _DEVICE_INDEXED[op](_dev([1, 2, 3])).numpy()
    if op in ("index_select", "getitem", "embedding"):
        assert ok.shape[0] == 3
    if op in ("index_select", "getitem"):
        np.testing.assert_array_equal(ok, _TABLE[[1, 2, 3]])


def test_negative_device_indices_wrap_only_where_torch_wraps():
    t = hv.tensor(_TABLE)
    np.testing.assert_array_equal(t[_dev([-1, 0, -10])].numpy(), _TABLE[[-1, 0, -10]])
    y = hv.index_select(t, 0, _dev([-1]))
    with pytest.raises(errors.DeviceIndexError, match="index_select.*smallest -1"):
        y.numpy()
    with pytest.raises(errors.DeviceIndexError, match="one_hot"):
        hv.one_hot(_dev([-1]), 3).numpy()


def test_device_errors_of_several_ops_are_named_together_and_hold_the_sync():
    a = hv.one_hot(_dev([5]), 3)
    b = hv.index_select(hv.tensor(_TABLE), 0, _dev([12]))
    with pytest.raises(errors.DeviceIndexError) as info:
        hv.synchronize()
    assert set(info.value.ops) == {"one_hot", "index_select"}
    del a, b


@pytest.mark.parametrize("call, match", [
    (lambda: hv.index_select(hv.tensor(_TABLE), 0, [0, 10]), "index 10 is out of range"),
    (lambda: hv.index_select(hv.tensor(_TABLE), 0, np.array([-1])), "index -1 is out of range"),
    (lambda: hv.tensor(_TABLE)[[0, -11]], "index -11 is out of range"),
    (lambda: _embedding()([3, 10]), "embedding: index 10"),
    (lambda: hv.one_hot([0, 3], 3), "one_hot: index 3"),
    (lambda: hv.nn.functional.cross_entropy(hv.ones(2, 3), [0, -1]), "cross_entropy: target index -1"),
    (lambda: hv.nn.functional.nll_loss(hv.ones(2, 3), np.array([3, 0])), "nll_loss: target index 3"),
])
def test_host_indices_are_refused_before_launch(call, match):
    with pytest.raises(errors.IndexOutOfRangeError, match=match) as info:
        call()
    assert isinstance(info.value, IndexError)
    hv.synchronize()  # nothing bad was recorded


def test_host_negative_index_into_getitem_wraps_as_numpy():
    np.testing.assert_array_equal(hv.tensor(_TABLE)[[-1, 2]].numpy(), _TABLE[[-1, 2]])


def test_a_replayed_graph_reports_a_bad_index_at_the_sync_after_the_replay():
    table = hv.tensor(_TABLE)
    idx = _dev([0, 1])
    with hv.capture() as graph:
        y = hv.index_select(table, 0, idx) * 2.0
    np.testing.assert_array_equal(y.numpy(), _TABLE[[0, 1]] * 2)
    with hv.no_grad():
        idx.copy_(np.array([4, 99], np.int32))
    graph.replay()
    with pytest.raises(errors.DeviceIndexError, match="index_select.*largest 99"):
        y.numpy()
    with hv.no_grad():
        idx.copy_(np.array([4, 9], np.int32))
    graph.replay()
    np.testing.assert_array_equal(y.numpy(), _TABLE[[4, 9]] * 2)
    graph.destroy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("on_device", [False, True])
def test_ignore_index_matches_torch(reduction, on_device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 5)).astype(np.float32)
    target = np.array([1, -100, 4, 0, -100, 2])
    x = hv.tensor(logits, requires_grad=True)
    t = _dev(target) if on_device else target
    loss = hv.nn.functional.cross_entropy(x, t, reduction=reduction)
    tx = torch.tensor(logits.astype(np.float64), requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tx, torch.tensor(target), reduction=reduction)
    np.testing.assert_allclose(loss.numpy(), ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    loss.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)
    ignore7 = hv.nn.functional.nll_loss(hv.tensor(logits), np.array([7, 1, 7, 0, 2, 3]), ignore_index=7)
    ref7 = torch.nn.functional.nll_loss(torch.tensor(logits), torch.tensor([7, 1, 7, 0, 2, 3]), ignore_index=7)
    np.testing.assert_allclose(ignore7.numpy(), ref7.numpy(), rtol=1e-6)


def test_all_targets_ignored_gives_nan_as_torch():
    loss = hv.nn.functional.cross_entropy(hv.ones(2, 3), _dev([-100, -100]))
    assert np.isnan(loss.item())


def test_launch_plans_stay_bounded_when_shapes_never_repeat(monkeypatch):
    from hlx_vulkan.runtime import runtime as runtime_module
    monkeypatch.setattr(runtime_module, "MAX_PLANS", 16)
    rt = hv.default_runtime()
    for n in range(1, 60):
        np.testing.assert_array_equal((hv.ones(n) * 2.0).numpy(), np.full(n, 2.0, np.float32))
    assert 0 < len(rt.plans) <= 16


def test_the_error_words_never_share_memory_with_pending_work():
    # The words used to be made (and zeroed by a host write) at the first checking kernel, in a
    # range that a pending forward pass still wrote: in-range targets then read as out of range.
    code = textwrap.dedent("""
        import numpy as np
        import hlx_vulkan as hv
        from hlx_vulkan import nn
        hv.manual_seed(0)
        m = nn.Sequential(nn.Linear(9, 13), nn.Tanh(), nn.Linear(13, 4))
        x = hv.randn(12, 9)
        y = np.random.default_rng(0).integers(0, 4, 12)
        loss = nn.CrossEntropyLoss()(m(x), hv.tensor(y))
        import torch
        tm = torch.nn.Sequential(torch.nn.Linear(9, 13), torch.nn.Tanh(), torch.nn.Linear(13, 4)).double()
        tm.load_state_dict({k: torch.tensor(v.numpy(), dtype=torch.float64) for k, v in m.state_dict().items()})
        want = torch.nn.functional.cross_entropy(tm(torch.tensor(x.numpy(), dtype=torch.float64)), torch.tensor(y))
        assert abs(loss.item() - want.item()) < 1e-5, (loss.item(), want.item())
    """)
    assert_clean_exit(run_python(["-c", code]))
