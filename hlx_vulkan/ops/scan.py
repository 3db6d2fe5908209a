"""``cumprod`` along any dim (``scan/cumprod.comp``): each row is multiplied out in order by one
invocation (the same bits on every run), and its gradient is exact where the row holds zeros.
Integers and bools give int64, as torch."""

from __future__ import annotations

import math
from importlib import resources

from ..autograd.graph import differentiable
from ..memory import dtype_of, float32
from ..runtime import KernelSpec
from . import elementwise as ew
from . import shape as sh
from .pointwise import compute_type
from .tensor import Tensor, contiguous_like, default_int_dtype, normalize_axis

_SRC = resources.files(__package__) / "scan" / "cumprod.comp"
CUMPROD = KernelSpec(_SRC, [("O", "write", "O"), ("A", "read", "A")],
                     [("rows", "I"), ("R", "I"), ("off_o", "I"), ("off_a", "I")])
CUMPROD_GRAD = KernelSpec(_SRC, [("O", "readwrite"), ("A", "read", "A"), ("B", "read", "B")],
                          [("rows", "I"), ("R", "I"), ("off_o", "I"), ("off_a", "I"), ("off_b", "I")])
WG = 64


def _rows(x: Tensor, d: int) -> Tensor:
    """``x`` with dim ``d`` moved last, as a contiguous (rows, R) tensor."""
    moved = sh.transpose(x, d, -1) if d != x.ndim - 1 else x
    return sh.reshape(moved, (-1, x.shape[d])).contiguous()


def _back(rows: Tensor, shape, d: int) -> Tensor:
    """The inverse of :func:`_rows`."""
    moved = list(shape)
    moved[d], moved[-1] = moved[-1], moved[d]
    out = rows.reshape(tuple(moved))
    return sh.transpose(out, d, -1).contiguous() if d != len(shape) - 1 else out


def _cumprod_backward(ctx, g):
    x, out = ctx.saved
    d = ctx.args[1]
    if x.numel() == 0:
        return g, None, None
    if x.ndim == 0:
        return g, None, None
    x2, g2 = _rows(x, d), _rows(g, d)
    rt = g.runtime
    grad = contiguous_like(x2.shape, float32, rt)
    kernel = rt.kernels.get(CUMPROD_GRAD, {"MODE": 1, "CT": "float"}, {"A": x2.dtype, "B": g2.dtype}, (WG,))
    rt.run(kernel, {"O": grad.buf, "A": x2.buf, "B": g2.buf}, {"rows": x2.shape[0], "R": x2.shape[1]},
           x2.shape[0])
    grad = _back(grad, x.shape, d)
    return (grad if grad.dtype is g.dtype else ew.cast(grad, g.dtype)), None, None


@differentiable(_cumprod_backward, saves=(0, "out"))
def _cumprod(x: Tensor, dim: int, out_dtype) -> Tensor:
    rt = x.runtime
    if x.ndim == 0:
        return ew.cast(x, out_dtype) if x.dtype is not out_dtype else ew.copy(x)
    if x.numel() == 0:
        return contiguous_like(x.shape, out_dtype, rt)
    x2 = _rows(x, dim)
    out = contiguous_like(x2.shape, out_dtype, rt)
    ct = "float" if out_dtype.is_float else compute_type(out_dtype)
    kernel = rt.kernels.get(CUMPROD, {"MODE": 0, "CT": ct, "OCT": compute_type(out_dtype)},
                            {"O": out_dtype, "A": x2.dtype}, (WG,))
    rt.run(kernel, {"O": out.buf, "A": x2.buf}, {"rows": x2.shape[0], "R": x2.shape[1]}, x2.shape[0])
    return _back(out, x.shape, dim)


def cumprod(input: Tensor, dim: int, *, dtype=None) -> Tensor:  # noqa: A002 - torch's names
    """Running products along ``dim`` (torch.cumprod); integers and bools give int64, as torch."""
    d = normalize_axis(dim, input.ndim)
    if dtype is not None:
        out = dtype_of(dtype)
    else:
        out = input.dtype if input.dtype.is_float else default_int_dtype(input.runtime)
    return _cumprod(input, d, out)


__all__ = ["cumprod"]
