"""Layer norm over the last dims, fused: one kernel forward (``layer_norm/layer_norm.comp``,
one workgroup per row, saving each row's mean and 1/std), one kernel backward (dx per row,
and per chunk of rows the partial sums of dweight and dbias), and ``layer_norm_wb.comp``,
which adds the chunks up per column in a fixed order (eight runs of chunks, then a tree).

Deterministic: a row's reduction order follows from its length alone (see the kernel), so a
row gives the same bits whatever the batch; dweight and dbias sum each chunk's rows in order,
then the chunks in a fixed order, chunk size a function of the row count alone.

Storage may be float32, float16 or bfloat16 (each operand its own); the arithmetic is float32.

Forcing (tests, benchmarks): :data:`FORCE_SCALAR` turns 4-element vector loads off,
:data:`FORCE_STREAM` makes rows that fit in registers read memory again for each pass (the
path of long rows), :data:`FORCE_CHUNK` sets the rows per backward chunk.
"""

from __future__ import annotations

import math
from importlib import resources

from .. import errors
from ..autograd.graph import differentiable
from ..memory import float32
from ..runtime import KernelSpec
from .reduce_flat import Fresh
from .tensor import Tensor, contiguous_like

_DIR = resources.files(__package__) / "layer_norm"
FORWARD = KernelSpec(_DIR / "layer_norm.comp",
                     [("O", "write", "O"), ("X", "read", "A"), ("W", "read", "C"), ("B", "read", "B"), ("S", "write")],
                     [("rows", "I"), ("D", "I"), ("eps", "f"), ("off_o", "I"), ("off_x", "I"), ("off_w", "I"),
                      ("off_b", "I"), ("off_s", "I")])
BACKWARD = KernelSpec(_DIR / "layer_norm.comp",
                      [("DX", "write", "O"), ("X", "read", "A"), ("G", "read", "B"), ("W", "read", "C"), ("S", "read"),
                       ("P", "readwrite")],
                      [("rows", "I"), ("D", "I"), ("ch", "I"), ("wb", "I"), ("off_dx", "I"), ("off_x", "I"),
                       ("off_g", "I"), ("off_w", "I"), ("off_s", "I"), ("off_p", "I")])
WEIGHT_BIAS = KernelSpec(_DIR / "layer_norm_wb.comp", [("DW", "write", "O"), ("DB", "write", "O"), ("P", "read")],
                         [("D", "I"), ("chunks", "I"), ("nd", "I"), ("off_dw", "I"), ("off_db", "I"), ("off_p", "I")])

MAX_NC = 8           # a row of up to MAX_NC * WG * 4 elements stays in registers
FORCE_SCALAR = False
FORCE_STREAM = False
FORCE_CHUNK: int | None = None


