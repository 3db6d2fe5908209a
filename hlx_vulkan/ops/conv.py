"""Convolutions as PyTorch has them: ``conv1d``, ``conv2d``, ``conv_transpose1d``, ``conv_transpose2d``
(stride, padding incl. ``'same'``/``'valid'``, dilation, groups, bias).

Each is an im2col (``conv/im2col.comp``) and one batched matmul (``ops/matmul.py``), so its
speed and its summation order follow the GEMM's. ``im2col`` and its adjoint ``col2im`` are
differentiable ops of their own, each the other's backward, so every gradient is a GEMM or a
col2im gather: the input's gradient sums the columns that read each pixel in a fixed order
(kh, then kw), the weight's is the GEMM of the output gradient with the columns, and nothing
uses atomics. A transposed convolution is the same two ops the other way round.

Example::

    y = hv.nn.functional.conv2d(x, w, b, stride=2, padding=1, groups=2)
"""

from __future__ import annotations

from importlib import resources
from typing import NamedTuple

from .. import errors
from ..autograd.graph import differentiable
from ..runtime import KernelSpec
from . import reduce as red
from . import shape as sh
from .matmul import matmul
from .tensor import Tensor, contiguous_like

_DIR = resources.files(__package__) / "conv"
_PUSH = [("n", "I"), ("off_o", "I"), ("off_a", "I"), ("dims", "4i"), ("win", "8i"), ("dil", "2i"),
         ("st_img", "4i"), ("st_col", "3i")]
# MODE 0: im2col; MODE 1: col2im.
COLUMNS = KernelSpec(_DIR / "im2col.comp", [("O", "write", "O"), ("A", "read", "A")], _PUSH)
WORKGROUP = 256
MAX_INDEX = 2**31 - 1


class Window(NamedTuple):
    """A sliding window over (H, W): kernel, output size, stride, padding, dilation."""
    kh: int
    kw: int
    oh: int
    ow: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int

    @property
    def taps(self) -> int:
        return self.kh * self.kw


def pair(value, name: str, n: int = 2) -> tuple:
    """``value`` as an ``n``-tuple of non-negative ints (an int repeats)."""
    t = (value,) * n if isinstance(value, int) else tuple(value)
    if len(t) == 1 and n > 1:
        t = t * n
    if len(t) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in t):
        raise errors.ShapeError(f"{name} must be an int or {n} ints, got {value!r}")
    return t


def out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool = False) -> int:
    """Outputs of a window of ``k`` taps (dilation ``d``) sliding by ``s`` over ``size`` padded by ``p``
    on both sides; with ``ceil_mode`` a last partial window counts if it starts inside the input
    or its left padding (PyTorch's rule)."""
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    n = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n - 1) * s >= size + p:
        n -= 1
    return n


def _check_float(op: str, *tensors) -> None:
    for t in tensors:
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{op} takes tensors, got {type(t).__name__}")
    dts = {t.dtype for t in tensors if t is not None}
    if len(dts) > 1:
        raise errors.DTypeError(f"{op}: dtypes {sorted(d.name for d in dts)} do not match")
    dt = dts.pop()
    if not dt.is_float:
        raise errors.DTypeError(f"{op} needs floating-point tensors, not {dt.name}")


def _launch_columns(mode: int, out: Tensor, src: Tensor, dims, win: Window, st_img, st_col, n: int) -> None:
    if n == 0:
        return
    if n > MAX_INDEX or out.buf.span_bytes // out.dtype.itemsize > MAX_INDEX or \
            src.buf.span_bytes // src.dtype.itemsize > MAX_INDEX:
        raise errors.LimitExceededError(f"{n} elements are more than one im2col launch indexes")
    rt = src.runtime
    kernel = rt.kernels.get(COLUMNS, {"MODE": mode, "CT": "float", "OCT": "float"},
                            {"O": out.dtype, "A": src.dtype}, (WORKGROUP,))
    rt.run(kernel, {"O": out.buf, "A": src.buf},
           {"n": n, "dims": list(dims), "win": list(win[:8]), "dil": list(win[8:]), "st_img": list(st_img),
            "st_col": list(st_col)}, n)


def _im2col_backward(ctx, g):
    n, c, h, w = ctx.shapes[0]
    return col2im(g, (c, h, w), ctx.args[1]), None, None


