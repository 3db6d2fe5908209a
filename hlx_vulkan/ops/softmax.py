"""Softmax and log-softmax along a dim (``dim=``, or numpy's ``axis=``), fused: one kernel,
one workgroup per row, numerically stable (the row maximum is subtracted).
Rows contiguous in memory (the last dim of a contiguous tensor) take
``softmax/softmax_rows.comp``: the row read once (a running max and sum), 4-element vector
loads where aligned, kept in registers for the output pass where it fits; other layouts take
``softmax/softmax.comp`` (strided, three passes).
The backward pass is the same kernel compiled with BACKWARD.

Forcing (tests, benchmarks): :data:`FORCE_STRIDED` sends every row to the strided kernel,
:data:`FORCE_SCALAR` turns the row kernel's vector loads off, :data:`FORCE_STREAM` makes it
read a row again for the output pass (the path of long rows)."""

from __future__ import annotations

import math
from importlib import resources

from .. import errors
from ..autograd.graph import differentiable
from ..memory import dtype_of
from ..runtime import KernelSpec
from . import elementwise as ew
from .tensor import Tensor, contiguous_like, normalize_axis

_SOURCE = resources.files(__package__) / "softmax" / "softmax.comp"
_PUSH = [("rows", "I"), ("R", "I"), ("off_a", "I"), ("off_o", "I"), ("st_r", "i"), ("st_ro", "i"), ("shape", "4I"),
         ("st", "4i"), ("st_o", "4i"), ("off_g", "I")]
FORWARD = KernelSpec(_SOURCE, [("O", "write", "O"), ("A", "read", "A")], _PUSH)
BACKWARD = KernelSpec(_SOURCE, [("O", "write", "O"), ("A", "read", "A"), ("G", "read", "B")], _PUSH)
ROWS = KernelSpec(resources.files(__package__) / "softmax" / "softmax_rows.comp",
                  [("O", "write", "O"), ("A", "read", "A")],
                  [("rows", "I"), ("R", "I"), ("off_o", "I"), ("off_a", "I"), ("off_g", "I")])
ROWS_BACKWARD = KernelSpec(ROWS.path, [("O", "write", "O"), ("A", "read", "A"), ("G", "read", "B")], ROWS.fields)
KEPT_DIMS = 4
MAX_NC = 8  # a row of up to MAX_NC * WG * 4 elements stays in registers
FORCE_STRIDED = False
FORCE_SCALAR = False
FORCE_STREAM = False


