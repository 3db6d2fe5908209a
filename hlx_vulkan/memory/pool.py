"""Pooled device memory: large blocks per memory kind, sub-allocated with alignment.

Each block is one :class:`~hlx_vulkan.vk.Buffer` (a VkBuffer over its own
VkDeviceMemory); an :class:`Allocation` is a range of it, usable directly as a
descriptor's (buffer, offset, range).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from .. import errors
from ..vk import Buffer, BufferUsageFlags, MemoryPropertyFlags
from .ranges import RangeAllocator

DEFAULT_BLOCK_SIZE = 64 << 20
# Empty dedicated blocks kept for reuse: allocating hundreds of MiB of device memory costs
# milliseconds, and a loop over large tensors frees and asks for the same sizes again.
KEEP_EMPTY_DEDICATED = 4
_USAGE = (BufferUsageFlags.STORAGE_BUFFER | BufferUsageFlags.UNIFORM_BUFFER
          | BufferUsageFlags.TRANSFER_SRC | BufferUsageFlags.TRANSFER_DST)

# kind -> (required memory flags, preferred flags)
KINDS = {
    # Tensors: device-local (on lavapipe that memory is host-visible too).
    "device": (MemoryPropertyFlags.DEVICE_LOCAL, 0),
    # Staging and read-back: mapped and coherent; cached where the device has it, since
    # reading uncached (write-combined) memory back is slow on discrete GPUs.
    "host": (MemoryPropertyFlags.HOST_VISIBLE | MemoryPropertyFlags.HOST_COHERENT, MemoryPropertyFlags.HOST_CACHED),
}


@dataclass(frozen=True)
class PoolStats:
    reserved: int       # bytes held in blocks
    in_use: int         # bytes handed out (alignment padding excluded)
    peak: int           # largest in_use so far
    blocks: int
    largest_free: int   # largest free range in any block


class _Block:
    __slots__ = ("buffer", "ranges", "dedicated", "emptied")

    def __init__(self, buffer: Buffer, dedicated: bool):
        self.buffer = buffer
        self.ranges = RangeAllocator(buffer.size)
        self.dedicated = dedicated
        self.emptied = 0  # when it last became empty, for evicting the oldest spare


def _release(pool_ref, block, offset) -> None:
    pool = pool_ref()
    if pool is not None:
        pool._release(block, offset)


class Allocation:
    """A range of a pool block. Freed by ``free()`` or when the last reference goes.

    Example::

        a = pool.allocate(4096)
        pipeline.update_descriptor_set(ds, [(0, a.buffer, a.offset, a.size)])
        a.free()
    """

    __slots__ = ("pool", "_block", "offset", "size", "_finalizer", "pins", "__weakref__")

    def __init__(self, pool: "MemoryPool", block: _Block, offset: int, size: int):
        self.pool, self._block, self.offset, self.size = pool, block, offset, size
        self.pins = 0  # live captured graphs that use this memory
        self._finalizer = weakref.finalize(self, _release, weakref.ref(pool), block, offset)

    @property
    def alive(self) -> bool:
        return self._finalizer.alive and self._block.buffer.alive

    def check_alive(self) -> None:
        if not self._finalizer.alive:
            raise errors.DestroyedError("this allocation was freed")
        self._block.buffer._check_alive()

    @property
    def buffer(self):
        """The VkBuffer handle of the block; use with :attr:`offset` and :attr:`size`."""
        self.check_alive()
        return self._block.buffer.buffer

    @property
    def block(self) -> Buffer:
        return self._block.buffer

    @property
    def host_visible(self) -> bool:
        return self._block.buffer._mapped is not None

    def mapped(self) -> memoryview:
        """The range's bytes in mapped memory (host-visible pools only): zero-copy."""
        self.check_alive()
        mapped = self._block.buffer._mapped
        if mapped is None:
            raise errors.HlxError("this allocation's memory is not host-visible; go through a staging copy")
        return memoryview(mapped)[self.offset:self.offset + self.size]

    def free(self) -> None:
        if self.pins:
            raise errors.CaptureError("this memory is used by a live captured graph; destroy the graph first")
        self._finalizer()