def workgroup(D: int) -> int:
    """Threads per row: a function of the row length alone (it fixes the reduction order)."""
    slots = -(-D // 4)
    for wg in (32, 64, 128):
        if slots <= 2 * wg:
            return wg
    return 256


def rows_per_chunk(rows: int) -> int:
    """Rows per backward chunk: a function of the row count alone."""
    if FORCE_CHUNK is not None:
        return FORCE_CHUNK
    return max(1, min(64, rows // 1024))


def _plan(D: int, tensors) -> tuple[int, int, int]:
    """(WG, NC, VEC) for rows of ``D`` over ``tensors`` (contiguous rows)."""
    wg = workgroup(D)
    slots = -(-(-(-D // 4)) // wg)
    nc = 0 if FORCE_STREAM or slots > MAX_NC else slots
    vec = not FORCE_SCALAR and D % 4 == 0 and all((t.buf.byte_offset // t.dtype.itemsize) % 4 == 0 for t in tensors)
    return wg, nc, int(vec)


def _check(x: Tensor, w: Tensor, b: Tensor, D: int) -> None:
    for name, t in (("input", x), ("weight", w), ("bias", b)):
        if not t.dtype.is_float:
            raise errors.DTypeError(f"layer_norm needs floating-point tensors; the {name} is {t.dtype.name}")
    for name, t in (("weight", w), ("bias", b)):
        if t.numel() != D:
            raise errors.ShapeError(f"layer_norm: {name} of shape {t.shape} does not have the {D} elements of a row")


def _forward(x: Tensor, w: Tensor, b: Tensor, stats: Tensor, eps: float) -> Tensor:
    rt = x.runtime
    key = ("layer_norm", eps, FORCE_SCALAR, FORCE_STREAM, x.buf.geometry, w.buf.geometry, b.buf.geometry)
    plan = rt.plans.get(key)
    if plan is None:
        plan = rt.plans[key] = _forward_plan(x, w, b, eps)
    kernel, push, grid = plan
    out = contiguous_like(x.shape, x.dtype, rt)
    if kernel is not None:
        rt.run(kernel, [out.buf, x.buf, w.buf, b.buf, stats.buf], push, grid)
    return out


def _forward_plan(x: Tensor, w: Tensor, b: Tensor, eps: float):
    rt = x.runtime
    D = w.numel()
    rows = x.numel() // D
    if rows == 0:
        return None, None, None
    wg, nc, vec = _plan(D, (x, w, b))
    kernel = rt.kernels.get(FORWARD, {"BACKWARD": 0, "NC": nc, "VEC": vec},
                            {"O": x.dtype, "A": x.dtype, "B": b.dtype, "C": w.dtype}, (wg,))
    push = kernel.spec.pack([Fresh(x.dtype), x.buf, w.buf, b.buf, Fresh(float32)], {"rows": rows, "D": D, "eps": eps})
    return kernel, push, rt.fold(rows * wg, wg)


def _backward(x: Tensor, g: Tensor, w: Tensor, stats: Tensor, weight_bias: bool):
    """(dx, dweight, dbias) with dweight and dbias of ``w``'s dtype, or None if not ``weight_bias``."""
    rt = x.runtime
    D = w.numel()
    rows = x.numel() // D
    dx = contiguous_like(x.shape, x.dtype, rt)
    if rows == 0:
        return dx, None, None
    g = g.contiguous()
    wg, nc, vec = _plan(D, (x, g, w))
    ch = rows_per_chunk(rows)
    chunks = -(-rows // ch)
    nd = 4 * -(-D // 4)
    part = contiguous_like((2 * chunks, nd) if weight_bias else (4,), float32, rt)
    kernel = rt.kernels.get(BACKWARD, {"BACKWARD": 1, "NC": nc, "VEC": vec},
                            {"O": x.dtype, "A": x.dtype, "B": g.dtype, "C": w.dtype}, (wg,))
    rt.run(kernel, {"DX": dx.buf, "X": x.buf, "G": g.buf, "W": w.buf, "S": stats.buf, "P": part.buf},
           {"rows": rows, "D": D, "ch": ch, "wb": int(weight_bias)}, chunks * wg)
    if not weight_bias:
        return dx, None, None
    dw = contiguous_like(w.shape, w.dtype, rt)
    db = contiguous_like(w.shape, w.dtype, rt)
    k2 = rt.kernels.get(WEIGHT_BIAS, {}, {"O": w.dtype})
    rt.run(k2, {"DW": dw.buf, "DB": db.buf, "P": part.buf}, {"D": D, "chunks": chunks, "nd": nd},
           rt.fold(-(-D // 32) * 256, 256))
    return dx, dw, db


def _layer_norm_backward(ctx, g):
    x, w, b, stats = ctx.saved
    wb = ctx.needs[1] or ctx.needs[2]
    dx, dw, db = _backward(x, g, w, stats, wb)
    if db is not None and db.dtype is not b.dtype:
        from . import elementwise as ew
        db = ew.cast(db, b.dtype)
    return (dx if ctx.needs[0] else None, dw if ctx.needs[1] else None, db if ctx.needs[2] else None, None, None)


@differentiable(_layer_norm_backward, saves=(0, 1, 2, 3))
def _layer_norm(x: Tensor, w: Tensor, b: Tensor, stats: Tensor, eps: float) -> Tensor:
    """``x`` contiguous, rows of D = ``w.numel()``; ``w``, ``b`` (D,); ``stats`` (rows, 2) float32, written."""
    return _forward(x, w, b, stats, eps)


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dims (biased variance, as torch)."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if k == 0 or k > x.ndim or x.shape[x.ndim - k:] != normalized_shape:
        raise errors.ShapeError(f"layer_norm over {normalized_shape} does not match input shape {x.shape}")
    D = math.prod(normalized_shape)
    if D == 0:
        raise errors.ShapeError(f"layer_norm over {normalized_shape}: rows of zero elements")
    rt = x.runtime
    if weight is None or bias is None:
        from .creation import ones, zeros
        dt = (weight if weight is not None else x).dtype.name
        weight = ones(D, dtype=dt, runtime=rt) if weight is None else weight
        bias = zeros(D, dtype=weight.dtype.name, runtime=rt) if bias is None else bias
    _check(x, weight, bias, D)
    if x.numel() >= 2**31:
        raise errors.LimitExceededError(f"layer_norm of {x.numel()} elements is more than one launch indexes")
    w = weight if weight.ndim == 1 and weight.is_contiguous() else weight.contiguous().reshape((D,))
    b = bias if bias.ndim == 1 and bias.is_contiguous() else bias.contiguous().reshape((D,))
    x = x if x.is_contiguous() else x.contiguous()
    stats = contiguous_like((x.numel() // D, 2), float32, rt)
    return _layer_norm(x, w, b, stats, float(eps))


__all__ = ["layer_norm"]
