"""Matrix products: 2-D, batched with broadcasting, 1-D promoted as numpy does.

Operands may be strided views (a transpose costs nothing); 16-bit dtypes are
read as storage and accumulated in fp32 (``matmul/matmul_tiled.comp``). On a
device with VK_KHR_cooperative_matrix and a 16x16x16 float16 shape, float16
products of multiples of 16 use the matrix units (``matmul/matmul_coopmat.comp``).
"""

from __future__ import annotations

import math
from importlib import resources

from .. import errors
from ..autograd.graph import differentiable
from ..runtime import KernelSpec
from . import elementwise as ew
from . import reduce
from . import shape as sh
from .pointwise import broadcast_shapes
from .tensor import Tensor, contiguous_like

_BINDINGS = [("O", "write", "O"), ("A", "read", "A"), ("B", "read", "B")]
_PUSH = [("M", "I"), ("N", "I"), ("K", "I"), ("off_a", "I"), ("off_b", "I"), ("off_o", "I"), ("sa_b", "i"),
         ("sa_m", "i"), ("sa_k", "i"), ("sb_b", "i"), ("sb_k", "i"), ("sb_n", "i")]
TILED = KernelSpec(resources.files(__package__) / "matmul" / "matmul_tiled.comp", _BINDINGS, _PUSH)
COOPMAT = KernelSpec(resources.files(__package__) / "matmul" / "matmul_coopmat.comp", _BINDINGS, _PUSH)
DIRECT = KernelSpec(resources.files(__package__) / "matmul" / "matmul_direct.comp", _BINDINGS, _PUSH)
# Tiles of the shared-memory kernel: (BM, BN, BK, TM, TN). The large one does four times the
# work per shared-memory load; it is used where its workgroups still fill a big GPU.
TILES = {"small": (64, 64, 16, 4, 4), "wide": (64, 64, 16, 8, 8), "large": (128, 128, 8, 8, 8)}
LARGE_TILE_MIN_GROUPS = 256
DIRECT_TILE = 32
# A name from TILES: that tile everywhere, CPU devices included (the tests cover each tile).
FORCE_TILE: str | None = None
MAX_BATCH = 65535


def _batch_stride(t: Tensor, batch_shape) -> tuple[Tensor, int]:
    """One stride that walks ``t``'s (broadcast) batch dims, copying ``t`` if none does."""
    nb = len(batch_shape)
    if nb == 0:
        return t, 0
    expanded = sh.expand(t, tuple(batch_shape) + t.shape[-2:])
    strides = expanded.strides[:nb]
    dims = [(s, st) for s, st in zip(batch_shape, strides) if s != 1]
    ok = all(dims[i][1] == dims[i + 1][1] * dims[i + 1][0] for i in range(len(dims) - 1))
    if ok:
        return expanded, dims[-1][1] if dims else 0
    full = ew.copy(expanded)
    return full, full.strides[nb - 1]


def _matmul_backward(ctx, g):
    a, b = ctx.saved
    a2 = sh.unsqueeze(a, 0) if a.ndim == 1 else a
    b2 = sh.unsqueeze(b, 1) if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = sh.unsqueeze(g2, -2 if b.ndim > 1 else -1)
    if b.ndim == 1:
        g2 = sh.unsqueeze(g2, -1)
    ga = gb = None
    if ctx.needs[0]:
        ga = reduce.sum_to_shape(matmul(g2, sh.transpose(b2, -1, -2)), a2.shape).reshape(a.shape)
    if ctx.needs[1]:
        gb = reduce.sum_to_shape(matmul(sh.transpose(a2, -1, -2), g2), b2.shape).reshape(b.shape)
    return ga, gb, None


@differentiable(_matmul_backward, saves=(0, 1))
def matmul(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``a @ b`` with numpy's rules; ``out`` (contiguous, of the result's shape) is written if given.

    Example::

        c = hv.randn(8, 32, 64) @ hv.randn(64, 16)     # (8, 32, 16)
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"matmul needs two tensors, got {type(a).__name__} and {type(b).__name__}")
    rt = a.runtime
    key = ("matmul", FORCE_TILE, a.buf.geometry, b.buf.geometry, None if out is None else out.buf.geometry)
    plan = rt.plans.get(key)
    if plan is not None:  # the same operand layouts as before: the kernel, push constants and grid are known
        kernel, push, groups, shape, strides, nbytes, final_shape = plan
        c = Tensor(rt.memory.fresh(shape, a.dtype, strides, nbytes), rt) if out is None else out
        rt.run(kernel, [c.buf, a.buf, b.buf], push, groups)
        return c if final_shape == shape else c.reshape(final_shape)
    return _matmul(rt, key, a, b, out)


