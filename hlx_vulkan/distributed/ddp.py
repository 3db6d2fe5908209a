"""DistributedDataParallel: one model replica per rank, gradients summed over ranks in rank order.

At wrap time every rank's parameter list (names, shapes, dtypes) is checked against rank 0's
and rank 0's values are copied to every rank. After ``backward()``, :meth:`sync_gradients`
replaces each ``.grad`` with the sum over ranks (rank 0's, plus rank 1's, ...), times
``scale``: the arithmetic a single process does when it accumulates the same gradients one
after the other (see hlx_vulkan.training.parallel), so the bits are the same.

Gradients travel in buckets (parameters in reverse registration order, the order backward
produces them, cut at ``bucket_bytes``). Each bucket owns a (world, n) device tensor and two
mapped host buffers. When backward has written the bucket's last gradient (from the second step
on), the main thread records, without waiting, this rank's gradients into its row of the device
tensor and that row into the mapped send buffer; the communication thread waits for that copy,
then all-gathers the send buffers straight into the mapped receive buffer, while backward goes on.
Once a bucket has arrived (seen at the next gradient hook, or at :meth:`sync_gradients`), the
other ranks' rows are uploaded with one copy and the rows added in rank order on the device
(``x + y``; ``x * alpha`` at sync: per element the arithmetic of accumulation in one process, so
the bits are the same); each ``.grad`` is then a view of the bucket's sum.
When every rank runs on one host, the buckets travel through the node's MPI shared-memory window
instead of all-gathers (:attr:`DistributedDataParallel.path` "import" or "copy", see
hlx_vulkan.distributed.shared; HLX_DIST_SHARED=0 keeps the all-gathers): the device copies this
rank's row into its slot of the window and the peers' rows out of theirs, the same bytes in the
same rows, so the same bits. :attr:`DistributedDataParallel.stats` says where the time went.

Example::

    dist.init()
    model = DistributedDataParallel(build_model())
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    model.sync_gradients(scale=1 / dist.group().world_size)   # mean over ranks
    opt.step()
"""

from __future__ import annotations

import time
import weakref

import numpy as np

from .. import errors
from ..autograd.engine import add_leaf_hook
from ..autograd.graph import no_grad
from ..ops import elementwise as ew
from ..ops.creation import empty, zeros
from . import collectives as _g
from . import shared as _shared

DEFAULT_BUCKET_BYTES = 25 << 20  # as torch's DDP
PIECE_BYTES = 1 << 20  # a bucket is cut into pieces (one per MPI lane) no smaller than this
POLL_S = 20e-6  # the communication thread's poll for a bucket's copy (the stream's lock is not held between)
ALIGN = 4  # elements: each gradient starts 16 bytes into its bucket, for the vector kernels


