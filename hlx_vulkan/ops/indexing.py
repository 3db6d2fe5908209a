"""Index ops along one dim, as torch: ``gather``, ``scatter``, ``scatter_add`` (kernels in
``indexing/``), and the reorderings built on index selection: ``flip``, ``roll``,
``repeat_interleave``.

Deterministic: ``scatter_add`` runs one invocation per output element, which adds each
source element aimed at it in index order: self first, then the sources in index order (as
PyTorch's CPU loop), on every run, whatever the batch size; no atomics on results. Short index
rows (under ``SORTED_MIN`` along ``dim``) are walked whole by each output element; longer ones
are first sorted stably with their positions (:mod:`hlx_vulkan.ops.sort`), and each output
element adds its run of equal keys, found by binary search: the same order, the same bits. ``scatter`` with repeated indices keeps the last
source in index order (PyTorch leaves that case unspecified).

Indices are int64 or int32 tensors (or host lists and arrays, checked before anything is
recorded); a device tensor's indices are checked by the kernel (DeviceIndexError at the next
sync point). Negative indices are out of range, as in torch.gather.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from .. import errors
from ..autograd.graph import differentiable
from ..runtime import KernelSpec
from . import elementwise as ew
from . import shape as sh
from .creation import zeros
from .pointwise import compute_type
from .tensor import Tensor, contiguous_like, normalize_axis

MAXD = 6
_DIR = resources.files(__package__) / "indexing"
_BINDINGS = [("O", "write", "O"), ("A", "read", "A"), ("I", "read", "I"), ("ERR", "readwrite")]
GATHER = KernelSpec(_DIR / "gather.comp", _BINDINGS,
                    [("n", "I"), ("dim", "I"), ("axis_len", "I"), ("off_o", "I"), ("off_a", "I"), ("off_i", "I"),
                     ("shape", f"{MAXD}I"), ("st_a", f"{MAXD}i"), ("st_i", f"{MAXD}i"), ("site", "I")])
# O holds a copy of self and is updated in place.
SCATTER = KernelSpec(_DIR / "scatter.comp", [("O", "readwrite", "O")] + _BINDINGS[1:],
                     [("n", "I"), ("dim", "I"), ("off_o", "I"), ("off_a", "I"), ("off_i", "I"),
                      ("shape", f"{MAXD}I"), ("ishape", f"{MAXD}I"), ("st_a", f"{MAXD}i"), ("st_i", f"{MAXD}i"),
                      ("site", "I")])

# scatter_add with at least SORTED_MIN index entries along dim sorts the index rows first.
SORTED_MIN = 64
SCATTER_SORTED = KernelSpec(_DIR / "scatter_sorted.comp",
                            [("O", "readwrite", "O"), ("A", "read", "A"), ("K", "read", "I"), ("P", "read", "J"),
                             ("ERR", "readwrite")],
                            [("n", "I"), ("dim", "I"), ("L", "I"), ("off_o", "I"), ("off_a", "I"), ("off_k", "I"),
                             ("off_p", "I"), ("shape", f"{MAXD}I"), ("ishape", f"{MAXD}I"), ("st_a", f"{MAXD}i"),
                             ("site", "I")])


def _pad(values, fill) -> list[int]:
    values = list(values)
    return [fill] * (MAXD - len(values)) + values


def _index(index, x: Tensor, dim: int, op: str) -> Tensor:
    """``index`` as a device tensor of int32 or int64 with as many dims as ``x``."""
    if isinstance(index, Tensor):
        if index.dtype.is_float or index.dtype.name == "bool":
            raise errors.DTypeError(f"{op}: the index must be an integer tensor (int64), not {index.dtype.name}")
        idx = sh.index_tensor(index, 0, x.runtime, op)
    else:
        idx = sh.index_tensor(index, x.shape[dim] if x.ndim else 1, x.runtime, op)
    if idx.ndim != max(x.ndim, 1) and not (x.ndim == 0 and idx.ndim == 0):
        raise errors.ShapeError(f"{op}: the index has {idx.ndim} dims, the tensor {x.ndim} (they must match)")
    return idx


def _check_sizes(op: str, dim: int, index: Tensor, bounds: list, skip_dim: list) -> None:
    """index.size(d) <= t.size(d) for each (t, skips dim) in ``bounds``."""
    for t, skip in zip(bounds, skip_dim):
        for d, (si, st) in enumerate(zip(index.shape, t.shape)):
            if (d != dim or not skip) and si > st:
                raise errors.ShapeError(f"{op}: index of shape {index.shape} is larger than shape {t.shape} in dim {d}")


def _as1d(*ts):
    return [t.reshape(1) if t.ndim == 0 else t for t in ts]


def _gather_backward(ctx, g):
    _, dim, index = ctx.args[0], ctx.args[1], ctx.saved[0]
    base = zeros(ctx.shapes[0], dtype=g.dtype, runtime=g.runtime)
    return _scatter(base, dim, index, g, True), None, None


def gather(input: Tensor, dim: int, index) -> Tensor:  # noqa: A002 - torch's names
    """``out[i][j][k] = input[index[i][j][k]][j][k]`` for ``dim == 0`` (and so on), as torch.gather:
    the result has the index's shape; ``index.size(d) <= input.size(d)`` for ``d != dim``."""
    if input.ndim > MAXD:
        raise errors.ShapeError(f"gather supports up to {MAXD} dims, not shape {input.shape}")
    d = normalize_axis(dim, input.ndim)
    idx = _index(index, input, d, "gather")
    return _gather(input, d, idx)


