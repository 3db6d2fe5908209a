"""Gradient buckets between the ranks of one host through an MPI shared-memory window.

Every rank owns one page-aligned segment of the window (``MPI.Win.Allocate_shared`` over the
node's communicator, ``alloc_shared_noncontig``): a page of flags (one uint64 a bucket: the last
step whose bytes are in place) and, per bucket, two slots (steps alternate between them). A
rank's device copies its bucket row straight into its own slot; each peer's device copies it
from there into its own row of the bucket. No MPI data copy at all: only the two PCIe copies.
That needs the window's memory imported as Vulkan memory (VK_EXT_external_memory_host, see
hlx_vulkan.vk.host_memory); where a rank cannot import (no extension, HLX_DIST_HOST_IMPORT=0, a
pointer not aligned for it), that rank copies between its mapped staging buffers and the window
with one memcpy each way instead. Either way the window holds the same bytes, so ranks may mix.

Synchronisation is per bucket, on the communication thread, without MPI: the writer sets its flag
to the step number once its copy has landed (its stream says the batch is done); a reader waits
until every peer's flag reaches the step, with the group's timeout. Two slots are enough: a rank
writes step s's slot (step s - 2's) only after it has seen every peer's step s - 1 flag, and
each peer's step s - 1 copy to the host was ordered on its device after its upload of step
s - 2 (the sums in between read that row behind a barrier). Flags are aligned 8-byte stores and
loads, which x86-64 keeps in program order.

Lifetimes: the imported Vulkan buffers are destroyed (after the device finished with them) before
the window is freed: :meth:`NodeExchange.close`, called by ``DistributedDataParallel.close()`` on
every rank (freeing a window is collective), or at exit by a hook that runs before the device's and
MPI's own. Until then the module holds the exchange, so a rank that dropped its wrapper still takes
part in the exit's collective free.
"""

from __future__ import annotations

import atexit
import mmap
import os
import tempfile
import time

import numpy as np

from .. import errors
from ..vk.host_memory import ImportedHostBuffer, import_alignment
from . import collectives as _g

POLL_S = 20e-6


# Windows not closed yet, in the order made: the same on every rank (each made by a collective call),
# so the exit frees them in the same order everywhere, whichever wrappers each rank still holds.
_open: list = []
_hooked = False


def _register(exchange) -> None:
    global _hooked
    _open.append(exchange)
    if not _hooked:  # registered after the device's exit hook and MPI's: runs before both
        atexit.register(_close_at_exit)
        _hooked = True


def _close_at_exit() -> None:
    for exchange in list(_open):
        exchange.close(at_exit=True)


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


class _Region:
    """A range of an imported buffer, shaped as a pool allocation for ``Stream.copy``."""
    __slots__ = ("buffer", "offset", "key", "busy")

    def __init__(self, imported: ImportedHostBuffer):
        self.buffer, self.offset, self.key, self.busy = imported.buffer, 0, ("host-import", imported._order), 0


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def prepare_environment() -> None:
    """Open MPI settings for the window, unless the user made them (call before MPI starts):
    without its UCX one-sided component, which prints an error where UCX finds no network (the
    shared-memory one serves); the window's file in /dev/shm, or the temporary directory where
    /dev/shm has under 1 GiB free (a container's 64 MB, say)."""
    os.environ.setdefault("OMPI_MCA_osc", "^ucx")
    if "OMPI_MCA_osc_sm_backing_directory" not in os.environ:
        shm = "/dev/shm"
        os.environ["OMPI_MCA_osc_sm_backing_directory"] = shm if _free_bytes(shm) >= 1 << 30 else tempfile.gettempdir()


def backing_directory() -> str:
    """Where Open MPI keeps the window's file."""
    return os.environ.get("OMPI_MCA_osc_sm_backing_directory") or "/dev/shm"


def segment_bytes(bucket_nbytes: list[int], page: int = mmap.PAGESIZE) -> int:
    """One rank's segment: a page of slack, the flags, two slots a bucket."""
    return page + _round_up(8 * len(bucket_nbytes), page) + sum(2 * _round_up(n, page) for n in bucket_nbytes)


def choose(group, bucket_nbytes: list[int]) -> str:
    """Why DDP on ``group`` keeps the MPI all-gathers, or "" to use the window: it needs every rank
    on one host (more than one), HLX_DIST_SHARED not 0 on any rank, and room for the window where
    its file lies (a full tmpfs would kill a rank with SIGBUS at the first write). Collective."""
    if group.world_size == 1:
        return "one rank"
    if group.local_size != group.world_size:
        return "ranks on several hosts"
    need = group.local_size * (segment_bytes(bucket_nbytes) + (64 << 10))
    free = _free_bytes(backing_directory())
    mine = ("HLX_DIST_SHARED=0" if os.environ.get("HLX_DIST_SHARED", "1") == "0" else
            f"{backing_directory()} has {free >> 20} MiB free, the window needs {need >> 20} MiB" if free < need else "")
    return next((w for w in _g.gather_objects(mine) if w), "")


