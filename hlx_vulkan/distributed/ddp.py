"""DistributedDataParallel: one model replica per rank, gradients summed over ranks in rank order.

At wrap time every rank's parameter list (names, shapes, dtypes) is checked against rank 0's
and rank 0's values are copied to every rank. After ``backward()``, :meth:`sync_gradients`
replaces each ``.grad`` with the sum over ranks (rank 0's, plus rank 1's, ...), times
``scale``: the arithmetic a single process does when it accumulates the same gradients one
after the other (see hlx_vulkan.training.parallel), so the bits are the same.

Gradients travel in buckets (parameters in reverse registration order, the order backward
produces them, cut at ``bucket_bytes``). From the second step on, a bucket starts its
non-blocking all-gather as soon as backward has written the last gradient in it, so the
transfer overlaps the rest of the backward pass; the sums happen in :meth:`sync_gradients`.

Example::

    dist.init()
    model = DistributedDataParallel(build_model())
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    model.sync_gradients(scale=1 / dist.group().world_size)   # mean over ranks
    opt.step()
"""

from __future__ import annotations

import weakref

import numpy as np

from .. import errors
from ..autograd.engine import add_leaf_hook
from ..autograd.graph import no_grad
from ..ops.creation import zeros
from ..ops.tensor import from_numpy
from . import collectives as _g

DEFAULT_BUCKET_BYTES = 25 << 20  # as torch's DDP


class _Bucket:
    __slots__ = ("params", "offsets", "numel", "dtype", "request", "recv", "ready")

    def __init__(self, params):
        self.params = params
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += p.numel()
        self.numel = n
        self.dtype = params[0].dtype
        self.request = self.recv = None
        self.ready = 0


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
                self.buckets.append(_Bucket(current))
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            self.buckets.append(_Bucket(current))
        self._where = {id(p): b for b in self.buckets for p in b.params}
        self._expected: dict[int, int] | None = None  # gradient writes per parameter in one backward
        self._seen: dict[int, int] = {}
        self.overlap = overlap
        self.started_during_backward = 0  # buckets sent before sync_gradients, over the run
        self.armed = True  # False while micro-batches accumulate (see training.parallel)
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
        """Stop watching backward (the wrapper is done with)."""
        self._remove_hook()

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
            if bucket.ready == len(bucket.params) and bucket.request is None:
                self._start(bucket)
                self.started_during_backward += 1

    def _start(self, bucket: _Bucket) -> None:
        """Read the bucket's gradients to the host and post their all-gather: one message per
        tensor, straight from the read arrays into per-tensor (world, numel) arrays (no packing
        copy: host memory bandwidth is what this path spends)."""
        grads = [p.grad for p in bucket.params]
        present = [g for g in grads if g is not None]
        arrays = iter(present[0].runtime.read([g.buf for g in present]) if present else [])
        sends = [np.ascontiguousarray(next(arrays)).reshape(-1) if g is not None
                 else np.zeros(p.numel(), dtype=p.dtype.numpy) for p, g in zip(bucket.params, grads)]
        recvs = [np.empty((self.group.world_size, a.size), dtype=a.dtype) for a in sends]

        def gather(comm):
            for a, r in zip(sends, recvs):
                comm.Allgather(a.view(np.uint8), r.reshape(-1).view(np.uint8))

        bucket.request, bucket.recv = self.group.wire.post(gather), recvs

    def sync_gradients(self, scale: float | None = None) -> None:
        """Make every ``.grad`` the sum over ranks, added in rank order on the device, times
        ``scale`` (``1 / world_size`` for the mean). A parameter backward did not reach counts
        as a zero gradient. Call after backward, before the optimizer step; a sync point.
        This rank's own gradient is used where it is (on the device); only the other ranks'
        rows are uploaded."""
        for b in self.buckets:
            if b.request is None:
                self._start(b)
        me = self.group.rank
        for b in self.buckets:
            _g.finish(b.request, f"gradient all-reduce ({len(b.params)} tensors, {b.numel} elements)")
            with no_grad():
                for p, recv in zip(b.params, b.recv):
                    own = p.grad if p.grad is not None else zeros(*p.shape, dtype=p.dtype)
                    rows = [own if r == me else from_numpy(recv[r].reshape(p.shape)) for r in range(len(recv))]
                    p.grad = _g.sum_in_order(rows, scale)
            b.request = b.recv = None
            b.ready = 0
        if self._expected is None and self._seen:
            self._expected = dict(self._seen)
        self._seen = {}

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
