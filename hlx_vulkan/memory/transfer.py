"""Host <-> device copies, batched and double-buffered.

Host-visible allocations are read and written in place. The others go through
two staging slots of host memory kept for the stager's life: copies are cut
into pieces of at most one slot, packed into batches (one command buffer each),
and while the device copies one batch the host fills or drains the other.
"""

from __future__ import annotations

import threading

import numpy as np

from ..vk import CommandBufferPool, record
from .pool import Allocation, MemoryPool

DEFAULT_SLOT_BYTES = 8 << 20
_PIECE_ALIGN = 16


class Stager:
    """Copies bytes into and out of pool allocations.

    Example::

        stager.upload([(alloc, 0, arr)])
        (data,) = stager.download([(alloc, 0, arr.nbytes)])
    """

    def __init__(self, device, host_pool: MemoryPool, slot_bytes: int = DEFAULT_SLOT_BYTES):
        self.device = device
        self.host_pool = host_pool
        self.slot_bytes = slot_bytes
        self._commands = CommandBufferPool(device, device.queue_family, 2)
        self._slots: list[Allocation] = []
        self._lock = threading.RLock()  # one transfer at a time: the slots and command buffers are shared

    def _staging(self, i: int) -> Allocation:
        while len(self._slots) <= i:
            self._slots.append(self.host_pool.allocate(self.slot_bytes))
        return self._slots[i]

    def _batches(self, pieces):
        """Group (alloc, offset, nbytes, payload) pieces into batches that fit one slot."""
        batch, used = [], 0
        for piece in pieces:
            size = -(-piece[2] // _PIECE_ALIGN) * _PIECE_ALIGN
            if batch and used + size > self.slot_bytes:
                yield batch
                batch, used = [], 0
            batch.append((used, *piece))
            used += size
        if batch:
            yield batch

    def _split(self, alloc, offset, nbytes, payload):
        for start in range(0, nbytes, self.slot_bytes):
            n = min(self.slot_bytes, nbytes - start)
            yield alloc, offset + start, n, payload, start

    def _submit(self, batch, slot: Allocation, to_device: bool):
        cmd = self._commands.begin_command_buffer()
        stage = slot.buffer
        for pos, alloc, offset, n, _, _ in batch:
            src, dst, so, do = ((stage, alloc.buffer, slot.offset + pos, alloc.offset + offset) if to_device
                                else (alloc.buffer, stage, alloc.offset + offset, slot.offset + pos))
            record.copy_buffer(cmd, src, dst, so, do, n)
        self._commands.end_command_buffer(cmd)
        return self._commands.submit(cmd)

    def upload(self, items: list[tuple[Allocation, int, object]]) -> None:
        """Write each ``(allocation, offset, bytes-like)``; the bytes must fit the allocation."""
        with self._lock:
            self._upload(items)

    def _upload(self, items) -> None:
        pieces = []
        for alloc, offset, data in items:
            view = np.frombuffer(memoryview(data).cast("B"), np.uint8)
            if offset < 0 or offset + view.nbytes > alloc.size:
                raise ValueError(f"{view.nbytes} bytes at offset {offset} do not fit an allocation of {alloc.size}")
            if alloc.host_visible:
                alloc.mapped()[offset:offset + view.nbytes] = view
            elif view.nbytes:
                alloc.check_alive()
                pieces.extend(self._split(alloc, offset, view.nbytes, view))
        in_flight = [None, None]
        try:
            for k, batch in enumerate(self._batches(pieces)):
                i = k % 2
                if in_flight[i] is not None:
                    in_flight[i].wait()
                slot = self._staging(i)
                out = np.frombuffer(slot.mapped(), np.uint8)
                for pos, _, _, n, view, start in batch:
                    out[pos:pos + n] = view[start:start + n]
                in_flight[i] = self._submit(batch, slot, to_device=True)
        finally:
            for sub in in_flight:
                if sub is not None:
                    sub.wait()

    def download(self, items: list[tuple[Allocation, int, int]]) -> list[np.ndarray]:
        """``nbytes`` from each ``(allocation, offset, nbytes)``, as new uint8 arrays (one copy each)."""
        with self._lock:
            return self._download(items)

    def _download(self, items) -> list[np.ndarray]:
        results: list[np.ndarray] = []
        pieces = []
        for alloc, offset, nbytes in items:
            alloc.check_alive()
            if offset < 0 or offset + nbytes > alloc.size:
                raise ValueError(f"{nbytes} bytes at offset {offset} lie outside an allocation of {alloc.size}")
            if alloc.host_visible:
                results.append(np.array(np.frombuffer(alloc.mapped()[offset:offset + nbytes], np.uint8)))
            else:
                results.append(np.empty(nbytes, np.uint8))
                if nbytes:
                    pieces.extend(self._split(alloc, offset, nbytes, results[-1]))

        def drain(batch, slot):
            src = np.frombuffer(slot.mapped(), np.uint8)
            for pos, _, _, n, out, start in batch:
                out[start:start + n] = src[pos:pos + n]

        pending = None  # (submission, batch, slot) copied but not yet drained
        try:
            for k, batch in enumerate(self._batches(pieces)):
                slot = self._staging(k % 2)
                sub = self._submit(batch, slot, to_device=False)
                if pending is not None:
                    pending[0].wait()
                    drain(pending[1], pending[2])
                pending = (sub, batch, slot)
            if pending is not None:
                pending[0].wait()
                drain(pending[1], pending[2])
                pending = None
        finally:
            if pending is not None:
                pending[0].wait()
        return results

    def destroy(self) -> None:
        self._commands.destroy()
        for slot in self._slots:
            slot.free()
        self._slots = []
