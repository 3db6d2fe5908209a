"""Index checks on the device, raised at the next sync point (as CUDA's device-side asserts).

A kernel that reads indices from a device tensor cannot refuse them before it runs. It declares
the runtime's error words as a binding named ``ERR`` (role readwrite) and a push field ``site``
(see ``glsl/checks.glsl``); :meth:`Runtime.run <hlx_vulkan.runtime.Runtime.run>` binds the words
and gives each op name (``check=``) three words of its own: a flag, the largest too-large and the
smallest negative index seen. The kernel keeps its reads in bounds and sets the flag, with
integer atomics on the flag words only: results never depend on them.

Each batch (and each captured segment) that ran such a kernel ends with a copy of the words
into host-visible memory, so a sync point reads them without another submission: at
``synchronize()``, ``read()`` (``numpy()``, ``item()``) and ``write()``, the runtime raises
:class:`~hlx_vulkan.errors.DeviceIndexError` naming the ops, before any value is returned, and
the words start afresh. A replayed graph reports at the sync after the replay.
"""

from __future__ import annotations

import threading

import numpy as np

from .. import errors
from ..vk import record

MAX_SITES = 64
WORDS = 3  # per site: flag (bit 0: too large, bit 1: negative), largest too-large, smallest negative


class DeviceChecks:
    """The error words of one runtime, their host-visible copy, and the op name of each site.

    Example::

        rt.run(kernel, {"O": out, "A": src, "I": idx}, {...}, n, check="index_select")
        rt.synchronize()    # DeviceIndexError: index_select: ... out of range
    """

    def __init__(self, memory, upload):
        """``upload(buf, array)``: the runtime's write in stream order. The words may take a range
        that a pending kernel still writes (a tensor freed before it ran): a host write now could
        land before that kernel's and leave its values as error flags."""
        n = MAX_SITES * WORDS
        self.buf = memory.empty((n,), "int32")
        upload(self.buf, np.zeros(n, np.int32))
        self.readback = memory.host_pool.allocate(n * 4)
        self.readback.mapped()[:n * 4] = bytes(n * 4)
        self.zeros = bytes(n * 4)
        self.names: list[str] = []
        self._sites: dict[str, int] = {}
        self._lock = threading.Lock()

    def site(self, name: str) -> int:
        """The first word of op ``name``'s site."""
        where = self._sites.get(name)
        if where is None:
            with self._lock:
                where = self._sites.get(name)
                if where is None:
                    if len(self.names) >= MAX_SITES:
                        raise errors.LimitExceededError(f"more than {MAX_SITES} ops check indices on the device")
                    where = len(self.names) * WORDS
                    self.names.append(name)
                    self._sites[name] = where
        return where

    def record_copy(self, cmd) -> None:
        """Copy the words to the host-visible copy (after a barrier the caller records)."""
        a = self.buf.allocation
        record.copy_buffer(cmd, a.buffer, self.readback.buffer, a.offset, self.readback.offset, len(self.zeros))

    def take(self) -> errors.DeviceIndexError | None:
        """The error the copy reports, if any, and the copy zeroed (the device must be idle). The
        caller zeroes the device words too, in stream order."""
        view = self.readback.mapped()[:len(self.zeros)]
        if view == self.zeros:
            return None
        words = np.frombuffer(bytes(view), np.int32).reshape(-1, WORDS)
        view[:] = self.zeros
        found, ops = [], []
        for name, (flag, largest, smallest) in zip(self.names, words):
            if flag:
                seen = ([f"largest {largest}"] if flag & 1 else []) + ([f"smallest {smallest}"] if flag & 2 else [])
                found.append(f"{name}: an index read from a device tensor was out of range ({', '.join(seen)})")
                ops.append(name)
        return errors.DeviceIndexError(
            "; ".join(found) + ". The kernel kept its reads in bounds; results computed from it are not to be used.",
            ops)