class NodeExchange:
    """The window and the per-rank views and imports for a list of bucket sizes (bytes)."""

    def __init__(self, group, runtime, bucket_nbytes: list[int]):
        from mpi4py import MPI
        self.group, self.runtime = group, runtime
        self.rank, self.size = group.rank, group.world_size
        device = runtime.ctx.device
        no_import = os.environ.get("HLX_DIST_HOST_IMPORT", "1") == "0"
        align = None if no_import else import_alignment(device)
        page = max([mmap.PAGESIZE] + [a for a in _g.gather_objects(align) if a])
        self.page = page
        flag_bytes = _round_up(8 * len(bucket_nbytes), page)
        self.slots, off = [], 0  # per bucket: (slot 0 offset, slot 1 offset) from the data start
        for n in bucket_nbytes:
            step = _round_up(n, page)
            self.slots.append((off, off + step))
            off += 2 * step
        self.data_bytes = off
        segment = segment_bytes(bucket_nbytes, page)  # a page of slack: the segment's start is aligned inside it
        info = MPI.Info.Create()
        info.Set("alloc_shared_noncontig", "true")
        box = []

        def allocate(comm):
            win = MPI.Win.Allocate_shared(segment, 1, info, comm=comm)
            win.Lock_all(MPI.MODE_NOCHECK)
            box.append(win)

        try:
            _g.finish(group.wire.post(allocate), "shared window allocation")
            failed = ""
        except errors.DistributedError as exc:
            failed = str(exc)  # names this rank
        info.Free()
        failed = next((f for f in _g.gather_objects(failed) if f), "")
        if failed:  # on every rank alike (a window some rank made is left to MPI's finalize)
            raise errors.DistributedError(f"no shared window: {failed}")
        self.window = box[0]
        self.events: list[str] = []  # "imports destroyed", "window freed": in the order they happened
        views, starts = [], []
        for r in range(self.size):
            buf, _ = self.window.Shared_query(r)
            view = np.frombuffer(buf, np.uint8)
            views.append(view)
            if r == self.rank:
                starts.append((-view.ctypes.data) % page)
        # the owner's choice of start, in bytes from its segment's beginning, is everyone's
        starts = [s[0] for s in _g.gather_objects(starts)]
        self.flags = [views[r][starts[r]:starts[r] + flag_bytes].view(np.uint64) for r in range(self.size)]
        self.data = [views[r][starts[r] + flag_bytes:starts[r] + flag_bytes + off] for r in range(self.size)]
        self.flags[self.rank][:] = 0
        self.imports: list[ImportedHostBuffer] = []
        self.regions: list[_Region] = []
        self.mode = "copy"
        self.why_copy = "HLX_DIST_HOST_IMPORT=0" if no_import else "the device lacks VK_EXT_external_memory_host"
        if align:
            try:
                self.imports = [ImportedHostBuffer(device, d.ctypes.data, off, keep=self.window) for d in self.data]
                self.regions = [_Region(b) for b in self.imports]
                self.mode, self.why_copy = "import", ""
            except (errors.HlxError, ValueError) as exc:  # an unaligned pointer, a driver that refuses
                for b in self.imports:
                    b.destroy()
                self.imports, self.why_copy = [], f"host import refused: {exc}"
        _g.gather_objects(None)  # every rank's flags are zero before any rank can set one
        _register(self)

    @property
    def imported(self) -> bool:
        return self.mode == "import"

    def slot(self, bucket: int, seq: int) -> int:
        """The byte offset of ``bucket``'s slot for step ``seq`` from each segment's data start."""
        return self.slots[bucket][seq % 2]

    def publish(self, bucket: int, seq: int, send: np.ndarray | None) -> None:
        """Mark this rank's bytes of ``bucket`` for step ``seq`` in place, copying them from the
        mapped ``send`` buffer first when this rank does not import (communication thread)."""
        if send is not None:
            o = self.slot(bucket, seq)
            self.data[self.rank][o:o + send.nbytes] = send
        self.flags[self.rank][bucket] = seq

    def wait_peers(self, bucket: int, seq: int, recv: np.ndarray | None, nbytes: int) -> None:
        """Wait until every peer's bytes of ``bucket`` for step ``seq`` are in place (at most the
        group's timeout: a peer that stopped is named), then copy them into the mapped ``recv``
        rows when this rank does not import (communication thread)."""
        deadline = time.monotonic() + self.group.timeout
        for r in range(self.size):
            if r == self.rank:
                continue
            while int(self.flags[r][bucket]) < seq:
                if time.monotonic() > deadline:
                    raise self.timeout_error(bucket, seq)
                time.sleep(POLL_S)
            if recv is not None:
                o = self.slot(bucket, seq)
                recv[r * nbytes:(r + 1) * nbytes] = self.data[r][o:o + nbytes]

    def late(self, bucket: int, seq: int) -> list[int]:
        """The peers whose bytes of ``bucket`` for step ``seq`` are not in place yet."""
        return [r for r in range(self.size) if r != self.rank and int(self.flags[r][bucket]) < seq]

    def timeout_error(self, bucket: int, seq: int) -> errors.CollectiveTimeoutError:
        late = self.late(bucket, seq) or [None]
        return errors.CollectiveTimeoutError(
            f"rank {self.rank}: rank {late[0]} did not put step {seq}'s gradient bucket {bucket} into the shared "
            f"window within {self.group.timeout:.0f} s (set HLX_DIST_TIMEOUT to wait longer)", rank=late[0])

    def close(self, at_exit: bool = False) -> None:
        """Destroy the imported buffers once the device is done with them, then free the window
        (collective over the ranks: each waits at most the group's timeout). Later calls do nothing."""
        if self.window is None:
            return
        if self in _open:
            _open.remove(self)
        if self.imports:
            try:
                self.runtime.synchronize()
            except errors.HlxError:  # a closed runtime or lost device: its buffers are gone or unusable
                pass
            for b in self.imports:
                b.destroy()
            self.imports, self.regions = [], []
            self.events.append("imports destroyed")
        win, self.window = self.window, None
        self.flags = self.data = []

        def free(comm):
            win.Unlock_all()
            win.Free()

        try:
            _g.finish(self.group.wire.post(free), "shared window free")
            self.events.append("window freed")
        except errors.DistributedError:
            if not at_exit:
                raise


__all__ = ["NodeExchange", "backing_directory", "choose", "segment_bytes"]
