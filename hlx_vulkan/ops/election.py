"""Election counts: integer words that are zero between dispatches, for kernels in which the last
workgroup of a group to finish completes the group's work (``reduce/reduce_flat.comp`` for a whole
reduction, ``matmul/elect.glsl`` for a split-K tile). Each workgroup adds one with an atomic; the
one that reads the group's last count is elected, and sets the word back to zero. Integer atomics
only: which workgroup finishes last varies from run to run, what it computes does not.

The words are zeroed once by a host write, as the runtime's error words are, not by a dispatch: a
dispatch made while an op's first call is traced (runtime/trace.py) would be replayed on every later
call. A kernel binds them read-write, so the stream orders the dispatches that bind one buffer one
after another; with several buffers handed out in turn, that many can run side by side.
"""

from __future__ import annotations

import numpy as np

from ..memory import int32


def ready(rt, name: str, words: int, slots: int = 1) -> bool:
    """Whether :func:`counts` can hand out ``words`` for ``name`` now: made here (or made larger)
    unless a capture is being recorded, where the host write cannot be (the new buffers might take
    memory the capture's work still uses); the caller then does without the election."""
    if _fitting(rt, name, words, slots) is not None:
        return True
    if rt.stream.capture_graph is not None:
        return False
    counts(rt, name, words, slots)
    return True


def counts(rt, name: str, words: int = 1, slots: int = 1):
    """The next of ``slots`` buffers of at least ``words`` zeroed int32 words kept for ``name`` in
    ``rt``'s plans (made, or made larger, by a host write before the dispatch that binds them)."""
    ring = _fitting(rt, name, words, slots)
    if ring is None:
        old = rt.plans.get(("election counts", name))
        size = max(words, 2 * old[0][0].numel if old is not None else 1)
        bufs = [rt.memory.empty((size,), int32) for _ in range(slots)]
        for buf in bufs:
            rt.stream.wait_for(buf.allocation.busy)
        rt.memory.write_many([(buf, np.zeros(size, np.int32)) for buf in bufs])
        ring = rt.plans[("election counts", name)] = [bufs, 0]
    bufs, i = ring
    ring[1] = (i + 1) % slots
    return bufs[i]


def _fitting(rt, name: str, words: int, slots: int):
    """``name``'s ring of count buffers ([buffers, next]) if it has ``slots`` of ``words`` or more, else None."""
    ring = rt.plans.get(("election counts", name))
    return ring if ring is not None and ring[0][0].numel >= words and len(ring[0]) == slots else None


__all__ = ["counts", "ready"]
