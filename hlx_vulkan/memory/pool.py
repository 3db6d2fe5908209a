"""Pooled device memory: large blocks per memory kind, sub-allocated with alignment, and a
caching allocator on top (as PyTorch's and cudaMallocAsync's).

Each block is one :class:`~hlx_vulkan.vk.Buffer` (a VkBuffer over its own VkDeviceMemory);
an :class:`Allocation` is a range of it, usable directly as a descriptor's (buffer, offset,
range). A request is rounded up to a size class; a freed range goes back to its class's free
list at once, not to the block, and serves the next request of that class: steady-state loops
allocate no new memory. Since a range is only ever reused whole, by a request of the same
class, a hazard tracker that keys work by (block, offset) sees every reuse. Memory freed while
recorded work may still use it is safe to reuse by later work on the same queue (stream
order); ``Allocation.busy`` tells a host writer which recorded batch it must wait for.
Cached ranges go back to their blocks, coalescing, in :meth:`MemoryPool.trim`,
which needs the device to be done with them (the runtime synchronizes first).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from .. import errors
from ..vk import Buffer, BufferUsageFlags, MemoryPropertyFlags
from .ranges import RangeAllocator

DEFAULT_BLOCK_SIZE = 64 << 20
_OUT_OF_MEMORY = (errors.OutOfDeviceMemoryError, errors.OutOfHostMemoryError)
# Size classes, as PyTorch's caching allocator rounds: multiples of 512 bytes below 1 MiB, of
# 2 MiB above: a little padding, and few classes, so freed ranges find takers.
SMALL_CLASS_STEP = 512
SMALL_CLASS_LIMIT = 1 << 20
LARGE_CLASS_STEP = 2 << 20
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
    in_use: int         # bytes handed out to live allocations (padding to the class excluded)
    peak: int           # largest in_use so far
    blocks: int
    largest_free: int   # largest free range in any block (cached ranges not counted)
    cached: int = 0     # bytes of freed ranges kept in the free lists for reuse
    peak_reserved: int = 0  # largest reserved so far
    new_blocks: int = 0     # device memory allocations made so far (vkAllocateMemory calls)


class _Block:
    __slots__ = ("buffer", "ranges", "dedicated", "order")

    def __init__(self, buffer: Buffer, dedicated: bool):
        self.buffer = buffer
        self.ranges = RangeAllocator(buffer.size)
        self.dedicated = dedicated
        self.order = buffer._order


class Allocation:
    """A range of a pool block. Freed by ``free()`` or when the last reference goes.

    ``size`` is the range's size (``nbytes``, the request, rounded up to its size class); ``key`` names
    the range, ``(block order, offset, size)``, for descriptor-set caches and hazard tracking;
    ``busy`` is the serial of the last recorded batch that may use the range (0: none).

    Example::

        a = pool.allocate(4096)
        pipeline.update_descriptor_set(ds, [(0, a.buffer, a.offset, a.size)])
        a.free()
    """

    __slots__ = ("_pool_ref", "_block", "offset", "size", "nbytes", "key", "busy", "freed", "pins", "_list",
                 "__weakref__")

    def __init__(self, pool: "MemoryPool", block: _Block, offset: int, size: int, nbytes: int, busy: int = 0,
                 free_list: tuple = ()):
        self._pool_ref, self._block, self.offset, self.size, self.busy = pool._ref, block, offset, size, busy
        self._list = free_list or (size, pool.alignment)  # the free list the range goes back to
        self.nbytes = nbytes  # the bytes asked for
        self.key = (block.order, offset, size)
        self.pins = 0  # live captured graphs that use this memory
        self.freed = False

    # A range is a few integers, not a Vulkan object: __del__ returns it, since weakref.finalize's
    # registration would cost more than the rest of an eager op's allocation.
    def __del__(self):
        if not self.freed:  # _give_back and MemoryPool._release, inlined: every eager temporary passes here
            self.freed = True
            pool = self._pool_ref()
            if pool is not None:
                with pool._lock:
                    pool._in_use -= self.nbytes
                    if self._block.buffer.destroyed:
                        return
                    free_list = self._list
                    entries = pool._free.get(free_list)
                    if entries is None:
                        entries = pool._free[free_list] = []
                    entries.append((self._block, self.offset, self.busy))
                    pool._cached += free_list[0]

    def _give_back(self) -> None:
        self.freed = True
        pool = self._pool_ref()
        if pool is not None:
            pool._release(self._block, self.offset, self._list, self.nbytes, self.busy)

    @property
    def pool(self) -> "MemoryPool | None":
        return self._pool_ref()

    @property
    def alive(self) -> bool:
        return not self.freed and self._block.buffer.alive

    def check_alive(self) -> None:
        if self.freed:
            raise errors.DestroyedError("this allocation was freed")
        if not self._block.buffer.alive:
            raise errors.DestroyedError("this allocation's memory was destroyed with its pool or device")

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
        return self._block.buffer.is_mapped

    def mapped(self) -> memoryview:
        """The range's bytes in mapped memory (host-visible pools only): zero-copy."""
        self.check_alive()
        return self._block.buffer.mapped_view(self.offset, self.size)

    def free(self) -> None:
        """Give the range back now; work already recorded that uses it is unaffected (stream order)."""
        if self.pins:
            raise errors.CaptureError("this memory is used by a live captured graph; destroy the graph first")
        if not self.freed:
            self._give_back()


