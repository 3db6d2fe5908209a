"""Shape ops: views that share memory (reshape of contiguous data, transpose,
permute, slicing, expand, split, chunk) and copies (contiguous, concat, stack, repeat,
index_select, boolean-mask selection, tril/triu, one_hot).

PyTorch's names: ``dim=`` (``axis=`` kept as numpy's alias), ``hv.cat(..., dim=0)``."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np

from .. import errors
from ..autograd.graph import differentiable, is_grad_enabled
from ..memory import bool_, dtype_of, int32, int64, uint8
from ..runtime import KernelSpec, default_runtime
from . import elementwise as ew
from . import reduce
from .pointwise import compute_type, launch, scalar_fits
from .creation import zeros
from .tensor import Tensor, contiguous_like, contiguous_strides, default_int_dtype, from_numpy, normalize_axis

_GATHER_PUSH = [("n", "I"), ("nidx", "I"), ("inner", "I"), ("axis_len", "I"), ("off_a", "I"), ("off_i", "I"),
                ("off_o", "I"), ("st_outer", "i"), ("st_axis", "i"), ("st_inner", "i"), ("st_idx", "i"),
                ("wrap", "I"), ("site", "I")]
# I: int32 or int64 indices; ERR: the runtime's error words, where the kernels report device indices out of range.
_GATHER_BINDINGS = [("O", "write", "O"), ("A", "read", "A"), ("I", "read", "I"), ("ERR", "readwrite")]
GATHER = KernelSpec(resources.files(__package__) / "shape" / "gather.comp", _GATHER_BINDINGS, _GATHER_PUSH)
INDEX_ADD = KernelSpec(resources.files(__package__) / "shape" / "index_add.comp", _GATHER_BINDINGS, _GATHER_PUSH)
ONE_HOT = KernelSpec(resources.files(__package__) / "shape" / "one_hot.comp",
                     [("O", "write", "O"), ("I", "read", "I"), ("ERR", "readwrite")],
                     [("n", "I"), ("classes", "I"), ("ignore", "i"), ("has_ignore", "I"), ("off_i", "I"),
                      ("off_o", "I"), ("site", "I")])
# Ops whose negative indices count from the end (numpy's and torch's x[idx]); the others
# (torch.index_select, embedding, one_hot, targets) refuse them.
_WRAPS = frozenset({"getitem"})


def _resolve_shape(shape, numel: int, old) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if all(type(s) is int and s >= 0 for s in shape) and math.prod(shape) == numel:
        return tuple(shape)  # the common case: every size given
    shape = [int(s) for s in shape]
    if shape.count(-1) > 1:
        raise errors.ShapeError(f"only one dimension can be -1, got {tuple(shape)}")
    if -1 in shape:
        known = math.prod([s for s in shape if s != -1])
        if known == 0 or numel % known:
            raise errors.ShapeError(f"cannot reshape a tensor of shape {old} into {tuple(shape)}")
        shape[shape.index(-1)] = numel // known
    if math.prod(shape) != numel or any(s < 0 for s in shape):
        raise errors.ShapeError(f"cannot reshape a tensor of shape {old} ({numel} elements) into {tuple(shape)}")
    return tuple(shape)


def _to_input_shape(ctx, g):
    return (reshape(g, ctx.shapes[0]),) + (None,) * (len(ctx.needs) - 1)


def reshape(x: Tensor, *shape) -> Tensor:
    """The same elements in a new shape: a view when ``x`` is contiguous, else a copy."""
    return _reshape(x, _resolve_shape(shape, x.numel(), x.shape))


@differentiable(_to_input_shape)
def _reshape(x: Tensor, new) -> Tensor:
    src = x if x.is_contiguous() else ew.copy(x)
    return src._view(new, contiguous_strides(new))


def view(x: Tensor, *shape) -> Tensor:
    """Like :func:`reshape`, but never copies: a non-contiguous ``x`` is an error."""
    if not x.is_contiguous():
        raise errors.ShapeError(f"view() needs a contiguous tensor (shape {x.shape}, strides {x.strides}); "
                                "use reshape() or contiguous()")
    return reshape(x, *shape)


def permute(x: Tensor, *dims) -> Tensor:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    dims = tuple(normalize_axis(d, x.ndim) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise errors.ShapeError(f"permute({dims}) is not a permutation of the {x.ndim} dims of shape {x.shape}")
    return _permute(x, dims)


def _permute_backward(ctx, g):
    dims = ctx.args[1]
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return permute(g, inverse), None


@differentiable(_permute_backward)
def _permute(x: Tensor, dims) -> Tensor:
    return x._view(tuple(x.shape[d] for d in dims), tuple(x.strides[d] for d in dims))


def transpose(x: Tensor, dim0: int = -2, dim1: int = -1) -> Tensor:
    if x.ndim < 2:
        return x
    order = list(range(x.ndim))
    a, b = normalize_axis(dim0, x.ndim), normalize_axis(dim1, x.ndim)
    order[a], order[b] = order[b], order[a]
    return _permute(x, tuple(order))  # a permutation by construction


@differentiable(_to_input_shape)
def unsqueeze(x: Tensor, dim: int) -> Tensor:
    d = dim % (x.ndim + 1) if dim < 0 else dim
    if not 0 <= d <= x.ndim:
        raise errors.ShapeError(f"unsqueeze dim {dim} is out of range for shape {x.shape}")
    stride = x.strides[d] * x.shape[d] if d < x.ndim else 1
    return x._view(x.shape[:d] + (1,) + x.shape[d:], x.strides[:d] + (stride,) + x.strides[d:])


@differentiable(_to_input_shape)
def squeeze(x: Tensor, dim=None) -> Tensor:
    """Drop size-1 dims: all of them, or those of ``dim`` (an int or a tuple) that have size 1."""
    if dim is None:
        dims = range(x.ndim)
    else:
        dims = [normalize_axis(d, x.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
    dims = [d for d in dims if x.shape[d] == 1]
    keep = [d for d in range(x.ndim) if d not in dims]
    return x._view(tuple(x.shape[d] for d in keep), tuple(x.strides[d] for d in keep))


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim`` to ``end_dim`` into one (a view where the memory allows)."""
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = normalize_axis(start_dim, x.ndim), normalize_axis(end_dim, x.ndim)
    if s > e:
        raise errors.ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(x, x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def unflatten(x: Tensor, dim: int, sizes) -> Tensor:
    """Split dim ``dim`` into ``sizes`` (one of them may be -1)."""
    d = normalize_axis(dim, x.ndim)
    sizes = [int(v) for v in sizes]
    if sizes.count(-1) == 1:
        known = math.prod(v for v in sizes if v != -1)
        sizes[sizes.index(-1)] = x.shape[d] // known if known else 0
    if math.prod(sizes) != x.shape[d]:
        raise errors.ShapeError(f"unflatten: sizes {tuple(sizes)} do not multiply to dim {dim}'s size {x.shape[d]}")
    return reshape(x, x.shape[:d] + tuple(sizes) + x.shape[d + 1:])


def t(x: Tensor) -> Tensor:
    """The transpose of a matrix (a tensor of 2 or fewer dims), as torch.t."""
    if x.ndim > 2:
        raise errors.ShapeError(f"t() expects a tensor of 2 or fewer dims, not shape {x.shape}; use transpose()")
    return transpose(x, 0, 1) if x.ndim == 2 else x


def expand(x: Tensor, *shape) -> Tensor:
    """A broadcast view of ``x`` with ``shape`` (-1 keeps a dim); no memory is copied."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return _expand(x, tuple(shape))


@differentiable(lambda ctx, g: (reduce.sum_to_shape(g, ctx.shapes[0]), None))
def _expand(x: Tensor, shape) -> Tensor:
    pad = len(shape) - x.ndim
    if pad < 0:
        raise errors.ShapeError(f"cannot expand shape {x.shape} to fewer dimensions {shape}")
    out_shape, strides = [], []
    for d, s in enumerate(shape):
        src = d - pad
        cur = x.shape[src] if src >= 0 else 1
        s = cur if s == -1 else int(s)
        if cur != s and cur != 1:
            raise errors.ShapeError(f"cannot expand shape {x.shape} to {tuple(shape)}")
        out_shape.append(s)
        strides.append(0 if src < 0 or cur != s else x.strides[src])
    return x._view(tuple(out_shape), tuple(strides))


def _is_mask(key) -> bool:
    if isinstance(key, Tensor):
        return key.dtype is bool_
    if isinstance(key, np.ndarray):
        return key.dtype == np.bool_
    return isinstance(key, list) and len(key) > 0 and all(isinstance(k, (bool, np.bool_)) for k in key)


def _is_advanced(key) -> bool:
    return isinstance(key, (Tensor, list, np.ndarray))


def getitem(x: Tensor, key) -> Tensor:
    """Indexing as torch: ints, slices (positive steps), None and Ellipsis give views; one integer
    index (a tensor, list or array) gives a copy along its dim (index_select); a boolean mask
    gives the selected elements as a new tensor (see :func:`masked_select`)."""
    if _is_mask(key):
        return masked_select(x, key)
    if isinstance(key, Tensor) and key.dtype is uint8:
        raise errors.DTypeError("a uint8 index tensor is ambiguous (torch reads it as a deprecated mask); use "
                                ".bool() for a mask or .long() for indices")
    if _is_advanced(key):
        return gather(x, 0, key, "getitem")
    if not isinstance(key, tuple):
        key = (key,)
    advanced = [i for i, k in enumerate(key) if _is_advanced(k)]
    if not advanced:
        return _basic_index(x, key)
    if len(advanced) > 1 or _is_mask(key[advanced[0]]):
        raise errors.ShapeError("indexing with more than one index tensor, or a mask inside a tuple, is not supported; "
                                "index one dim at a time")
    key = _expand_ellipsis(x, key)
    pos = next(i for i, k in enumerate(key) if _is_advanced(k))
    axis = sum(1 for k in key[:pos] if k is None or isinstance(k, slice))
    return gather(_basic_index(x, key[:pos] + (slice(None),) + key[pos + 1:]), axis, key[pos], "getitem")


def _expand_ellipsis(x: Tensor, key: tuple) -> tuple:
    # By identity: a tensor in the key would answer == with a tensor.
    where = [i for i, k in enumerate(key) if k is Ellipsis]
    if len(where) > 1:
        raise errors.ShapeError("an index can have only one ellipsis")
    if not where:
        return key
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    return key[:where[0]] + (slice(None),) * (x.ndim - n_real) + key[where[0] + 1:]


def _host_mask(x: Tensor, mask) -> np.ndarray:
    m = mask.numpy() if isinstance(mask, Tensor) else np.asarray(mask, dtype=bool)
    if m.ndim == 0 or m.shape != x.shape[:m.ndim]:
        raise errors.ShapeError(f"the mask of shape {m.shape} does not match the leading dims of the indexed tensor "
                                f"of shape {x.shape}")
    return m.astype(bool, copy=False)


def masked_select(x: Tensor, mask) -> Tensor:
    """``x[mask]`` for a boolean ``mask`` over ``x``'s leading dims: the selected elements (or
    rows), in order, as a new tensor of shape ``(count, *rest)`` (1-D for a full mask), as torch.

    The count decides the result's shape, so the mask is read back to the host: a sync point
    (refused inside ``hv.capture()``). Differentiable: the gradient goes back to the selected places.
    """
    m = _host_mask(x, mask)
    idx = np.flatnonzero(m)
    flat = reshape(x, (-1,) + x.shape[m.ndim:])
    return index_select(flat, 0, idx)


def nonzero(x: Tensor) -> Tensor:
    """The indices of the nonzero elements, shape (count, ndim), int64 (a sync point)."""
    a = np.argwhere(x.numpy())
    return from_numpy(a.astype(np.int64), default_int_dtype(x.runtime), x.runtime)


def _basic_index_backward(ctx, g):
    gx = zeros(ctx.shapes[0], dtype=ctx.dtypes[0], runtime=g.runtime)
    ew.copy(g, out=_basic_index(gx, ctx.args[1]))
    return gx, None


@differentiable(_basic_index_backward)
def _basic_index(x: Tensor, key: tuple) -> Tensor:
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if key.count(Ellipsis) > 1:
        raise errors.ShapeError("an index can have only one ellipsis")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (x.ndim - n_real) + key[i + 1:]
    if n_real > x.ndim:
        raise errors.ShapeError(f"too many indices ({n_real}) for a tensor of shape {x.shape}")
    shape, strides, offset, d = [], [], x.buf.byte_offset, 0
    item = x.dtype.itemsize
    for k in key:
        if k is None:
            shape.append(1)
            strides.append(1)
            continue
        size, stride = x.shape[d], x.strides[d]
        if isinstance(k, (int, np.integer)):
            k = int(k)
            if not -size <= k < size:
                raise errors.ShapeError(f"index {k} is out of range for axis {d} of size {size}")
            offset += (k % size) * stride * item
        elif isinstance(k, slice):
            start, stop, step = k.indices(size)
            if step <= 0:
                raise errors.ShapeError("slices with a negative or zero step are not supported")
            length = max(0, -(-(stop - start) // step))
            if length:
                offset += start * stride * item
            shape.append(length)
            strides.append(stride * step)
        else:
            raise TypeError(f"unsupported index {k!r}")
        d += 1
    shape += list(x.shape[d:])
    strides += list(x.strides[d:])
    return x._view(tuple(shape), tuple(strides), offset)


def refuse_inplace_grad(target: Tensor, value=None) -> None:
    """In-place writes are not taped: refuse them where a gradient would be lost."""
    if is_grad_enabled() and (target.requires_grad or getattr(value, "requires_grad", False)):
        raise errors.HlxError("an in-place write into (or from) a tensor that requires grad is not recorded for "
                              "backward; do it under hv.no_grad(), or build a new tensor instead")


def _fill(target: Tensor, value) -> None:
    if isinstance(value, Tensor):
        ew.copy(value if value.dtype is target.dtype else ew.cast(value, target.dtype), out=target)
    elif not isinstance(value, (list, tuple, np.ndarray)) and scalar_fits(value, compute_type(target.dtype)) and \
            (target.dtype.is_float or float(value).is_integer()):
        if target.numel():
            launch("alpha", [target], out=target, alpha=value)
    else:
        ew.copy(from_numpy(np.asarray(value), target.dtype, target.runtime), out=target)


def setitem(x: Tensor, key, value) -> None:
    """Write ``value`` (a tensor, array or number) into ``x[key]`` in place. With a boolean mask
    or an integer index tensor as the key, the selected places are written (as torch's
    ``x[mask] = v`` and ``x[idx] = v``); a mask with a number or 0-dim value is applied on the
    device, any other such write reads the key back (a sync point)."""
    refuse_inplace_grad(x, value)
    if _is_mask(key):
        _mask_assign(x, key, value)
    elif _is_advanced(key):
        _index_assign(x, key, value)
    else:
        _fill(getitem(x, key), value)


def _value_tensor(x: Tensor, value) -> Tensor:
    if isinstance(value, Tensor):
        return value if value.dtype is x.dtype else ew.cast(value, x.dtype)
    return from_numpy(np.asarray(value), x.dtype, x.runtime)


def _mask_assign(x: Tensor, mask, value) -> None:
    mt = mask if isinstance(mask, Tensor) else from_numpy(np.asarray(mask, dtype=bool), bool_, x.runtime)
    if mt.ndim == 0 or mt.shape != x.shape[:mt.ndim]:
        raise errors.ShapeError(f"the mask of shape {mt.shape} does not match the leading dims of the indexed tensor "
                                f"of shape {x.shape}")
    mb = reshape(mt, mt.shape + (1,) * (x.ndim - mt.ndim))
    if not isinstance(value, (Tensor, list, tuple, np.ndarray)) or (isinstance(value, Tensor) and not value.ndim):
        result = ew.where(mb, value, x)  # on the device: no sync
    else:
        m = _host_mask(x, mt).ravel()
        count = int(m.sum())
        if not count:
            return
        v = expand(_value_tensor(x, value), (count,) + x.shape[mt.ndim:])
        positions = np.maximum(np.cumsum(m) - 1, 0)  # where each masked place reads in v
        result = ew.where(mb, reshape(index_select(v, 0, positions), x.shape), x)
    ew.copy(result if result.dtype is x.dtype else ew.cast(result, x.dtype), out=x)


def _index_assign(x: Tensor, key, value) -> None:
    idx = key.numpy() if isinstance(key, Tensor) else np.asarray(key)
    if idx.dtype.kind not in "iu":
        raise errors.DTypeError(f"indices must be integers, not {idx.dtype}")
    size = x.shape[0] if x.ndim else 0
    if idx.size and (idx.min() < -size or idx.max() >= size):
        raise errors.ShapeError(f"index out of range for dim 0 of size {size}")
    if not idx.size:
        return
    idx_shape = idx.shape
    idx = np.where(idx < 0, idx + size, idx).ravel()
    source = np.full(size, -1, np.int64)
    source[idx] = np.arange(idx.size)  # a repeated index takes the last value written
    hit = from_numpy((source >= 0).reshape((size,) + (1,) * (x.ndim - 1)), bool_, x.runtime)
    if not isinstance(value, (Tensor, list, tuple, np.ndarray)) or (isinstance(value, Tensor) and not value.ndim):
        result = ew.where(hit, value, x)
    else:
        v = reshape(expand(_value_tensor(x, value), idx_shape + x.shape[1:]), (idx.size,) + x.shape[1:])
        result = ew.where(hit, index_select(v, 0, np.maximum(source, 0)), x)
    ew.copy(result if result.dtype is x.dtype else ew.cast(result, x.dtype), out=x)


def _pick_dim(dim, axis):
    if axis is not None:
        if dim is not None:
            raise TypeError("pass dim or axis (numpy's name for it), not both")
        return axis
    return 0 if dim is None else dim


def concat(tensors, dim=None, *, axis=None) -> Tensor:
    """Join tensors along an existing dim (torch.cat; mixed dtypes promote as torch's)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    dt = ew.result_type(*tensors)
    tensors = [t if t.dtype is dt else ew.cast(t, dt) for t in tensors]
    return _concat(normalize_axis(_pick_dim(dim, axis), tensors[0].ndim), *tensors)


cat = concat


def _concat_backward(ctx, g):
    a, pos, out = ctx.args[0], 0, [None]
    for shape in ctx.shapes[1:]:
        out.append(getitem(g, (slice(None),) * a + (slice(pos, pos + shape[a]),)))
        pos += shape[a]
    return tuple(out)


@differentiable(_concat_backward)
def _concat(a: int, *tensors) -> Tensor:
    first = tensors[0]
    for t in tensors[1:]:
        if t.dtype is not first.dtype:
            raise errors.DTypeError(f"concat: dtypes {first.dtype.name} and {t.dtype.name} do not match")
        if t.ndim != first.ndim or any(t.shape[d] != first.shape[d] for d in range(first.ndim) if d != a):
            raise errors.ShapeError(f"concat along axis {a}: shapes {first.shape} and {t.shape} do not fit")
    total = sum(t.shape[a] for t in tensors)
    out = contiguous_like(first.shape[:a] + (total,) + first.shape[a + 1:], first.dtype, first.runtime)
    pos = 0
    for t in tensors:
        if t.shape[a]:
            index = (slice(None),) * a + (slice(pos, pos + t.shape[a]),)
            ew.copy(t, out=getitem(out, index))
        pos += t.shape[a]
    return out


def stack(tensors, dim=None, *, axis=None) -> Tensor:
    """Join tensors of one shape along a new dim (torch.stack)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    d = _pick_dim(dim, axis)
    for t_ in tensors[1:]:
        if t_.shape != tensors[0].shape:
            raise errors.ShapeError(f"stack needs tensors of one shape, got {tensors[0].shape} and {t_.shape}")
    a = d % (tensors[0].ndim + 1) if d < 0 else d
    return concat([unsqueeze(t_, a) for t_ in tensors], a)


def split(x: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Views of ``x`` along ``dim``: pieces of ``split_size`` (the last may be shorter), or of the
    listed sizes (torch.split)."""
    d = normalize_axis(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [int(v) for v in split_size_or_sections]
        if sum(sizes) != n:
            raise errors.ShapeError(f"split sizes {sizes} do not add up to dim {dim}'s size {n}")
    else:
        step = int(split_size_or_sections)
        if step <= 0:
            raise ValueError(f"split size must be positive, got {step}")
        sizes = [min(step, n - s) for s in range(0, n, step)] or [0]
    out, pos = [], 0
    for size in sizes:
        out.append(getitem(x, (slice(None),) * d + (slice(pos, pos + size),)))
        pos += size
    return tuple(out)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple:
    """``chunks`` views of ``x`` along ``dim`` of ceil(size / chunks) each (fewer if they run out)."""
    if chunks <= 0:
        raise ValueError(f"chunk needs a positive number of chunks, got {chunks}")
    n = x.shape[normalize_axis(dim, x.ndim)]
    return split(x, max(1, -(-n // chunks)), dim)


def repeat(x: Tensor, *sizes) -> Tensor:
    """``x`` tiled ``sizes[d]`` times along each dim (torch.repeat; extra leading sizes add dims)."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    sizes = tuple(int(v) for v in sizes)
    if len(sizes) < x.ndim:
        raise errors.ShapeError(f"repeat needs at least as many sizes ({len(sizes)}) as dims ({x.ndim})")
    out = reshape(x, (1,) * (len(sizes) - x.ndim) + x.shape)
    for d, r in enumerate(sizes):
        if r != 1:  # one dim at a time: an expanded view copied into place
            shape = out.shape
            out = expand(unsqueeze(out, d), shape[:d] + (r,) + shape[d:])
            out = reshape(out, shape[:d] + (r * shape[d],) + shape[d + 1:])
    return out.contiguous()


def _tri_expr(shape, k: int, lower: bool) -> str:
    rows, cols = shape[-2], shape[-1]
    return f"(int(i % {cols}u) - int((i / {cols}u) % {rows}u) {'<=' if lower else '>='} {int(k)}) ? x : CT(0)"


@differentiable(lambda ctx, g: (launch(_tri_expr(ctx.shapes[0], ctx.args[1], ctx.args[2]), [g]), None, None))
def _tri(x: Tensor, k: int, lower: bool) -> Tensor:
    if x.ndim < 2:
        raise errors.ShapeError(f"tril/triu need a tensor of at least 2 dims, not shape {x.shape}")
    return launch(_tri_expr(x.shape, k, lower), [x])


def tril(x: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two dims (elements with col - row <= diagonal), zeros elsewhere."""
    return _tri(x, diagonal, True)


def triu(x: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two dims (elements with col - row >= diagonal), zeros elsewhere."""
    return _tri(x, diagonal, False)


def index_tensor(index, size: int, runtime, op: str, what: str = "index", ignore: int | None = None) -> Tensor:
    """``index`` as an int32 device tensor. Host indices (lists, numpy) are checked here, before
    anything is recorded: in ``[0, size)``, ``[-size, size)`` where ``op`` wraps (negatives then
    count from the end and are stored wrapped), or equal to ``ignore``. A device tensor's indices
    are checked by the kernel that reads them (DeviceIndexError at the next sync point)."""
    if isinstance(index, Tensor):
        if index.dtype.is_float or index.dtype is bool_:
            raise errors.DTypeError(f"{op}: indices must be integers, not {index.dtype.name}")
        return index if index.dtype in (int32, int64) else ew.cast(index, int32)
    idx = np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise errors.DTypeError(f"{op}: indices must be integers, not {idx.dtype}")
    lo = -size if op in _WRAPS else 0
    bad = (idx < lo) | (idx >= size)
    if ignore is not None:
        bad &= idx != ignore
    if bad.any():
        raise errors.IndexOutOfRangeError(f"{op}: {what} {int(idx[bad].flat[0])} is out of range for an axis of "
                                          f"size {size}")
    if lo:
        idx = np.where(idx < 0, idx + size, idx)
    return from_numpy(idx.astype(np.int32), int32, runtime)


def _gather_backward(ctx, g):
    x_shape, op = ctx.shapes[0], ctx.args[3]
    a = normalize_axis(ctx.args[1], len(x_shape))
    (index,) = ctx.saved
    idx = index_tensor(index, x_shape[a], g.runtime, op)
    return index_add(x_shape, a, idx, g, op), None, None, None


@differentiable(_gather_backward, saves=(2,))
def gather(x: Tensor, axis: int, index, op: str = "index_select") -> Tensor:
    """Rows of ``x`` along ``axis`` picked by ``index`` (any shape; the result puts the index's
    shape in place of that axis), for op ``op`` (index_select, getitem, embedding: which name
    errors carry, and whether negative indices count from the end). Host indices are checked
    before anything is recorded (IndexOutOfRangeError); a device tensor's by the kernel
    (DeviceIndexError at the next sync point)."""
    a = normalize_axis(axis, x.ndim)
    idx = index_tensor(index, x.shape[a], x.runtime, op)
    flat_idx = idx if idx.is_contiguous() else ew.copy(idx)
    nidx = flat_idx.numel()
    outer = math.prod(x.shape[:a])
    inner = math.prod(x.shape[a + 1:])
    out_shape = x.shape[:a] + idx.shape + x.shape[a + 1:]
    out = contiguous_like(out_shape, x.dtype, x.runtime)
    n = outer * nidx * inner
    if n == 0:
        return out
    if x.shape[a] == 0:
        raise errors.IndexOutOfRangeError(f"{op}: cannot index an empty axis {a} of shape {x.shape}")
    src = x if x.is_contiguous() else ew.copy(x)
    rt = x.runtime
    ct = compute_type(x.dtype)
    kernel = rt.kernels.get(GATHER, {"CT": ct, "OCT": ct}, {"A": x.dtype, "O": x.dtype, "I": flat_idx.dtype})
    rt.run(kernel, {"O": out.buf, "A": src.buf, "I": flat_idx.buf},
           {"n": n, "nidx": nidx, "inner": inner, "axis_len": x.shape[a], "st_outer": x.shape[a] * inner,
            "st_axis": inner, "st_inner": 1, "st_idx": 1, "wrap": int(op in _WRAPS)}, n, check=op)
    return out


def index_select(x: Tensor, dim: int, index) -> Tensor:
    """torch.index_select: rows of ``x`` along ``dim`` at ``index``, each in ``[0, size)``."""
    return gather(x, dim, index, "index_select")


def index_add(shape, axis: int, index: Tensor, src: Tensor, op: str = "index_select") -> Tensor:
    """A new tensor of ``shape``: zeros, plus ``src``'s slices added at ``index`` along ``axis``
    (the backward of :func:`gather` for op ``op``). Each output element sums its contributions
    in index order, so repeated indices give the same bits on every run; no atomics on results."""
    a = normalize_axis(axis, len(shape))
    flat_idx = index if index.is_contiguous() else ew.copy(index)
    nidx = flat_idx.numel()
    outer, inner = math.prod(shape[:a]), math.prod(shape[a + 1:])
    expected = tuple(shape[:a]) + index.shape + tuple(shape[a + 1:])
    if src.shape != expected:
        raise errors.ShapeError(f"index_add: source of shape {src.shape}, expected {expected}")
    src = src if src.is_contiguous() else ew.copy(src)
    rt = src.runtime
    out = contiguous_like(tuple(shape), src.dtype, rt)
    n = outer * shape[a] * inner
    if n == 0:
        return out
    defines = {"CT": "float" if src.dtype.is_float else compute_type(src.dtype), "OCT": compute_type(src.dtype)}
    kernel = rt.kernels.get(INDEX_ADD, defines, {"A": src.dtype, "O": src.dtype, "I": flat_idx.dtype})
    rt.run(kernel, {"O": out.buf, "A": src.buf, "I": flat_idx.buf},
           {"n": n, "nidx": nidx, "inner": inner, "axis_len": shape[a], "st_outer": nidx * inner, "st_axis": inner,
            "st_inner": 1, "st_idx": 1, "wrap": int(op in _WRAPS)}, n, check=f"{op} (backward)")
    return out


def one_hot(index, num_classes: int = -1, dtype=None) -> Tensor:
    """``out[..., c] = 1`` where ``index == c`` (torch.nn.functional.one_hot: int64 unless ``dtype``
    is given; ``num_classes=-1`` takes the largest index + 1, read back: a sync point). Each index
    in ``[0, num_classes)``, checked before launch for host indices, on the device for a device
    tensor's (DeviceIndexError at the next sync point)."""
    if isinstance(index, Tensor) and (index.dtype.is_float or index.dtype is bool_):
        raise errors.DTypeError(f"one_hot needs integer indices, not {index.dtype.name}")
    rt = index.runtime if isinstance(index, Tensor) else default_runtime()
    if num_classes < 0:
        if isinstance(index, Tensor):
            num_classes = int(reduce.amax(index).item()) + 1 if index.numel() else 0
        else:
            num_classes = int(np.max(index)) + 1 if np.size(index) else 0
    return class_mask(index, num_classes, dtype if dtype is not None else default_int_dtype(rt), op="one_hot",
                      runtime=rt)


def class_mask(index, num_classes: int, dtype="float32", ignore: int | None = None, op: str = "one_hot",
               runtime=None) -> Tensor:
    """:func:`one_hot`, with the rows whose index equals ``ignore`` left zero (the class mask of
    nll_loss and cross_entropy, whose errors name ``op``)."""
    num_classes = int(num_classes)
    if num_classes <= 0:
        raise errors.ShapeError(f"{op}: num_classes must be positive, got {num_classes}")
    rt = index.runtime if isinstance(index, Tensor) else runtime or default_runtime()
    what = "index" if op == "one_hot" else "target index"
    idx = index_tensor(index, num_classes, rt, op, what, ignore)
    flat = idx if idx.is_contiguous() else ew.copy(idx)
    out = contiguous_like(idx.shape + (num_classes,), dtype_of(dtype), rt)
    n = out.numel()
    if n == 0:
        return out
    kernel = rt.kernels.get(ONE_HOT, {"OCT": compute_type(out.dtype)}, {"O": out.dtype, "I": flat.dtype})
    rt.run(kernel, {"O": out.buf, "I": flat.buf},
           {"n": n, "classes": num_classes, "ignore": 0 if ignore is None else int(ignore),
            "has_ignore": int(ignore is not None)}, n, check=op)
    return out
