"""Sub-allocation of one block: aligned ranges, freed ranges coalesced with their neighbours.

Written here rather than taken from a library: the few Python allocators on
PyPI manage host memory, not offsets inside a Vulkan block.

Example::

    r = RangeAllocator(1 << 20)
    off = r.allocate(1000, alignment=256)
    r.free(off)
"""

from __future__ import annotations

import bisect


class RangeAllocator:
    """Best-fit allocator of ``[offset, offset + size)`` ranges inside ``capacity`` bytes."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._free_starts = [0]             # sorted starts of free ranges
        self._free = {0: capacity}          # start -> size
        self._by_size = [(capacity, 0)]     # sorted (size, start): best fit is a bisect away
        self._used: dict[int, tuple[int, int, int]] = {}  # offset -> (range start, range size, bytes asked)
        self.in_use = 0

    @property
    def largest_free(self) -> int:
        return self._by_size[-1][0] if self._by_size else 0

    @property
    def empty(self) -> bool:
        return not self._used

    def allocate(self, size: int, alignment: int = 1) -> int | None:
        """An offset that is a multiple of ``alignment`` with ``size`` bytes free, or None.

        The range reserved is ``size`` rounded up to ``alignment`` (``in_use`` counts ``size``),
        so freed ranges start aligned and no sliver too small for an aligned request is left."""
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a power of two, got {alignment}")
        asked, size = size, -(-size // alignment) * alignment
        # The smallest free range that holds ``size`` once aligned (ties: the lowest start).
        by_size = self._by_size
        best = None
        for j in range(bisect.bisect_left(by_size, (size, -1)), len(by_size)):
            length, start = by_size[j]
            aligned = -(-start // alignment) * alignment
            if aligned + size <= start + length:
                best = (start, length, aligned)
                break
        if best is None:
            return None
        start, length, aligned = best
        self._remove_free(start)
        if aligned > start:
            self._add_free(start, aligned - start)
        end = aligned + size
        if end < start + length:
            self._add_free(end, start + length - end)
        self._used[aligned] = (aligned, size, asked)
        self.in_use += asked
        return aligned

    def free(self, offset: int) -> None:
        """Return a range; it merges with free neighbours."""
        try:
            start, size, asked = self._used.pop(offset)
        except KeyError:
            raise ValueError(f"offset {offset} is not an allocated range (double free?)") from None
        self.in_use -= asked
        nxt = start + size
        if nxt in self._free:
            size += self._free[nxt]
            self._remove_free(nxt)
        i = bisect.bisect_left(self._free_starts, start)
        if i > 0:
            prev = self._free_starts[i - 1]
            if prev + self._free[prev] == start:
                start, size = prev, self._free[prev] + size
                self._remove_free(prev)
        self._add_free(start, size)

    def _add_free(self, start: int, size: int) -> None:
        bisect.insort(self._free_starts, start)
        bisect.insort(self._by_size, (size, start))
        self._free[start] = size

    def _remove_free(self, start: int) -> None:
        size = self._free.pop(start)
        self._free_starts.pop(bisect.bisect_left(self._free_starts, start))
        self._by_size.pop(bisect.bisect_left(self._by_size, (size, start)))

    def free_ranges(self) -> list[tuple[int, int]]:
        return [(s, self._free[s]) for s in self._free_starts]

    def used_ranges(self) -> list[tuple[int, int]]:
        """(offset, bytes asked) of each allocated range."""
        return sorted((start, asked) for start, _, asked in self._used.values())
