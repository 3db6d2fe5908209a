"""DistributedSampler: each rank's share of every global batch, from one seeded permutation.

Every rank draws the same permutation of the dataset for each epoch (from ``seed`` and the
epoch), cuts it into global batches of ``batch_size`` (full batches only), and takes its own
contiguous slice of each: rank r gets items ``[r * B/N, (r + 1) * B/N)`` of every batch. That is
the slice one process would run as its r-th micro-batch (hlx_vulkan.training.parallel), which is
what makes N ranks and one process with N micro-batches see the same data in the same order.

Example::

    sampler = DistributedSampler(len(x_train), batch_size=64, rank=g.rank, world_size=g.world_size)
    for step, idx in enumerate(sampler.batches(epoch)):
        ...  # idx: this rank's 64 / world_size indices for this step
"""

from __future__ import annotations

import numpy as np


def split_batch(indices: np.ndarray, pieces: int) -> list[np.ndarray]:
    """``indices`` cut into ``pieces`` equal contiguous parts, in order; an error unless it divides."""
    n = len(indices)
    if pieces < 1 or n % pieces:
        raise ValueError(f"a batch of {n} does not split into {pieces} equal micro-batches (ranks x micro-batches); "
                         f"choose a batch size divisible by {pieces}")
    k = n // pieces
    return [indices[i * k:(i + 1) * k] for i in range(pieces)]


class DistributedSampler:
    """Shards ``size`` items over ``world_size`` ranks, batch by batch (see the module doc)."""

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if not 1 <= batch_size <= size:
            raise ValueError(f"batch size must be between 1 and the {size} items, got {batch_size}")
        split_batch(np.arange(batch_size), world_size)  # refuses a batch the ranks cannot share equally
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        self.seed, self.shuffle = seed, shuffle

    def __len__(self) -> int:
        """Steps per epoch (full global batches only)."""
        return self.size // self.batch_size

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size) if self.shuffle \
            else np.arange(self.size)
        return [order[s * self.batch_size:(s + 1) * self.batch_size] for s in range(len(self))]

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's indices for each step of ``epoch``."""
        return [split_batch(b, self.world_size)[self.rank] for b in self.global_batches(epoch)]


__all__ = ["DistributedSampler", "split_batch"]
