"""Reductions along any dims: sum, mean, max/min (and amax/amin), argmax, argmin, var, std,
logsumexp, any, all, norm; and the running sum cumsum.

PyTorch's signatures: ``dim=`` (an int, a tuple, or None for all; ``axis=`` is numpy's alias)
and ``keepdim=``. ``sum`` of integers or bools gives int64, as torch (int32 on a device
without 64-bit integers); ``max(x, dim)`` gives ``(values, indices)`` as torch, ``amax`` the
values alone; indices are int64.

Deterministic: a fixed fold per thread and a fixed tree per workgroup
(``reduce/reduce.comp``); a long axis is cut into fixed chunks whose partial
results are reduced again by the same kernel. ``cumsum`` (``reduce/cumsum.comp``) scans each
row in one workgroup in a fixed order. No atomics anywhere.
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple
from importlib import resources

from .. import errors
from ..autograd.graph import differentiable, no_grad
from ..memory import bool_, dtype_of, float32
from ..runtime import KernelSpec
from . import elementwise as ew
from . import reduce_flat
from .pointwise import compute_type, launch
from .tensor import Tensor, contiguous_like, default_int_dtype, normalize_axis

_SOURCE = resources.files(__package__) / "reduce" / "reduce.comp"
_PUSH = [("n_groups", "I"), ("nchunks", "I"), ("R", "I"), ("chunk", "I"), ("scale", "f"), ("off_a", "I"),
         ("off_o", "I"), ("off_i", "I"), ("st_r", "i"), ("shape", "4I"), ("st", "4i")]
VALUE = KernelSpec(_SOURCE, [("O", "write", "O"), ("A", "read", "A")], _PUSH)
# argmax/argmin also write the index of the extreme.
ARG = KernelSpec(_SOURCE, [("O", "write", "O"), ("A", "read", "A"), ("I", "write", "I")], _PUSH)
_SCAN_PUSH = [("rows", "I"), ("R", "I"), ("off_a", "I"), ("off_o", "I"), ("st_r", "i"), ("st_ro", "i"),
              ("shape", "4I"), ("st", "4i"), ("st_o", "4i")]
CUMSUM = KernelSpec(resources.files(__package__) / "reduce" / "cumsum.comp", [("O", "write", "O"), ("A", "read", "A")],
                    _SCAN_PUSH)
OPS = {"sum": 0, "max": 1, "min": 2, "argmax": 3, "argmin": 4}
KEPT_DIMS = 4
# A long axis with few outputs is cut into chunks of at least MIN_CHUNK elements, enough
# of them to give the device TARGET_GROUPS workgroups; the partials are reduced again.
MIN_CHUNK = 2048
TARGET_GROUPS = 1024

# torch.return_types.max / min: a named (values, indices) pair.
ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def _workgroup(length: int) -> int:
    for wg in (32, 64, 128):
        if length <= wg * 8:
            return wg
    return 256


def _kept_layout(shape, *stride_lists):
    """Coalesce the kept dims (C order) into at most KEPT_DIMS, for one or more stride lists:
    ``(shape4, strides4, ...)``."""
    dims = [(s, *sts) for s, *sts in zip(shape, *stride_lists) if s != 1]
    merged = []
    for s, *sts in dims:
        if merged and builtins.all(p == c * s for p, c in zip(merged[-1][1:], sts)):
            merged[-1] = (merged[-1][0] * s, *sts)
        else:
            merged.append((s, *sts))
    if len(merged) > KEPT_DIMS:
        raise errors.ShapeError(f"reducing a tensor of shape {tuple(shape)} keeps {len(merged)} dimensions that do "
                                f"not merge; at most {KEPT_DIMS} are supported (call .contiguous() first)")
    merged = [(1,) + (0,) * len(stride_lists)] * (KEPT_DIMS - len(merged)) + merged
    return tuple([m[k] for m in merged] for k in range(len(stride_lists) + 1))


def _kind_defines(ct: str) -> dict:
    return {"KIND_FLOAT": int(ct == "float"), "KIND_UNSIGNED": int(ct == "uint"), "KIND_INT64": int(ct == "int64_t")}


def axis_plan_key(x: Tensor, axis: int, op: str, scale: float, out_dtype) -> tuple:
    """The key of a one-pass reduction's plan in ``runtime.plans``: its value, once one of this
    layout has run, is ``(kernel, push, groups, shape, strides, nbytes)``."""
    return ("reduce", op, axis, scale, out_dtype, MIN_CHUNK, TARGET_GROUPS, x.buf.geometry)


def _reduce_axis(x: Tensor, axis: int, op: str, scale: float = 1.0, out_dtype=None):
    """Reduce one axis; returns the result (axis removed, of ``out_dtype``, default ``x``'s) and,
    for arg ops, the index tensor."""
    rt = x.runtime
    out_dtype = out_dtype or x.dtype
    # A one-pass value reduction is planned once per (op, axis, scale, dtype, layout), as pointwise launches are.
    key = axis_plan_key(x, axis, op, scale, out_dtype)
    plan = rt.plans.get(key)
    if plan is not None:
        kernel, push, groups, kept_shape, strides, nbytes = plan
        out = Tensor(rt.memory.fresh(kept_shape, out_dtype, strides, nbytes), rt)
        rt.run(kernel, [out.buf, x.buf], push, groups)
        return out, None
    R = x.shape[axis]
    kept_shape = x.shape[:axis] + x.shape[axis + 1:]
    kept_strides = x.strides[:axis] + x.strides[axis + 1:]
    arg = op in ("argmax", "argmin")
    if R == 0:
        if op != "sum":
            raise errors.ShapeError(f"{op} of an empty dim (shape {x.shape}, dim {axis}) has no identity")
        return _full(kept_shape, out_dtype, x, 0), None
    n_out = math.prod(kept_shape)
    out = contiguous_like(kept_shape, out_dtype, rt)
    index = contiguous_like(kept_shape, default_int_dtype(rt), rt) if arg else None
    if n_out == 0:
        return out, index
    nchunks = 1
    if not arg and R > 2 * MIN_CHUNK and n_out < TARGET_GROUPS:
        nchunks = builtins.min(-(-R // MIN_CHUNK), -(-TARGET_GROUPS // n_out))
    chunk = -(-R // nchunks)
    shape4, st4 = _kept_layout(kept_shape, kept_strides)
    # Partials of a split reduction stay in float32 for float inputs; the second pass casts back.
    partial_dtype = float32 if x.dtype.is_float else out_dtype
    target = out if nchunks == 1 else contiguous_like((n_out, nchunks), partial_dtype, rt)
    wg = _workgroup(chunk)
    # Sums of integers accumulate in their (64-bit) result type; everything else in the input's.
    ct = compute_type(out_dtype if op == "sum" and not x.dtype.is_float else x.dtype)
    defines = {"OP": OPS[op], "CT": ct, "OCT": compute_type(target.dtype), **_kind_defines(ct)}
    dtypes = {"A": x.dtype, "O": target.dtype}
    if arg:
        dtypes["I"] = index.dtype
    kernel = rt.kernels.get(ARG if arg else VALUE, defines, dtypes, (wg,))
    n_groups = n_out * nchunks
    tensors = [target.buf, x.buf, index.buf] if arg else [target.buf, x.buf]
    push = kernel.spec.pack(tensors, {"n_groups": n_groups, "nchunks": nchunks, "R": R, "chunk": chunk,
                                      "scale": scale if nchunks == 1 else 1.0, "st_r": x.strides[axis],
                                      "shape": shape4, "st": st4})
    groups = rt.fold(n_groups * wg, kernel.workgroup[0])
    rt.run(kernel, tensors, push, groups)
    if not arg and nchunks == 1:
        rt.plans[key] = (kernel, push, groups, out.shape, out.strides, out.buf.nbytes)
    if nchunks > 1:
        final, _ = _reduce_axis(target, 1, op, scale)
        final = final.reshape(kept_shape)
        return (final if final.dtype is out_dtype else launch("x", [final], out_dtype=out_dtype)), None
    return out, index


def _full(shape, dtype, like: Tensor, value) -> Tensor:
    from .creation import full
    return full(shape, value, dtype, like.runtime)


def _pick_dim(dim, axis):
    """``dim``, or numpy's ``axis`` (one of them)."""
    if axis is not None:
        if dim is not None:
            raise TypeError("pass dim or axis (numpy's name for it), not both")
        return axis
    return dim


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


def _reduce(x: Tensor, axis, keepdim: bool, op: str, mean: bool = False, out_dtype=None) -> Tensor:
    axes = _axes(x, axis)
    out_dtype = out_dtype or x.dtype
    if x.ndim == 0:
        return x.contiguous() if out_dtype is x.dtype else ew.cast(x, out_dtype)
    count = math.prod([x.shape[a] for a in axes])
    if mean and count == 0:
        raise errors.ShapeError(f"mean over an empty selection of shape {x.shape}")
    if len(axes) == x.ndim and reduce_flat.applies(x, op) and (out_dtype is x.dtype):
        r = reduce_flat.reduce_all(x, op, 1.0 / count if mean else 1.0, out_dtype)
        return r.reshape((1,) * x.ndim) if keepdim else r
    if axis is None and x.is_contiguous() and x.ndim > 1:
        flat = x.reshape((x.numel(),))
        r, _ = _reduce_axis(flat, 0, op, 1.0 / count if mean else 1.0, out_dtype)
        return _keep(r, x, axes, keepdim)
    # Sums over several axes keep their partial results in float32 for 16-bit floats, so
    # cancellation between the passes is not rounded to 8 or 11 bits in between.
    widen = op == "sum" and len(axes) > 1 and x.dtype.is_float and x.dtype.itemsize == 2
    r = launch("x", [x], out_dtype=float32) if widen else x
    for i, a in enumerate(sorted(axes, reverse=True)):
        last = i == len(axes) - 1
        r, _ = _reduce_axis(r, a, op, 1.0 / count if (mean and last) else 1.0, None if widen else out_dtype)
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
    r = _sum(g, axes, False, g.dtype) if axes else g  # the same sum; one reshape below instead of two
    return r if r.shape == shape else r.reshape(shape)


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
    return _spread(ctx, g), None, None, None


def _mean_backward(ctx, g):
    _, axes = _kept_shape(ctx)
    count = math.prod(ctx.shapes[0][a] for a in axes)
    return launch("x * alpha", [_spread(ctx, g)], alpha=1.0 / count), None, None


def _extreme_backward(ctx, g):
    # The gradient goes to every element equal to the extreme, split evenly among ties.
    x, out = ctx.saved
    kept, axes = _kept_shape(ctx)
    hit = launch("x == y ? CT(1) : CT(0)", [x, out.reshape(kept)])
    ties = _sum(hit, axes, True, hit.dtype)
    return launch("x * y / z", [hit, g.reshape(kept), ties]), None, None


@differentiable(_sum_backward)
def _sum(x: Tensor, axes, keepdim: bool, out_dtype) -> Tensor:
    return _reduce(x, axes, keepdim, "sum", out_dtype=out_dtype)


def sum(x: Tensor, dim=None, keepdim: bool = False, dtype=None, *, axis=None) -> Tensor:  # noqa: A001
    """Sum over ``dim`` (an int, a tuple, or None for all). Integers and bools sum to int64, as
    torch (``(pred == y).sum()`` counts); ``dtype`` converts the input first."""
    if dtype is not None:
        dt = dtype_of(dtype)
        x = x if x.dtype is dt else ew.cast(x, dt)
        out = dt
    else:
        out = x.dtype if x.dtype.is_float else default_int_dtype(x.runtime)
    return _sum(x, _pick_dim(dim, axis), keepdim, out)


@differentiable(_mean_backward)
def _mean(x: Tensor, axes, keepdim: bool) -> Tensor:
    return _reduce(x, axes, keepdim, "sum", mean=True)


def mean(x: Tensor, dim=None, keepdim: bool = False, dtype=None, *, axis=None) -> Tensor:
    """Mean over ``dim`` of a floating-point tensor (torch refuses integers too; pass ``dtype``)."""
    if dtype is not None:
        x = ew.cast(x, dtype) if x.dtype is not dtype_of(dtype) else x
    if not x.dtype.is_float:
        raise errors.DTypeError(f"mean needs a floating-point tensor, not {x.dtype.name} (pass dtype=hv.float32)")
    return _mean(x, _pick_dim(dim, axis), keepdim)


@differentiable(_extreme_backward, saves=(0, "out"))
def _amax(x: Tensor, axes, keepdim: bool) -> Tensor:
    return _reduce(x, axes, keepdim, "max")


@differentiable(_extreme_backward, saves=(0, "out"))
def _amin(x: Tensor, axes, keepdim: bool) -> Tensor:
    return _reduce(x, axes, keepdim, "min")


def _all_if_empty(dim):
    return None if isinstance(dim, (tuple, list)) and len(dim) == 0 else dim


def amax(x: Tensor, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """Largest values over ``dim`` (all by default); NaN propagates; ties share the gradient."""
    return _amax(x, _all_if_empty(_pick_dim(dim, axis)), keepdim)


def amin(x: Tensor, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """Smallest values over ``dim`` (all by default); NaN propagates; ties share the gradient."""
    return _amin(x, _all_if_empty(_pick_dim(dim, axis)), keepdim)


def _picked_backward(ctx, g):
    (index,) = ctx.saved
    a, keepdim = ctx.args[1], ctx.args[2]
    from .creation import arange
    shape = ctx.shapes[0]
    positions = arange(shape[a], runtime=g.runtime, dtype=index.dtype).reshape(
        (1,) * a + (shape[a],) + (1,) * (len(shape) - a - 1))
    idx = index if keepdim else index.unsqueeze(a)
    gk = g if keepdim else g.unsqueeze(a)
    return ew.where(ew.eq(positions, idx), gk, 0.0), None, None, None, None


@differentiable(_picked_backward, saves=(3,))
def _picked(x: Tensor, axis: int, keepdim: bool, index: Tensor, values: Tensor) -> Tensor:
    """``values`` (made with ``index`` by the arg kernel) on the graph: the gradient goes to ``index``."""
    return values


def _extreme(x: Tensor, dim, keepdim: bool, axis, name: str):
    if isinstance(dim, Tensor):
        return (ew.maximum if name == "max" else ew.minimum)(x, dim)
    dim = _pick_dim(dim, axis)
    if dim is None:
        return (amax if name == "max" else amin)(x, None, keepdim)
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{name}(dim) takes one dim and gives (values, indices); use a{name}() for several dims")
    a = normalize_axis(dim, x.ndim)
    if x.ndim == 0:
        from .creation import zeros
        return ValuesIndices(x.contiguous(), zeros((), dtype=default_int_dtype(x.runtime), runtime=x.runtime))
    with no_grad():
        values, index = _reduce_axis(x, a, "arg" + name)
        values, index = _keep(values, x, [a], keepdim), _keep(index, x, [a], keepdim)
    return ValuesIndices(_picked(x, a, keepdim, index, values), index)


def max(x: Tensor, dim=None, keepdim: bool = False, *, axis=None):  # noqa: A001
    """As torch.max: the largest element (a 0-dim tensor) without ``dim``; ``(values, indices)``
    along ``dim`` (the first index among ties; the gradient goes to it); ``maximum`` with a tensor."""
    return _extreme(x, dim, keepdim, axis, "max")


def min(x: Tensor, dim=None, keepdim: bool = False, *, axis=None):  # noqa: A001
    """As torch.min (see :func:`max`)."""
    return _extreme(x, dim, keepdim, axis, "min")


def _arg(x: Tensor, axis, keepdim: bool, op: str) -> Tensor:
    if axis is None:
        flat = x.contiguous().reshape((x.numel(),))
        _, idx = _reduce_axis(flat, 0, op)
        return idx.reshape((1,) * x.ndim) if keepdim else idx
    a = normalize_axis(axis, x.ndim)
    if x.ndim == 0:
        return _full((), default_int_dtype(x.runtime), x, 0)
    _, idx = _reduce_axis(x, a, op)
    return _keep(idx, x, [a], keepdim)


def argmax(x: Tensor, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """Index (int64) of the largest element; the first one on ties, the first NaN if any."""
    return _arg(x, _pick_dim(dim, axis), keepdim, "argmax")


def argmin(x: Tensor, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """Index (int64) of the smallest element; the first one on ties, the first NaN if any."""
    return _arg(x, _pick_dim(dim, axis), keepdim, "argmin")


def var(x: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None) -> Tensor:
    """Variance with ``correction`` (1, torch's default: unbiased; 0: numpy's default);
    ``unbiased=False`` is ``correction=0``."""
    if unbiased is not None and correction is not None:
        raise TypeError("pass unbiased or correction, not both")
    c = correction if correction is not None else (0 if unbiased is False else 1)
    dim = _pick_dim(dim, axis)
    axes = _axes(x, dim)
    n = math.prod([x.shape[a] for a in axes])
    centered = x - mean(x, dim, keepdim=True)
    ss = sum(centered * centered, dim, keepdim)
    denom = n - c
    return ss * (1.0 / denom if denom > 0 else float("nan"))


def std(x: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None) -> Tensor:
    """Standard deviation: the square root of :func:`var` (same arguments)."""
    return ew.sqrt(var(x, dim, unbiased, keepdim, correction=correction, axis=axis))


def logsumexp(x: Tensor, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """``log(sum(exp(x), dim))`` computed stably (the max is subtracted; rows of -inf give -inf)."""
    dim = _pick_dim(dim, axis)
    if not x.dtype.is_float:
        x = ew.cast(x, float32)
    with no_grad():
        m = amax(x, dim, keepdim=True)
        m = ew.where(ew.isfinite(m), m, 0.0)
    out = ew.log(sum(ew.exp(x - m), dim, keepdim=True)) + m
    if keepdim:
        return out
    axes = _axes(x, dim)
    return out.reshape(tuple(s for d, s in enumerate(x.shape) if d not in axes))


def _truth(x: Tensor) -> Tensor:
    return x if x.dtype is bool_ else ew.ne(x, 0)


def any(x: Tensor, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:  # noqa: A001
    """Whether any element over ``dim`` is nonzero (bool)."""
    return _any_all(x, _pick_dim(dim, axis), keepdim, "max", False)


def all(x: Tensor, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:  # noqa: A001
    """Whether every element over ``dim`` is nonzero (bool)."""
    return _any_all(x, _pick_dim(dim, axis), keepdim, "min", True)


def _any_all(x: Tensor, dim, keepdim: bool, op: str, empty: bool) -> Tensor:
    axes = _axes(x, dim)
    if x.ndim and math.prod(x.shape[a] for a in axes) == 0:
        shape = tuple(1 if d in axes else s for d, s in enumerate(x.shape) if keepdim or d not in axes)
        return _full(shape, bool_, x, empty)
    return _reduce(_truth(x), dim, keepdim, op)


def norm(x: Tensor, p=2, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    """The vector ``p``-norm over ``dim`` (p = 2, 1 or inf)."""
    dim = _pick_dim(dim, axis)
    if p == 2:
        return ew.sqrt(sum(x * x, dim, keepdim))
    if p == 1:
        return sum(ew.abs(x), dim, keepdim)
    if p == float("inf"):
        return amax(ew.abs(x), dim, keepdim)
    raise ValueError(f"norm supports p = 2, 1 or inf, not {p!r}")


def _scan(x: Tensor, axis: int, out_dtype, reverse: bool) -> Tensor:
    rt = x.runtime
    out = contiguous_like(x.shape, out_dtype, rt)
    if x.numel() == 0:
        return out
    if x.ndim == 0:
        return ew.cast(x, out_dtype) if x.dtype is not out_dtype else ew.copy(x)
    R = x.shape[axis]
    kept = [d for d in range(x.ndim) if d != axis]
    shape4, st4, sto4 = _kept_layout([x.shape[d] for d in kept], [x.strides[d] for d in kept],
                                     [out.strides[d] for d in kept])
    rows = math.prod(x.shape[d] for d in kept)
    wg = 64 if R <= 4096 else 256
    ct = "float" if x.dtype.is_float else compute_type(out_dtype)
    kernel = rt.kernels.get(CUMSUM, {"CT": ct, "OCT": compute_type(out_dtype), "REVERSE": int(reverse)},
                            {"A": x.dtype, "O": out_dtype}, (wg,))
    rt.run(kernel, {"O": out.buf, "A": x.buf}, {"rows": rows, "R": R, "st_r": x.strides[axis],
                                                 "st_ro": out.strides[axis], "shape": shape4, "st": st4,
                                                 "st_o": sto4}, rows * wg)
    return out


def _cumsum_backward(ctx, g):
    return _cumsum(g, ctx.args[1], g.dtype, not ctx.args[3]), None, None, None


@differentiable(_cumsum_backward)
def _cumsum(x: Tensor, axis: int, out_dtype, reverse: bool) -> Tensor:
    return _scan(x, axis, out_dtype, reverse)


def cumsum(x: Tensor, dim=None, dtype=None, *, axis=None) -> Tensor:
    """Running sums along ``dim``, in a fixed order (the same bits on every run); integers and
    bools give int64, as torch. Each row is scanned by one workgroup: per-thread segments, then
    the segment totals in order."""
    dim = _pick_dim(dim, axis)
    if dim is None:
        raise TypeError("cumsum needs dim")
    a = normalize_axis(dim, x.ndim)
    if dtype is not None:
        out = dtype_of(dtype)
    else:
        out = x.dtype if x.dtype.is_float else default_int_dtype(x.runtime)
    return _cumsum(x, a, out, False)