def row_workgroup(R: int) -> int:
    """Threads per row of the row kernel: a function of the row length alone."""
    slots = -(-R // 4)
    for wg in (32, 64, 128):
        if slots <= 2 * wg:
            return wg
    return 256


def _launch_rows(x: Tensor, out: Tensor, R: int, log: bool, grad: Tensor | None) -> None:
    rt = x.runtime
    key = ("softmax_rows", log, FORCE_SCALAR, FORCE_STREAM, x.buf.geometry, out.buf.geometry,
           grad.buf.geometry if grad is not None else None)
    plan = rt.plans.get(key)
    if plan is None:
        plan = rt.plans[key] = _plan_rows(x, out, R, log, grad)
    kernel, push, grid = plan
    rt.run(kernel, [out.buf, x.buf] if grad is None else [out.buf, x.buf, grad.buf], push, grid)


def _plan_rows(x: Tensor, out: Tensor, R: int, log: bool, grad: Tensor | None):
    rt = x.runtime
    rows = x.numel() // R
    wg = row_workgroup(R)
    slots = -(-(-(-R // 4)) // wg)
    nc = 0 if FORCE_STREAM or slots > MAX_NC else slots
    ts = (x, out) if grad is None else (x, out, grad)
    vec = int(not FORCE_SCALAR and R % 4 == 0 and all((t.buf.byte_offset // t.dtype.itemsize) % 4 == 0 for t in ts))
    defines = {"LOG": int(log), "BACKWARD": int(grad is not None), "NC": nc, "VEC": vec}
    if grad is None:
        kernel = rt.kernels.get(ROWS, defines, {"O": out.dtype, "A": x.dtype}, (wg,))
        bufs = [out.buf, x.buf]
    else:
        kernel = rt.kernels.get(ROWS_BACKWARD, defines, {"O": out.dtype, "A": x.dtype, "B": grad.dtype}, (wg,))
        bufs = [out.buf, x.buf, grad.buf]
    return kernel, kernel.spec.pack(bufs, {"rows": rows, "R": R}), rt.fold(rows * wg, wg)


def _layout(shape, st_in, st_out):
    dims = [(s, a, b) for s, a, b in zip(shape, st_in, st_out) if s != 1]
    merged = []
    for s, a, b in dims:
        if merged and merged[-1][1] == a * s and merged[-1][2] == b * s:
            merged[-1] = (merged[-1][0] * s, a, b)
        else:
            merged.append((s, a, b))
    if len(merged) > KEPT_DIMS:
        raise errors.ShapeError(f"softmax over shape {tuple(shape)} keeps {len(merged)} dimensions that do not merge; "
                                "call .contiguous() first")
    pad = [(1, 0, 0)] * (KEPT_DIMS - len(merged))
    merged = pad + merged
    return [m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged]


def _launch(x: Tensor, axis: int, log: bool, grad: Tensor | None = None) -> Tensor:
    """The forward over ``x``; or, given ``grad``, the backward with ``x`` the forward's output."""
    if not x.dtype.is_float:
        raise errors.DTypeError(f"softmax needs a floating-point tensor, not {x.dtype.name}")
    rt = x.runtime
    a = normalize_axis(axis, x.ndim) if x.ndim else 0
    out = contiguous_like(x.shape, x.dtype, rt)
    if x.numel() == 0:
        return out
    if grad is not None:
        grad = ew.copy(grad) if grad.strides != x.strides or grad.dtype is not x.dtype else grad
    if x.ndim == 0:
        x = x.reshape(1)
        out_view = out.reshape(1)
        grad = grad.reshape(1) if grad is not None else None
    else:
        out_view = out
    R = x.shape[a]
    if not FORCE_STRIDED and x.is_contiguous() and all(s == 1 for s in x.shape[a + 1:]) and \
            (grad is None or grad.is_contiguous()) and x.numel() < 2**31:
        _launch_rows(x, out_view, R, log, grad)
        return out
    kept = [d for d in range(x.ndim) if d != a]
    shape4, st4, sto4 = _layout([x.shape[d] for d in kept], [x.strides[d] for d in kept],
                                [out_view.strides[d] for d in kept])
    rows = math.prod(x.shape[d] for d in kept)
    wg = 32 if R <= 256 else 64 if R <= 1024 else 256
    defines = {"LOG": int(log), "BACKWARD": int(grad is not None), "CT": "float", "OCT": "float"}
    dtypes = {"O": x.dtype, "A": x.dtype}
    if grad is None:
        kernel, tensors = rt.kernels.get(FORWARD, defines, dtypes, (wg,)), {"O": out_view.buf, "A": x.buf}
    else:
        kernel = rt.kernels.get(BACKWARD, defines, {**dtypes, "B": grad.dtype}, (wg,))
        tensors = {"O": out_view.buf, "A": x.buf, "G": grad.buf}
    rt.run(kernel, tensors, {"rows": rows, "R": R, "st_r": x.strides[a], "st_ro": out_view.strides[a],
                             "shape": shape4, "st": st4, "st_o": sto4}, rows * wg)
    return out


def _softmax_backward(ctx, g):
    (y,) = ctx.saved
    return (_launch(y, ctx.args[1], log=False, grad=g), None)


def _log_softmax_backward(ctx, g):
    (y,) = ctx.saved
    return (_launch(y, ctx.args[1], log=True, grad=g), None)


@differentiable(_softmax_backward, saves=("out",))
def _softmax(x: Tensor, axis: int) -> Tensor:
    return _launch(x, axis, log=False)


@differentiable(_log_softmax_backward, saves=("out",))
def _log_softmax(x: Tensor, axis: int) -> Tensor:
    return _launch(x, axis, log=True)


def _prepare(x: Tensor, dim, axis, dtype):
    if axis is not None:
        if dim is not None:
            raise TypeError("pass dim or axis (numpy's name for it), not both")
        dim = axis
    if dtype is not None:
        x = ew.cast(x, dtype) if x.dtype is not dtype_of(dtype) else x
    return x, -1 if dim is None else dim


def softmax(x: Tensor, dim=None, dtype=None, *, axis=None) -> Tensor:
    """exp(x - max) / sum(exp(x - max)) along ``dim`` (default the last); ``dtype`` converts first."""
    x, dim = _prepare(x, dim, axis, dtype)
    return _softmax(x, dim)


def log_softmax(x: Tensor, dim=None, dtype=None, *, axis=None) -> Tensor:
    """x - max - log(sum(exp(x - max))) along ``dim`` (default the last); ``dtype`` converts first."""
    x, dim = _prepare(x, dim, axis, dtype)
    return _log_softmax(x, dim)