class MemoryPool:
    """Blocks of one memory kind ("device" or "host"), sub-allocated.

    A request larger than half a block gets a dedicated block of its own; a few
    empty dedicated blocks are kept for requests of about their size. Blocks never exceed the device's maxMemoryAllocationSize.
    Empty shared blocks are kept for reuse until :meth:`trim`. ``mappable=False``
    keeps blocks unmapped even where the memory is host-visible, so every copy
    goes through staging as on a discrete GPU.

    Example::

        pool = MemoryPool(ctx.device, "device")
        a = pool.allocate(1 << 20)
        print(pool.stats())
    """

    def __init__(self, device, kind: str = "device", block_size: int = DEFAULT_BLOCK_SIZE,
                 alignment: int | None = None, mappable: bool | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        device._check_alive()
        self.device, self.kind = device, kind
        self.mappable = mappable  # None: map blocks whose memory is host-visible
        limits = device.limits
        self.max_allocation = min(limits["max_memory_allocation_size"], max(device.memory_properties.heap_sizes))
        self.block_size = min(block_size, self.max_allocation)
        self.alignment = max(alignment or 1, limits["min_storage_buffer_offset_alignment"],
                             limits["min_uniform_buffer_offset_alignment"], limits["non_coherent_atom_size"], 16)
        self._blocks: list[_Block] = []
        self._lock = threading.RLock()
        self._peak = 0
        self._releases = 0

    def _in_use(self) -> int:
        return sum(b.ranges.in_use for b in self._blocks)

    def stats(self) -> PoolStats:
        with self._lock:
            self._drop_dead_blocks()
            return PoolStats(
                reserved=sum(b.buffer.size for b in self._blocks), in_use=self._in_use(), peak=self._peak,
                blocks=len(self._blocks), largest_free=max((b.ranges.largest_free for b in self._blocks), default=0))

    def _drop_dead_blocks(self) -> None:
        self._blocks = [b for b in self._blocks if b.buffer.alive]

    def _new_block(self, size: int, dedicated: bool) -> _Block:
        try:
            required, preferred = KINDS[self.kind]
            buffer = Buffer(self.device, size, _USAGE, required, mappable=self.mappable, preferred_flags=preferred)
        except errors.OutOfDeviceMemoryError as exc:
            raise errors.OutOfDeviceMemoryError(
                exc.call, exc.result,
                f"pool '{self.kind}' could not reserve a block of {size} bytes "
                f"({self._in_use()} bytes in use, {sum(b.buffer.size for b in self._blocks)} reserved)") from None
        block = _Block(buffer, dedicated)
        self._blocks.append(block)
        return block

    def allocate(self, size: int, alignment: int | None = None) -> Allocation:
        """``size`` bytes at an offset aligned for descriptors, mapping and ``alignment``."""
        size = int(size)
        if size <= 0:
            raise ValueError(f"allocation size must be positive, got {size}")
        align = max(self.alignment, alignment or 1)
        if size > self.max_allocation:
            raise errors.OutOfDeviceMemoryError(
                "vkAllocateMemory", "VK_ERROR_OUT_OF_DEVICE_MEMORY",
                f"{size} bytes asked, more than one allocation may hold on this device ({self.max_allocation}); "
                f"{self.stats().in_use} bytes in use")
        with self._lock:
            self.device._check_alive()
            for block in self._blocks:
                if block.dedicated:
                    continue
                offset = block.ranges.allocate(size, align)
                if offset is not None:
                    return self._handed_out(block, offset, size)
            dedicated = size > self.block_size // 2
            if dedicated:
                spare = [b for b in self._blocks if b.dedicated and b.ranges.empty
                         and size <= b.buffer.size <= 2 * size]
                if spare:
                    block = min(spare, key=lambda b: b.buffer.size)
                    return self._handed_out(block, block.ranges.allocate(size, align), size)
            block_bytes = -(-size // align) * align if dedicated else self.block_size
            block = self._new_block(block_bytes, dedicated)
            return self._handed_out(block, block.ranges.allocate(size, align), size)

    def _handed_out(self, block: _Block, offset: int, size: int) -> Allocation:
        self._peak = max(self._peak, self._in_use())
        return Allocation(self, block, offset, size)

    def _release(self, block: _Block, offset: int) -> None:
        with self._lock:
            if not block.buffer.alive:
                return
            block.ranges.free(offset)
            if block.dedicated and block.ranges.empty:
                self._releases += 1
                block.emptied = self._releases
                spare = sorted((b for b in self._blocks if b.dedicated and b.ranges.empty), key=lambda b: b.emptied)
                for old in spare[:-KEEP_EMPTY_DEDICATED]:
                    old.buffer.destroy()
                self._drop_dead_blocks()

    def trim(self) -> int:
        """Free empty blocks; returns the bytes given back to the device."""
        with self._lock:
            freed = 0
            for block in self._blocks:
                if block.ranges.empty:
                    freed += block.buffer.size
                    block.buffer.destroy()
            self._drop_dead_blocks()
            return freed

    def destroy(self) -> None:
        """Free every block; allocations still held report themselves destroyed."""
        with self._lock:
            for block in self._blocks:
                block.buffer.destroy()
            self._blocks = []
