"""The runtime of one device: memory, kernels, the stream; and the default one."""

from __future__ import annotations

import threading
import weakref

import numpy as np

from .. import errors
from ..memory import MemoryManager, TensorBuffer
from ..vk import VulkanContext
from ..vk.shader import target_env_for
from .kernels import KernelCache
from .stream import Stream

MAX_GROUPS_X = 65535


class Runtime:
    """Everything ops need on one device.

    Example::

        rt = Runtime(VulkanContext())
        rt.launch(kernel, [out, a, b], push, n)
        rt.synchronize()
    """

    def __init__(self, ctx: VulkanContext | None = None, *, own_context: bool | None = None):
        self.own_context = ctx is None if own_context is None else own_context
        self.ctx = ctx if ctx is not None else VulkanContext()
        self.device = self.ctx.device
        self.memory = MemoryManager(self.ctx)
        api = min(self.device.physical.api_version, self.device.instance.api_version)
        self.stream = Stream(self.device)
        self.live_graphs: weakref.WeakSet = weakref.WeakSet()
        self.kernels = KernelCache(self.device, self.ctx.physical_device.float_controls, target_env_for(api),
                                   before_reset=self._before_descriptor_reset)
        self.max_range = self.device.limits["max_storage_buffer_range"]

    def _before_descriptor_reset(self) -> None:
        if self.stream.capturing or len(self.live_graphs):
            raise errors.LimitExceededError("a kernel's descriptor-set cache is full while a captured graph uses its "
                                            "sets; destroy graphs you no longer need")
        self.stream.synchronize()

    @property
    def alive(self) -> bool:
        return self.device.alive

    def launch(self, kernel, tensors, push: bytes | None, threads: int, writes: int = 1) -> None:
        """Dispatch ``kernel`` over ``threads`` invocations (x, folded into y past 65535 groups).

        ``tensors`` are in binding order; the first ``writes`` are written, the rest read.
        """
        wg = kernel.workgroup[0]
        groups = max(1, -(-threads // wg))
        gy = -(-groups // MAX_GROUPS_X)
        gx = -(-groups // gy)
        self.dispatch(kernel, tensors, push, (gx, gy, 1), writes)

    def dispatch(self, kernel, tensors, push: bytes | None, groups, writes: int = 1) -> None:
        allocs = [t.allocation for t in tensors]
        ranges = [self._binding(a) for a in allocs]
        self.stream.dispatch(kernel, ranges, push, groups, reads=allocs[writes:], writes=allocs[:writes])

    def _binding(self, alloc) -> tuple:
        # Whole pool blocks are bound, so a block's descriptor set serves every tensor in it and
        # the tensor's place travels in push constants; only a block past the device's storage
        # range is bound at the allocation.
        block = alloc.block
        if block.size <= self.max_range:
            return block, 0, block.size
        return block, alloc.offset, alloc.size

    def elem_offset(self, buf: TensorBuffer) -> int:
        """Index of the tensor's first element inside the range its kernels bind."""
        alloc = buf._allocation if buf._allocation is not None else buf.allocation
        base = 0 if alloc._block.buffer.size <= self.max_range else alloc.offset
        return (alloc.offset - base + buf.byte_offset) // buf.dtype.itemsize

    def synchronize(self) -> None:
        self.stream.synchronize()

    def read(self, tensors: list[TensorBuffer]) -> list[np.ndarray]:
        self.stream.synchronize()
        return self.memory.read_many(tensors)

    def write(self, items) -> None:
        self.stream.synchronize()
        self.memory.write_many(items)

    def close(self) -> None:
        if self.device.alive:
            for graph in list(self.live_graphs):
                graph.destroy()
            self.stream.synchronize()
            self.stream.destroy()
            self.kernels.destroy()
            self.memory.destroy()
        if self.own_context:
            self.ctx.cleanup()


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process's runtime on the default device (HLX_DEVICE, else the best one), made on first use."""
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
