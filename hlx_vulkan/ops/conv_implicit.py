"""conv2d as an implicit GEMM (``conv/conv_implicit.comp``): the matmul's register-tiled loop with
the image tile gathered from the NCHW input as it is loaded, so no column matrix is written and
the output lands in NCHW directly (no layout copy).

The forward's bits equal the im2col path's (the same products in the same order: matmul.py's
"Order" over K = C/groups * KH * KW). The input's gradient is the same kernel run on the output
gradient with the flipped, transposed weight (K = O/groups * KH * KW, in (o, kh, kw) order), once
per phase of a strided convolution (see :func:`_input_grad`). The weight's gradient is the
kernel's MODE 1: dy against the gathered columns, its sum over N*OH*OW pixels cut into chunks
fixed by the shapes (:func:`_wgrad_chunks`) and added in chunk order.

:data:`IMPL` (from ``HLX_CONV_IMPL``) picks the path: ``"implicit"`` or ``"im2col"`` everywhere,
``"auto"`` (default) the implicit kernel on GPUs and im2col (whose GEMM has a CPU kernel) on
CPU devices and for 16-bit dtypes that the GEMM runs on cooperative matrices. Strict mode and
what the kernel does not cover (32-bit index overflow) take im2col.
"""

from __future__ import annotations

import math
import os
from importlib import resources

from ..autograd.graph import differentiable
from ..memory import float32
from ..runtime import KernelSpec
from ..strict_mode import is_strict
from . import elementwise as ew
from . import matmul as mm
from . import shape as sh
from .conv import Window, _image_chunks, col2im, im2col
from .creation import zeros
from .indexing import flip
from .tensor import Tensor, contiguous_like
from .matmul import matmul
from . import reduce as red

_PUSH = [("off_o", "I"), ("off_a", "I"), ("off_b", "I"), ("OG", "i"), ("K", "i"), ("NL", "i"), ("L", "i"), ("OW", "i"),
         ("CO", "i"), ("H", "i"), ("W", "i"), ("ph", "i"), ("pw", "i"), ("sn", "i"), ("sc", "i"), ("sh", "i"),
         ("sw", "i"), ("cg", "i"), ("kc", "I"), ("nsplit", "I")]
IMPLICIT = KernelSpec(resources.files(__package__) / "conv" / "conv_implicit.comp",
                      [("O", "write", "O"), ("A", "read", "A"), ("B", "read", "B")], _PUSH)
# (BM, BN, BK, TM, TN, PAD) as matmul.TILES, BN a divisor of the thread count: small and large as
# matmul's were when these were measured on the H100 (matmul's large has BK 16 since; this kernel's
# has not been timed so), and for layers of 64 channels (ResNet's first stage), 64 output channels
# by 128 pixels (128 threads of 8 x 8, as "large") or by 256 pixels (256 threads of 4 x 16).
TILES = {"small": (64, 64, 16, 4, 4, 1), "large": (128, 128, 8, 8, 8, 1), "mid": (64, 128, 8, 8, 8, 1),
         "wide": (64, 256, 8, 4, 16, 1)}
# The weight gradient's sum over pixels is cut into chunks (see _wgrad_chunks).
WGRAD_TILES = 1056  # 64 x 64 output tiles times chunks to aim for: eight per SM of an H100
MIN_WGRAD_CHUNK = 1024
# The tile choice (_tile): relative speed of each tile's arithmetic (its outputs per thread), in
# order of preference; workgroup slots of the GPU (two 256-thread workgroups on each of 132 SMs).
TILE_SPEED = {"large": 1.0, "mid": 1.0, "wide": 1.0, "small": 0.75}
GRID_SLOTS = 264
FORCE_TILE: str | None = None  # a name from TILES for every launch (tests, benchmarks)
IMPLS = ("auto", "implicit", "im2col")
IMPL = os.environ.get("HLX_CONV_IMPL", "auto")
MAX_INDEX = 2**31 - 1


def use_implicit(x: Tensor) -> bool:
    """Whether conv2d on ``x`` takes the implicit kernel (see :data:`IMPL`)."""
    if IMPL not in IMPLS:
        raise ValueError(f"hlx_vulkan.ops.conv_implicit.IMPL (HLX_CONV_IMPL) is {IMPL!r}; one of {IMPLS}")
    if IMPL == "im2col" or is_strict():
        return False
    if IMPL == "implicit":
        return True
    # 16-bit products on cooperative matrices (the im2col path's GEMM) beat this kernel's fp32 fma.
    return x.runtime.device.physical.type != "cpu" and not mm.coopmat_available(x.runtime, x.dtype)