@differentiable(_im2col_backward)
def im2col(x: Tensor, win: Window, n_major: bool = True) -> Tensor:
    """The columns of image ``x`` (N, C, H, W, any strides) under ``win``: a tensor of shape
    (N, C*KH*KW, OH*OW), row ``(c*KH + kh)*KW + kw``, zero where the window leaves the image.
    ``n_major``: laid out as its shape (contiguous); else as (C*KH*KW, N, OH*OW) (a permuted view),
    which reshapes for free to the (groups, rows, N*L) operand of a grouped GEMM."""
    if x.ndim != 4:
        raise errors.ShapeError(f"im2col takes an (N, C, H, W) image, got shape {x.shape}")
    n, c, h, w = x.shape
    rows, cols = c * win.taps, win.oh * win.ow
    if n_major:
        out = contiguous_like((n, rows, cols), x.dtype, x.runtime)
    else:
        out = sh.permute(contiguous_like((rows, n, cols), x.dtype, x.runtime), (1, 0, 2))
    _launch_columns(0, out, x, (n, c, h, w), win, x.strides, out.strides, n * rows * cols)
    return out


def _col2im_backward(ctx, g):
    return im2col(g, ctx.args[2], True), None, None


@differentiable(_col2im_backward)
def col2im(cols: Tensor, image: tuple, win: Window) -> Tensor:
    """The adjoint of :func:`im2col`: an (N, C, H, W) image (``image`` = (C, H, W)) whose every
    pixel is the sum of the column elements (N, C*KH*KW, OH*OW; any strides) that read it, in
    kh-then-kw order."""
    c, h, w = image
    n = cols.shape[0]
    if cols.shape != (n, c * win.taps, win.oh * win.ow):
        raise errors.ShapeError(f"col2im: columns of shape {cols.shape} do not fit image {image} under {win}")
    out = contiguous_like((n, c, h, w), cols.dtype, cols.runtime)
    _launch_columns(1, out, cols, (n, c, h, w), win, (0, 0, 0, 0), cols.strides, n * c * h * w)
    return out


# The weight gradient (O/G, rows) sums over all N*L columns. A long sum on a few output tiles
# leaves most of a GPU idle, so it is cut by images into chunks (each a GEMM of its own, batched)
# and the chunk sums added in a fixed order. The cut depends on the shapes alone: deterministic.
MIN_CHUNK_COLUMNS = 4096
WGRAD_TILES = 264  # output tiles (64 x 64) to aim for: two waves of an H100's 132 SMs


