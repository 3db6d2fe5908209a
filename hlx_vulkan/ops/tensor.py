"""Tensor: the user-facing array on a Vulkan device.

Its operators and methods are declared here and delegate to the op modules (imported at the
end of this file, since they build on this class); each op records its kernels into the
runtime's stream and returns at once. Reading a tensor back (``numpy()``, ``item()``) is a
sync point.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..memory import DType, TensorBuffer, dtype_of
from ..memory.tensor import contiguous_strides
from ..autograd import graph as _graph
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
        """A view the calling op has checked: ``shape`` and ``strides`` (tuples of ints) fit the memory."""
        buf = self.buf.view(tuple(shape), tuple(strides), self.buf.byte_offset if byte_offset is None else byte_offset)
        return Tensor(buf, self.runtime)

    def detach(self) -> "Tensor":
        """The same memory, outside the autograd graph."""
        return self._view(self.shape, self.strides)

    @property
    def is_leaf(self) -> bool:
        """Made by the user (or under no_grad), not by a recorded differentiable op."""
        return self._node is None

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if flag and not self.dtype.is_float:
            raise errors.DTypeError(f"only floating-point tensors can require grad, not {self.dtype.name}")
        self.requires_grad = flag
        return self

    def backward(self, gradient: "Tensor | None" = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see hlx_vulkan.autograd.engine)."""
        _graph.run_backward(self, gradient, retain_graph)

    # --- arithmetic (ops/elementwise.py) ------------------------------------------------
    def __add__(self, other): return _ew.add(self, other)
    def __radd__(self, other): return _ew.add(other, self)
    def __sub__(self, other): return _ew.sub(self, other)
    def __rsub__(self, other): return _ew.sub(other, self)
    def __mul__(self, other): return _ew.mul(self, other)
    def __rmul__(self, other): return _ew.mul(other, self)
    def __truediv__(self, other): return _ew.div(self, other)
    def __rtruediv__(self, other): return _ew.div(other, self)
    def __neg__(self): return _ew.neg(self)
    def __pow__(self, exponent): return _ew.pow(self, exponent)
    def __abs__(self): return _ew.abs(self)
    def __eq__(self, other): return _ew.eq(self, other)  # type: ignore[override]
    def __ne__(self, other): return _ew.ne(self, other)  # type: ignore[override]
    def __lt__(self, other): return _ew.lt(self, other)
    def __le__(self, other): return _ew.le(self, other)
    def __gt__(self, other): return _ew.gt(self, other)
    def __ge__(self, other): return _ew.ge(self, other)
    __hash__ = object.__hash__

    def exp(self): return _ew.exp(self)
    def log(self): return _ew.log(self)
    def sqrt(self): return _ew.sqrt(self)
    def rsqrt(self): return _ew.rsqrt(self)
    def tanh(self): return _ew.tanh(self)
    def sigmoid(self): return _ew.sigmoid(self)
    def sin(self): return _ew.sin(self)
    def cos(self): return _ew.cos(self)
    def relu(self): return _ew.relu(self)
    def gelu(self, approximate: str = "none"): return _ew.gelu(self, approximate)
    def neg(self): return _ew.neg(self)
    def abs(self): return _ew.abs(self)
    def clamp(self, min=None, max=None): return _ew.clamp(self, min, max)  # noqa: A002 - torch's names
    def maximum(self, other): return _ew.maximum(self, other)
    def minimum(self, other): return _ew.minimum(self, other)
    def pow(self, exponent): return _ew.pow(self, exponent)

    def to(self, dtype) -> "Tensor":
        """A copy converted to ``dtype`` (this tensor itself when it has that dtype already)."""
        return _ew.cast(self, dtype)

    def contiguous(self) -> "Tensor":
        return self if self.is_contiguous() else _ew.copy(self)

    def copy_(self, other) -> "Tensor":
        """Copy ``other`` (a tensor, broadcast, or array-like) into this tensor in place, in stream order."""
        _sh.refuse_inplace_grad(self, other)
        if isinstance(other, Tensor):
            _ew.copy(other if other.dtype is self.dtype else _ew.cast(other, self.dtype), out=self)
            return self
        if self.runtime.stream.capturing:
            raise errors.CaptureError("copy_ from host data inside hv.capture() would copy the same data on every "
                                      "replay; feed inputs with x.copy_(batch) before graph.replay()")
        a = np.asarray(other)
        if a.shape == self.shape and self.is_contiguous():
            self.runtime.upload(self.buf, a)
        else:
            _ew.copy(from_numpy(a, self.dtype, self.runtime), out=self)
        return self

    # --- matrix products, reductions, shapes --------------------------------------------
    def __matmul__(self, other): return _mm.matmul(self, other)
    def matmul(self, other): return _mm.matmul(self, other)

    def sum(self, axis=None, keepdim: bool = False): return _red.sum(self, axis, keepdim)
    def mean(self, axis=None, keepdim: bool = False): return _red.mean(self, axis, keepdim)
    def max(self, axis=None, keepdim: bool = False): return _red.max(self, axis, keepdim)
    def min(self, axis=None, keepdim: bool = False): return _red.min(self, axis, keepdim)
    def argmax(self, axis=None, keepdim: bool = False): return _red.argmax(self, axis, keepdim)
    def argmin(self, axis=None, keepdim: bool = False): return _red.argmin(self, axis, keepdim)
    def var(self, axis=None, keepdim: bool = False, correction: int = 1):
        return _red.var(self, axis, keepdim, correction)

    def reshape(self, *shape): return _sh.reshape(self, *shape)
    def view(self, *shape): return _sh.view(self, *shape)
    def permute(self, *dims): return _sh.permute(self, *dims)
    def transpose(self, dim0: int = -2, dim1: int = -1): return _sh.transpose(self, dim0, dim1)
    def unsqueeze(self, dim: int): return _sh.unsqueeze(self, dim)
    def squeeze(self, dim=None): return _sh.squeeze(self, dim)
    def flatten(self, start_dim: int = 0, end_dim: int = -1): return _sh.flatten(self, start_dim, end_dim)
    def expand(self, *shape): return _sh.expand(self, *shape)
    def index_select(self, axis: int, index): return _sh.index_select(self, axis, index)
    def __getitem__(self, key): return _sh.getitem(self, key)
    def __setitem__(self, key, value): _sh.setitem(self, key, value)

    @property
    def T(self) -> "Tensor":  # noqa: N802 - numpy's and torch's name
        return _sh.permute(self, tuple(reversed(range(self.ndim))))


