"""The stream: ops are recorded into a command buffer with the barriers their data
dependencies need, and submitted at a sync point or when a batch fills.

Hazards are tracked per allocation: a dispatch that reads memory written since
the last barrier (read after write), or writes memory read or written since
then (write after read, write after write), is preceded by a barrier. Every
allocation a recorded dispatch touches is kept alive until its batch has
finished, so freed memory is never handed out while the device may still use it.
"""

from __future__ import annotations

from collections import deque

from .. import errors
from ..vk import CommandBufferPool
from ..vk.api import ffi, vkb

BATCH_OPS = 512
_COMPUTE = vkb.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
_TRANSFER = vkb.VK_PIPELINE_STAGE_TRANSFER_BIT
_BIND_COMPUTE = vkb.VK_PIPELINE_BIND_POINT_COMPUTE
_STAGE_COMPUTE = vkb.VK_SHADER_STAGE_COMPUTE_BIT


def _barrier(src_access: int, dst_access: int):
    return ffi.new("VkMemoryBarrier*", {"sType": vkb.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                        "srcAccessMask": src_access, "dstAccessMask": dst_access})


_RW = vkb.VK_ACCESS_SHADER_READ_BIT | vkb.VK_ACCESS_SHADER_WRITE_BIT
_COMPUTE_TO_COMPUTE = _barrier(vkb.VK_ACCESS_SHADER_WRITE_BIT, _RW)
_ANY_TO_COMPUTE = _barrier(vkb.VK_ACCESS_SHADER_WRITE_BIT | vkb.VK_ACCESS_TRANSFER_WRITE_BIT,
                           _RW | vkb.VK_ACCESS_TRANSFER_READ_BIT | vkb.VK_ACCESS_TRANSFER_WRITE_BIT)
_TO_HOST = _barrier(vkb.VK_ACCESS_SHADER_WRITE_BIT | vkb.VK_ACCESS_TRANSFER_WRITE_BIT, vkb.VK_ACCESS_HOST_READ_BIT)


class Stream:
    """Records dispatches; submits in batches; :meth:`synchronize` waits for all of it.

    Example::

        stream.dispatch(kernel, [a_range, b_range, out_range], push, (groups, 1, 1),
                        reads=(a_alloc, b_alloc), writes=(out_alloc,))
        stream.synchronize()
    """

    def __init__(self, device, batch_ops: int = BATCH_OPS):
        self.device = device
        self.batch_ops = batch_ops
        self._pool = CommandBufferPool(device, device.queue_family, 3)
        self._cmd = None
        self._ops = 0
        self._keep: list = []
        self._written: set[int] = set()
        self._read: set[int] = set()
        self._in_flight: deque = deque()
        self._capture = None
        self.dispatches = 0
        self.barriers = 0
        self.submits = 0

    @property
    def recording(self) -> bool:
        return self._cmd is not None

    @property
    def capturing(self) -> bool:
        return self._capture is not None

    @property
    def capture_graph(self):
        """The graph being captured, or None."""
        return self._capture

    def begin_capture(self, graph) -> None:
        """From now on, record into ``graph``'s command buffers, which are kept, not submitted."""
        if self._capture is not None:
            raise errors.CaptureError("a capture is already in progress on this device")
        self.submit()
        self._capture = graph

    def end_capture(self) -> None:
        try:
            self.submit()
        finally:
            self._capture = None

    def track(self, waitable, keep=(), depth: int = 3) -> None:
        """Count work submitted outside the stream (a replay) as in flight: synchronize waits for
        it. More than ``depth`` submissions in flight and the oldest is waited for."""
        self._in_flight.append((waitable, list(keep)))
        while len(self._in_flight) > depth:
            done, _ = self._in_flight.popleft()
            done.wait()

    def _begin(self):
        self._cmd = (self._capture.new_command_buffer() if self._capture is not None
                     else self._pool.begin_command_buffer())
        # Order this batch after every earlier one on the queue, transfers included.
        vkb.lib.vkCmdPipelineBarrier(self._cmd, _COMPUTE | _TRANSFER, _COMPUTE | _TRANSFER, 0,
                                     1, _ANY_TO_COMPUTE, 0, ffi.NULL, 0, ffi.NULL)
        self._written.clear()
        self._read.clear()

    def barrier(self) -> None:
        """A full compute-to-compute barrier now (hazard tracking inserts these itself)."""
        if self._cmd is None:
            self._begin()
        vkb.lib.vkCmdPipelineBarrier(self._cmd, _COMPUTE, _COMPUTE, 0, 1, _COMPUTE_TO_COMPUTE, 0, ffi.NULL, 0, ffi.NULL)
        self._written.clear()
        self._read.clear()
        self.barriers += 1

    def dispatch(self, kernel, ranges, push: bytes | None, groups, reads=(), writes=()) -> None:
        """Record one dispatch of ``kernel``; ``ranges`` are (block, offset, size) per binding."""
        # First: making a set may have to flush the stream (see Kernel.descriptor_set).
        descriptor_set = kernel.descriptor_set(ranges)
        if self._cmd is None:
            self._begin()
        r = [id(a) for a in reads]
        w = [id(a) for a in writes]
        written, read = self._written, self._read
        if any(x in written for x in r) or any(x in written or x in read for x in w):
            self.barrier()
        cmd = self._cmd
        pipe = kernel.pipeline
        vkb.lib.vkCmdBindPipeline(cmd, _BIND_COMPUTE, pipe.pipeline)
        vkb.lib.vkCmdBindDescriptorSets(cmd, _BIND_COMPUTE, pipe.layout, 0, 1, descriptor_set, 0, ffi.NULL)
        if push:
            vkb.lib.vkCmdPushConstants(cmd, pipe.layout, _STAGE_COMPUTE, 0, len(push), ffi.from_buffer(push))
        vkb.lib.vkCmdDispatch(cmd, groups[0], groups[1], groups[2])
        read.update(r)
        written.update(w)
        self._keep.extend(reads)
        self._keep.extend(writes)
        self._ops += 1
        self.dispatches += 1
        if self._ops >= self.batch_ops:
            self.submit()

    def submit(self) -> None:
        """Send what is recorded to the device without waiting."""
        if self._cmd is None:
            return
        vkb.lib.vkCmdPipelineBarrier(self._cmd, _COMPUTE | _TRANSFER, vkb.VK_PIPELINE_STAGE_HOST_BIT, 0,
                                     1, _TO_HOST, 0, ffi.NULL, 0, ffi.NULL)
        cmd = self._cmd
        self._cmd = None
        if self._capture is not None:
            self._capture.add_segment(cmd, self._keep)
            self._keep = []
            self._ops = 0
            return
        self._pool.end_command_buffer(cmd)
        sub = self._pool.submit(cmd)
        self._in_flight.append((sub, self._keep))
        self._keep = []
        self._ops = 0
        self.submits += 1
        while len(self._in_flight) > 2:
            done, _ = self._in_flight.popleft()
            done.wait()

    def synchronize(self) -> None:
        """Submit what is recorded and wait until the device has finished all of it."""
        if self._capture is not None:
            raise errors.CaptureError("a host sync (.numpy(), .item(), synchronize(), a read-back) inside "
                                      "hv.capture() cannot be replayed; read results after graph.replay()")
        self.submit()
        while self._in_flight:
            sub, _ = self._in_flight.popleft()
            sub.wait()

    def destroy(self) -> None:
        if self._pool.alive:
            if self._cmd is not None:
                self._pool.end_command_buffer(self._cmd)
                self._cmd = None
            self._in_flight.clear()
            self._pool.destroy()