def _image_chunks(n: int, og: int, rows: int, per_image: int) -> int:
    """Chunks of images (a divisor of ``n``) the weight gradient's sum is cut into."""
    tiles = max(1, -(-og // 64) * -(-rows // 64))  # at least one: no rows (no input channels) is a sum of none
    want = min(-(-WGRAD_TILES // tiles), (n * per_image) // MIN_CHUNK_COLUMNS, n)
    return max((d for d in range(1, max(want, 1) + 1) if n % d == 0), default=1)


def _conv_gemm_backward(ctx, g):
    w, cols = ctx.saved
    chunks = ctx.args[2]
    gw = gcols = None
    if ctx.needs[1]:
        gcols = matmul(sh.transpose(w, 1, 2), g)
    if ctx.needs[0]:
        if chunks == 1:
            gw = matmul(g, sh.transpose(cols, 1, 2))
        else:
            groups, og, ncols = g.shape
            c = ncols // chunks
            gc = sh.permute(sh.reshape(g, (groups, og, chunks, c)), (0, 2, 1, 3))             # (G, S, O/G, c)
            cc = sh.permute(sh.reshape(cols, (groups, cols.shape[1], chunks, c)), (0, 2, 3, 1))  # (G, S, c, rows)
            gw = red.sum(matmul(gc, cc), 1)  # the chunk sums, added in the reduction's fixed order
    return gw, gcols, None


@differentiable(_conv_gemm_backward, saves=(0, 1))
def _conv_gemm(w: Tensor, cols: Tensor, chunks: int) -> Tensor:
    """``w @ cols`` for (G, O/G, rows) and (G, rows, N*L), whose weight gradient sums ``chunks``
    chunks of images separately, then adds them in order."""
    return matmul(w, cols)


def _padding(padding, kernel, dilation, stride, op: str):
    """Symmetric (ph, pw) and, for 'same' with an odd total, the extra right padding (eh, ew)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', not {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple(t // 2 for t in total), tuple(t - 2 * (t // 2) for t in total)
    pad = pair(padding, "padding")
    if any(p < 0 for p in pad):
        raise ValueError(f"{op}: negative padding {pad}")
    return pad, (0, 0)


def _check_args(op, stride, dilation, groups):
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    if any(s < 1 for s in stride) or any(d < 1 for d in dilation):
        raise ValueError(f"{op}: stride {stride} and dilation {dilation} must be positive")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    return stride, dilation


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation) of ``x`` (N, C, H, W) or (C, H, W) with ``weight``
    (O, C/groups, KH, KW), as torch.nn.functional.conv2d."""
    _check_float("conv2d", x, weight, bias)
    unbatched = x.ndim == 3
    if unbatched:
        x = sh.unsqueeze(x, 0)
    if x.ndim != 4 or weight.ndim != 4:
        raise errors.ShapeError(f"conv2d takes a 3-D or 4-D input and a 4-D weight, got {x.shape} and {weight.shape}")
    stride, dilation = _check_args("conv2d", stride, dilation, groups)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    if c != cg * groups or o % groups or o == 0:
        raise errors.ShapeError(f"conv2d: weight {weight.shape} with groups={groups} does not fit an input of "
                                f"{c} channels (expected weight (O, {c // groups if c % groups == 0 else '?'}, kH, kW)"
                                f" with O divisible by {groups})")
    if bias is not None and bias.shape != (o,):
        raise errors.ShapeError(f"conv2d: bias of shape {bias.shape}, expected ({o},)")
    (ph, pw), extra = _padding(padding, (kh, kw), dilation, stride, "conv2d")
    if any(extra):
        from .spatial import pad as _pad  # 'same' with an even kernel: the extra column on the right
        x = _pad(x, (0, extra[1], 0, extra[0]))
        n, c, h, w = x.shape
    oh = out_size(h, kh, stride[0], ph, dilation[0])
    ow = out_size(w, kw, stride[1], pw, dilation[1])
    if oh <= 0 or ow <= 0:
        raise errors.ShapeError(f"conv2d: kernel ({kh}, {kw}) with dilation {dilation} is larger than the "
                                f"padded input ({h + 2 * ph}, {w + 2 * pw})")
    win = Window(kh, kw, oh, ow, stride[0], stride[1], ph, pw, dilation[0], dilation[1])
    from . import conv_implicit as ci  # its kernel gathers the columns as it goes (conv_implicit.py)
    if ci.use_implicit(x) and ci.launchable(x, weight, win):
        y = ci.conv2d_implicit(x, weight, win, groups)
        if bias is not None:
            y = y + sh.reshape(bias, (1, o, 1, 1))
        return sh.squeeze(y, 0) if unbatched else y
    rows = cg * kh * kw
    # One GEMM per group over all images at once, (O/G, rows) @ (rows, N*L): the weight's
    # gradient is one GEMM too (over K = N*L), with no sum over images after it.
    cols = sh.reshape(sh.permute(im2col(x, win, False), (1, 0, 2)), (groups, rows, n * oh * ow))
    y = sh.reshape(_conv_gemm(sh.reshape(weight, (groups, o // groups, rows)), cols, _image_chunks(n, o // groups, rows,
                                                                                            oh * ow)), (o, n * oh * ow))
    if bias is not None:
        y = y + sh.reshape(bias, (o, 1))  # its gradient: a sum along rows (the fast axis)
    y = sh.reshape(sh.permute(sh.reshape(y, (o, n, oh * ow)), (1, 0, 2)), (n, o, oh, ow))
    return sh.squeeze(y, 0) if unbatched else y


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """1-D convolution of ``x`` (N, C, L) or (C, L) with ``weight`` (O, C/groups, K), as torch."""
    _check_float("conv1d", x, weight, bias)
    if x.ndim not in (2, 3) or weight.ndim != 3:
        raise errors.ShapeError(f"conv1d takes a 2-D or 3-D input and a 3-D weight, got {x.shape} and {weight.shape}")
    pad = padding if isinstance(padding, str) else (0, pair(padding, "padding", 1)[0])
    y = conv2d(sh.unsqueeze(x, -2), sh.unsqueeze(weight, 2), bias, (1, pair(stride, "stride", 1)[0]), pad,
               (1, pair(dilation, "dilation", 1)[0]), groups)
    return sh.squeeze(y, -2)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, output_padding=0,
                     groups: int = 1, dilation=1) -> Tensor:
    """Transposed 2-D convolution (the gradient of conv2d with respect to its input) of ``x``
    (N, C, H, W) or (C, H, W) with ``weight`` (C, O/groups, KH, KW), as torch."""
    _check_float("conv_transpose2d", x, weight, bias)
    unbatched = x.ndim == 3
    if unbatched:
        x = sh.unsqueeze(x, 0)
    if x.ndim != 4 or weight.ndim != 4:
        raise errors.ShapeError(f"conv_transpose2d takes a 3-D or 4-D input and a 4-D weight, got {x.shape} and "
                                f"{weight.shape}")
    stride, dilation = _check_args("conv_transpose2d", stride, dilation, groups)
    pad, opad = pair(padding, "padding"), pair(output_padding, "output_padding")
    if any(p < 0 for p in pad + opad):
        raise ValueError(f"conv_transpose2d: negative padding {pad} or output_padding {opad}")
    if any(op >= s and op >= d for op, s, d in zip(opad, stride, dilation)):
        raise ValueError(f"conv_transpose2d: output_padding {opad} must be smaller than stride {stride} or "
                         f"dilation {dilation}")
    n, c, h, w = x.shape
    cw, og, kh, kw = weight.shape
    if cw != c or c % groups or og == 0:
        raise errors.ShapeError(f"conv_transpose2d: weight {weight.shape} with groups={groups} does not fit an "
                                f"input of {c} channels (expected weight ({c}, O/groups, kH, kW))")
    o = og * groups
    if bias is not None and bias.shape != (o,):
        raise errors.ShapeError(f"conv_transpose2d: bias of shape {bias.shape}, expected ({o},)")
    hout = (h - 1) * stride[0] - 2 * pad[0] + dilation[0] * (kh - 1) + opad[0] + 1
    wout = (w - 1) * stride[1] - 2 * pad[1] + dilation[1] * (kw - 1) + opad[1] + 1
    if hout <= 0 or wout <= 0:
        raise errors.ShapeError(f"conv_transpose2d: output size ({hout}, {wout}) is not positive")
    win = Window(kh, kw, h, w, stride[0], stride[1], pad[0], pad[1], dilation[0], dilation[1])
    cg, rows = c // groups, og * kh * kw
    # One GEMM per group over all images: (O/G * K, C/G) @ (C/G, N*L), then col2im.
    xg = sh.reshape(sh.permute(sh.reshape(x, (n, groups, cg, h * w)), (1, 2, 0, 3)), (groups, cg, n * h * w))
    wg = sh.transpose(sh.reshape(weight, (groups, cg, rows)), 1, 2)
    cols = sh.permute(sh.reshape(matmul(wg, xg), (o * kh * kw, n, h * w)), (1, 0, 2))
    y = col2im(cols, (o, hout, wout), win)
    if bias is not None:
        y = y + sh.reshape(bias, (1, o, 1, 1))
    return sh.squeeze(y, 0) if unbatched else y


def conv_transpose1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, output_padding=0,
                     groups: int = 1, dilation=1) -> Tensor:
    """Transposed 1-D convolution of ``x`` (N, C, L) or (C, L) with ``weight`` (C, O/groups, K), as torch."""
    _check_float("conv_transpose1d", x, weight, bias)
    if x.ndim not in (2, 3) or weight.ndim != 3:
        raise errors.ShapeError(f"conv_transpose1d takes a 2-D or 3-D input and a 3-D weight, got {x.shape} and "
                                f"{weight.shape}")
    one = lambda v, name: (1 if name != "padding" else 0, pair(v, name, 1)[0])  # noqa: E731
    y = conv_transpose2d(sh.unsqueeze(x, -2), sh.unsqueeze(weight, 2), bias, one(stride, "stride"),
                         one(padding, "padding"), (0, pair(output_padding, "output_padding", 1)[0]), groups,
                         one(dilation, "dilation"))
    return sh.squeeze(y, -2)


def conv_flops(n, c, o, oh, ow, kh, kw, groups=1) -> int:
    """Multiply-adds times two of a convolution's forward."""
    return 2 * n * o * oh * ow * (c // groups) * kh * kw


__all__ = ["Window", "col2im", "conv1d", "conv2d", "conv_flops", "conv_transpose1d", "conv_transpose2d", "im2col",
           "out_size", "pair"]