def _fits(*tensors) -> bool:
    return all(t.buf.span_bytes // t.dtype.itemsize <= MAX_INDEX for t in tensors)


def _launch(x: Tensor, w: Tensor, win: Window, groups: int) -> Tensor:
    """y (N, O, OH, OW), contiguous, of x (N, C, H, W; any strides) and contiguous w (O, C/G, KH, KW)."""
    rt = x.runtime
    n, c, h, wd = x.shape
    o = w.shape[0]
    og, k = o // groups, w.shape[1] * win.taps
    L = win.oh * win.ow
    y = contiguous_like((n, o, win.oh, win.ow), x.dtype, rt)
    kc = mm.chunk_length(k, x.dtype)
    nsplit = -(-k // kc)
    tile = _tile(rt, og, n * L, groups * nsplit)
    bm, bn, bk, tm, tn, pad = TILES[tile]
    off_a, off_o = w.buf.byte_offset // w.dtype.itemsize, y.buf.byte_offset // y.dtype.itemsize
    split = nsplit > 1
    threads = (bm // tm) * (bn // tn)
    defines = {"MODE": 0, "CT": "float", "OCT": "float", "BM": bm, "BN": bn, "BK": bk, "TM": tm, "TN": tn, "PAD": pad,
               "KH": win.kh, "KW": win.kw, "SH": win.sh, "SW": win.sw, "DH": win.dh, "DW": win.dw,
               "A_VEC": int(k % 4 == 0 and off_a % 4 == 0 and bm * bk % (4 * threads) == 0),
               "O_VEC": int(L % 4 == 0 and (split or off_o % 4 == 0)),
               "SPLIT": int(split)}
    dtypes = {"O": float32 if split else x.dtype, "A": w.dtype, "B": x.dtype}
    kernel = rt.kernels.get(IMPLICIT, defines, dtypes, (bn // tn, bm // tm, 1))
    out = contiguous_like((nsplit, n, o, win.oh, win.ow), float32, rt) if split else y
    sn, sc, sh_, sw = x.strides
    fields = {"OG": og, "K": k, "NL": n * L, "L": L, "OW": win.ow, "CO": o, "H": h, "W": wd, "ph": win.ph,
              "pw": win.pw, "sn": sn, "sc": sc, "sh": sh_, "sw": sw, "cg": c // groups, "kc": kc, "nsplit": nsplit}
    grid = (-(-(n * L) // bn), -(-og // bm), groups * nsplit)
    rt.run(kernel, {"O": out.buf, "A": w.buf, "B": x.buf}, fields, grid)
    if split:
        reduce_kernel = rt.kernels.get(mm.SPLITK, {"CT": "float", "OCT": "float"}, {"O": x.dtype})
        total = n * o * L
        rt.run(reduce_kernel, {"O": y.buf, "P": out.buf}, {"n": total, "nsplit": nsplit}, total)
    return y


def _wgrad_chunks(og: int, k: int, nl: int, groups: int) -> tuple[int, int]:
    """(chunk length, chunks) of the weight gradient's sum over the N*OH*OW pixels: enough chunks
    for WGRAD_TILES output tiles of 64 x 64 in all, each chunk at least MIN_WGRAD_CHUNK pixels and
    a multiple of 64 long. From the shapes alone: the order (the bits) is the device's and the tile's."""
    tiles = -(-og // 64) * -(-k // 64) * groups
    want = max(1, min(-(-WGRAD_TILES // tiles), nl // MIN_WGRAD_CHUNK))
    kc = -(-nl // (want * 64)) * 64
    return kc, -(-nl // kc)


def _launch_wgrad(dy: Tensor, x: Tensor, win: Window, groups: int, wshape) -> Tensor:
    """dW (O, C/G, KH, KW) of dy (N, O, OH, OW; contiguous) and x (N, C, H, W; any strides)."""
    rt = x.runtime
    n, c, h, wd = x.shape
    o = dy.shape[1]
    og, k, L = o // groups, wshape[1] * win.taps, win.oh * win.ow
    kc, nsplit = _wgrad_chunks(og, k, n * L, groups)
    split = nsplit > 1
    tile = _tile(rt, og, k, groups * nsplit)
    bm, bn, bk, tm, tn, pad = TILES[tile]
    dw = contiguous_like(tuple(wshape), x.dtype, rt)
    out = contiguous_like((nsplit,) + tuple(wshape), float32, rt) if split else dw
    defines = {"MODE": 1, "CT": "float", "OCT": "float", "BM": bm, "BN": bn, "BK": bk, "TM": tm, "TN": tn,
               "PAD": pad, "KH": win.kh, "KW": win.kw, "SH": win.sh, "SW": win.sw, "DH": win.dh, "DW": win.dw,
               "A_VEC": 0, "O_VEC": int(k % 4 == 0 and out.buf.byte_offset // out.dtype.itemsize % 4 == 0),
               "SPLIT": int(split)}
    kernel = rt.kernels.get(IMPLICIT, defines, {"O": out.dtype, "A": dy.dtype, "B": x.dtype}, (bn // tn, bm // tm, 1))
    sn, sc, sh_, sw = x.strides
    fields = {"OG": og, "K": k, "NL": n * L, "L": L, "OW": win.ow, "CO": o, "H": h, "W": wd, "ph": win.ph,
              "pw": win.pw, "sn": sn, "sc": sc, "sh": sh_, "sw": sw, "cg": c // groups, "kc": kc, "nsplit": nsplit}
    rt.run(kernel, {"O": out.buf, "A": dy.buf, "B": x.buf}, fields, (-(-k // bn), -(-og // bm), groups * nsplit))
    if split:
        reduce_kernel = rt.kernels.get(mm.SPLITK, {"CT": "float", "OCT": "float"}, {"O": x.dtype})
        total = o * k
        rt.run(reduce_kernel, {"O": dw.buf, "P": out.buf}, {"n": total, "nsplit": nsplit}, total)
    return dw


def _tile(rt, rows: int, cols: int, batch: int) -> str:
    """FORCE_TILE; on CPU devices the small tile; else the tile of least estimated cost for a
    rows x cols output (times ``batch`` groups and chunks): the padded area over the tile's
    relative speed, scaled up where the grid does not fill GRID_SLOTS workgroup slots."""
    if FORCE_TILE is not None:
        return FORCE_TILE
    if rt.device.physical.type == "cpu":
        return "small"
    best = None
    for name, speed in TILE_SPEED.items():
        bm, bn = TILES[name][:2]
        tm, tn = -(-rows // bm), -(-cols // bn)
        cost = tm * bm * tn * bn / speed * max(1.0, GRID_SLOTS / (tm * tn * batch))
        if best is None or cost < best[0]:
            best = (cost, name)
    return best[1]


def launchable(x: Tensor, w: Tensor, win: Window) -> bool:
    """The kernel indexes these tensors and their output in 32 bits."""
    n, _, _, _ = x.shape
    if n * win.oh * win.ow * w.shape[1] == 0:  # nothing to sum or nothing to write: the im2col path's business
        return False
    out = n * w.shape[0] * win.oh * win.ow * max(1, -(-w.shape[1] * win.taps // mm.chunk_length(
        w.shape[1] * win.taps, x.dtype)))
    return _fits(x, w) and out <= MAX_INDEX


def _flipped(w: Tensor, groups: int) -> Tensor:
    """The weight of the input gradient's convolution: (C, O/G, KH, KW), w[o, c] flipped in (kh, kw)."""
    o, cg, kh, kw = w.shape
    wg = sh.permute(sh.reshape(w, (groups, o // groups, cg, kh, kw)), (0, 2, 1, 3, 4))
    return sh.reshape(flip(wg, (3, 4)).contiguous(), (groups * cg, o // groups, kh, kw))


def _phase_taps(r: int, s: int, p: int, d: int, k: int, size: int):
    """Phase ``r`` of one axis of the input gradient (positions r, r + s, ...; ``size`` of them
    in all): (outputs, first tap, tap step, taps, padding, dilation) of the stride-1 convolution
    of dy that gives it. Position r + s*i takes the taps t with (r + p - t*d) % s == 0, which
    read dy at (r + s*i + p - t*d) / s: every s/gcd(s, d)-th tap, dy's positions d/gcd(s, d) apart."""
    outputs = len(range(r, size, s))
    first = next((t for t in range(k) if (r + p - t * d) % s == 0), None)
    if first is None or outputs == 0:
        return outputs, 0, 1, 0, 0, 1
    step = s // math.gcd(s, d)
    taps = len(range(first, k, step))
    dil = d // math.gcd(s, d)
    return outputs, first, step, taps, (taps - 1) * dil - (r + p - first * d) // s, dil


def _input_grad(g: Tensor, w: Tensor, win: Window, groups: int, shape) -> Tensor | None:
    """dx (N, C, H, W) of dy (N, O, OH, OW) by the implicit kernel, or None where it does not fit.
    Each of the SH x SW phases of dx (rows rh + SH*i, columns rw + SW*j) is a stride-1 convolution
    of dy with the weight's taps that reach it, flipped (its K order: o, then the taps): no
    products with the zeros a strided convolution's adjoint would insert."""
    n, c, h, wd = shape
    kh, kw = w.shape[2:]
    phases = []
    for rh in range(win.sh):
        ah = _phase_taps(rh, win.sh, win.ph, win.dh, kh, h)
        for rw in range(win.sw):
            aw = _phase_taps(rw, win.sw, win.pw, win.dw, kw, wd)
            if ah[0] and aw[0]:
                phases.append((rh, rw, ah, aw))
    runs = []
    for rh, rw, ah, aw in phases:
        if ah[3] and aw[3]:
            wp = w[:, :, ah[1]::ah[2], aw[1]::aw[2]]
            back = Window(ah[3], aw[3], ah[0], aw[0], 1, 1, ah[4], aw[4], ah[5], aw[5])
            wf = _flipped(wp, groups)
            if not launchable(g, wf, back):
                return None
            runs.append((rh, rw, wf, back))
    if win.sh == win.sw == 1:
        return _launch(g, runs[0][2], runs[0][3], groups)
    whole = len(runs) == win.sh * win.sw
    dx = (contiguous_like((n, c, h, wd), g.dtype, g.runtime) if whole  # every place written
          else zeros(n, c, h, wd, dtype=g.dtype, runtime=g.runtime))
    for rh, rw, wf, back in runs:
        ew.copy(_launch(g, wf, back, groups), out=dx[:, :, rh::win.sh, rw::win.sw])
    return dx


def _backward(ctx, g):
    x, w = ctx.saved
    win, groups = ctx.args[2], ctx.args[3]
    n, c, h, wd = ctx.shapes[0]
    o, cg, kh, kw = ctx.shapes[1]
    og, rows, L = o // groups, cg * kh * kw, win.oh * win.ow
    g3 = None
    gx = gw = None
    if ctx.needs[0]:
        gx = _input_grad(g, w, win, groups, (n, c, h, wd))
        if gx is None:
            g3 = sh.reshape(sh.permute(sh.reshape(g, (n, groups, og, L)), (1, 2, 0, 3)), (groups, og, n * L))
            gcols = matmul(sh.transpose(sh.reshape(w, (groups, og, rows)), 1, 2), g3)       # (G, rows, N*L)
            gx = col2im(sh.permute(sh.reshape(gcols, (c * kh * kw, n, L)), (1, 0, 2)), (c, h, wd), win)
    if ctx.needs[1] and _fits(x) and o * cg * kh * kw * _wgrad_chunks(og, rows, n * L, groups)[1] <= MAX_INDEX:
        gw = _launch_wgrad(g if g.is_contiguous() else g.contiguous(), x, win, groups, (o, cg, kh, kw))
    elif ctx.needs[1]:
        if g3 is None:
            g3 = sh.reshape(sh.permute(sh.reshape(g, (n, groups, og, L)), (1, 2, 0, 3)), (groups, og, n * L))
        cols = sh.reshape(sh.permute(im2col(x, win, False), (1, 0, 2)), (groups, rows, n * L))
        chunks = _image_chunks(n, og, rows, L)
        if chunks == 1:
            gw = matmul(g3, sh.transpose(cols, 1, 2))
        else:
            cl = n * L // chunks
            gc = sh.permute(sh.reshape(g3, (groups, og, chunks, cl)), (0, 2, 1, 3))
            cc = sh.permute(sh.reshape(cols, (groups, rows, chunks, cl)), (0, 2, 3, 1))
            gw = red.sum(matmul(gc, cc), 1)
        gw = sh.reshape(gw, (o, cg, kh, kw))
    return gx, gw, None, None


@differentiable(_backward, saves=(0, 1))
def conv2d_implicit(x: Tensor, w: Tensor, win: Window, groups: int) -> Tensor:
    """The convolution of ``x`` (N, C, H, W; any strides) with ``w`` (O, C/groups, KH, KW) under
    ``win``: (N, O, OH, OW), contiguous. The caller checks shapes and :func:`launchable`."""
    return _launch(x, w.contiguous(), win, groups)


__all__ = ["FORCE_TILE", "IMPL", "IMPLS", "TILES", "conv2d_implicit", "launchable", "use_implicit"]