@differentiable(_gather_backward, saves=(2,))
def _gather(x: Tensor, dim: int, index: Tensor) -> Tensor:
    _check_sizes("gather", dim, index, [x], [True])
    out = contiguous_like(index.shape, x.dtype, x.runtime)
    n = index.numel()
    if n == 0:
        return out
    if x.ndim and x.shape[dim] == 0:
        raise errors.IndexOutOfRangeError(f"gather: cannot index an empty dim {dim} of shape {x.shape}")
    x1, i1 = _as1d(x, index)
    rt = x.runtime
    ct = compute_type(x.dtype)
    kernel = rt.kernels.get(GATHER, {"CT": ct, "OCT": ct, "IT": compute_type(index.dtype)},
                            {"O": x.dtype, "A": x.dtype, "I": index.dtype})
    pad = MAXD - x1.ndim
    rt.run(kernel, {"O": out.buf, "A": x1.buf, "I": i1.buf},
           {"n": n, "dim": dim + pad, "axis_len": x1.shape[dim], "shape": _pad(i1.shape, 1),
            "st_a": _pad(x1.strides, 0), "st_i": _pad(i1.strides, 0)}, n, check="gather")
    return out


def _scatter(x: Tensor, dim: int, index: Tensor, src: Tensor, add: bool) -> Tensor:
    op = "scatter_add" if add else "scatter"
    if src.dtype is not x.dtype:
        raise errors.DTypeError(f"{op}: self is {x.dtype.name} but src is {src.dtype.name} (they must match)")
    if src.ndim != x.ndim:
        raise errors.ShapeError(f"{op}: src has {src.ndim} dims, self {x.ndim} (they must match)")
    _check_sizes(op, dim, index, [src, x], [False, True])
    out = ew.copy(x)
    if out.numel() == 0 or index.numel() == 0:
        return out
    if x.ndim > MAXD:
        raise errors.ShapeError(f"{op} supports up to {MAXD} dims, not shape {x.shape}")
    o1, s1, i1 = _as1d(out, src, index)
    rt = x.runtime
    oct_ = compute_type(x.dtype)
    ct = "float" if x.dtype.is_float else oct_
    kernel = rt.kernels.get(SCATTER, {"CT": ct, "OCT": oct_, "IT": compute_type(index.dtype), "ADD": int(add)},
                            {"O": x.dtype, "A": x.dtype, "I": index.dtype})
    pad = MAXD - o1.ndim
    n = o1.numel()
    if add and i1.shape[dim] >= SORTED_MIN:
        return _scatter_add_sorted(out, o1, s1, i1, dim, ct, oct_)
    rt.run(kernel, {"O": o1.buf, "A": s1.buf, "I": i1.buf},
           {"n": n, "dim": dim + pad, "shape": _pad(o1.shape, 1), "ishape": _pad(i1.shape, 1),
            "st_a": _pad(s1.strides, 0), "st_i": _pad(i1.strides, 0)}, n, check=op)
    return out


