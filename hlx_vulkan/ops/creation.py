"""Tensors made on the device: zeros, ones, full, arange (no host upload)."""

from __future__ import annotations

import math

from .. import errors
from ..memory import dtype_of
from ..runtime import Runtime, default_runtime
from .elementwise import launch
from .tensor import Tensor, contiguous_like


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def full(shape, value, dtype="float32", runtime: Runtime | None = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``shape`` filled with ``value``, written by a kernel."""
    rt = runtime or default_runtime()
    out = contiguous_like(_shape(shape) if isinstance(shape, (tuple, list)) else (shape,), dtype_of(dtype), rt)
    if out.numel():
        # The kernel reads its output slot as input x but never uses it.
        launch("alpha", [out], out=out, alpha=float(value))
    return out.requires_grad_() if requires_grad else out


def zeros(*shape, dtype="float32", runtime: Runtime | None = None, requires_grad: bool = False) -> Tensor:
    return full(_shape(shape), 0.0, dtype, runtime, requires_grad)


def ones(*shape, dtype="float32", runtime: Runtime | None = None, requires_grad: bool = False) -> Tensor:
    return full(_shape(shape), 1.0, dtype, runtime, requires_grad)


def zeros_like(x: Tensor) -> Tensor:
    return full(x.shape, 0.0, x.dtype, x.runtime)


def ones_like(x: Tensor) -> Tensor:
    return full(x.shape, 1.0, x.dtype, x.runtime)


def arange(start, stop=None, step=1, dtype=None, runtime: Runtime | None = None) -> Tensor:
    """``start, start + step, ...`` below ``stop`` (numpy's arange; int32 for integer arguments)."""
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("arange step must not be zero")
    if dtype is None:
        dtype = "int32" if all(float(v).is_integer() and not isinstance(v, float) for v in (start, stop, step)) \
            else "float32"
    dt = dtype_of(dtype)
    n = max(0, math.ceil((stop - start) / step))
    if not dt.is_float and max(abs(start), abs(stop)) >= 2**24:
        raise errors.LimitExceededError("integer arange is exact up to 2**24 in this kernel")
    rt = runtime or default_runtime()
    out = contiguous_like((n,), dt, rt)
    if n:
        launch("CT(alpha) + CT(beta) * CT(i)" if dt.is_float else "CT(alpha + beta * float(i))",
               [out], out=out, alpha=float(start), beta=float(step))
    return out
