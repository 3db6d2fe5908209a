"""TensorBuffer: a typed, shaped view of pool memory."""

from __future__ import annotations

import math
import sys

import numpy as np

from .. import errors
from . import digest as _digest
from .dtypes import DType, dtype_of
from .pool import Allocation


_STRIDES: dict = {}  # shape -> its C-order strides (shapes repeat: every op asks)


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """C-order strides, in elements."""
    if type(shape) is not tuple:
        return _c_strides(shape)
    found = _STRIDES.get(shape)
    if found is not None:
        return found
    strides = _c_strides(shape)
    if len(_STRIDES) >= 4096:
        _STRIDES.clear()
    _STRIDES[shape] = strides
    return strides


def _c_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


def normalize_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise errors.ShapeError(f"shape {shape} has a negative dimension")
    return shape


class TensorBuffer:
    """``shape`` elements of ``dtype`` in a pool allocation, at ``byte_offset`` with ``strides``.

    Made by :class:`~hlx_vulkan.memory.MemoryManager`; ``numpy()`` copies it
    back to the host; ``digest()`` is its content address.

    Example::

        t = mm.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
        t.shape, t.strides, t.nbytes, t.numpy(), t.digest()
    """

    __slots__ = ("manager", "shape", "dtype", "strides", "byte_offset", "_allocation", "_owns_allocation", "geometry",
                 "numel", "__weakref__")

    def __init__(self, manager, allocation: Allocation | None, shape, dtype, strides=None, byte_offset: int = 0,
                 owns_allocation: bool = True):
        self.manager = manager
        self.shape = normalize_shape(shape)
        self.dtype: DType = dtype_of(dtype)
        self.strides = contiguous_strides(self.shape) if strides is None else tuple(int(s) for s in strides)
        self.byte_offset = byte_offset
        self._allocation = allocation
        self._owns_allocation = owns_allocation
        # What a kernel launch depends on, as one hashable key for launch plans.
        self.geometry = (self.dtype.name, self.shape, self.strides, byte_offset)
        self.numel = math.prod(self.shape)
        if allocation is not None and self.span_bytes > allocation.size - byte_offset:
            raise errors.ShapeError(f"shape {self.shape} of {self.dtype} needs {self.span_bytes} bytes; "
                                    f"the allocation has {allocation.size - byte_offset}")

    @classmethod
    def fresh(cls, manager, allocation: Allocation | None, shape: tuple, dtype: DType, strides: tuple,
              nbytes: int = 0) -> "TensorBuffer":
        """A contiguous tensor over a new allocation, from a shape, dtype and strides already checked."""
        t = cls.__new__(cls)
        t.manager, t.shape, t.dtype, t.strides, t.byte_offset = manager, shape, dtype, strides, 0
        t._allocation, t._owns_allocation = allocation, True
        t.geometry = (dtype.name, shape, strides, 0)
        t.numel = nbytes // dtype.numpy.itemsize if nbytes else math.prod(shape)
        return t

    def view(self, shape: tuple, strides: tuple, byte_offset: int) -> "TensorBuffer":
        """Another shape over the same memory; the caller (a view op) has checked that it fits."""
        t = TensorBuffer.__new__(TensorBuffer)
        t.manager, t.shape, t.dtype, t.strides, t.byte_offset = self.manager, shape, self.dtype, strides, byte_offset
        t._allocation, t._owns_allocation = self._allocation, False
        t.geometry = (self.dtype.name, shape, strides, byte_offset)
        t.numel = math.prod(shape)
        return t

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def span_bytes(self) -> int:
        """Bytes from the first element to the end of the last (equals nbytes when contiguous)."""
        if self.numel == 0:
            return 0
        last = sum((s - 1) * st for s, st in zip(self.shape, self.strides))
        return (last + 1) * self.dtype.itemsize

    @property
    def is_contiguous(self) -> bool:
        return self.numel <= 1 or self.strides == contiguous_strides(self.shape)

    @property
    def allocation(self) -> Allocation:
        a = self._allocation
        if a is None:
            if self.numel == 0:
                raise errors.HlxError("an empty tensor has no memory")
            raise errors.DestroyedError("this tensor was freed")
        if a.freed or a._block.buffer.destroyed:
            a.check_alive()
        return a

    @property
    def alive(self) -> bool:
        return self.numel == 0 or (self._allocation is not None and self._allocation.alive)

    @property
    def buffer(self):
        """The VkBuffer handle; the tensor starts at :attr:`offset` in it."""
        return self.allocation.buffer

    @property
    def offset(self) -> int:
        """Byte offset of the first element inside :attr:`buffer`."""
        return self.allocation.offset + self.byte_offset

    def descriptor(self) -> tuple:
        """``(buffer, offset, range)`` for :meth:`ComputePipeline.update_descriptor_set`."""
        return self.buffer, self.offset, max(self.span_bytes, 4)

    def numpy(self) -> np.ndarray:
        """A host copy, C-contiguous, of the tensor's elements."""
        return self.manager.read_many([self])[0]

    def from_bytes(self, raw: np.ndarray) -> np.ndarray:
        """This tensor's elements from a fresh uint8 array of its span (as downloaded); no copy when contiguous."""
        raw = raw.view(self.dtype.numpy)
        if self.is_contiguous:
            return raw.reshape(self.shape)
        item = self.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(raw, self.shape, tuple(s * item for s in self.strides))
        return np.array(view, order="C")

    def write(self, array) -> None:
        """Overwrite the elements from an array of this tensor's shape (cast to its dtype)."""
        a = np.asarray(array)
        if a.shape != self.shape:
            raise errors.ShapeError(f"cannot write an array of shape {a.shape} into a tensor of shape {self.shape}")
        if not self.is_contiguous:
            raise errors.ShapeError("write() needs a contiguous tensor")
        if self.numel:
            self.manager.write_many([(self, a)])

    def digest(self) -> str:
        """SHA-256 of the canonical encoding (see :mod:`hlx_vulkan.memory.digest`)."""
        if self.numel and self.is_contiguous and self.allocation.host_visible and sys.byteorder == "little":
            h = _digest.hasher(self.dtype.name, self.shape)
            start = self.byte_offset
            h.update(self.allocation.mapped()[start:start + self.nbytes])  # zero-copy from mapped memory
            return h.hexdigest()
        return _digest.tensor_digest(self.dtype.name, self.shape, self.numpy())

    def free(self) -> None:
        """Give the memory back (the batch's memory goes back when all its tensors are freed)."""
        if self._allocation is not None and self._owns_allocation:
            self._allocation.free()
        self._allocation = None
        self._owns_allocation = False

    def __repr__(self) -> str:
        state = "" if self.alive else ", freed"
        return f"TensorBuffer(shape={self.shape}, dtype={self.dtype.name}{state})"