def _scatter_add_sorted(out: Tensor, o1: Tensor, s1: Tensor, i1: Tensor, dim: int, ct: str, oct_: str) -> Tensor:
    """scatter_add of long index rows: sort each row (stably, with positions), then each output
    element adds its run of equal keys (``indexing/scatter_sorted.comp``)."""
    from .sort import _sort_rows
    rt = out.runtime
    order = [d for d in range(i1.ndim) if d != dim] + [dim]
    length = i1.shape[dim]
    rows = sh.reshape(sh.permute(i1, order), (-1, length)).contiguous()
    keys, perm = _sort_rows(rows, False, length)
    kernel = rt.kernels.get(SCATTER_SORTED, {"CT": ct, "OCT": oct_, "IT": compute_type(i1.dtype)},
                            {"O": out.dtype, "A": s1.dtype, "I": keys.dtype, "J": perm.dtype})
    pad = MAXD - o1.ndim
    n = o1.numel()
    rt.run(kernel, {"O": o1.buf, "A": s1.buf, "K": keys.buf, "P": perm.buf},
           {"n": n, "dim": dim + pad, "L": length, "shape": _pad(o1.shape, 1), "ishape": _pad(i1.shape, 1),
            "st_a": _pad(s1.strides, 0)}, n, check="scatter_add")
    return out


def _to_src_shape(picked: Tensor, src_shape) -> Tensor:
    """The gradient of a source larger than the index: ``picked`` in its leading corner, zeros elsewhere."""
    if picked.shape == tuple(src_shape):
        return picked
    out = zeros(src_shape, dtype=picked.dtype, runtime=picked.runtime)
    ew.copy(picked, out=sh.getitem(out, tuple(slice(0, s) for s in picked.shape)))
    return out


def _scatter_backward(ctx, g):
    dim, add = ctx.args[1], ctx.args[4]
    (index,) = ctx.saved
    gx = gs = None
    if ctx.needs[0]:
        gx = g if add else _scatter(g, dim, index, zeros(index.shape, dtype=g.dtype, runtime=g.runtime), False)
    if ctx.needs[3]:
        gs = _to_src_shape(_gather(g, dim, index), ctx.shapes[3])
    return gx, None, None, gs, None


@differentiable(_scatter_backward, saves=(2,))
def _scatter_op(x: Tensor, dim: int, index: Tensor, src: Tensor, add: bool) -> Tensor:
    return _scatter(x, dim, index, src, add)


def _source(x: Tensor, index: Tensor, src, op: str) -> Tensor:
    if isinstance(src, Tensor):
        return src
    if isinstance(src, (bool, int, float, np.number)):
        from .creation import full
        return full(index.shape, src, x.dtype, x.runtime)
    raise TypeError(f"{op}: src must be a tensor or a number, not {type(src).__name__}")


def scatter(input: Tensor, dim: int, index, src=None, *, value=None) -> Tensor:  # noqa: A002
    """A copy of ``input`` with ``out[index[i][j]][j] = src[i][j]`` for ``dim == 0`` (and so on),
    as torch.scatter; ``src`` may be a number (or pass ``value=``). With repeated indices the
    last source in index order is kept."""
    if (src is None) == (value is None):
        raise TypeError("scatter takes src or value (one of them)")
    d = normalize_axis(dim, input.ndim)
    idx = _index(index, input, d, "scatter")
    return _scatter_op(input, d, idx, _source(input, idx, src if value is None else value, "scatter"), False)