class _Bucket:
    __slots__ = ("params", "offsets", "numel", "dtype", "nbytes", "stacked", "send", "recv", "job", "ready", "total",
                 "times", "index", "seq")

    def __init__(self, params, index: int = 0):
        self.params = params
        self.index = index  # its place in the shared window (hlx_vulkan.distributed.shared)
        self.seq = 0  # the step whose bytes it last sent
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += -(-p.numel() // ALIGN) * ALIGN
        self.numel = n
        self.dtype = params[0].dtype
        self.nbytes = n * self.dtype.itemsize
        self.stacked = self.send = self.recv = None  # made at the first send
        self.job = None
        self.ready = 0
        self.total = None  # the sum over ranks, once reduced
        self.times = (0.0, 0.0)  # when its copy to the host ended and when its all-gather ended


class DistributedDataParallel:
    """Wrap ``module`` for data-parallel training over the ranks of :func:`hlx_vulkan.distributed.init`.

    Calls go to the module; attributes not found here are the module's (``parameters()``,
    ``state_dict()``, ``train()``...). ``overlap=False`` sends every bucket at
    :meth:`sync_gradients` instead of during backward."""

    def __init__(self, module, bucket_bytes: int = DEFAULT_BUCKET_BYTES, overlap: bool = True,
                 broadcast_parameters: bool = True):
        if bucket_bytes < 1:
            raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
        self.group = _g.group()
        self.module = module
        named = [(n, p) for n, p in module.named_parameters()]
        _check_parameters(_g.gather_objects([(n, tuple(p.shape), p.dtype.name, bool(p.requires_grad))
                                             for n, p in named]))
        if broadcast_parameters:
            self._broadcast([p for _, p in named])
        trainable = [p for _, p in named if p.requires_grad]
        self.buckets: list[_Bucket] = []
        current, size = [], 0
        for p in reversed(trainable):
            nbytes = p.numel() * p.element_size()
            if current and (size + nbytes > bucket_bytes or p.dtype is not current[0].dtype):
                self.buckets.append(_Bucket(current, len(self.buckets)))
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            self.buckets.append(_Bucket(current, len(self.buckets)))
        self._where = {id(p): b for b in self.buckets for p in b.params}
        self._expected: dict[int, int] | None = None  # gradient writes per parameter in one backward
        self._seen: dict[int, int] = {}
        self.overlap = overlap
        self.started_during_backward = 0  # buckets sent before sync_gradients, over the run
        self.reduced_during_backward = 0  # and summed before it
        self.pieces_sent = 0  # all-gathers issued for the buckets (a bucket's pieces travel at once)
        self.armed = True  # False while micro-batches accumulate (see training.parallel)
        self._seq = 1  # the step being summed: the shared window's flags count these
        # "import" or "copy": through the node's shared window (see .shared); "allgather": MPI all-gathers
        self.exchange = None
        sizes = [b.nbytes for b in self.buckets]
        self.path_reason = _shared.choose(self.group, sizes) if sizes else "no trainable parameters"
        if not self.path_reason:
            try:
                self.exchange = _shared.NodeExchange(self.group, self.buckets[0].params[0].runtime, sizes)
                self.path_reason = self.exchange.why_copy
            except errors.DistributedError as exc:  # an MPI that cannot make the window: the all-gathers
                self.path_reason = str(exc)
        self.path = self.exchange.mode if self.exchange is not None else "allgather"
        self.reset_stats()
        ref = weakref.ref(self)
        self._remove_hook = add_leaf_hook(lambda t: (lambda s: s is not None and s._on_grad(t))(ref()))
        weakref.finalize(self, self._remove_hook)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def __getattr__(self, name):
        if name == "module":  # not set yet: avoid recursing during __init__
            raise AttributeError(name)
        return getattr(self.module, name)

    def close(self) -> None:
        """Stop watching backward and free the shared window (collective: every rank calls it,
        else the window waits for exit); the wrapper is done with."""
        self._remove_hook()
        if self.exchange is not None:
            self.exchange.close()

    # --- gradients --------------------------------------------------------------------------------

    def _on_grad(self, t) -> None:
        bucket = self._where.get(id(t))
        if bucket is None:
            return
        if not self.armed:  # micro-batches still accumulating: the sums are sent at sync_gradients
            return
        self._seen[id(t)] = self._seen.get(id(t), 0) + 1
        if self._expected is None or not self.overlap:
            return
        if self._seen[id(t)] == self._expected.get(id(t), 1):
            bucket.ready += 1
            if bucket.ready == len(bucket.params) and bucket.job is None:
                self._start(bucket)
                self.started_during_backward += 1
        for b in self.buckets:  # sum the buckets whose all-gather has ended while backward goes on
            if b.job is not None and b.total is None and b.job.done.is_set():
                self._reduce(b)
                self.reduced_during_backward += 1

    def _start(self, bucket: _Bucket) -> None:
        """Record this rank's gradients into its row of the bucket and the row into the mapped
        send buffer (no host wait), then post the all-gather to the communication thread."""
        g = self.group
        rt = bucket.params[0].runtime
        item = bucket.dtype.itemsize
        ex = self.exchange
        direct = ex is not None and ex.imported
        if bucket.stacked is None:
            bucket.stacked = zeros(g.world_size, bucket.numel, dtype=bucket.dtype)
            if not direct:
                bucket.send = rt.memory.host_pool.allocate(bucket.nbytes)
                bucket.recv = rt.memory.host_pool.allocate(g.world_size * bucket.nbytes)
        bucket.seq = seq = self._seq
        stacked = bucket.stacked.buf.allocation
        row = g.rank * bucket.nbytes
        regions = []
        with no_grad():
            for p, off in zip(bucket.params, bucket.offsets):
                grad = p.grad
                if grad is None:  # backward did not reach it: a zero gradient
                    view = bucket.stacked[g.rank, off:off + p.numel()]
                    ew.launch("CT(0)", [view], out=view)
                    continue
                if not grad.is_contiguous():
                    grad = ew.copy(grad)
                regions.append((grad.buf.allocation, grad.buf.byte_offset, stacked, row + off * item, p.numel() * item))
        stream = rt.stream
        stream.copy(regions)
        if direct:  # straight into this rank's slot of the shared window
            host = ex.regions[g.rank]
            stream.copy([(stacked, row, host, ex.slot(bucket.index, seq), bucket.nbytes)])
        else:
            host = bucket.send
            stream.copy([(stacked, row, host, 0, bucket.nbytes)])
        stream.submit()
        serial = host.busy  # the batch that holds the copy to the host
        if ex is not None:
            self._post_shared(bucket, stream, serial, seq)
            return
        send = np.frombuffer(bucket.send.mapped(), np.uint8, bucket.nbytes)
        recv = np.frombuffer(bucket.recv.mapped(), np.uint8, g.world_size * bucket.nbytes)
        stats, wire, n = self.stats, g.wire, bucket.nbytes
        # pieces of at least PIECE_BYTES, one per lane: each an all-gather into every rank's row
        k = max(1, min(len(wire.lanes), n // PIECE_BYTES))
        cuts = [n * i // k // 16 * 16 for i in range(k)] + [n]

        def piece(a, b):
            counts, displs = [b - a] * g.world_size, [r * n + a for r in range(g.world_size)]
            return lambda comm: comm.Allgatherv(send[a:b], [recv, counts, displs, _g.byte_type()])

        def gather(comm):
            t0 = time.perf_counter()
            while not stream.is_done(serial):  # the copy to the send buffer
                time.sleep(POLL_S)
            t1 = time.perf_counter()
            if k == 1:
                comm.Allgather(send, recv)
            else:
                wire.parallel([piece(cuts[i], cuts[i + 1]) for i in range(k)])
            self.pieces_sent += k
            t2 = time.perf_counter()
            stats["staging_s"] += t1 - t0
            stats["mpi_s"] += t2 - t1
            bucket.times = (t1, t2)

        bucket.job = g.wire.post(gather)

    def _post_shared(self, bucket: _Bucket, stream, serial: int, seq: int) -> None:
        """The communication thread's part through the shared window: wait for this rank's copy to
        the host, raise its flag (after a memcpy into the window where it does not import), wait
        for the peers' flags (then a memcpy out of the window into the mapped receive buffer)."""
        ex, stats, n, w = self.exchange, self.stats, bucket.nbytes, self.group.world_size
        send = None if ex.imported else np.frombuffer(bucket.send.mapped(), np.uint8, n)
        recv = None if ex.imported else np.frombuffer(bucket.recv.mapped(), np.uint8, w * n)

        def exchange(comm):
            t0 = time.perf_counter()
            while not stream.is_done(serial):
                time.sleep(POLL_S)
            t1 = time.perf_counter()
            ex.publish(bucket.index, seq, send)
            t2 = time.perf_counter()
            ex.wait_peers(bucket.index, seq, recv, n)
            t3 = time.perf_counter()
            stats["staging_s"] += t1 - t0
            stats["publish_s"] += t2 - t1
            stats["peers_s"] += t3 - t2
            bucket.times = (t1, t3)

        bucket.job = self.group.wire.post(exchange)

    def _reduce(self, b: _Bucket) -> None:
        """Upload the other ranks' rows from the mapped receive buffer (one copy, two regions) and
        add the rows in rank order on the device."""
        t = time.perf_counter()
        try:
            _g.finish(b.job, f"gradient all-reduce ({len(b.params)} tensors, {b.numel} elements)")
        except errors.CollectiveTimeoutError:
            if self.exchange is not None and self.exchange.late(b.index, b.seq):  # name the rank that stopped
                raise self.exchange.timeout_error(b.index, b.seq) from None
            raise
        self.stats["wait_s"] += time.perf_counter() - t
        stacked, n, me, w = b.stacked.buf.allocation, b.nbytes, self.group.rank, self.group.world_size
        ex = self.exchange
        if ex is not None and ex.imported:  # each peer's row straight from its slot of the shared window
            o = ex.slot(b.index, b.seq)
            b.params[0].runtime.stream.copy([(ex.regions[r], o, stacked, r * n, n) for r in range(w) if r != me])
        else:
            b.params[0].runtime.stream.copy([(b.recv, r0 * n, stacked, r0 * n, (r1 - r0) * n)
                                             for r0, r1 in ((0, me), (me + 1, w)) if r1 > r0])
        b.total = _g.sum_rows_in_order(b.stacked, empty(b.numel, dtype=b.dtype))

    def sync_gradients(self, scale: float | None = None) -> None:
        """Make every ``.grad`` the sum over ranks, added in rank order on the device, times
        ``scale`` (``1 / world_size`` for the mean). A parameter backward did not reach counts
        as a zero gradient. Call after backward, before the optimizer step; a sync point."""
        t0 = time.perf_counter()
        for b in self.buckets:
            if b.job is None:
                self._start(b)
        for b in self.buckets:
            if b.total is None:
                self._reduce(b)
            with no_grad():
                if scale is not None:  # the same x * alpha, after the same sum, as in one process
                    ew.launch("x * alpha", [b.total], alpha=scale, out=b.total)
                for p, off in zip(b.params, b.offsets):
                    p.grad = b.total[off:off + p.numel()].reshape(p.shape)
        # the all-gathers' tail that backward did not hide: from the last copy to the host to the last arrival
        self.stats["exposed_s"] += max(0.0, max(b.times[1] for b in self.buckets) -
                                       max(b.times[0] for b in self.buckets))
        for b in self.buckets:
            b.job = b.total = None
            b.ready = 0
        if self._expected is None and self._seen:
            self._expected = dict(self._seen)
        self._seen = {}
        self._seq += 1
        self.stats["sync_s"] += time.perf_counter() - t0
        self.stats["steps"] += 1

    def reset_stats(self) -> None:
        """Zero :attr:`stats`: seconds (summed over steps) the communication thread waited for
        the device-to-host copies (``staging_s``: the device's backward before them included) and
        spent in MPI (``mpi_s``: the all-gather path), or, through the shared window (:attr:`path`
        "import" or "copy"), raising this rank's flags (``publish_s``: with the memcpy into the
        window on the "copy" path) and waiting for the peers' (``peers_s``: with the memcpy out of
        it); the exchanges' tail after the last copy (``exposed_s``: what backward did not hide);
        the main thread's wait for them (``wait_s``) and its time in :meth:`sync_gradients`
        (``sync_s``); and ``steps``."""
        self.stats = {"steps": 0, "staging_s": 0.0, "mpi_s": 0.0, "publish_s": 0.0, "peers_s": 0.0,
                      "exposed_s": 0.0, "wait_s": 0.0, "sync_s": 0.0}

    # --- parameters -------------------------------------------------------------------------------

    def _broadcast(self, params) -> None:
        """Copy rank 0's parameter values to every rank, one message per dtype."""
        by_dtype: dict[str, list] = {}
        for p in params:
            by_dtype.setdefault(p.dtype.name, []).append(p)
        for ps in by_dtype.values():
            arrays = ps[0].runtime.read([p.buf for p in ps])
            host = np.concatenate([a.reshape(-1) for a in arrays])
            _g.finish(_g.start_broadcast(host, root=0), "parameter broadcast")
            if self.group.rank != 0:
                o = 0
                with no_grad():
                    for p in ps:
                        p.copy_(host[o:o + p.numel()].reshape(p.shape))
                        o += p.numel()


def _check_parameters(lists: list) -> None:
    """Every rank's (name, shape, dtype, requires_grad) list must be rank 0's: else a
    RankMismatchError naming the first rank and parameter that differ, raised on every rank."""
    ref = lists[0]
    for r, mine in enumerate(lists[1:], start=1):
        if mine == ref:
            continue
        for i, (a, b) in enumerate(zip(ref, mine)):
            if a != b:
                raise errors.RankMismatchError(
                    f"rank {r}'s model differs from rank 0's at parameter {i}: rank 0 has {a}, rank {r} has {b} "
                    "(name, shape, dtype, requires_grad)", rank=r)
        raise errors.RankMismatchError(f"rank {r}'s model has {len(mine)} parameters, rank 0's has {len(ref)}",
                                       rank=r)


__all__ = ["DistributedDataParallel"]
