"""Tensors made on the device: zeros, ones, full, arange, linspace, eye (no host upload), with
torch's default dtypes: float32, except that ``full`` and ``arange`` take the dtype of their
numbers (an integer fill or range gives int64, a bool fill bool)."""

from __future__ import annotations

import math

import numpy as np

from .. import errors
from ..memory import bool_, dtype_of, float32
from ..runtime import Runtime, default_runtime
from .pointwise import compute_type, launch, scalar_fits
from .tensor import Tensor, check_device, check_dtype, contiguous_like, default_int_dtype, from_numpy


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(int(s) for s in shape)


def _number_dtype(value, rt):
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return default_int_dtype(rt)
    return float32


def full(shape, value, dtype=None, runtime: Runtime | None = None, requires_grad: bool = False,
         device=None) -> Tensor:
    """A tensor of ``shape`` filled with ``value``, written by a kernel (dtype: from ``value`` when
    not given, as torch.full)."""
    check_device(device)
    rt = runtime or default_runtime()
    dt = check_dtype(dtype_of(dtype) if dtype is not None else _number_dtype(value, rt), rt)
    shape = _shape(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
    if not dt.is_float and not dt.is_bool:
        if not float(value).is_integer():
            value = math.trunc(value)
        value = int(value)
    if not scalar_fits(value, compute_type(dt)):
        return from_numpy(np.full(shape, value, dt.numpy), dt, rt, requires_grad)  # checked and uploaded
    out = contiguous_like(shape, dt, rt)
    if out.numel():
        # The kernel reads its output slot as input x but never uses it.
        launch("alpha", [out], out=out, alpha=value)
    return out.requires_grad_() if requires_grad else out


def zeros(*shape, dtype="float32", runtime: Runtime | None = None, requires_grad: bool = False,
          device=None) -> Tensor:
    return full(_shape(shape), 0.0, dtype or "float32", runtime, requires_grad, device)


def ones(*shape, dtype="float32", runtime: Runtime | None = None, requires_grad: bool = False,
         device=None) -> Tensor:
    return full(_shape(shape), 1.0, dtype or "float32", runtime, requires_grad, device)


def empty(*shape, dtype="float32", runtime: Runtime | None = None, requires_grad: bool = False,
          device=None) -> Tensor:
    """Uninitialised memory of ``shape`` (torch.empty)."""
    check_device(device)
    rt = runtime or default_runtime()
    out = contiguous_like(_shape(shape), check_dtype(dtype_of(dtype or "float32"), rt), rt)
    return out.requires_grad_() if requires_grad else out


def zeros_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    return full(x.shape, 0.0, dtype or x.dtype, x.runtime, requires_grad)


def ones_like(x: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    return full(x.shape, 1.0, dtype or x.dtype, x.runtime, requires_grad)


def full_like(x: Tensor, value, dtype=None, requires_grad: bool = False) -> Tensor:
    return full(x.shape, value, dtype or x.dtype, x.runtime, requires_grad)


def empty_like(x: Tensor, dtype=None) -> Tensor:
    return contiguous_like(x.shape, dtype_of(dtype or x.dtype), x.runtime)


def arange(start, stop=None, step=1, dtype=None, runtime: Runtime | None = None, device=None,
           requires_grad: bool = False) -> Tensor:
    """``start, start + step, ...`` below ``stop`` (torch.arange: int64 for integer arguments)."""
    check_device(device)
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("arange step must not be zero")
    rt = runtime or default_runtime()
    if dtype is None:
        dtype = default_int_dtype(rt) if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                             for v in (start, stop, step)) else float32
    dt = check_dtype(dtype_of(dtype), rt)
    n = max(0, math.ceil((stop - start) / step))
    ct = compute_type(dt)
    if not dt.is_float:
        # Integer ranges are computed exactly in the integer type from a start and step the kernel's
        # 32-bit scalars hold; a 64-bit range past them is made on the host.
        fits = scalar_fits(start, ct) and scalar_fits(step, ct)
        if not (fits and (ct == "int64_t" or scalar_fits(start + step * max(n - 1, 0), ct))):
            if ct != "int64_t":
                raise errors.DTypeError(f"arange({start}, {stop}, {step}) does not fit {dt.name}")
            return from_numpy(np.arange(start, stop, step, dtype=np.int64), dt, rt, requires_grad)
    out = contiguous_like((n,), dt, rt)
    if n:
        expr = "CT(alpha) + CT(beta) * CT(i)" if dt.is_float else "alpha + beta * CT(i)"
        launch(expr, [out], out=out, alpha=start, beta=step)
    return out.requires_grad_() if requires_grad else out


def _f32_literal(v: float) -> str:
    """An exact float32 constant for a kernel expression."""
    return f"uintBitsToFloat({int(np.array(v, np.float32).view(np.uint32))}u)"


def linspace(start: float, end: float, steps: int, dtype=None, runtime: Runtime | None = None,
             device=None, requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive (torch.linspace: the first
    half counts up from ``start``, the second down from ``end``, so both ends are exact)."""
    check_device(device)
    if steps < 0:
        raise ValueError(f"linspace needs steps >= 0, got {steps}")
    rt = runtime or default_runtime()
    dt = check_dtype(dtype_of(dtype or "float32"), rt)
    out = contiguous_like((steps,), dt, rt)
    if steps:
        step = (end - start) / (steps - 1) if steps > 1 else 0.0
        half = steps // 2
        expr = (f"float(i) < {half}.0 ? float(alpha) + float(beta) * float(i) : "
                f"{_f32_literal(end)} - float(beta) * float({steps - 1}u - i)")
        launch(expr, [out], out=out, alpha=float(start), beta=step, compute=float32)
    return out.requires_grad_() if requires_grad else out


def eye(n: int, m: int | None = None, dtype=None, runtime: Runtime | None = None, device=None,
        requires_grad: bool = False) -> Tensor:
    """The ``n`` x ``m`` identity (ones on the diagonal)."""
    check_device(device)
    m = n if m is None else m
    rt = runtime or default_runtime()
    dt = check_dtype(dtype_of(dtype or "float32"), rt)
    out = contiguous_like((n, m), dt, rt)
    if n * m:
        launch(f"(i / {m}u == i % {m}u) ? CT(1) : CT(0)", [out], out=out)
    return out.requires_grad_() if requires_grad else out
