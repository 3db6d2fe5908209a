"""Host <-> device copies, batched: many ranges go in one command buffer.

Host-visible allocations are read and written in place; the others go
through one staging allocation per batch.
"""

from __future__ import annotations

import numpy as np
import vulkan as vkb

from ..vk import CommandBufferPool
from .pool import Allocation, MemoryPool


class Stager:
    """Copies bytes into and out of pool allocations.

    Example::

        stager.upload([(alloc, 0, arr)])
        (data,) = stager.download([(alloc, 0, arr.nbytes)])
    """

    def __init__(self, device, host_pool: MemoryPool):
        self.device = device
        self.host_pool = host_pool
        self._commands = CommandBufferPool(device, device.queue_family, 2)

    def _copy(self, regions: list[tuple]) -> None:
        """regions: (src VkBuffer, dst VkBuffer, src offset, dst offset, size)."""
        def record(cmd):
            for src, dst, so, do, n in regions:
                vkb.vkCmdCopyBuffer(cmd, src, dst, 1, [vkb.VkBufferCopy(srcOffset=so, dstOffset=do, size=n)])
        cmd = self._commands.begin_command_buffer()
        record(cmd)
        self._commands.end_command_buffer(cmd)
        self._commands.submit_and_wait(cmd)

    def upload(self, items: list[tuple[Allocation, int, object]]) -> None:
        """Write each ``(allocation, offset, bytes-like)``; the bytes must fit the allocation."""
        staged = []
        for alloc, offset, data in items:
            view = memoryview(data).cast("B")
            if offset < 0 or offset + view.nbytes > alloc.size:
                raise ValueError(f"{view.nbytes} bytes at offset {offset} do not fit an allocation of {alloc.size}")
            if alloc.host_visible:
                alloc.mapped()[offset:offset + view.nbytes] = view
            elif view.nbytes:
                staged.append((alloc, offset, view))
        if not staged:
            return
        total = sum(-(-v.nbytes // 16) * 16 for _, _, v in staged)
        staging = self.host_pool.allocate(total)
        try:
            out, regions, pos = staging.mapped(), [], 0
            for alloc, offset, view in staged:
                out[pos:pos + view.nbytes] = view
                regions.append((staging.buffer, alloc.buffer, staging.offset + pos, alloc.offset + offset, view.nbytes))
                pos += -(-view.nbytes // 16) * 16
            self._copy(regions)
        finally:
            staging.free()

    def download(self, items: list[tuple[Allocation, int, int]]) -> list[np.ndarray]:
        """``nbytes`` from each ``(allocation, offset, nbytes)``, as new uint8 arrays (one copy each)."""
        results: list[np.ndarray] = []
        staged = []
        for alloc, offset, nbytes in items:
            alloc.check_alive()
            if offset < 0 or offset + nbytes > alloc.size:
                raise ValueError(f"{nbytes} bytes at offset {offset} lie outside an allocation of {alloc.size}")
            if alloc.host_visible:
                results.append(np.array(np.frombuffer(alloc.mapped()[offset:offset + nbytes], np.uint8)))
            else:
                results.append(np.empty(nbytes, np.uint8))
                if nbytes:
                    staged.append((len(results) - 1, alloc, offset, nbytes))
        if staged:
            total = sum(-(-n // 16) * 16 for _, _, _, n in staged)
            staging = self.host_pool.allocate(total)
            try:
                regions, places, pos = [], [], 0
                for i, alloc, offset, n in staged:
                    regions.append((alloc.buffer, staging.buffer, alloc.offset + offset, staging.offset + pos, n))
                    places.append((i, pos, n))
                    pos += -(-n // 16) * 16
                self._copy(regions)
                mapped = staging.mapped()
                for i, p, n in places:
                    results[i][:] = np.frombuffer(mapped[p:p + n], np.uint8)
            finally:
                staging.free()
        return results

    def destroy(self) -> None:
        self._commands.destroy()