def _matmul(rt, key, a: Tensor, b: Tensor, out: Tensor | None) -> Tensor:
    if a.dtype is not b.dtype:
        raise errors.DTypeError(f"matmul: dtypes {a.dtype.name} and {b.dtype.name} do not match")
    if not a.dtype.is_float:
        raise errors.DTypeError(f"matmul needs floating-point tensors, not {a.dtype.name}")
    if a.ndim == 0 or b.ndim == 0:
        raise errors.ShapeError(f"matmul needs at least 1-D operands, got shapes {a.shape} and {b.shape}")
    a2 = sh.unsqueeze(a, 0) if a.ndim == 1 else a
    b2 = sh.unsqueeze(b, 1) if b.ndim == 1 else b
    M, K = a2.shape[-2:]
    K2, N = b2.shape[-2:]
    if K != K2:
        raise errors.ShapeError(f"matmul: shapes {a.shape} and {b.shape} do not fit ({K} != {K2})")
    batch_shape = broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    shape = batch_shape + (M, N)
    final_shape = batch_shape + ((M,) if a.ndim > 1 else ()) + ((N,) if b.ndim > 1 else ())
    if out is None:
        c = contiguous_like(shape, a.dtype, rt)
    else:
        if out.shape != final_shape or not out.is_contiguous() or out.dtype is not a.dtype:
            raise errors.ShapeError(f"out must be a contiguous {a.dtype.name} tensor of shape {final_shape}")
        c = out.reshape(shape)
    batch = math.prod(batch_shape)
    if M * N * batch == 0:
        return c.reshape(final_shape)
    if K == 0:
        ew.launch("CT(0)", [c], out=c)
        return c.reshape(final_shape)
    if batch > MAX_BATCH:
        raise errors.LimitExceededError(f"matmul over {batch} batches; at most {MAX_BATCH} in one launch")
    a3, sa_b = _batch_stride(a2, batch_shape)
    b3, sb_b = _batch_stride(b2, batch_shape)
    defines = {"CT": "float", "OCT": "float"}
    dtypes = {"O": a.dtype, "A": a.dtype, "B": b.dtype}
    offsets = [t.buf.byte_offset // t.dtype.itemsize for t in (a3, b3, c)]
    if _coopmat_fits(rt, a.dtype, M, N, K, a3, b3, offsets, sa_b, sb_b):
        kernel, tile = rt.kernels.get(COOPMAT, defines, dtypes, (32, 4, 1), target_env="vulkan1.3"), 64
    elif rt.device.physical.type == "cpu" and FORCE_TILE is None:
        kernel, tile = rt.kernels.get(DIRECT, defines, dtypes, (8, 8, 1)), DIRECT_TILE
    else:
        # Transposed views are loaded along their contiguous dimension.
        layout = {"A_COLS": int(a3.strides[-1] != 1 and a3.strides[-2] == 1),
                  "B_COLS": int(b3.strides[-1] != 1 and b3.strides[-2] == 1)}
        kernel, tile = _tiled_kernel(rt, {**defines, **layout}, dtypes, M, N, batch)
    bufs = [c.buf, a3.buf, b3.buf]
    push = kernel.spec.pack(bufs, {"M": M, "N": N, "K": K, "sa_b": sa_b, "sa_m": a3.strides[-2],
                                   "sa_k": a3.strides[-1], "sb_b": sb_b, "sb_k": b3.strides[-2],
                                   "sb_n": b3.strides[-1]})
    groups = (-(-N // tile), -(-M // tile), batch)
    rt.run(kernel, bufs, push, groups)
    # Operands read in place (views, no copies) make a plan: the next call with these layouts skips all of the above.
    in_place = all(x.buf._allocation is y.buf._allocation and x.buf.byte_offset == y.buf.byte_offset
                   for x, y in ((a3, a), (b3, b)))
    if in_place and (out is None or final_shape == shape):
        rt.plans[key] = (kernel, push, groups, shape, c.strides, c.buf.nbytes, final_shape)
    return c.reshape(final_shape)


def _tiled_kernel(rt, defines, dtypes, M, N, batch):
    big = TILES["large"][0]
    name = FORCE_TILE or ("large" if -(-M // big) * -(-N // big) * batch >= LARGE_TILE_MIN_GROUPS else "small")
    bm, bn, bk, tm, tn = TILES[name]
    tile_defines = {**defines, "BM": bm, "BN": bn, "BK": bk, "TM": tm, "TN": tn}
    return rt.kernels.get(TILED, tile_defines, dtypes, (bn // tn, bm // tm, 1)), bm


def coopmat_available(rt) -> bool:
    """The device runs the float16 cooperative-matrix kernel: 16x16x16, fp16 in, fp32 accumulate, subgroup 32."""
    info = rt.ctx.physical_device
    return (rt.device.enabled_features.get("cooperative_matrix", False) and info.limits["subgroup_size"] == 32
            and any(s["M"] == s["N"] == s["K"] == 16 and s["a"] == s["b"] == "float16" and s["c"] == "float32"
                    and s["scope"] == 3 for s in info.cooperative_matrix_shapes))


def _coopmat_fits(rt, dtype, M, N, K, a3, b3, offsets, sa_b, sb_b) -> bool:
    # Cooperative loads read whole 16x16 fragments from rows 16-byte aligned.
    return (dtype.name == "float16" and M % 16 == 0 and N % 16 == 0 and K % 16 == 0
            and a3.strides[-1] == 1 and b3.strides[-1] == 1 and a3.strides[-2] % 8 == 0 and b3.strides[-2] % 8 == 0
            and sa_b % 8 == 0 and sb_b % 8 == 0 and all(o % 8 == 0 for o in offsets) and coopmat_available(rt))
