"""MemoryManager: the pools, the stager, and the tensors made from them."""

from __future__ import annotations

import math

import numpy as np

from .. import errors
from ..vk.buffer import as_bytes_view
from .dtypes import DType, dtype_of
from .pool import DEFAULT_BLOCK_SIZE, MemoryPool
from .tensor import TensorBuffer, contiguous_strides, normalize_shape
from .transfer import DEFAULT_SLOT_BYTES, Stager


class TensorBatch(list):
    """Tensors placed in one contiguous allocation; ``free()`` gives it back at once."""

    def __init__(self, tensors, allocation):
        super().__init__(tensors)
        self.allocation = allocation

    def free(self) -> None:
        for t in self:
            t._allocation = None
        if self.allocation is not None:
            self.allocation.free()


class MemoryManager:
    """Tensor memory for one device: a device-local pool, a host pool for staging, batched transfers.

    Example::

        mm = MemoryManager(ctx)
        x = mm.from_numpy(np.random.rand(4, 4).astype(np.float32))
        w, b = mm.allocate_many([((4, 4), "float32"), ((4,), "float32")])
        print(x.digest(), mm.stats())
    """

    def __init__(self, ctx_or_device, block_size: int = DEFAULT_BLOCK_SIZE, staging_block_size: int = 16 << 20,
                 device_mappable: bool | None = None, staging_slot_bytes: int = DEFAULT_SLOT_BYTES):
        self.device = getattr(ctx_or_device, "device", ctx_or_device)
        self.device_pool = MemoryPool(self.device, "device", block_size, mappable=device_mappable)
        self.host_pool = MemoryPool(self.device, "host", staging_block_size)
        self.stager = Stager(self.device, self.host_pool, staging_slot_bytes)
        self.before_destroy = None

    def empty(self, shape, dtype="float32") -> TensorBuffer:
        if type(dtype) is DType and type(shape) is tuple and all(type(s) is int and s >= 0 for s in shape):
            # What ops pass (a checked tuple of ints and a DType): the launch plans' constructor.
            nbytes = math.prod(shape) * dtype.itemsize
            return self.fresh(shape, dtype, contiguous_strides(shape), nbytes)
        shape, dt = normalize_shape(shape), dtype_of(dtype)
        nbytes = math.prod(shape) * dt.itemsize
        if nbytes == 0:
            return TensorBuffer(self, None, shape, dt)
        return TensorBuffer(self, self.device_pool.allocate(nbytes), shape, dt)

    def fresh(self, shape: tuple, dtype, strides: tuple, nbytes: int) -> TensorBuffer:
        """A contiguous tensor of a checked shape, dtype, strides and size (the launch plans' path)."""
        return TensorBuffer.fresh(self, self.device_pool.allocate(nbytes) if nbytes else None, shape, dtype, strides,
                                  nbytes)

    def full(self, shape, value, dtype="float32") -> TensorBuffer:
        t = self.empty(shape, dtype)
        t.write(np.full(t.shape, value, dtype=t.dtype.numpy))
        return t

    def zeros(self, shape, dtype="float32") -> TensorBuffer:
        return self.full(shape, 0, dtype)

    def from_numpy(self, array, dtype=None) -> TensorBuffer:
        """A device tensor holding ``array`` (cast to ``dtype`` when given)."""
        a = np.asarray(array)
        dt = dtype_of(dtype if dtype is not None else a.dtype)
        t = self.empty(a.shape, dt)
        if t.numel:
            self.write_many([(t, a)])
        return t

    def allocate_many(self, specs) -> TensorBatch:
        """``[(shape, dtype), ...]`` placed in one region at aligned offsets, freed together."""
        align = self.device_pool.alignment
        layout, total = [], 0
        for shape, dtype in specs:
            shape, dt = normalize_shape(shape), dtype_of(dtype)
            total = -(-total // align) * align
            layout.append((shape, dt, total))
            total += math.prod(shape) * dt.itemsize
        if total == 0:
            return TensorBatch([TensorBuffer(self, None, s, d) for s, d, _ in layout], None)
        alloc = self.device_pool.allocate(total)
        tensors = [TensorBuffer(self, alloc, s, d, byte_offset=o, owns_allocation=False) for s, d, o in layout]
        return TensorBatch(tensors, alloc)

    def write_many(self, items) -> None:
        """Upload ``[(tensor, array), ...]`` in one batch; each array must match its tensor's shape."""
        prepared = []
        for t, array in items:
            a = np.asarray(array)
            if a.shape != t.shape:
                raise errors.ShapeError(f"array of shape {a.shape} does not match tensor of shape {t.shape}")
            if not t.is_contiguous:
                raise errors.ShapeError("only contiguous tensors can be written")
            data = np.ascontiguousarray(a.astype(t.dtype.numpy, copy=False))
            prepared.append((t, as_bytes_view(data)))
        self.stager.upload([(t.allocation, t.byte_offset, view) for t, view in prepared if t.numel])

    def read_many(self, tensors) -> list[np.ndarray]:
        """Host copies of several tensors, downloaded in one batch."""
        live = [t for t in tensors if t.numel]
        raws = iter(self.stager.download([(t.allocation, t.byte_offset, t.span_bytes) for t in live]))
        return [t.from_bytes(next(raws)) if t.numel else np.empty(t.shape, t.dtype.numpy) for t in tensors]

    def stats(self) -> dict:
        return {"device": self.device_pool.stats(), "host": self.host_pool.stats()}

    @property
    def alive(self) -> bool:
        return self.device_pool.alive and self.host_pool.alive

    def destroy(self) -> None:
        """Free the pools' memory, once ``before_destroy()`` (set by the runtime: it drains the
        stream) has let the device finish every use of it."""
        if self.before_destroy is not None and self.alive:
            self.before_destroy()
        self.stager.destroy()
        self.device_pool.destroy()
        self.host_pool.destroy()
