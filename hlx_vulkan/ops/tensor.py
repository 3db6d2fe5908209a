"""Tensor: the user-facing array on a Vulkan device.

Ops are methods (bound in ``hlx_vulkan.ops``) and module functions; each op
records its kernels into the runtime's stream and returns at once. Reading a
tensor back (``numpy()``, ``item()``) is a sync point.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..memory import DType, TensorBuffer, dtype_of
from ..memory.tensor import contiguous_strides
from ..runtime import Runtime, default_runtime


class Tensor:
    """An n-dimensional array in device memory.

    Example::

        import hlx_vulkan as hv
        x = hv.tensor([[1.0, 2.0], [3.0, 4.0]])
        y = (x * 2 + 1).sum(axis=0)
        y.numpy()   # array([ 9., 13.], dtype=float32)
    """

    __slots__ = ("buf", "runtime", "requires_grad", "grad", "_node", "__weakref__")
    __array_priority__ = 100  # numpy defers to our operators

    def __init__(self, buf: TensorBuffer, runtime: Runtime, requires_grad: bool = False):
        self.buf = buf
        self.runtime = runtime
        self.requires_grad = requires_grad
        self.grad: Tensor | None = None
        self._node = None

    # --- description -----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.buf.shape

    @property
    def dtype(self) -> DType:
        return self.buf.dtype

    @property
    def ndim(self) -> int:
        return len(self.buf.shape)

    @property
    def strides(self) -> tuple[int, ...]:
        return self.buf.strides

    def numel(self) -> int:
        return self.buf.numel

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[normalize_axis(dim, self.ndim)]

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def is_contiguous(self) -> bool:
        return self.buf.is_contiguous

    def __repr__(self) -> str:
        if not self.buf.alive:
            return f"tensor(<freed>, shape={self.shape}, dtype={self.dtype.name})"
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({np.array2string(self.numpy(), separator=', ')}, dtype=hv.{self.dtype.name}{grad})"

    # --- host transfer (sync points) --------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A host copy; waits for every recorded op."""
        return self.runtime.read([self.buf])[0]

    def item(self):
        if self.numel() != 1:
            raise errors.ShapeError(f"item() needs a tensor of one element, this one has shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def digest(self) -> str:
        """SHA-256 of the canonical encoding (see hlx_vulkan.memory.digest); a sync point."""
        self.runtime.synchronize()
        return self.buf.digest()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    # --- views ------------------------------------------------------------------------
    def _view(self, shape, strides, byte_offset: int | None = None) -> "Tensor":
        buf = TensorBuffer(self.buf.manager, self.buf._allocation, shape, self.dtype, strides,
                           self.buf.byte_offset if byte_offset is None else byte_offset, owns_allocation=False)
        return Tensor(buf, self.runtime)

    def detach(self) -> "Tensor":
        """The same memory, outside the autograd graph."""
        return self._view(self.shape, self.strides)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if flag and not self.dtype.is_float:
            raise errors.DTypeError(f"only floating-point tensors can require grad, not {self.dtype.name}")
        self.requires_grad = flag
        return self


def normalize_axis(axis: int, ndim: int) -> int:
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise errors.ShapeError(f"axis {axis} is out of range for a tensor of {ndim} dimension(s)")
    return axis % max(ndim, 1)


def empty(shape, dtype="float32", runtime: Runtime | None = None) -> Tensor:
    rt = runtime or default_runtime()
    return Tensor(rt.memory.empty(shape, dtype), rt)


def from_numpy(array, dtype=None, runtime: Runtime | None = None, requires_grad: bool = False) -> Tensor:
    rt = runtime or default_runtime()
    a = np.asarray(array)
    if dtype is None and a.dtype == np.float64:
        dtype = "float32"  # like torch.tensor: Python floats become float32
    elif dtype is None and a.dtype in (np.int64, np.dtype(bool)):
        dtype = "int32" if a.dtype == np.int64 else "uint8"
    dt = dtype_of(dtype if dtype is not None else a.dtype)
    buf = rt.memory.empty(a.shape, dt)
    if buf.numel:
        # Fresh memory: no recorded op can be using it (the stream keeps freed memory until its batch is done).
        rt.memory.write_many([(buf, a.astype(dt.numpy))])
    t = Tensor(buf, rt)
    if requires_grad:
        t.requires_grad_()
    return t


def tensor(data, dtype=None, requires_grad: bool = False, runtime: Runtime | None = None) -> Tensor:
    """A tensor from array-like data (lists, numpy arrays, scalars, or another tensor).

    Example::

        hv.tensor([1, 2, 3])                         # int32
        hv.tensor(np.eye(2), dtype=hv.float16)
    """
    if isinstance(data, Tensor):
        data = data.numpy()
    return from_numpy(data, dtype, runtime, requires_grad)


def contiguous_like(shape, dtype, runtime: Runtime) -> Tensor:
    return Tensor(runtime.memory.empty(shape, dtype), runtime)


__all__ = ["Tensor", "contiguous_strides", "empty", "from_numpy", "normalize_axis", "tensor"]
