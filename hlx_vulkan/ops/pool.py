"""Pooling as PyTorch has it: ``max_pool1d/2d`` (kernel, stride, padding, dilation, ceil_mode,
return_indices), ``avg_pool1d/2d`` (count_include_pad, divisor_override) and
``adaptive_avg_pool1d/2d``.

Max pooling has its own kernel (``conv/maxpool.comp``): the forward writes each window's
maximum and its index; the backward gives each input element the sum of the gradients of
the windows whose index names it, in a fixed order. Average pooling is im2col, a sum over the
window (``ops/reduce``) and a division by the window's count; adaptive average pooling is a
product with an averaging matrix per axis. Their gradients come from those ops.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from .. import errors
from ..autograd.graph import differentiable
from ..runtime import KernelSpec
from . import elementwise as ew
from . import reduce as red
from . import shape as sh
from .conv import MAX_INDEX, Window, im2col, out_size, pair
from .matmul import matmul
from .spatial import host_table
from .tensor import Tensor, contiguous_like, default_int_dtype

_SOURCE = resources.files(__package__) / "conv" / "maxpool.comp"
_PUSH = [("n", "I"), ("off_o", "I"), ("off_a", "I"), ("off_i", "I"), ("dims", "4i"), ("win", "8i"), ("dil", "2i"),
         ("st_a", "4i")]
MAXPOOL = KernelSpec(_SOURCE, [("O", "write", "O"), ("A", "read", "A"), ("I", "write")], _PUSH)
MAXPOOL_BACKWARD = KernelSpec(_SOURCE, [("O", "write", "O"), ("A", "read", "A"), ("I", "read")], _PUSH)
WORKGROUP = 256


def _window(op, x: Tensor, kernel_size, stride, padding, dilation, ceil_mode) -> Window:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op} takes a tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise errors.ShapeError(f"{op} takes an (N, C, H, W) or (C, H, W) input, got shape {x.shape}")
    if not x.dtype.is_float:
        raise errors.DTypeError(f"{op} needs a floating-point tensor, not {x.dtype.name}")
    k = pair(kernel_size, "kernel_size")
    s = k if stride is None or stride == () or stride == [] else pair(stride, "stride")
    p, d = pair(padding, "padding"), pair(dilation, "dilation")
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{op}: kernel_size {k}, stride {s} and dilation {d} must be positive, padding {p} not "
                         "negative")
    if any(pp > kk // 2 for pp, kk in zip(p, k)):
        raise ValueError(f"{op}: padding {p} should be at most half of the kernel size {k}")
    h, w = x.shape[2:]
    oh, ow = (out_size(n, kk, ss, pp, dd, ceil_mode) for n, kk, ss, pp, dd in zip((h, w), k, s, p, d))
    if oh <= 0 or ow <= 0:
        raise errors.ShapeError(f"{op}: the output of input {x.shape} under kernel {k}, stride {s}, padding {p}, "
                                f"dilation {d} would be empty ({oh}, {ow})")
    return Window(k[0], k[1], oh, ow, s[0], s[1], p[0], p[1], d[0], d[1])


def _maxpool_run(spec, out: Tensor, a: Tensor, idx: Tensor, dims, win: Window, n: int) -> None:
    if n == 0:
        return
    if n > MAX_INDEX or a.buf.span_bytes // a.dtype.itemsize > MAX_INDEX:
        raise errors.LimitExceededError(f"{n} elements are more than one max_pool launch indexes")
    rt = a.runtime
    defines = {"BACKWARD": int(spec is MAXPOOL_BACKWARD), "CT": "float", "OCT": "float"}
    kernel = rt.kernels.get(spec, defines, {"O": out.dtype, "A": a.dtype}, (WORKGROUP,))
    rt.run(kernel, {"O": out.buf, "A": a.buf, "I": idx.buf},
           {"n": n, "dims": list(dims), "win": list(win[:8]), "dil": list(win[8:]), "st_a": list(a.strides)}, n)


def _max_pool_backward(ctx, g):
    idx = ctx.saved[0]
    win = ctx.args[3]
    n, c, h, w = ctx.shapes[0]
    gx = contiguous_like((n, c, h, w), g.dtype, g.runtime)
    _maxpool_run(MAXPOOL_BACKWARD, gx, g, idx, (n, c, h, w), win, n * c * h * w)
    return gx, None, None, None


@differentiable(_max_pool_backward, saves=(1,))
def _max_pool_values(x: Tensor, idx: Tensor, values: Tensor, win: Window) -> Tensor:
    """``values`` (already computed) as the function of ``x`` whose gradient goes to ``idx``."""
    return values


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """The maximum of each window of ``x`` (N, C, H, W) or (C, H, W), as torch; with
    ``return_indices`` also each maximum's flat index ``h * W + w`` in its input plane."""
    unbatched = isinstance(x, Tensor) and x.ndim == 3
    if unbatched:
        x = sh.unsqueeze(x, 0)
    win = _window("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    n, c, h, w = x.shape
    values = contiguous_like((n, c, win.oh, win.ow), x.dtype, x.runtime)
    idx = contiguous_like((n, c, win.oh, win.ow), "int32", x.runtime)
    _maxpool_run(MAXPOOL, values, x, idx, (n, c, h, w), win, values.numel())
    y = _max_pool_values(x, idx, values, win)
    if unbatched:
        y, idx = sh.squeeze(y, 0), sh.squeeze(idx, 0)
    if not return_indices:
        return y
    return y, ew.cast(idx, default_int_dtype(x.runtime))


def max_pool1d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """max_pool2d over the last dim of ``x`` (N, C, L) or (C, L)."""
    one = lambda v, name, lo: (lo, pair(v, name, 1)[0])  # noqa: E731
    r = max_pool2d(sh.unsqueeze(x, -2), one(kernel_size, "kernel_size", 1),
                   None if stride is None else one(stride, "stride", 1), one(padding, "padding", 0),
                   one(dilation, "dilation", 1), ceil_mode, return_indices)
    if return_indices:
        return sh.squeeze(r[0], -2), sh.squeeze(r[1], -2)
    return sh.squeeze(r, -2)


def _avg_divisor(h, w, win: Window, count_include_pad: bool, divisor_override) -> np.ndarray:
    """torch's divisor of each output window: its size clipped to the padded input, or only the
    input elements it covers (without count_include_pad), or the override."""
    out = np.empty((win.oh, win.ow), np.float32)
    for i in range(win.oh):
        h0 = i * win.sh - win.ph
        h1 = min(h0 + win.kh, h + win.ph)
        for j in range(win.ow):
            w0 = j * win.sw - win.pw
            w1 = min(w0 + win.kw, w + win.pw)
            size = (h1 - h0) * (w1 - w0)
            inner = (min(h1, h) - max(h0, 0)) * (min(w1, w) - max(w0, 0))
            out[i, j] = divisor_override if divisor_override else (size if count_include_pad else inner)
    return out


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None) -> Tensor:
    """The mean of each window of ``x`` (N, C, H, W) or (C, H, W), as torch."""
    unbatched = isinstance(x, Tensor) and x.ndim == 3
    if unbatched:
        x = sh.unsqueeze(x, 0)
    win = _window("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (not isinstance(divisor_override, int) or divisor_override <= 0):
        raise ValueError(f"avg_pool2d: divisor_override must be a positive int, got {divisor_override!r}")
    n, c, h, w = x.shape
    planes = sh.reshape(x, (n * c, 1, h, w))
    sums = red.sum(im2col(planes, win, True), 1)  # (N*C, OH*OW), each window summed in tap order
    div = host_table(x.runtime, ("avg_pool", h, w, win, count_include_pad, divisor_override),
                     lambda: _avg_divisor(h, w, win, count_include_pad, divisor_override).reshape(-1), x.dtype)
    y = sh.reshape(sums / div, (n, c, win.oh, win.ow))
    return sh.squeeze(y, 0) if unbatched else y


def avg_pool1d(x: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """avg_pool2d over the last dim of ``x`` (N, C, L) or (C, L)."""
    one = lambda v, name, lo: (lo, pair(v, name, 1)[0])  # noqa: E731
    y = avg_pool2d(sh.unsqueeze(x, -2), one(kernel_size, "kernel_size", 1),
                   None if stride is None else one(stride, "stride", 1), one(padding, "padding", 0), ceil_mode,
                   count_include_pad)
    return sh.squeeze(y, -2)


def _adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): row i averages [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out)), as torch."""
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """Average ``x`` (N, C, H, W) or (C, H, W) into ``output_size`` bins per spatial dim, as torch
    (None in ``output_size`` keeps that dim)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"adaptive_avg_pool2d takes a tensor, got {type(x).__name__}")
    if x.ndim not in (3, 4):
        raise errors.ShapeError(f"adaptive_avg_pool2d takes an (N, C, H, W) or (C, H, W) input, got {x.shape}")
    if not x.dtype.is_float:
        raise errors.DTypeError(f"adaptive_avg_pool2d needs a floating-point tensor, not {x.dtype.name}")
    h, w = x.shape[-2:]
    size = (output_size, output_size) if isinstance(output_size, int) or output_size is None else tuple(output_size)
    if len(size) != 2:
        raise errors.ShapeError(f"adaptive_avg_pool2d: output_size {output_size!r} must be one or two sizes")
    oh, ow = (n if s is None else s for s, n in zip(size, (h, w)))
    if not all(isinstance(s, int) and s > 0 for s in (oh, ow)) or h == 0 or w == 0:
        raise errors.ShapeError(f"adaptive_avg_pool2d: output size {(oh, ow)} of input {x.shape} must be positive")
    if (oh, ow) == (1, 1):
        return red.mean(x, (-2, -1), keepdim=True)
    rt = x.runtime
    if oh != h:
        x = matmul(host_table(rt, ("adaptive", h, oh), lambda: _adaptive_matrix(h, oh), x.dtype), x)
    if ow != w:
        x = matmul(x, sh.transpose(host_table(rt, ("adaptive", w, ow), lambda: _adaptive_matrix(w, ow), x.dtype),
                                   0, 1))
    return x


def adaptive_avg_pool1d(x: Tensor, output_size) -> Tensor:
    """Average ``x`` (N, C, L) or (C, L) into ``output_size`` bins, as torch."""
    size = output_size if isinstance(output_size, int) else pair(output_size, "output_size", 1)[0]
    return sh.squeeze(adaptive_avg_pool2d(sh.unsqueeze(x, -2), (1, size)), -2)


__all__ = ["adaptive_avg_pool1d", "adaptive_avg_pool2d", "avg_pool1d", "avg_pool2d", "max_pool1d", "max_pool2d"]