class MemoryPool:
    """Blocks of one memory kind ("device" or "host"), sub-allocated, with cached free ranges.

    A request larger than half a block gets a dedicated block of its own. Blocks never exceed
    the device's maxMemoryAllocationSize. A freed range keeps its allocation's ``busy`` serial
    (stamped by the stream at each use) for its next holder; ``on_pressure()`` (set by the runtime)
    makes the device finish all recorded work and returns True, or returns False where it
    cannot (inside a capture); a bare pool's returns True: before a new block is made while cached ranges could serve,
    and before giving up for lack of memory, the pool calls it and gives its cached ranges
    back. ``mappable=False`` keeps blocks unmapped even where the memory is host-visible, so
    every copy goes through staging as on a discrete GPU.

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
        self._ref = weakref.ref(self)
        self._small_step = max(self.alignment, SMALL_CLASS_STEP)
        self._free: dict[tuple[int, int], list] = {}  # (class size, alignment) -> [(block, offset, busy)]
        self._cached = 0
        self._in_use = 0
        self._peak = 0
        self._peak_reserved = 0
        self._new_blocks = 0
        self._destroyed = False
        # A bare pool's user orders their own work: its freed ranges can always be coalesced.
        self.on_pressure = lambda: True

    def size_class(self, size: int, alignment: int | None = None) -> int:
        """The bytes a request of ``size`` reserves."""
        step = max(self.alignment, alignment or 1, SMALL_CLASS_STEP) if size < SMALL_CLASS_LIMIT else LARGE_CLASS_STEP
        return -(-size // step) * step

    def stats(self) -> PoolStats:
        with self._lock:
            self._drop_dead_blocks()
            return PoolStats(
                reserved=self._reserved(), in_use=self._in_use, peak=self._peak, blocks=len(self._blocks),
                largest_free=max((b.ranges.largest_free for b in self._blocks), default=0), cached=self._cached,
                peak_reserved=self._peak_reserved, new_blocks=self._new_blocks)

    def reset_peak(self) -> None:
        """Start the peaks of :meth:`stats` afresh from what is in use and reserved now."""
        with self._lock:
            self._peak, self._peak_reserved = self._in_use, self._reserved()

    def _reserved(self) -> int:
        return sum(b.buffer.size for b in self._blocks)

    def _drop_dead_blocks(self) -> None:
        self._blocks = [b for b in self._blocks if b.buffer.alive]

    def _new_block(self, size: int, dedicated: bool) -> _Block:
        required, preferred = KINDS[self.kind]
        buffer = Buffer(self.device, size, _USAGE, required, mappable=self.mappable, preferred_flags=preferred)
        block = _Block(buffer, dedicated)
        self._blocks.append(block)
        self._new_blocks += 1
        self._peak_reserved = max(self._peak_reserved, self._reserved())
        return block

    def allocate(self, size: int, alignment: int | None = None) -> Allocation:
        """``size`` bytes at an offset aligned for descriptors, mapping and ``alignment``."""
        if alignment is None and 0 < size < SMALL_CLASS_LIMIT:  # the eager ops' path
            align = self.alignment
            cls = -(-size // self._small_step) * self._small_step
        else:
            size = int(size)
            if size <= 0:
                raise ValueError(f"allocation size must be positive, got {size}")
            align = max(self.alignment, alignment or 1)
            if align & (align - 1):
                raise ValueError(f"alignment must be a power of two, got {alignment}")
            cls = self.size_class(size, align)
        if cls > self.max_allocation:
            raise errors.OutOfDeviceMemoryError(
                "vkAllocateMemory", "VK_ERROR_OUT_OF_DEVICE_MEMORY",
                f"{size} bytes asked, more than one allocation may hold on this device ({self.max_allocation}); "
                f"{self._in_use} bytes in use")
        free_list = (cls, align)
        with self._lock:
            cached = self._free.get(free_list)
            if cached:  # a cached range of the class: the steady state's path, kept short
                block, offset, busy = cached.pop()
                self._cached -= cls
                self._in_use += size
                if self._in_use > self._peak:
                    self._peak = self._in_use
                return Allocation(self, block, offset, cls, size, busy, free_list)
            if self._destroyed:
                raise errors.DestroyedError(f"pool '{self.kind}' was destroyed (its runtime closed)")
            self.device._check_alive()
            found = self._carve(cls, align, grow=False)
            if found is None and self._cached >= cls and self.on_pressure():
                # Cached ranges of other classes could serve once coalesced: reuse before growing.
                self._release_cached()
                found = self._carve(cls, align, grow=False)
            if found is None:
                try:
                    found = self._carve(cls, align, grow=True)
                except _OUT_OF_MEMORY:
                    # The driver is out: let the device finish, give every cached range and empty
                    # block back (where the device cannot be waited for, the empty blocks only), and
                    # try once more.
                    if self.on_pressure():
                        self._release_cached()
                    self._free_empty_blocks()
                    try:
                        found = self._carve(cls, align, grow=True)
                    except _OUT_OF_MEMORY as exc:
                        raise self._out_of_memory(cls, exc) from None
            return self._handed_out(*found, cls, size, 0, (cls, align))

    def _out_of_memory(self, size: int, cause: errors.VulkanError) -> errors.VulkanError:
        return type(cause)(
            cause.call, cause.result,
            f"pool '{self.kind}' could not reserve {size} bytes, even after giving back its cached ranges "
            f"({self._in_use} bytes in use, {self._reserved()} reserved)")

    def _carve(self, cls: int, align: int, grow: bool):
        """(block, offset) of a new range of ``cls`` bytes; None when no block has room and not ``grow``."""
        dedicated = cls > self.block_size // 2
        if not dedicated:
            for block in self._blocks:
                if not block.dedicated:
                    offset = block.ranges.allocate(cls, align)
                    if offset is not None:
                        return block, offset
        else:
            for block in self._blocks:
                if block.dedicated and block.ranges.empty and block.buffer.size == cls:
                    return block, block.ranges.allocate(cls, align)
        if not grow:
            return None
        block = self._new_block(cls if dedicated else self.block_size, dedicated)
        return block, block.ranges.allocate(cls, align)

    def _handed_out(self, block: _Block, offset: int, cls: int, nbytes: int, busy: int, free_list) -> Allocation:
        self._in_use += nbytes
        if self._in_use > self._peak:
            self._peak = self._in_use
        return Allocation(self, block, offset, cls, nbytes, busy, free_list)

    def _release(self, block: _Block, offset: int, free_list: tuple, nbytes: int, busy: int) -> None:
        with self._lock:
            self._in_use -= nbytes
            if block.buffer.destroyed:
                return
            entries = self._free.get(free_list)
            if entries is None:
                entries = self._free[free_list] = []
            entries.append((block, offset, busy))
            self._cached += free_list[0]

    def _release_cached(self) -> None:
        free, self._free = self._free, {}  # a range freed meanwhile (by the collector) starts the new lists
        self._cached = 0
        for entries in free.values():
            for block, offset, _ in entries:
                if block.buffer.alive:
                    block.ranges.free(offset)

    def _free_empty_blocks(self) -> int:
        # A block with no range handed out or cached is used by no recorded work: a range goes back
        # to its block only in _release_cached, after the device finished with it.
        freed = 0
        for block in self._blocks:
            if block.ranges.empty:
                freed += block.buffer.size
                block.buffer.destroy()
        self._drop_dead_blocks()
        return freed

    def trim(self) -> int:
        """Give the free lists' ranges back to their blocks and free the blocks left empty; returns
        the bytes given back to the device. The device must be done with every freed range (the
        runtime's ``empty_cache()`` synchronizes first)."""
        with self._lock:
            self._release_cached()
            return self._free_empty_blocks()

    @property
    def alive(self) -> bool:
        """False once destroyed (or its device is)."""
        return not self._destroyed and self.device.alive

    def destroy(self) -> None:
        """Free every block; allocations still held report themselves destroyed. The device must
        be done with them (the runtime drains its stream first)."""
        with self._lock:
            self._destroyed = True
            self._free.clear()
            for block in self._blocks:
                block.buffer.destroy()
            self._blocks = []
            self._free.clear()
            self._cached = 0
