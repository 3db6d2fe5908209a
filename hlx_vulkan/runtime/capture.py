"""Record once, replay: ops recorded into command buffers that are kept, then resubmitted
with no per-op Python work (what CUDA graphs do for CUDA, with Vulkan command buffers).

Inside ``with capture() as graph:`` every op is recorded as in eager mode, but into the
graph's own command buffers; when the block ends, the graph runs once, so the code inside
has its eager effect. ``graph.replay()`` submits the same command buffers again: the same
kernels, descriptor sets and push constants over the same memory. Every allocation the
graph touches is pinned for the graph's life, so tensors made inside keep their memory.

Ops above the runtime can attach hooks that run before and after each run of the graph
(random draws use them to keep their generator's counter moving: each replay draws fresh
numbers, the ones the same step would draw eagerly).

What a replay could not reproduce is refused while capturing, with :class:`CaptureError`:
a host sync (``.numpy()``, ``.item()``), a host upload into an existing tensor (feed inputs
with ``x.copy_(batch)`` before ``replay()``), and freeing memory that a live graph uses.

Example::

    x.copy_(first_batch)
    with hv.capture() as graph:
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
    for batch in rest:
        x.copy_(batch)
        graph.replay()
"""

from __future__ import annotations

import contextlib
import weakref

from .. import errors
from ..strict_mode import _state as _strict
from ..vk import CommandBufferPool, record
from ..vk.commands import DEFAULT_TIMEOUT_S, Fence
from .runtime import Runtime, default_runtime

# Replays in flight at once; a replay waits for the one this many before it. Deep enough that
# a host thread descheduled for a few milliseconds does not let the GPU run dry.
RING = 8


