"""Tensor: the user-facing array on a Vulkan device.

Its operators and methods are declared here and delegate to the op modules (imported at the
end of this file, since they build on this class); each op records its kernels into the
runtime's stream and returns at once. Reading a tensor back (``numpy()``, ``item()``,
``bool(t)``, ``float(t)``) is a sync point.

The surface is PyTorch's: ``dim=`` and ``keepdim=`` (``axis=`` is accepted as numpy's alias),
the method forms (``x.softmax(-1)``, ``x.float()``, ``x.to(dtype)``, ``x.clone()``...), its type
promotion (``hlx_vulkan.ops.elementwise``) and its integer types: integer data defaults to
int64, as in torch, on a device with ``shaderInt64`` (int32 on one without, where int64 is
refused).

Tensors live in device memory. ``x.cpu()`` and ``x.to("cpu")`` return the tensor itself, so
PyTorch's ``x.cpu().numpy()`` works: ``numpy()`` is the transfer. ``x.cuda()`` is refused.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..memory import DType, TensorBuffer, bool_, can_cast, dtype_of, float16, float32, int8, int32, int64, uint8
from ..memory import bfloat16 as _bfloat16
from ..memory import tree_digest as _td
from ..memory.tensor import contiguous_strides
from ..autograd import graph as _graph
from ..runtime import Runtime, default_runtime


class Device:
    """Where a tensor lives: ``vulkan:<index>`` (PyTorch code may compare and pass it to ``.to()``)."""

    __slots__ = ("type", "index")

    def __init__(self, type: str = "vulkan", index: int = 0):  # noqa: A002 - torch's name
        self.type, self.index = type, index

    def __eq__(self, other) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __str__(self) -> str:
        return f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}', index={self.index})"


_DEVICE_NAMES = ("cpu", "vulkan", "hlx", "cuda", "mps", "meta")


def _is_device(value) -> bool:
    if isinstance(value, Device) or type(value).__name__ == "device":
        return True
    return isinstance(value, str) and value.split(":")[0] in _DEVICE_NAMES


def check_device(device) -> None:
    """Accept the devices a tensor may be "moved" to: the Vulkan device, and "cpu" (a tensor stays
    in device memory; reading it is ``numpy()``). CUDA and others are refused."""
    if device is None:
        return
    kind = str(device).split(":")[0]
    if kind in ("cpu", "vulkan", "hlx"):
        return
    raise errors.DeviceTransferError(f"hlx tensors run on the Vulkan device; {str(device)!r} is not available here "
                                     "(use the tensor as is, and .numpy() to read it on the host)")


class Tensor:
    """An n-dimensional array in device memory.

    Example::

        import hlx_vulkan as hv
        x = hv.tensor([[1.0, 2.0], [3.0, 4.0]])
        y = (x * 2 + 1).sum(dim=0)
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

    def stride(self, dim: int | None = None):
        """Strides in elements (torch's method form of :attr:`strides`)."""
        return self.strides if dim is None else self.strides[normalize_axis(dim, self.ndim)]

    def numel(self) -> int:
        return self.buf.numel

    nelement = numel

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[normalize_axis(dim, self.ndim)]

    def dim(self) -> int:
        return self.ndim

    ndimension = dim

    def element_size(self) -> int:
        return self.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self.dtype.is_float

    @property
    def grad_fn(self):
        """The taped op that made this tensor (None for a leaf)."""
        return self._node

    @property
    def device(self) -> Device:
        return Device("vulkan", self.runtime.ctx.physical_device.index)

    @property
    def data(self) -> "Tensor":
        """The same memory outside the autograd graph (``p.data -= lr * p.grad`` updates ``p``)."""
        return self.detach()

    @data.setter
    def data(self, value: "Tensor") -> None:
        # As torch: this tensor now refers to ``value``'s memory (which stays alive with it).
        if not isinstance(value, Tensor):
            raise TypeError(f"data must be a tensor, not {type(value).__name__}")
        self.buf = value.buf

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

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
        """The one element as a Python number (bool, int or float); a sync point."""
        if self.numel() != 1:
            raise errors.ShapeError(f"item() needs a tensor of one element, this one has shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def digest(self, version: str = _td.DEFAULT) -> str:
        """The content digest under ``version``; a sync point. The default, ``hlx-blake3-v1``
        (hlx_vulkan.memory.blake3_digest), and ``hlx-tree-sha256-v1`` (hlx_vulkan.memory.tree_digest)
        are hashed on the device; ``hlx-flat-sha256-v1``, SHA-256 of the canonical encoding
        (hlx_vulkan.memory.digest, also ``TensorBuffer.digest()``), on the host after a read-back."""
        version = _td.check_version(version)
        if version == _td.TREE:
            return _dg.device_tree_digest(self)
        if version == _td.BLAKE3:
            return _db3.device_blake3_digest(self)
        self.runtime.synchronize()
        return self.buf.digest()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise errors.ShapeError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or "
                                    ".all()")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.is_float:
            raise TypeError(f"a {self.dtype.name} tensor cannot be used as an index")
        return int(self.item())

    def __format__(self, spec: str) -> str:
        if self.ndim == 0 and self.buf.alive:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def cpu(self) -> "Tensor":
        """This tensor (it stays in device memory): PyTorch's ``x.cpu().numpy()`` reads it back."""
        return self

    def cuda(self, *args, **kwargs):
        raise errors.DeviceTransferError("hlx tensors run on the Vulkan device; there is no CUDA here")

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
    def __floordiv__(self, other): return _ew.floor_divide(self, other)
    def __rfloordiv__(self, other): return _ew.floor_divide(other, self)
    def __mod__(self, other): return _ew.remainder(self, other)
    def __rmod__(self, other): return _ew.remainder(other, self)
    def __pow__(self, exponent): return _ew.pow(self, exponent)
    def __rpow__(self, base): return _ew.pow(base, self)
    def __neg__(self): return _ew.neg(self)
    def __pos__(self): return self
    def __abs__(self): return _ew.abs(self)
    def __invert__(self): return _ew.bitwise_not(self)
    def __and__(self, other): return _ew.bitwise_and(self, other)
    def __rand__(self, other): return _ew.bitwise_and(other, self)
    def __or__(self, other): return _ew.bitwise_or(self, other)
    def __ror__(self, other): return _ew.bitwise_or(other, self)
    def __xor__(self, other): return _ew.bitwise_xor(self, other)
    def __rxor__(self, other): return _ew.bitwise_xor(other, self)
    # == with something that is neither a tensor nor a number falls back to identity, as torch.
    def __eq__(self, other): return _ew.eq(self, other) if _comparable(other) else NotImplemented  # type: ignore
    def __ne__(self, other): return _ew.ne(self, other) if _comparable(other) else NotImplemented  # type: ignore
    def __lt__(self, other): return _ew.lt(self, other)
    def __le__(self, other): return _ew.le(self, other)
    def __gt__(self, other): return _ew.gt(self, other)
    def __ge__(self, other): return _ew.ge(self, other)
    __hash__ = object.__hash__

    # In place, as torch: the result is written into this tensor's memory (views see it).
    def __iadd__(self, other): return self._assign(_ew.add(self, other))
    def __isub__(self, other): return self._assign(_ew.sub(self, other))
    def __imul__(self, other): return self._assign(_ew.mul(self, other))
    def __itruediv__(self, other): return self._assign(_ew.div(self, other))
    def __ifloordiv__(self, other): return self._assign(_ew.floor_divide(self, other))
    def __imod__(self, other): return self._assign(_ew.remainder(self, other))
    def __ipow__(self, other): return self._assign(_ew.pow(self, other))
    def __iand__(self, other): return self._assign(_ew.bitwise_and(self, other))
    def __ior__(self, other): return self._assign(_ew.bitwise_or(self, other))
    def __ixor__(self, other): return self._assign(_ew.bitwise_xor(self, other))

    def _assign(self, result: "Tensor") -> "Tensor":
        if not can_cast(result.dtype, self.dtype):
            raise errors.DTypeError(f"result type {result.dtype.name} can't be cast to the desired output type "
                                    f"{self.dtype.name} of an in-place op")
        return self.copy_(result)

    def add(self, other, alpha=1):
        """``self + alpha * other``."""
        return _ew.add(self, other if alpha == 1 else _ew.mul(other, alpha))

    def sub(self, other, alpha=1):
        """``self - alpha * other``."""
        return _ew.sub(self, other if alpha == 1 else _ew.mul(other, alpha))

    def mul(self, other): return _ew.mul(self, other)
    multiply = mul

    def div(self, other, rounding_mode: str | None = None):
        """True division; ``rounding_mode="floor"`` or ``"trunc"`` as torch.div."""
        if rounding_mode is None:
            return _ew.div(self, other)
        if rounding_mode == "floor":
            return _ew.floor_divide(self, other)
        if rounding_mode == "trunc":
            q = _ew.div(self, other)
            if not _ew.result_type(self, other).is_float:
                _ew.floor_divide(self, other)  # refuses an integer zero divisor
                return _ew.cast(_ew.trunc(q), _ew.result_type(self, other))
            return _ew.trunc(q)
        raise ValueError(f"rounding_mode must be None, 'floor' or 'trunc', not {rounding_mode!r}")

    divide = true_divide = div

    def floor_divide(self, other): return _ew.floor_divide(self, other)
    def remainder(self, other): return _ew.remainder(self, other)
    def add_(self, other, alpha=1): return self._assign(self.add(other, alpha))
    def sub_(self, other, alpha=1): return self._assign(self.sub(other, alpha))
    def mul_(self, other): return self._assign(_ew.mul(self, other))
    def div_(self, other): return self._assign(_ew.div(self, other))
    def clamp_(self, min=None, max=None): return self._assign(_ew.clamp(self, min, max))  # noqa: A002
    def masked_fill_(self, mask, value): return self._assign(_ew.masked_fill(self, mask, value))

    def zero_(self) -> "Tensor":
        return self.fill_(0)

    def fill_(self, value) -> "Tensor":
        """Fill with ``value`` in place, in stream order."""
        _sh.refuse_inplace_grad(self, value)
        if isinstance(value, Tensor):
            return self.copy_(value)
        if self.numel():
            _ew.launch("alpha", [self], out=self, alpha=value if self.dtype.is_float else int(value))
        return self

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
    negative = neg
    def abs(self): return _ew.abs(self)
    def reciprocal(self): return _ew.reciprocal(self)
    def square(self): return _ew.pow(self, 2)
    def floor(self): return _ew.floor(self)
    def ceil(self): return _ew.ceil(self)
    def round(self): return _ew.round(self)
    def trunc(self): return _ew.trunc(self)
    def sign(self): return _ew.sign(self)
    def clamp(self, min=None, max=None): return _ew.clamp(self, min, max)  # noqa: A002 - torch's names
    clip = clamp
    def clamp_min(self, min): return _ew.clamp(self, min, None)  # noqa: A002
    def clamp_max(self, max): return _ew.clamp(self, None, max)  # noqa: A002
    def maximum(self, other): return _ew.maximum(self, other)
    def minimum(self, other): return _ew.minimum(self, other)
    def pow(self, exponent): return _ew.pow(self, exponent)
    def eq(self, other): return _ew.eq(self, other)
    def ne(self, other): return _ew.ne(self, other)
    def lt(self, other): return _ew.lt(self, other)
    def le(self, other): return _ew.le(self, other)
    def gt(self, other): return _ew.gt(self, other)
    def ge(self, other): return _ew.ge(self, other)
    def isnan(self): return _ew.isnan(self)
    def isinf(self): return _ew.isinf(self)
    def isfinite(self): return _ew.isfinite(self)
    def logical_not(self): return _ew.logical_not(self)
    def logical_and(self, other): return _ew.logical_and(self, other)
    def logical_or(self, other): return _ew.logical_or(self, other)
    def logical_xor(self, other): return _ew.logical_xor(self, other)
    def bitwise_not(self): return _ew.bitwise_not(self)
    def masked_fill(self, mask, value): return _ew.masked_fill(self, mask, value)
    def where(self, condition, other): return _ew.where(condition, self, other)

    def allclose(self, other, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
        """Whether ``|self - other| <= atol + rtol * |other|`` everywhere (a sync point)."""
        return _ew.allclose(self, other, rtol, atol, equal_nan)

    def equal(self, other: "Tensor") -> bool:
        """Whether ``other`` has this shape and the same elements (a sync point)."""
        return self.shape == other.shape and bool(_red.all(_ew.eq(self, other)))

    # --- dtypes and devices -------------------------------------------------------------
    def to(self, *args, dtype=None, device=None, copy: bool = False, non_blocking: bool = False) -> "Tensor":
        """Convert to a dtype, and/or "move" to a device: ``to(hv.float16)``, ``to("cpu")``,
        ``to(other)`` (other's dtype), ``to(device, dtype)``. The tensor itself comes back when
        nothing changes (unless ``copy=True``); "cpu" and the Vulkan device leave it where it is."""
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif _is_device(a):
                device = a
            else:
                dtype = a
        check_device(device)
        if dtype is None or dtype_of(dtype) is self.dtype:
            return _ew.copy(self) if copy else self
        return _ew.cast(self, dtype)

    def type(self, dtype=None):
        """The dtype's name, or a conversion to ``dtype``."""
        return self.dtype.name if dtype is None else self.to(dtype)

    def type_as(self, other: "Tensor") -> "Tensor":
        return self.to(other.dtype)

    def float(self): return self.to(float32)
    def half(self): return self.to(float16)
    def bfloat16(self): return self.to(_bfloat16)
    def int(self): return self.to(int32)
    def long(self): return self.to(int64)
    def bool(self): return self.to(bool_)
    def byte(self): return self.to(uint8)
    def char(self): return self.to(int8)

    def double(self):
        raise errors.DTypeError("float64 is not supported: Vulkan devices compute in float32 here; use .float()")

    def clone(self) -> "Tensor":
        """A copy in new memory (contiguous), on the autograd graph."""
        return _ew.copy(self)

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

    def new_tensor(self, data, dtype=None): return tensor(data, dtype or self.dtype, runtime=self.runtime)
    def new_zeros(self, *size, dtype=None): return _cr.zeros(*size, dtype=dtype or self.dtype, runtime=self.runtime)
    def new_ones(self, *size, dtype=None): return _cr.ones(*size, dtype=dtype or self.dtype, runtime=self.runtime)
    def new_empty(self, *size, dtype=None): return _cr.empty(*size, dtype=dtype or self.dtype, runtime=self.runtime)

    def new_full(self, size, fill_value, dtype=None):
        return _cr.full(size, fill_value, dtype=dtype or self.dtype, runtime=self.runtime)

    # --- matrix products, reductions, shapes --------------------------------------------
    # Signatures are the op functions' (dim=, keepdim=, axis= as numpy's alias).
    def __matmul__(self, other): return _mm.matmul(self, other)
    def __rmatmul__(self, other): return _mm.matmul(other, self)
    def matmul(self, other): return _mm.matmul(self, other)
    def mm(self, other): return _ct.mm(self, other)
    def bmm(self, other): return _ct.bmm(self, other)
    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
        return _attn.baddbmm(self, batch1, batch2, beta=beta, alpha=alpha)
    def addmm(self, mat1, mat2, *, beta=1, alpha=1):
        return _linear.addmm(self, mat1, mat2, beta=beta, alpha=alpha)

    def sum(self, *args, **kwargs): return _red.sum(self, *args, **kwargs)
    def mean(self, *args, **kwargs): return _red.mean(self, *args, **kwargs)
    def max(self, *args, **kwargs): return _red.max(self, *args, **kwargs)
    def min(self, *args, **kwargs): return _red.min(self, *args, **kwargs)
    def amax(self, *args, **kwargs): return _red.amax(self, *args, **kwargs)
    def amin(self, *args, **kwargs): return _red.amin(self, *args, **kwargs)
    def argmax(self, *args, **kwargs): return _red.argmax(self, *args, **kwargs)
    def argmin(self, *args, **kwargs): return _red.argmin(self, *args, **kwargs)
    def var(self, *args, **kwargs): return _red.var(self, *args, **kwargs)
    def std(self, *args, **kwargs): return _red.std(self, *args, **kwargs)
    def logsumexp(self, *args, **kwargs): return _red.logsumexp(self, *args, **kwargs)
    def cumsum(self, *args, **kwargs): return _red.cumsum(self, *args, **kwargs)
    def any(self, *args, **kwargs): return _red.any(self, *args, **kwargs)
    def all(self, *args, **kwargs): return _red.all(self, *args, **kwargs)
    def norm(self, *args, **kwargs): return _red.norm(self, *args, **kwargs)
    def softmax(self, *args, **kwargs): return _sm.softmax(self, *args, **kwargs)
    def log_softmax(self, *args, **kwargs): return _sm.log_softmax(self, *args, **kwargs)

    def reshape(self, *shape): return _sh.reshape(self, *shape)
    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
            raise errors.DTypeError(f"view({shape[0]!r}): reinterpreting the bytes as another dtype is not "
                                    "supported; use .to() to convert")
        return _sh.view(self, *shape)
    def view_as(self, other): return _sh.view(self, other.shape)
    def reshape_as(self, other): return _sh.reshape(self, other.shape)
    def permute(self, *dims): return _sh.permute(self, *dims)
    def transpose(self, dim0: int = -2, dim1: int = -1): return _sh.transpose(self, dim0, dim1)
    swapaxes = swapdims = transpose
    def t(self): return _sh.t(self)
    def unsqueeze(self, dim: int): return _sh.unsqueeze(self, dim)
    def squeeze(self, dim=None): return _sh.squeeze(self, dim)
    def flatten(self, start_dim: int = 0, end_dim: int = -1): return _sh.flatten(self, start_dim, end_dim)
    def unflatten(self, dim: int, sizes): return _sh.unflatten(self, dim, sizes)
    def expand(self, *shape): return _sh.expand(self, *shape)
    def expand_as(self, other): return _sh.expand(self, other.shape)
    def repeat(self, *sizes): return _sh.repeat(self, *sizes)
    def split(self, split_size_or_sections, dim: int = 0): return _sh.split(self, split_size_or_sections, dim)
    def chunk(self, chunks: int, dim: int = 0): return _sh.chunk(self, chunks, dim)
    def tril(self, diagonal: int = 0): return _sh.tril(self, diagonal)
    def triu(self, diagonal: int = 0): return _sh.triu(self, diagonal)
    def index_select(self, dim: int, index): return _sh.index_select(self, dim, index)
    def nonzero(self): return _sh.nonzero(self)
    def __getitem__(self, key): return _sh.getitem(self, key)
    def gather(self, dim: int, index): return _ix.gather(self, dim, index)
    def scatter(self, dim: int, index, src=None, *, value=None): return _ix.scatter(self, dim, index, src, value=value)
    def scatter_add(self, dim: int, index, src): return _ix.scatter_add(self, dim, index, src)
    def scatter_(self, dim: int, index, src=None, *, value=None):
        return self._assign(_ix.scatter(self, dim, index, src, value=value))
    def scatter_add_(self, dim: int, index, src): return self._assign(_ix.scatter_add(self, dim, index, src))
    def flip(self, *dims): return _ix.flip(self, dims[0] if len(dims) == 1 and not isinstance(dims[0], int) else dims)
    def roll(self, shifts, dims=None): return _ix.roll(self, shifts, dims)
    def repeat_interleave(self, repeats, dim=None, *, output_size=None):
        return _ix.repeat_interleave(self, repeats, dim, output_size=output_size)
    def sort(self, dim: int = -1, descending: bool = False, *, stable: bool = False):
        return _so.sort(self, dim, descending, stable=stable)
    def argsort(self, dim: int = -1, descending: bool = False, *, stable: bool = False):
        return _so.argsort(self, dim, descending, stable=stable)
    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):  # noqa: A002
        return _so.topk(self, k, dim, largest, sorted)
    def msort(self): return _so.msort(self)
    def kthvalue(self, k: int, dim: int = -1, keepdim: bool = False): return _so.kthvalue(self, k, dim, keepdim)
    def cumprod(self, dim: int, *, dtype=None): return _scan.cumprod(self, dim, dtype=dtype)
    def erf(self): return _act.erf(self)
    def __setitem__(self, key, value): _sh.setitem(self, key, value)

    @property
    def T(self) -> "Tensor":  # noqa: N802 - numpy's and torch's name
        return _sh.permute(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> "Tensor":  # noqa: N802 - torch's name: the last two dims swapped
        return _sh.transpose(self, -2, -1)


_graph.set_tensor_type(Tensor)


def _comparable(other) -> bool:
    return isinstance(other, (Tensor, bool, int, float, np.bool_, np.integer, np.floating))


def normalize_axis(axis: int, ndim: int) -> int:
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise errors.ShapeError(f"dim {axis} is out of range for a tensor of {ndim} dimension(s)")
    return axis % max(ndim, 1)


def default_int_dtype(runtime: Runtime) -> DType:
    """The dtype of integer data, indices and integer sums: int64 as torch, on a device with
    ``shaderInt64``; int32 on one without (where int64 tensors are refused)."""
    return int64 if runtime.kernels.int64 else int32


def check_dtype(dt: DType, runtime: Runtime) -> DType:
    if dt is int64 and not runtime.kernels.int64:
        raise errors.DTypeError("this device has no 64-bit integers (no shaderInt64): int64 tensors are not "
                                "supported here; use int32")
    return dt


def empty(shape, dtype="float32", runtime: Runtime | None = None) -> Tensor:
    rt = runtime or default_runtime()
    return Tensor(rt.memory.empty(shape, check_dtype(dtype_of(dtype), rt)), rt)


def _host_array(data) -> np.ndarray:
    a = np.asarray(data)
    if a.dtype == object or a.dtype == np.uint64:
        try:  # Python integers past int64 come as objects, past 2**63 as uint64
            a = np.asarray(data, dtype=np.int64)
        except (OverflowError, TypeError, ValueError):
            raise errors.DTypeError("the data holds integers that do not fit int64") from None
        if a.dtype == np.uint64:
            raise errors.DTypeError("the data holds integers that do not fit int64")
    return a


def _default_dtype(a: np.ndarray, rt: Runtime) -> DType:
    kind = a.dtype.kind
    if kind == "f" and a.dtype.itemsize == 8:
        return float32  # like torch.tensor: Python floats become float32 (there is no float64 here)
    if kind in "iu" and a.dtype not in (np.int8, np.uint8, np.int32, np.uint32):
        return default_int_dtype(rt)  # int64 as torch, int16/uint16 widened
    return dtype_of(a.dtype)


def _check_fits(a: np.ndarray, dt: DType) -> None:
    """Refuse values ``dt`` cannot hold instead of wrapping them (as torch refuses)."""
    if dt.is_float or dt.is_bool or a.size == 0 or a.dtype.kind == "b":
        return
    info = np.iinfo(dt.numpy)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (np.trunc(a) < info.min) | (np.trunc(a) > info.max)
    elif a.dtype.kind in "iu":
        lo, hi = a.min(), a.max()
        bad = np.array([int(lo) < info.min or int(hi) > info.max])
    else:
        return
    if bad.any():
        v = a[bad][0] if a.dtype.kind == "f" else (a.min() if int(a.min()) < info.min else a.max())
        raise errors.DTypeError(f"value {v} cannot be converted to {dt.name} without overflow")


def host_dtype(array: np.ndarray, runtime: Runtime | None = None) -> DType:
    """The dtype :func:`from_numpy` gives a host array when none is named."""
    return _default_dtype(_host_array(array), runtime or default_runtime())


def from_numpy(array, dtype=None, runtime: Runtime | None = None, requires_grad: bool = False) -> Tensor:
    rt = runtime or default_runtime()
    a = _host_array(array)
    dt = check_dtype(_default_dtype(a, rt) if dtype is None else dtype_of(dtype), rt)
    _check_fits(a, dt)
    buf = rt.memory.empty(a.shape, dt)
    rt.upload(buf, a)
    t = Tensor(buf, rt)
    if requires_grad:
        t.requires_grad_()
    return t


def tensor(data, dtype=None, requires_grad: bool = False, runtime: Runtime | None = None, device=None) -> Tensor:
    """A tensor from array-like data (lists, numpy arrays, scalars, or another tensor).

    Python integers give int64 and Python floats float32, as torch.tensor; a value the dtype
    cannot hold (``hv.tensor([300], dtype=hv.uint8)``, an integer past int64) is refused with
    :class:`~hlx_vulkan.errors.DTypeError` rather than wrapped.

    Example::

        hv.tensor([1, 2, 3])                         # int64
        hv.tensor(np.eye(2), dtype=hv.float16)
    """
    check_device(device)
    if isinstance(data, Tensor):
        data = data.numpy()
    elif isinstance(data, (list, tuple)) and any(isinstance(d, Tensor) for d in data):
        data = [d.numpy() if isinstance(d, Tensor) else d for d in data]
    return from_numpy(data, dtype, runtime, requires_grad)


def contiguous_like(shape, dtype, runtime: Runtime) -> Tensor:
    return Tensor(runtime.memory.empty(shape, dtype), runtime)


__all__ = ["Device", "Tensor", "check_device", "check_dtype", "contiguous_strides", "default_int_dtype", "empty",
           "from_numpy", "host_dtype", "normalize_axis", "tensor"]

# The op modules build on Tensor, so they are imported once it exists; its methods call them.
from . import attention as _attn  # noqa: E402
from . import linear as _linear  # noqa: E402
from . import contract as _ct  # noqa: E402
from . import creation as _cr  # noqa: E402
from . import digest as _dg  # noqa: E402
from . import digest_blake3 as _db3  # noqa: E402
from . import elementwise as _ew  # noqa: E402
from . import matmul as _mm  # noqa: E402
from . import reduce as _red  # noqa: E402
from . import shape as _sh  # noqa: E402
from . import softmax as _sm  # noqa: E402
from . import activations as _act  # noqa: E402
from . import indexing as _ix  # noqa: E402
from . import scan as _scan  # noqa: E402
from . import sort as _so  # noqa: E402
