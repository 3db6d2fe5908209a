"""Data-parallel training over MPI (mpi4py), giving the same bits as one process.

- :func:`init`: rank, world size, this rank's Vulkan device, failure handling.
- :func:`all_reduce` (sum or mean, added in rank order on the device), :func:`broadcast`,
  :func:`all_gather`, :func:`barrier` on hlx tensors; every wait is bounded (HLX_DIST_TIMEOUT).
- :class:`DistributedDataParallel`: rank 0's parameters at wrap, gradients summed over ranks in
  buckets that start during backward.
- :class:`DistributedSampler`: each rank's slice of every global batch.

See hlx_vulkan.training.parallel for the training-loop piece that ties these together with
gradient accumulation over micro-batches.
"""

from .ddp import DistributedDataParallel
from .collectives import (ProcessGroup, abort, all_gather, all_reduce, barrier, broadcast, gather_objects, group, init,
                    is_initialized, sum_rows_in_order)
from .sampler import DistributedSampler, split_batch

__all__ = ["DistributedDataParallel", "DistributedSampler", "ProcessGroup", "abort", "all_gather", "all_reduce",
           "barrier", "broadcast", "gather_objects", "group", "init", "is_initialized", "split_batch",
           "sum_rows_in_order"]