class _FenceWait:
    __slots__ = ("fence",)

    def __init__(self, fence: Fence):
        self.fence = fence

    def wait(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if self.fence.alive:  # a destroyed graph waited for its replays before it went
            self.fence.wait(timeout)

    def done(self) -> bool:
        return not self.fence.alive or self.fence.is_signaled()


def _release(pinned: list, fences: list, pools: list, set_pools: list) -> None:
    """Free a graph's Vulkan objects once its replays are done, then unpin its memory: run by
    destroy() and, for a graph dropped without it, by the garbage collector."""
    for f in fences:
        if f.alive:
            f.wait()
    for pool in pools:
        pool.destroy()
    for f in fences:
        f.destroy()
    pools.clear()
    fences.clear()
    for a in pinned:
        a.pins -= 1
    pinned.clear()
    for sp in set_pools:
        sp.pins -= 1
    set_pools.clear()


class Graph:
    """Command buffers recorded by :func:`capture`, replayable until :meth:`destroy`."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.device = runtime.device
        self._pools: list[CommandBufferPool] = []
        self._cmds: list = []
        self._pinned: list = []
        self._seen: set[int] = set()
        self._fences: list[Fence] = []
        self._next = 0
        self._prepared = None
        self.dispatches = 0
        self.replays = 0
        self.written: set = set()  # keys of the memory ranges the recorded commands write
        # key -> object with before_run() (may record eager ops) and after_run(), set while capturing
        self.hooks: dict = {}
        self._set_pools: list = []  # the kernels' descriptor pools whose sets the commands bind
        self._set_pool_ids: set[int] = set()
        self.strict = _strict[0]  # the mode its kernels were built in (hlx_vulkan/strict_mode.py)
        self._release = weakref.finalize(self, _release, self._pinned, self._fences, self._pools, self._set_pools)

    # --- called by the stream while capturing -----------------------------------------
    def new_command_buffer(self):
        pool = CommandBufferPool(self.device, self.device.queue_family, 1)
        self._pools.append(pool)
        return pool.begin_command_buffer(reusable=True)

    def keep(self, allocations, written_keys) -> None:
        """Pin the memory a recorded command uses, from now until the graph is destroyed."""
        self.written.update(written_keys)
        for a in allocations:
            if id(a) not in self._seen:
                self._seen.add(id(a))
                a.pins += 1
                self._pinned.append(a)

    def pin_sets(self, set_pool) -> None:
        """Keep a kernel's descriptor pool from being reset while this graph lives."""
        if id(set_pool) not in self._set_pool_ids:
            self._set_pool_ids.add(id(set_pool))
            set_pool.pins += 1
            self._set_pools.append(set_pool)

    def add_segment(self, cmd) -> None:
        self._pools[-1].end_command_buffer(cmd)
        self._cmds.append(cmd)

    def _finish(self, dispatches: int) -> None:
        self.dispatches = dispatches
        self._seen.clear()
        self._fences.extend(Fence(self.device, signaled=True) for _ in range(RING))
        # Built once: a replay is a few raw Vulkan calls and no per-op work.
        self._prepared = record.PreparedSubmit(self.device, self._cmds)

    # --- the public face --------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._release.alive

    @property
    def segments(self) -> int:
        return len(self._cmds)

    def writes(self, buf) -> bool:
        """Whether a replay writes into the memory of ``buf`` (a TensorBuffer)."""
        return buf.allocation.key in self.written

    def replay(self) -> None:
        """Submit the recorded commands again (after any eager work recorded before this call)."""
        if not self.alive:
            raise errors.DestroyedError("this graph was destroyed")
        if self._prepared is None:
            raise errors.CaptureError("this graph is still being captured")
        stream = self.runtime.stream
        with stream.lock:  # one replay at a time; another thread's capture finishes first
            if not (self.device.alive and self.runtime.memory.alive
                    and (not self._pools or self._pools[0].alive)):
                raise errors.DestroyedError("this graph's device, memory pools or runtime were destroyed")
            if stream.capturing:
                raise errors.CaptureError("a graph cannot be replayed inside another capture")
            if self.strict != _strict[0]:
                mode = "strict" if self.strict else "default"
                raise errors.StrictModeError(f"this graph was captured in the {mode} mode and replays its kernels; "
                                             f"replay it in that mode, or capture it again")
            for hook in self.hooks.values():
                hook.before_run()
            stream.submit()
            if not self._cmds:
                return
            slot = self._next
            self._next = (slot + 1) % RING
            fence = self._fences[slot]
            if not fence.is_signaled():
                fence.wait()
            self._prepared.submit(fence)
            # RING - 1: the stream retires this slot's wait before the slot's fence is reset for a
            # later replay (with RING, each replay waited for the fence it had just submitted).
            stream.track(_FenceWait(fence), depth=RING - 1)
            for hook in self.hooks.values():
                hook.after_run()
            self.replays += 1

    def destroy(self) -> None:
        """Wait for the replays in flight, free the command buffers, unpin the memory."""
        if not self.alive:
            return
        if self.runtime.stream.capture_graph is self:
            raise errors.CaptureError("destroy() inside its own capture")
        self._release()
        self._cmds.clear()
        self._prepared = None
        self.hooks.clear()
        self.runtime.live_graphs.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()
        return False

    def __repr__(self) -> str:
        state = "destroyed" if not self.alive else f"{self.dispatches} dispatches, {self.replays} replays"
        return f"<Graph {state}>"


@contextlib.contextmanager
def capture(runtime: Runtime | None = None):
    """Record the ops run inside the block into a :class:`Graph`, then run it once.

    Example::

        with hv.capture() as graph:
            y.copy_(model(x))
        graph.replay()
    """
    rt = runtime or default_runtime()
    graph = Graph(rt)
    stream = rt.stream
    before = stream.dispatches
    stream.begin_capture(graph)
    ok = False
    try:
        yield graph
        ok = True
    finally:
        try:
            stream.end_capture()
        finally:
            if ok:
                graph._finish(stream.dispatches - before)
                rt.live_graphs.add(graph)
            else:
                graph.destroy()
    graph.replay()


__all__ = ["Graph", "capture"]
