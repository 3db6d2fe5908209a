"""Sorting along any dim, as torch: ``sort``, ``argsort``, ``topk``, ``msort``.

One stable bitonic network (``sort/sort.comp``) sorts (key, position) pairs: rows are padded
to a power of two, blocks of 512 are sorted in shared memory, and the merges larger than a
block run one global stage per dispatch followed by the block-local tail. Equal keys keep
their order (the original position breaks ties), in ascending and descending order alike,
so ``stable=True`` and ``stable=False`` give the same answer, and ``topk`` returns the first
of equal values; NaN sorts as the largest value, as torch. Indices are int64 (int32 on a
device without 64-bit integers). The values' gradient goes back through ``gather`` to the
positions they came from.
"""

from __future__ import annotations

import math
from collections import namedtuple
from importlib import resources

from .. import errors
from ..autograd.graph import no_grad
from ..memory import float32, int32, int64, uint32
from ..runtime import KernelSpec
from . import elementwise as ew
from . import shape as sh
from .indexing import gather
from .pointwise import compute_type
from .tensor import Tensor, contiguous_like, default_int_dtype, normalize_axis

_SRC = resources.files(__package__) / "sort" / "sort.comp"
_WORK = [("K", "readwrite", "K"), ("X", "readwrite")]
_STAGE_PUSH = [("total", "I"), ("R", "I"), ("P", "I"), ("k", "I"), ("j", "I"), ("block", "I")]
SORT_INIT = KernelSpec(_SRC, [("K", "write", "K"), ("X", "write"), ("A", "read", "A")],
                       [("total", "I"), ("R", "I"), ("P", "I"), ("off_a", "I")])
SORT_STAGE = KernelSpec(_SRC, _WORK, _STAGE_PUSH)
SORT_LOCAL = KernelSpec(_SRC, _WORK, _STAGE_PUSH)
SORT_FINISH = KernelSpec(_SRC, [("O", "write", "O"), ("OI", "write", "I"), ("K", "read", "K"), ("X", "read")],
                         [("total", "I"), ("R_out", "I"), ("P", "I"), ("off_o", "I"), ("off_oi", "I")])
WG = 256
BLOCK = 2 * WG

# torch.return_types.sort / topk: a named (values, indices) pair.
ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def _key_dtype(dt):
    if dt.is_float:
        return float32
    if dt is int64:
        return int64
    return int32 if dt.kind == "int" else uint32


