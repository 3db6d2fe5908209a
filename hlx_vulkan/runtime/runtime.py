"""The runtime of one device: memory, kernels, the stream; and the default one.

:meth:`Runtime.run` is the one entry point from an op to a kernel: it takes a kernel built
from its declaration (:class:`~hlx_vulkan.runtime.kernels.KernelSpec`), the tensors by
binding name and the push values by field name, and does the plumbing: element offsets,
packing, grid folding, descriptor sets and hazard barriers.

Threads: one runtime may be used from any number of threads. The stream serialises recording
and submission; the pools and the kernel cache lock their own state; each thread has its own
grad mode. Ops from different threads interleave whole, in the order they reached the stream.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from .. import errors
from ..memory import MemoryManager, TensorBuffer
from ..vk import VulkanContext
from ..vk.buffer import as_bytes_view
from ..vk.device import EXIT_LOCK_TIMEOUT_S
from ..vk.shader import target_env_for
from ..strict_mode import _state as _strict
from .checks import DeviceChecks
from .kernels import CHECK_BINDING, Kernel, KernelCache
from .stream import Stream

# Uploads up to this size are recorded into the stream through staging memory; larger ones
# wait for the device and go through the stager's double-buffered slots.
MAX_STREAM_UPLOAD = 64 << 20


# Launch plans kept at most; past it the cache starts afresh (a program whose shapes never repeat
# would otherwise grow it without end).
MAX_PLANS = 4096


class PlanCache(dict):
    """A dict of launch plans that empties itself when full: lookups stay a plain ``dict.get``."""

    def __setitem__(self, key, plan) -> None:
        if len(self) >= MAX_PLANS:
            self.clear()
        super().__setitem__(key, plan)


class Runtime:
    """Everything ops need on one device.

    Example::

        rt = Runtime(VulkanContext())
        kernel = rt.kernels.get(SPEC, dtypes={"O": out.dtype, "A": a.dtype})
        rt.run(kernel, {"O": out.buf, "A": a.buf}, {"n": n}, n)
        rt.synchronize()
    """

    def __init__(self, ctx: VulkanContext | None = None, *, own_context: bool | None = None):
        self.own_context = ctx is None if own_context is None else own_context
        self.ctx = ctx if ctx is not None else VulkanContext()
        self.device = self.ctx.device
        self.memory = MemoryManager(self.ctx)
        api = min(self.device.physical.api_version, self.device.instance.api_version)
        self.stream = Stream(self.device, self.memory.host_pool)
        self.memory.device_pool.on_pressure = self._make_room
        self.live_graphs: weakref.WeakSet = weakref.WeakSet()
        self.kernels = KernelCache(self.device, self.ctx.physical_device.float_controls, target_env_for(api),
                                   stream=self.stream)
        limits = self.device.limits
        self.max_groups = tuple(limits["max_compute_workgroup_count"])
        # Per-op launch plans (kernel, push constants, grid) by the op's own key; see ops/pointwise.py.
        # One cache per mode: strict mode's plans hold its own kernels (hlx_vulkan/strict_mode.py).
        self._plans = (PlanCache(), PlanCache())
        self._closed = False
        self._checks: DeviceChecks | None = None
        self.memory.before_destroy = self.stream.drain
        # The context's cleanup (or the process's exit) finishes this runtime's work first.
        self.device.on_close(self._device_closing)

    @property
    def plans(self) -> dict:
        """The launch plans of the current mode (default or strict)."""
        return self._plans[_strict[0]]

    def _make_room(self) -> bool:
        """Let the device pool coalesce its cached ranges: possible once the device is idle."""
        if self.stream.capturing:
            return False
        self.stream.synchronize()
        return True

    @property
    def alive(self) -> bool:
        return self.device.alive

    @property
    def checks(self) -> DeviceChecks:
        """The error words that kernels checking indices on the device write (made at first use)."""
        if self._checks is None:
            with self.stream.lock:
                if self._checks is None:
                    self._checks = self.stream.checks = DeviceChecks(self.memory, self.stream)
        return self._checks

    def run(self, kernel: Kernel, tensors, push=None, grid=1, check: str | None = None) -> None:
        """Record ``kernel`` over ``tensors``: binding name -> TensorBuffer, or a list of them in
        the declared binding order (what launch plans pass).

        ``push``: the push fields by name (a dict; ``off_<binding>`` fields are filled in), or
        bytes from ``kernel.spec.pack``. ``grid``: a number of invocations along x (workgroups
        folded into y past the device's limit), or workgroup counts ``(x, y, z)``. A kernel that
        checks indices on the device (an ``ERR`` binding) gets the error words and its ``site``
        filled in, under the op name ``check`` (the kernel's name by default), which the
        :class:`~hlx_vulkan.errors.DeviceIndexError` of the next sync point names.
        """
        spec = kernel.spec
        if type(tensors) is list and type(push) is bytes and type(grid) is tuple and not spec.checked:
            # What launch plans pass: binding order, packed push constants, workgroup counts.
            mx = self.max_groups
            if (len(tensors) == len(spec.names) and len(grid) == 3 and grid[0] <= mx[0] and grid[1] <= mx[1]
                    and grid[2] <= mx[2]):
                allocations = []  # a loop, not a comprehension: no frame of its own (CPython 3.11)
                for b in tensors:
                    allocations.append(b.allocation)
                self.stream.dispatch(kernel, allocations, push, grid)
                return
        if spec.checked and type(tensors) is dict:
            tensors = {**tensors, CHECK_BINDING: self.checks.buf}
            push = {**(push or {}), "site": self.checks.site(check or spec.name)}
        if type(tensors) is dict:
            try:
                bufs = [tensors[name] for name in spec.names]
            except KeyError as exc:
                raise errors.HlxError(f"kernel {spec.name} binds {list(spec.names)}; {exc.args[0]!r} was not "
                                      f"given") from None
            if len(tensors) != len(bufs):
                raise errors.HlxError(f"kernel {spec.name} binds {list(spec.names)}, not {sorted(tensors)}")
        else:
            bufs = tensors
            if len(bufs) != len(spec.names):
                raise errors.HlxError(f"kernel {spec.name} binds {list(spec.names)}; {len(bufs)} tensors given")
        if type(push) is not bytes:
            push = spec.pack(bufs, push or {})
        if type(grid) is int:
            groups = self.fold(grid, kernel.workgroup[0])
        else:
            groups = tuple(grid)
            mx = self.max_groups
            if groups[0] > mx[0] or groups[1] > mx[1] or groups[2] > mx[2]:
                raise errors.LimitExceededError(f"kernel {spec.name}: {groups} workgroups; the device allows {mx}")
        self.stream.dispatch(kernel, [b.allocation for b in bufs], push, groups)

    def fold(self, threads: int, workgroup: int) -> tuple[int, int, int]:
        """Workgroup counts covering ``threads`` invocations: x up to the device's limit, the rest in y."""
        groups = max(1, -(-threads // workgroup))
        gy = -(-groups // self.max_groups[0])
        if gy > self.max_groups[1]:
            raise errors.LimitExceededError(f"{threads} invocations are more than one dispatch covers on this device")
        return -(-groups // gy), gy, 1

    def synchronize(self) -> None:
        """Submit every recorded op and wait for it; raises DeviceIndexError if a kernel found an
        index out of range since the last sync point."""
        with self.stream.lock:
            self.stream.synchronize()
            if self._checks is not None:
                self._raise_device_errors()

    def _raise_device_errors(self) -> None:
        error = self._checks.take()
        if error is not None:
            # The words start afresh, in stream order: what is recorded next sees them zeroed.
            self.stream.upload(self._checks.buf.allocation, 0, self._checks.zeros)
            raise error

    def read(self, tensors: list[TensorBuffer]) -> list[np.ndarray]:
        """Host copies, after every recorded op (a sync point: see :meth:`synchronize`)."""
        self.synchronize()
        return self.memory.read_many(tensors)

    def write(self, items) -> None:
        """Overwrite tensors from host arrays, after every recorded op (a sync point)."""
        self.synchronize()
        self.memory.write_many(items)

    def upload(self, buf: TensorBuffer, array) -> None:
        """Fill ``buf`` (contiguous) from a host array, in stream order: ops recorded before this
        that use the memory see it as it was, ops recorded after see the new values."""
        a = np.asarray(array)
        if a.shape != buf.shape:
            raise errors.ShapeError(f"array of shape {a.shape} does not match tensor of shape {buf.shape}")
        if not buf.is_contiguous:
            raise errors.ShapeError("only contiguous tensors can be written")
        if not buf.numel:
            return
        alloc = buf.allocation
        data = as_bytes_view(np.ascontiguousarray(a.astype(buf.dtype.numpy, copy=False)))
        # Memory of a live graph may be read by a replay in flight: it is always written in stream order.
        if alloc.host_visible and not alloc.pins and (alloc.busy == 0 or self.stream.is_done(alloc.busy)):
            alloc.busy = 0
            alloc.mapped()[buf.byte_offset:buf.byte_offset + data.nbytes] = data  # no recorded work uses it
        elif data.nbytes <= MAX_STREAM_UPLOAD and not self.stream.capturing:
            self.stream.upload(alloc, buf.byte_offset, data)
        else:
            # Too large for staging in the stream, or a constant made inside a capture (which the
            # graph then reads on every replay): wait for the memory's last user, then copy.
            self.stream.wait_for(alloc.busy)
            self.memory.write_many([(buf, a)])

    def close(self) -> None:
        """Finish the recorded work and every graph's replays, then free this runtime's Vulkan
        objects (and its context, when it made it). Tensors used after this raise DestroyedError."""
        self._shutdown()
        if self.own_context:
            self.ctx.cleanup()

    def _shutdown(self) -> None:
        with self.stream.lock:
            if self._closed:
                return
            self._closed = True
            if not self.device.alive:
                return
            try:
                for graph in list(self.live_graphs):
                    if self.stream.capture_graph is not graph:
                        graph.destroy()
                self.stream.destroy()    # submits what is recorded, waits for it
            finally:
                self.kernels.destroy()
                self.memory.destroy()

    def _device_closing(self, hold: bool) -> None:
        """Called by the device before it is destroyed, or at exit. With ``hold`` (an exit with
        other threads still running) the stream, transfer and build locks are taken for good, the
        recorded work drained, and nothing freed: another thread may be using any of it."""
        if not hold:
            self._shutdown()
            return
        if self.stream.lock.acquire(timeout=EXIT_LOCK_TIMEOUT_S):  # kept
            try:
                self.stream.drain()
            except errors.HlxError:
                pass  # the exit goes on: the device is waited for idle after this
        self.memory.stager.freeze(EXIT_LOCK_TIMEOUT_S)
        self.kernels.freeze(EXIT_LOCK_TIMEOUT_S)


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process's runtime on the default device (HLX_DEVICE, else the best one), made on first use."""
    rt = _default
    if rt is not None and rt.device.alive:
        return rt
    return _make_default()


def _make_default() -> Runtime:
    global _default
    with _default_lock:
        if _default is None or not _default.alive:
            _default = Runtime()
        return _default


def set_default_runtime(runtime: Runtime | None) -> Runtime | None:
    """Make ``runtime`` the default; returns the previous one (not closed)."""
    global _default
    with _default_lock:
        previous, _default = _default, runtime
        return previous