def normalize_axis(axis: int, ndim: int) -> int:
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise errors.ShapeError(f"axis {axis} is out of range for a tensor of {ndim} dimension(s)")
    return axis % max(ndim, 1)


def empty(shape, dtype="float32", runtime: Runtime | None = None) -> Tensor:
    rt = runtime or default_runtime()
    return Tensor(rt.memory.empty(shape, dtype), rt)


def host_dtype(array: np.ndarray) -> DType:
    """The dtype :func:`from_numpy` gives a host array when none is named."""
    if array.dtype == np.float64:
        return dtype_of("float32")  # like torch.tensor: Python floats become float32
    if array.dtype == np.int64:
        return dtype_of("int32")
    if array.dtype == np.dtype(bool):
        return dtype_of("uint8")
    return dtype_of(array.dtype)


def from_numpy(array, dtype=None, runtime: Runtime | None = None, requires_grad: bool = False) -> Tensor:
    rt = runtime or default_runtime()
    a = np.asarray(array)
    dt = host_dtype(a) if dtype is None else dtype_of(dtype)
    buf = rt.memory.empty(a.shape, dt)
    rt.upload(buf, a)
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


def new_tensor(runtime: Runtime, shape: tuple, dtype: DType, strides: tuple) -> Tensor:
    """A fresh contiguous tensor of a shape, dtype and strides already checked (the hot path)."""
    n = 1
    for s in shape:
        n *= s
    return Tensor(runtime.memory.fresh(shape, dtype, strides, n * dtype.numpy.itemsize), runtime)


__all__ = ["Tensor", "contiguous_strides", "empty", "from_numpy", "host_dtype", "new_tensor", "normalize_axis",
           "tensor"]

# The op modules build on Tensor, so they are imported once it exists; its methods call them.
from . import elementwise as _ew  # noqa: E402
from . import matmul as _mm  # noqa: E402
from . import reduce as _red  # noqa: E402
from . import shape as _sh  # noqa: E402