def _sort_rows(x2: Tensor, descending: bool, keep: int, want_values: bool = True):
    """Sort each row of the contiguous (rows, R) ``x2``; return the first ``keep`` values of each
    (or None) and their positions, both (rows, keep)."""
    rt = x2.runtime
    rows, R = x2.shape
    idx_dtype = default_int_dtype(rt)
    values = contiguous_like((rows, keep), x2.dtype, rt)
    index = contiguous_like((rows, keep), idx_dtype, rt)
    if rows * keep == 0:
        return values, index
    P = 1 << max(0, (R - 1).bit_length())
    total = rows * P
    if total >= 2**31:
        raise errors.LimitExceededError(f"sorting {rows} rows of {R} elements needs more than 2**31 work elements")
    kd = _key_dtype(x2.dtype)
    kt = compute_type(kd)
    keys = contiguous_like((total,), kd, rt)
    pos = contiguous_like((total,), int32, rt)
    common = {"KIND_FLOAT": int(kd.is_float), "DESCENDING": int(descending)}
    init = rt.kernels.get(SORT_INIT, {"MODE": 0, "CT": kt, **common}, {"K": kd, "A": x2.dtype}, (WG,))
    rt.run(init, {"K": keys.buf, "X": pos.buf, "A": x2.buf}, {"total": total, "R": R, "P": P}, total)
    if P > 1:
        local = rt.kernels.get(SORT_LOCAL, {"MODE": 2, **common}, {"K": kd}, (WG,))
        block = min(P, BLOCK)
        bufs = {"K": keys.buf, "X": pos.buf}
        push = {"total": total, "R": R, "P": P, "block": block}
        blocks = total // block
        rt.run(local, bufs, {**push, "k": 0, "j": 0}, blocks * WG)
        k = 2 * block
        if k <= P:
            stage = rt.kernels.get(SORT_STAGE, {"MODE": 1, **common}, {"K": kd}, (WG,))
        while k <= P:
            j = k // 2
            while j >= block:
                rt.run(stage, bufs, {**push, "k": k, "j": j}, total // 2)
                j //= 2
            rt.run(local, bufs, {**push, "k": k, "j": 0}, blocks * WG)
            k *= 2
    ot = compute_type(x2.dtype)
    finish = rt.kernels.get(SORT_FINISH, {"MODE": 3, "OCT": ot, "CT": kt},
                            {"O": x2.dtype, "I": idx_dtype, "K": kd}, (WG,))
    n = rows * keep
    rt.run(finish, {"O": values.buf, "OI": index.buf, "K": keys.buf, "X": pos.buf},
           {"total": n, "R_out": keep, "P": P}, n)
    return values, index


def _sorted(x: Tensor, dim: int, descending: bool, keep: int | None):
    """(values, indices) of ``x`` sorted along ``dim``, the first ``keep`` of each row."""
    if x.ndim == 0:
        if keep not in (None, 0, 1):
            raise errors.ShapeError(f"topk: k ({keep}) is out of range for a 0-dim tensor")
        flat, idx = _sorted(x.reshape(1), 0, descending, keep)
        return (flat.reshape(()), idx.reshape(())) if keep != 0 else (flat, idx)
    d = normalize_axis(dim, x.ndim)
    R = x.shape[d]
    keep = R if keep is None else keep
    moved = sh.transpose(x, d, -1) if d != x.ndim - 1 else x
    lead = moved.shape[:-1]
    with no_grad():
        x2 = sh.reshape(moved, (math.prod(lead), R)).contiguous()
        values, index = _sort_rows(x2, descending, keep)
    values = values.reshape(lead + (keep,))
    index = index.reshape(lead + (keep,))
    if d != x.ndim - 1:
        values = sh.transpose(values, d, -1).contiguous()
        index = sh.transpose(index, d, -1).contiguous()
    if x.requires_grad:
        values = gather(x, d, index)  # on the graph: the gradient goes back to the picked positions
    return values, index


def sort(input: Tensor, dim: int = -1, descending: bool = False, *, stable: bool = False) -> ValuesIndices:  # noqa: A002
    """Values sorted along ``dim`` and the int64 positions they came from (torch.sort). Always
    stable: equal values keep their order, in either direction; NaN counts as the largest."""
    if isinstance(dim, bool):
        raise TypeError("sort(x, dim, descending): dim is an int")
    return ValuesIndices(*_sorted(input, dim, bool(descending), None))


def argsort(input: Tensor, dim: int = -1, descending: bool = False, *, stable: bool = False) -> Tensor:  # noqa: A002
    """The int64 positions that sort ``input`` along ``dim`` (torch.argsort; always stable)."""
    with no_grad():
        return _sorted(input.detach() if input.requires_grad else input, dim, bool(descending), None)[1]


def msort(input: Tensor) -> Tensor:  # noqa: A002
    """``input`` sorted along its first dim (torch.msort)."""
    return sort(input, 0).values


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> ValuesIndices:  # noqa: A002
    """The ``k`` largest (or smallest) values along ``dim`` and their int64 positions (torch.topk),
    in sorted order; of equal values the first ones are taken; NaN counts as the largest."""
    k = int(k)
    size = input.shape[normalize_axis(dim, input.ndim)] if input.ndim else 1
    if not 0 <= k <= size:
        raise errors.ShapeError(f"topk: k ({k}) is out of range for a dim of size {size}")
    return ValuesIndices(*_sorted(input, dim, bool(largest), k))


def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False) -> ValuesIndices:  # noqa: A002
    """The ``k``-th smallest value (1-based) along ``dim`` and its position (torch.kthvalue)."""
    d = normalize_axis(dim, input.ndim) if input.ndim else 0
    size = input.shape[d] if input.ndim else 1
    if not 1 <= int(k) <= size:
        raise errors.ShapeError(f"kthvalue: k ({k}) is out of range for a dim of size {size}")
    values, index = topk(input, int(k), d, largest=False)
    if input.ndim == 0:
        return ValuesIndices(values, index)
    sel = (slice(None),) * d + (slice(int(k) - 1, int(k)),)
    v, i = values[sel], index[sel]
    if not keepdim:
        v, i = v.squeeze(d), i.squeeze(d)
    return ValuesIndices(v, i.contiguous())


__all__ = ["argsort", "kthvalue", "msort", "sort", "topk"]
