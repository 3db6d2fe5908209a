"""The backward half of a training step, split into micro-batches and over MPI ranks.

One global batch of B items is cut into ``world_size * micro_batches`` equal contiguous pieces;
rank r runs pieces ``r*m .. r*m+m-1``. Each piece's loss is its own mean (over B / pieces items)
and gets its own backward into fresh gradients; the step's gradient is

    ((g_0 + g_1) + g_2) + ...   times 1 / pieces

added in piece order with the device's ``x + y`` kernel, then scaled with ``x * alpha``.
One process with ``micro_batches=N`` and N ranks with ``micro_batches=1`` do exactly these
operations on exactly these pieces (the ranks' sum is a gather and the same adds in rank
order: hlx_vulkan.distributed), so their weights are bit-identical. With ranks AND micro-batches
(W ranks of m > 1) each rank first adds its own m pieces, then the ranks' sums are added:
deterministic and the same on every run of the same W and m, but grouped differently from one
process with W*m micro-batches, so not bit-equal to it. Random draws (dropout) in piece g start
at the default generator's counter ``base + g * RNG_STRIDE`` on whichever rank runs it, so they
too are the same in both runs.

Wiring a trainer (the whole change)::

    par = ParallelStep(model, micro_batches=args.micro_batches, data_parallel=args.data_parallel)
    model = par.model                      # the DDP wrapper when data-parallel, else the model
    ...
    opt.zero_grad()
    loss = par.backward(idx, lambda piece: loss_fn(model(x[piece]), y[piece]))   # instead of loss.backward()
    opt.step()

``par.is_main`` gates progress bars, plots and checkpoints; ``par.world_size`` goes into the manifest;
``add_arguments(parser)`` adds ``--micro-batches`` and ``--data-parallel`` to an ``hlx train`` parser.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from ..autograd.graph import no_grad
from ..errors import RankMismatchError
from ..nn import running_stats
from ..ops.tensor import from_numpy
from ..distributed.sampler import split_batch
from ..ops import elementwise as ew
from ..ops.random import default_generator

RNG_STRIDE = 1 << 40  # generator counters reserved for each piece's draws (dropout): far more than a step uses


class ParallelStep:
    """Gradient accumulation over ``micro_batches`` pieces, and (``data_parallel``) over the MPI
    ranks, with the arithmetic described in the module doc."""

    def __init__(self, model, micro_batches: int = 1, data_parallel: bool = False, bucket_bytes: int | None = None,
                 overlap: bool = True):
        if micro_batches < 1:
            raise ValueError(f"micro_batches must be at least 1, got {micro_batches}")
        self.micro_batches = micro_batches
        self.ddp = None
        self.rank, self.world_size = 0, 1
        # Running statistics (batch norm), updated by each piece in turn in one process: over MPI
        # each rank records its pieces' updates and every rank replays all of them in rank order.
        self.has_buffers = any(b is not None for _, b in model.named_buffers())
        if data_parallel:
            from .. import distributed as dist
            g = dist.init()
            self.rank, self.world_size = g.rank, g.world_size
            kw = {} if bucket_bytes is None else {"bucket_bytes": bucket_bytes}
            self.ddp = dist.DistributedDataParallel(model, overlap=overlap, **kw)
        self.model = self.ddp if self.ddp is not None else model
        self.params = [p for p in model.parameters() if p.requires_grad]

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def pieces(self) -> int:
        """Micro-batches per global batch, over all ranks."""
        return self.world_size * self.micro_batches

    def shard(self, batch: np.ndarray) -> list[np.ndarray]:
        """This rank's micro-batches of the global ``batch`` (indices), in order."""
        parts = split_batch(np.asarray(batch), self.pieces)
        m = self.micro_batches
        return parts[self.rank * m:(self.rank + 1) * m]

    def backward(self, batch: np.ndarray, loss_of):
        """Run ``loss_of(piece)`` and its backward for each of this rank's micro-batches of
        ``batch``, and leave the step's gradient (the mean over the whole global batch) in every
        ``.grad``: starts from no gradient, so call it instead of ``loss.backward()`` (after
        ``zero_grad()``, which it makes redundant). Returns this rank's mean loss (no graph)."""
        parts = self.shard(batch)
        for p in self.params:
            p.grad = None
        # piece g draws from counter base + g * stride, on whichever rank runs it
        seed, base = default_generator.get_state() if self.pieces > 1 else (0, 0)
        if self.ddp is not None:
            self.ddp.armed = len(parts) == 1  # a bucket is final only when backward writes it directly
        defer = self.ddp is not None and self.has_buffers
        with (running_stats.deferred() if defer else nullcontext()) as records:
            total = self._pieces(parts, loss_of, seed, base)
        if self.pieces > 1:  # every rank leaves the step with the same generator state
            default_generator.set_state((seed, base + self.pieces * RNG_STRIDE))
        with no_grad():
            if self.ddp is not None:
                self.ddp.sync_gradients(scale=1.0 / self.pieces)
            elif self.pieces > 1:
                for p in self.params:
                    if p.grad is not None:
                        ew.launch("x * alpha", [p.grad], alpha=1.0 / self.pieces, out=p.grad)
            if len(parts) > 1:
                ew.launch("x * alpha", [total], alpha=1.0 / len(parts), out=total)
        if defer:
            self._replay_running_stats(records)
        return total

    def _pieces(self, parts, loss_of, seed: int, base: int):
        """Forward and backward of each of this rank's pieces, gradients added in piece order."""
        total = None
        for k, piece in enumerate(parts):
            earlier = [p.grad for p in self.params]
            if k:
                for p in self.params:
                    p.grad = None
            if self.pieces > 1:
                default_generator.set_state((seed, base + (self.rank * self.micro_batches + k) * RNG_STRIDE))
            loss = loss_of(piece)
            loss.backward()
            with no_grad():
                flat = loss.detach().reshape(1)
                total = ew.copy(flat) if total is None else ew.launch("x + y", [total, flat], out=total)
                if k:
                    for p, e in zip(self.params, earlier):
                        if e is None:
                            continue
                        if p.grad is None:
                            p.grad = e
                        else:
                            p.grad = ew.launch("x + y", [e, p.grad], out=e)
        return total

    def _replay_running_stats(self, records) -> None:
        """Every rank's recorded running-statistics updates, applied in rank order (a sync point)."""
        from .. import distributed as dist
        stats = [s for _, _, s, _, _ in records if s is not None]
        arrays = iter(stats[0].runtime.read([s.buf for s in stats]) if stats else [])
        mine = [(kind, a, b, None if s is None else next(arrays)) for kind, _, s, a, b in records]
        ranks = dist.gather_objects(mine)
        shape = [(k, a, b, None if v is None else v.shape) for k, a, b, v in mine]
        for r, theirs in enumerate(ranks):
            if [(k, a, b, None if v is None else v.shape) for k, a, b, v in theirs] != shape:
                raise RankMismatchError(f"rank {r}'s running-statistics updates differ from rank {self.rank}'s "
                                        f"(another model or control flow): {len(theirs)} against {len(mine)}", rank=r)
        for r, theirs in enumerate(ranks):
            running_stats.replay(records, None if r == self.rank else
                                 [None if v is None else from_numpy(v) for _, _, _, v in theirs])

    def mean_over_ranks(self, t):
        """``t`` averaged over the ranks (in rank order) when data-parallel; else ``t``. A sync point."""
        if self.ddp is None:
            return t
        from .. import distributed as dist
        return dist.all_reduce(t, "mean")


def add_arguments(parser) -> None:
    """``--micro-batches N`` and ``--data-parallel`` for an ``hlx train`` sub-command."""
    parser.add_argument("--micro-batches", type=int, default=1, metavar="N",
                        help="split each batch into N micro-batches whose gradients are accumulated before the step "
                             "(bit-identical to N ranks of --data-parallel)")
    parser.add_argument("--data-parallel", action="store_true",
                        help="one replica per MPI rank (run under mpirun); each rank takes its share of every batch")


__all__ = ["ParallelStep", "add_arguments"]
