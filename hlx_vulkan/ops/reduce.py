"""Reductions along any axis: sum, mean, max, min, argmax, argmin, var.

Deterministic: a fixed fold per thread and a fixed tree per workgroup
(``reduce/reduce.comp``); a long axis is cut into fixed chunks whose partial
results are reduced again by the same kernel. No atomics anywhere.
"""

from __future__ import annotations

import builtins
import math
from importlib import resources

import numpy as np

from .. import errors
from ..autograd.graph import differentiable
from ..memory import float32, int32
from ..runtime import KernelSpec
from .pointwise import compute_type, launch
from .tensor import Tensor, contiguous_like, normalize_axis

_SOURCE = resources.files(__package__) / "reduce" / "reduce.comp"
_PUSH = [("n_groups", "I"), ("nchunks", "I"), ("R", "I"), ("chunk", "I"), ("scale", "f"), ("off_a", "I"),
         ("off_o", "I"), ("off_i", "I"), ("st_r", "i"), ("shape", "4I"), ("st", "4i")]
VALUE = KernelSpec(_SOURCE, [("O", "write", "O"), ("A", "read", "A")], _PUSH)
# argmax/argmin also write the index of the extreme.
ARG = KernelSpec(_SOURCE, [("O", "write", "O"), ("A", "read", "A"), ("I", "write")], _PUSH)
OPS = {"sum": 0, "max": 1, "min": 2, "argmax": 3, "argmin": 4}
KEPT_DIMS = 4
# A long axis with few outputs is cut into chunks of at least MIN_CHUNK elements, enough
# of them to give the device TARGET_GROUPS workgroups; the partials are reduced again.
MIN_CHUNK = 2048
TARGET_GROUPS = 1024


def _workgroup(length: int) -> int:
    for wg in (32, 64, 128):
        if length <= wg * 8:
            return wg
    return 256


def _kept_layout(shape, strides):
    """Coalesce the kept dims (C order) into at most KEPT_DIMS (shape, stride) pairs."""
    dims = [(s, st) for s, st in zip(shape, strides) if s != 1]
    merged = []
    for s, st in dims:
        if merged and merged[-1][1] == st * s:
            merged[-1] = (merged[-1][0] * s, st)
        else:
            merged.append((s, st))
    if len(merged) > KEPT_DIMS:
        raise errors.ShapeError(f"reducing a tensor of shape {tuple(shape)} keeps {len(merged)} dimensions that do "
                                f"not merge; at most {KEPT_DIMS} are supported (call .contiguous() first)")
    pad = KEPT_DIMS - len(merged)
    return [1] * pad + [m[0] for m in merged], [0] * pad + [m[1] for m in merged]