def scatter_add(input: Tensor, dim: int, index, src: Tensor) -> Tensor:  # noqa: A002
    """A copy of ``input`` with ``out[index[i][j]][j] += src[i][j]`` for ``dim == 0`` (and so on),
    as torch.scatter_add; each element adds its sources in index order (deterministic)."""
    d = normalize_axis(dim, input.ndim)
    idx = _index(index, input, d, "scatter_add")
    return _scatter_op(input, d, idx, _source(input, idx, src, "scatter_add"), True)


# --- reorderings by index selection ----------------------------------------------------------
def _dims(dims, ndim: int) -> list[int]:
    dims = [dims] if isinstance(dims, int) else list(dims)
    out = [normalize_axis(d, ndim) for d in dims]
    if len(set(out)) != len(out):
        raise errors.ShapeError(f"dims {tuple(dims)} repeat a dim")
    return out


def flip(x: Tensor, dims) -> Tensor:
    """``x`` reversed along ``dims`` (a copy, as torch.flip)."""
    out = x
    for d in _dims(dims, x.ndim):
        if x.ndim and x.shape[d] > 1:
            out = sh.index_select(out, d, np.arange(x.shape[d] - 1, -1, -1))
    return out if out is not x else ew.copy(x)


def roll(x: Tensor, shifts, dims=None) -> Tensor:
    """Elements shifted by ``shifts`` along ``dims``, wrapping around (torch.roll); without
    ``dims`` the flattened tensor is rolled and the shape restored."""
    if dims is None:
        if not isinstance(shifts, int) and len(shifts) != 1:
            raise errors.ShapeError("roll without dims takes one shift")
        s = shifts if isinstance(shifts, int) else shifts[0]
        return roll(sh.reshape(x, -1), s, 0).reshape(x.shape)
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    dims = _dims(dims, x.ndim)
    if len(shifts) != len(dims):
        raise errors.ShapeError(f"roll: {len(shifts)} shifts for {len(dims)} dims")
    out = x
    for s, d in zip(shifts, dims):
        n = x.shape[d] if x.ndim else 1
        if n and int(s) % n:
            out = sh.index_select(out, d, (np.arange(n) - int(s)) % n)
    return out if out is not x else ew.copy(x)


def repeat_interleave(x: Tensor, repeats, dim=None, *, output_size=None) -> Tensor:
    """Each element (or slice along ``dim``) repeated ``repeats`` times in place (torch.repeat_interleave);
    ``repeats`` is a number or one count per slice (a device tensor of counts is read back: a sync
    point). Without ``dim`` the flattened tensor is repeated."""
    if dim is None:
        x, dim = sh.reshape(x, -1), 0
    d = normalize_axis(dim, x.ndim)
    n = x.shape[d] if x.ndim else 1
    counts = repeats.numpy() if isinstance(repeats, Tensor) else np.asarray(repeats)
    if counts.dtype.kind not in "iu":
        raise errors.DTypeError(f"repeat_interleave: repeats must be integers, not {counts.dtype}")
    if counts.ndim > 1 or (counts.ndim == 1 and counts.size not in (1, n)):
        raise errors.ShapeError(f"repeat_interleave: {counts.size} repeats for a dim of size {n}")
    if (counts < 0).any():
        raise ValueError("repeat_interleave: repeats must be non-negative")
    idx = np.repeat(np.arange(n), np.broadcast_to(counts.reshape(-1), (n,)) if counts.size else counts)
    if output_size is not None and idx.size != output_size:
        raise errors.ShapeError(f"repeat_interleave: output_size {output_size} but the repeats give {idx.size}")
    src = x.reshape(1) if x.ndim == 0 else x
    return sh.index_select(src, d, idx)


__all__ = ["flip", "gather", "repeat_interleave", "roll", "scatter", "scatter_add"]