def _reduce_axis(x: Tensor, axis: int, op: str, scale: float = 1.0):
    """Reduce one axis; returns the result (axis removed) and, for arg ops, the index tensor."""
    rt = x.runtime
    R = x.shape[axis]
    kept_shape = x.shape[:axis] + x.shape[axis + 1:]
    kept_strides = x.strides[:axis] + x.strides[axis + 1:]
    arg = op in ("argmax", "argmin")
    if R == 0:
        if op != "sum":
            raise errors.ShapeError(f"{op} of an empty axis (shape {x.shape}, axis {axis}) has no identity")
        return _full(kept_shape, x, 0.0), None
    n_out = math.prod(kept_shape)
    out = contiguous_like(kept_shape, x.dtype, rt)
    index = contiguous_like(kept_shape, int32, rt) if arg else None
    if n_out == 0:
        return out, index
    nchunks = 1
    if not arg and R > 2 * MIN_CHUNK and n_out < TARGET_GROUPS:
        nchunks = builtins.min(-(-R // MIN_CHUNK), -(-TARGET_GROUPS // n_out))
    chunk = -(-R // nchunks)
    shape4, st4 = _kept_layout(kept_shape, kept_strides)
    # Partials of a split reduction stay in float32 for float inputs; the second pass casts back.
    partial_dtype = float32 if x.dtype.is_float else x.dtype
    target = out if nchunks == 1 else contiguous_like((n_out, nchunks), partial_dtype, rt)
    wg = _workgroup(chunk)
    ct = compute_type(x.dtype)
    defines = {"OP": OPS[op], "CT": ct, "OCT": compute_type(target.dtype), "KIND_FLOAT": int(ct == "float"),
               "KIND_UNSIGNED": int(ct == "uint")}
    kernel = rt.kernels.get(ARG if arg else VALUE, defines, {"A": x.dtype, "O": target.dtype}, (wg,))
    n_groups = n_out * nchunks
    tensors = {"O": target.buf, "A": x.buf, "I": index.buf} if arg else {"O": target.buf, "A": x.buf}
    rt.run(kernel, tensors, {"n_groups": n_groups, "nchunks": nchunks, "R": R, "chunk": chunk,
                             "scale": scale if nchunks == 1 else 1.0, "st_r": x.strides[axis], "shape": shape4,
                             "st": st4}, n_groups * wg)
    if nchunks > 1:
        final, _ = _reduce_axis(target, 1, op, scale)
        final = final.reshape(kept_shape)
        return (final if final.dtype is x.dtype else launch("x", [final], out_dtype=x.dtype)), None
    return out, index


def _full(shape, like: Tensor, value: float) -> Tensor:
    from .tensor import from_numpy
    return from_numpy(np.full(shape, value, like.dtype.numpy), like.dtype, like.runtime)


def _axes(x: Tensor, axis) -> list[int]:
    if axis is None:
        return list(range(x.ndim))
    if isinstance(axis, (tuple, list)):
        axes = sorted({normalize_axis(a, x.ndim) for a in axis})
        return axes
    return [normalize_axis(axis, x.ndim)]


def _keep(result: Tensor, x: Tensor, axes, keepdim: bool) -> Tensor:
    if not keepdim:
        return result
    shape = tuple(1 if d in axes else s for d, s in enumerate(x.shape))
    return result.reshape(shape)


def _reduce(x: Tensor, axis, keepdim: bool, op: str, mean: bool = False) -> Tensor:
    axes = _axes(x, axis)
    if x.ndim == 0:
        return x.contiguous()
    count = math.prod([x.shape[a] for a in axes])
    if mean and count == 0:
        raise errors.ShapeError(f"mean over an empty selection of shape {x.shape}")
    if axis is None and x.is_contiguous() and x.ndim > 1:
        flat = x.reshape((x.numel(),))
        r, _ = _reduce_axis(flat, 0, op, 1.0 / count if mean else 1.0)
        return _keep(r, x, axes, keepdim)
    # Sums over several axes keep their partial results in float32 for 16-bit floats, so
    # cancellation between the passes is not rounded to 8 or 11 bits in between.
    widen = op == "sum" and len(axes) > 1 and x.dtype.is_float and x.dtype.itemsize == 2
    r = launch("x", [x], out_dtype=float32) if widen else x
    for i, a in enumerate(sorted(axes, reverse=True)):
        last = i == len(axes) - 1
        r, _ = _reduce_axis(r, a, op, 1.0 / count if (mean and last) else 1.0)
    if widen:
        r = launch("x", [r], out_dtype=x.dtype)
    return _keep(r, x, axes, keepdim)


def sum_to_shape(g: Tensor, shape) -> Tensor:
    """Sum a broadcast gradient back to ``shape`` (the input's shape before broadcasting)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + d for d, s in enumerate(shape) if s == 1 and g.shape[lead + d] != 1)
    r = sum(g, axes, keepdim=True) if axes else g
    return r.reshape(shape)


def _kept_shape(ctx):
    shape = ctx.shapes[0]
    axes = set(range(len(shape))) if ctx.args[1] is None else \
        {normalize_axis(a, len(shape)) for a in (ctx.args[1] if isinstance(ctx.args[1], (tuple, list))
                                                 else (ctx.args[1],))}
    return tuple(1 if d in axes else s for d, s in enumerate(shape)), tuple(sorted(axes))


def _spread(ctx, g: Tensor) -> Tensor:
    """The output gradient as a broadcast view over the input's shape."""
    kept, _ = _kept_shape(ctx)
    return g.reshape(kept).expand(ctx.shapes[0]) if len(ctx.shapes[0]) else g.reshape(())


def _sum_backward(ctx, g):
    return _spread(ctx, g), None, None


def _mean_backward(ctx, g):
    _, axes = _kept_shape(ctx)
    count = math.prod(ctx.shapes[0][a] for a in axes)
    return launch("x * alpha", [_spread(ctx, g)], alpha=1.0 / count), None, None


def _extreme_backward(ctx, g):
    # The gradient goes to every element equal to the extreme, split evenly among ties.
    x, out = ctx.saved
    kept, axes = _kept_shape(ctx)
    hit = launch("x == y ? CT(1) : CT(0)", [x, out.reshape(kept)])
    ties = sum(hit, axes, keepdim=True)
    return launch("x * y / z", [hit, g.reshape(kept), ties]), None, None


@differentiable(_sum_backward)
def sum(x: Tensor, axis=None, keepdim: bool = False) -> Tensor:  # noqa: A001 - torch's name
    """Sum over ``axis`` (an int, a tuple, or None for all)."""
    return _reduce(x, axis, keepdim, "sum")


@differentiable(_mean_backward)
def mean(x: Tensor, axis=None, keepdim: bool = False) -> Tensor:
    if not x.dtype.is_float:
        raise errors.DTypeError(f"mean needs a floating-point tensor, not {x.dtype.name}")
    return _reduce(x, axis, keepdim, "sum", mean=True)


@differentiable(_extreme_backward, saves=(0, "out"))
def max(x: Tensor, axis=None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Largest element along ``axis`` (NaN propagates, as in numpy)."""
    return _reduce(x, axis, keepdim, "max")


@differentiable(_extreme_backward, saves=(0, "out"))
def min(x: Tensor, axis=None, keepdim: bool = False) -> Tensor:  # noqa: A001
    return _reduce(x, axis, keepdim, "min")


def _arg(x: Tensor, axis, keepdim: bool, op: str) -> Tensor:
    if axis is None:
        flat = x.contiguous().reshape((x.numel(),))
        _, idx = _reduce_axis(flat, 0, op)
        return idx.reshape((1,) * x.ndim) if keepdim else idx
    a = normalize_axis(axis, x.ndim)
    _, idx = _reduce_axis(x, a, op)
    return _keep(idx, x, [a], keepdim)


def argmax(x: Tensor, axis=None, keepdim: bool = False) -> Tensor:
    """Index (int32) of the largest element; the first one on ties, the first NaN if any."""
    return _arg(x, axis, keepdim, "argmax")


def argmin(x: Tensor, axis=None, keepdim: bool = False) -> Tensor:
    return _arg(x, axis, keepdim, "argmin")


def var(x: Tensor, axis=None, keepdim: bool = False, correction: int = 1) -> Tensor:
    """Variance with ``correction`` (1: unbiased, like torch.var; 0: numpy's default)."""
    axes = _axes(x, axis)
    n = math.prod([x.shape[a] for a in axes])
    centered = x - mean(x, axis, keepdim=True)
    ss = sum(centered * centered, axis, keepdim)
    denom = n - correction
    return ss * (1.0 / denom if denom > 0 else float("nan"))
