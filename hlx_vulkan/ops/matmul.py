"""Matrix products: 2-D, batched with broadcasting, 1-D promoted as numpy does.

Operands may be strided views (a transpose costs nothing). Kernels (in ``matmul/``):

- ``matmul_tiled.comp``: register-tiled, for every float dtype (16-bit ones read as storage
  and accumulated in float32); a tile from :data:`TILES` by problem size; 4-element vector
  loads where the operands are aligned (scalar loads otherwise).
- ``matmul_coopmat.comp``: float16 and bfloat16 on cooperative matrices (16x16x16, float32
  accumulation), where the device has them; a tile from :data:`COOP_TILES`; any shape and
  strides (edges and unaligned operands go through guarded loads into shared memory).
- ``matmul_cm2.comp``: float16 and bfloat16 on workgroup-scope cooperative matrices
  (VK_NV_cooperative_matrix2: tensor-addressed loads the driver stages itself), where the
  device has them, the glslang library compiles them and strict mode is off; a tile from
  :data:`CM2_TILES`. Its operands need a unit stride in one of their two matrix dimensions
  (others are copied first); where its kernel fails to build, coopmat-1 serves instead.
- ``matmul_direct.comp``: CPU devices (lavapipe), where workgroup barriers cost more than
  the loads they save.
- ``matmul_splitk.comp``: the second pass of split-K where it runs as two dispatches (below).

Order. Each output's reduction over k depends on K (and the dtype) alone. K is cut into
chunks of :func:`chunk_length` values (one chunk up to :data:`CHUNK_K`, at most
:data:`MAX_CHUNKS` beyond); each chunk is summed with k ascending from zero (one fma a step in
float32, or one 16x16x16 multiply-add per 16 values of k on cooperative matrices), and the
chunk sums are added in chunk order. Where K has several chunks the product is split-K:
each chunk is a workgroup of its own writing a float32 partial; in a product of at most
:data:`ELECT_MAX_OUTPUTS` outputs the last of a tile's workgroups to finish (elected by an
integer count, ``matmul/elect.glsl``) adds the tile's partials in chunk order, in a larger one
``matmul_splitk.comp`` adds them in a second dispatch, with the same bits; no floating-point
atomics (the CPU kernel does the same sums in one pass). No choice made from M, N or the batch
(tile, vector or scalar loads, one dispatch or two) changes an output's bits, so a row of the
result does not depend on how many rows (or batches) the product has. The three float32
kernels give the same bits as one another; the cooperative-matrix kernel (whose multiply-adds
round differently) serves every 16-bit product on a device that has it, whatever its shape or
strides: matmul_cm2.comp where the device has cooperative matrices 2 (its steps of BK
multiply-adds in k order; whether its tiles give the same bits as one another, and as
coopmat-1, benchmarks/check_gemm_cm2.py checks on the device), else matmul_coopmat.comp.

Forcing (tests, benchmarks): :data:`FORCE_TILE` names a tile of :data:`TILES` (the tiled
kernel for every dtype, CPU devices included), of :data:`COOP_TILES` (coopmat-1, for what runs
on cooperative matrices) or of :data:`CM2_TILES` (matmul_cm2.comp where the device has it,
whether or not it lists the tile's shape); :data:`CHUNK_K` and :data:`MAX_CHUNKS` set the chunk
length (which changes the order, hence the bits); :data:`SPLIT_ONE_DISPATCH` False runs split-K
as two dispatches (same bits).
"""

from __future__ import annotations

import functools
import math
import os
from importlib import resources

from .. import errors, glslang_library
from ..autograd.graph import _state as _grad
from ..autograd.graph import differentiable, tape
from ..memory.tensor import TensorBuffer
from ..memory import float32
from ..strict_mode import _state as _strict
from ..strict_mode import is_strict
from ..runtime import KernelSpec
from . import election
from . import elementwise as ew
from . import reduce
from . import shape as sh
from .pointwise import broadcast_shapes
from .tensor import Tensor, contiguous_like

_BINDINGS = [("O", "write", "O"), ("A", "read", "A"), ("B", "read", "B")]
_PUSH = [("M", "I"), ("N", "I"), ("K", "I"), ("off_a", "I"), ("off_b", "I"), ("off_o", "I"), ("sa_b", "i"),
         ("sa_m", "i"), ("sa_k", "i"), ("sb_b", "i"), ("sb_k", "i"), ("sb_n", "i"), ("kc", "I"), ("nbatch", "I")]
_DIR = resources.files(__package__) / "matmul"
TILED = KernelSpec(_DIR / "matmul_tiled.comp", _BINDINGS, _PUSH)
COOPMAT = KernelSpec(_DIR / "matmul_coopmat.comp", _BINDINGS, _PUSH)
CM2 = KernelSpec(_DIR / "matmul_cm2.comp", _BINDINGS, _PUSH)
DIRECT = KernelSpec(_DIR / "matmul_direct.comp", _BINDINGS, _PUSH)
SPLITK = KernelSpec(_DIR / "matmul_splitk.comp", [("O", "write", "O"), ("P", "read")],
                    [("n", "I"), ("nsplit", "I"), ("off_o", "I"), ("off_p", "I")])
# The kernels built with BIAS 1 (matmul/epilogue.glsl, a linear layer's bias added as the product is
# stored) and with SPLIT 2 (matmul/elect.glsl, split-K in one dispatch): their extra buffers bound
# after the kernel's own, their places after its push fields.
_BIASED: dict[KernelSpec, KernelSpec] = {}
_ELECTED: dict[KernelSpec, KernelSpec] = {}


def _extended(cache: dict, spec: KernelSpec, bindings: list, fields: list) -> KernelSpec:
    """``spec`` with ``bindings`` and push ``fields`` after its own (made once, kept in ``cache``)."""
    got = cache.get(spec)
    if got is None:
        own = [(n, r, spec.slots[n]) if n in spec.slots else (n, r) for n, r in spec.bindings]
        got = cache[spec] = KernelSpec(spec.path, own + bindings, list(spec.fields) + fields)
    return got


def _biased(spec: KernelSpec) -> KernelSpec:
    cols = [("cols", "I")] if spec is SPLITK else []  # the split-K pass finds a column as i % cols
    return _extended(_BIASED, spec, [("Z", "read", "O")], cols + [("off_z", "I"), ("sz", "i")])


def _elected(spec: KernelSpec) -> KernelSpec:
    return _extended(_ELECTED, spec, [("P", "write"), ("C", "readwrite")], [("off_p", "I"), ("off_c", "I")])


# Register tiles of matmul_tiled.comp: (BM, BN, BK, TM, TN, PAD), 256 threads each, shared rows
# padded by PAD 16-byte vectors (the two big tiles' are not: on the H100 padding changed nothing,
# and so the large tile's 32 KiB fits lavapipe; the huge one's 48 KiB halves its BK there, see
# _tiled_k_step). Measured on an H100 (benchmarks/NOTES.md, eighth stop): the huge tile from 128
# workgroups up (2048^2 outputs: 0.81 of cuBLAS against the large tile's 0.77), the small one
# below (the MLP's 512x1024 products); the large one where forced.
TILES = {"small": (64, 64, 16, 4, 4, 1), "large": (128, 128, 16, 8, 8, 0), "huge": (128, 256, 16, 8, 16, 0)}
# Tiles of matmul_coopmat.comp: (SGM, SGN, FM, FN, BK, STAGES): SGM x SGN subgroups of 32,
# each FM x FN 16x16 fragments; BK values of k a step; STAGES shared buffers. The large one
# (four subgroups of 64x64) from 256 workgroups up, the small one with BK 64 below.
COOP_TILES = {"coop_small": (2, 2, 2, 2, 32, 2), "coop_small_k64": (2, 2, 2, 2, 64, 2),
              "coop_large": (2, 2, 4, 4, 32, 2)}
# Tiles of matmul_cm2.comp: (BM, BN, BK, THREADS, GROUP_M); BK divides 64 (a chunk is whole
# steps); GROUP_M block rows dealt out together (L2 reuse), 0 for none. Not yet measured on an
# H100 (benchmarks/check_gemm_cm2.py sweeps them): 64x64 for the MLP's products (128 workgroups
# at 512x1024), 128x128 from a workgroup per SM, 128x256 from two.
CM2_TILES = {"cm2_64x64": (64, 64, 64, 128, 0), "cm2_128x128": (128, 128, 64, 256, 8),
             "cm2_128x256": (128, 256, 64, 256, 8)}
# The workgroups a tile needs to be chosen; SMALLEST: what each kernel takes otherwise.
MIN_GROUPS = {"large": 256, "huge": 128, "coop_large": 256, "cm2_128x128": 132, "cm2_128x256": 264}
SMALLEST = {"tiled": "small", "coop": "coop_small_k64", "cm2": "cm2_64x64"}
# Why matmul_cm2.comp could not be built, by dtype: those products take coopmat-1 from then on.
CM2_FAILED: dict[str, str] = {}
# Whether the automatic choice takes cm2 where the device has it ($HLX_MATMUL_CM2=1), or only a
# FORCE_TILE naming a cm2 tile does. Off by default: on the H100 (driver 580) it matched or trailed
# coopmat-1 (4096^3 fp16 195 against 204 TFLOP/s, 8192^3 212 against 232; NOTES.md), and its
# bfloat16 results carried twice coopmat-1's rounding error.
CM2_AUTO = os.environ.get("HLX_MATMUL_CM2", "0") == "1"
# Order: K up to CHUNK_K is one chunk; longer K is MAX_CHUNKS chunks or fewer, each at least
# CHUNK_K long, a multiple of 64 (whole steps of every kernel). Long chunks for 16-bit
# products, whose float32 partials cost more beside their fast multiply-adds.
CHUNK_K = {"float32": 1024, "float16": 4096, "bfloat16": 4096}
MAX_CHUNKS = 4
# Split-K in one dispatch (matmul/elect.glsl) on the tiled and coopmat-1 kernels, for products of
# at most ELECT_MAX_OUTPUTS outputs (batches included); two dispatches otherwise, the partials added
# by matmul_splitk.comp (the same bits either way; cm2 always takes two). On an H100 (tenth stop,
# NOTES.md) one dispatch ran products of 256x256 and 512x512 outputs 1.2-1.6 times as fast as two
# (0.16-0.59 of cuBLAS to 0.22-0.73), lost 1-7 % on some (64x64, 128x128, 512x512x4096), and from
# 2048^2 outputs up lost 3-5 % (its elected workgroups add the partials while the SMs run down).
SPLIT_ONE_DISPATCH = True
ELECT_MAX_OUTPUTS = 1 << 19
# Buffers of election counts handed out in turn: this many split products can run side by side.
COUNT_SLOTS = 4
DIRECT_TILE = 32
# A name from TILES: that tile of the tiled kernel for every dtype, CPU devices included; from
# COOP_TILES: that tile for the 16-bit products a device runs on cooperative matrices.
FORCE_TILE: str | None = None
MAX_BATCH = 65535


def chunk_length(K: int, dtype="float32") -> int:
    """The chunk length of the reduction order for a product over ``K`` of ``dtype``."""
    least = CHUNK_K[getattr(dtype, "name", dtype)]
    if K <= least:
        return K
    return max(least, -(-K // (MAX_CHUNKS * 64)) * 64)


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
        ga = _shaped(reduce.sum_to_shape(matmul(g2, sh.transpose(b2, -1, -2)), a2.shape), a.shape)
    if ctx.needs[1]:
        gb = _shaped(reduce.sum_to_shape(matmul(sh.transpose(a2, -1, -2), g2), b2.shape), b.shape)
    return ga, gb, None


def _shaped(t: Tensor, shape) -> Tensor:
    return t if t.shape == shape else t.reshape(shape)


def _matmul_front(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    if out is None and isinstance(a, Tensor) and isinstance(b, Tensor):
        # A plan for these layouts: the plan's run below, taped as the wrapper tapes (graph.tape).
        rt = a.runtime
        plan = rt._plans[_strict[0]].get(plan_key(a, b))
        if plan is not None and plan[7] is None and plan[3] == plan[6]:
            kernel, push, groups, shape, strides, nbytes = plan[:6]
            mem = rt.memory
            buf = TensorBuffer.fresh(mem, mem.device_pool.allocate(nbytes), shape, a.buf.dtype, strides, nbytes)
            c = Tensor(buf, rt)
            # As Runtime.run, which checked this plan's grid when it was made.
            rt.stream.dispatch(kernel, [buf._allocation, a.buf.allocation, b.buf.allocation], push, groups)
            if (a.requires_grad or b.requires_grad) and getattr(_grad, "enabled", True):
                tape(_matmul_op, (a, b, None), c)
            return c
    return _matmul_op(a, b, out)


@differentiable(_matmul_backward, saves=(0, 1))
def matmul(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``a @ b`` with numpy's rules; ``out`` (contiguous, of the result's shape) is written if given.

    Example::

        c = hv.randn(8, 32, 64) @ hv.randn(64, 16)     # (8, 32, 16)
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"matmul needs two tensors, got {type(a).__name__} and {type(b).__name__}")
    rt = a.runtime
    key = plan_key(a, b, out)
    plan = rt.plans.get(key)
    if plan is not None:  # the same operand layouts as before: the kernel, push constants and grid are known
        kernel, push, groups, shape, strides, nbytes, final_shape, second = plan
        c = Tensor(rt.memory.fresh(shape, a.dtype, strides, nbytes), rt) if out is None else out
        if second is None:
            rt.run(kernel, [c.buf, a.buf, b.buf], push, groups)
        else:
            _run_split(rt, kernel, push, groups, c.buf, a.buf, b.buf, second)
        return c if final_shape == shape else c.reshape(final_shape)
    return _matmul(rt, key, a, b, out)


_matmul_op = matmul
matmul = functools.wraps(_matmul_op)(_matmul_front)


def plan_key(a: Tensor, b: Tensor, out: Tensor | None = None, bias: Tensor | None = None,
             act: str | None = None) -> tuple:
    """The key of ``a @ b``'s launch plan (with :func:`with_epilogue`'s ``bias`` and ``act``, its)
    in ``runtime.plans``: its value, once a product of these layouts has run, is ``(kernel, push,
    groups, shape, strides, nbytes, final_shape, second)``, which :func:`run_plan` runs."""
    return ("matmul", FORCE_TILE, CHUNK_K.get(a.dtype.name), MAX_CHUNKS, SPLIT_ONE_DISPATCH, ELECT_MAX_OUTPUTS,
            a.buf.geometry, b.buf.geometry, None if out is None else out.buf.geometry,
            None if bias is None else bias.buf.geometry, act)


def run_plan(rt, plan, a, b, z=None) -> Tensor:
    """Run a plan of :func:`plan_key` on buffers of its layouts (``z``: the bias, for a plan made
    with one) into a fresh output of the plan's shape (before ``final_shape``)."""
    kernel, push, groups, shape, strides, nbytes, _, second = plan
    c = Tensor(rt.memory.fresh(shape, a.dtype, strides, nbytes), rt)
    if second is None:
        rt.run(kernel, [c.buf, a, b] if z is None else [c.buf, a, b, z], push, groups)
    else:
        _run_split(rt, kernel, push, groups, c.buf, a, b, second, z=z)
    return c


# Activations a product's kernel can apply as it stores (matmul/epilogue.glsl's ACT values).
ACTIVATIONS = {"relu": 1}


def fuses_epilogue(a: Tensor, b: Tensor, bias: Tensor | None = None, act: str | None = None) -> bool:
    """:func:`with_epilogue` serves ``a @ b`` with ``bias`` added and ``act`` applied: a 1-D bias of
    the product's columns, one dtype and runtime for all, a float product of matrices (or batches)
    with elements and a K, outside strict mode (which keeps the composed ops), off the
    cooperative-matrix-2 kernel (which has no epilogue) and, for float16, on a device with float16
    arithmetic (matmul/epilogue.glsl adds in it and takes the rounded value's bits)."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor) or min(a.ndim, b.ndim) < 2:
        return False
    rt = a.runtime
    if bias is not None and not (isinstance(bias, Tensor) and bias.ndim == 1 and bias.dtype is a.dtype
                                 and bias.runtime is rt and bias.shape[0] == b.shape[-1]):
        return False
    return (a.dtype is b.dtype and a.dtype.is_float and b.runtime is rt and (act is None or act in ACTIVATIONS)
            and min(a.shape[-1], a.shape[-2], b.shape[-1]) > 0
            and a.shape[-1] == b.shape[-2] and math.prod(a.shape[:-2]) * math.prod(b.shape[:-2]) > 0
            and not is_strict() and not _cm2_wanted(rt, a.dtype)
            and (a.dtype.name != "float16" or rt.device.enabled_features.get("shader_float16", False)))


def with_epilogue(a: Tensor, b: Tensor, bias: Tensor | None = None, act: str | None = None) -> Tensor:
    """``a @ b`` with ``bias`` added and the activation ``act`` applied, in one launch where
    :func:`fuses_epilogue` says so: as the product is stored, with the bits of matmul, add and the
    activation's op (matmul/epilogue.glsl). Not taped: ops/linear.py tapes the layer. Planned per
    layout, as matmul is (both operands have two dims or more, so the plan's shape is the result's)."""
    rt = a.runtime
    key = plan_key(a, b, bias=bias, act=act)
    plan = rt.plans.get(key)
    if plan is not None:
        return run_plan(rt, plan, a.buf, b.buf, None if bias is None else bias.buf)
    return _matmul(rt, key, a, b, None, bias, act)


def _matmul(rt, key, a: Tensor, b: Tensor, out: Tensor | None, bias: Tensor | None = None,
            act: str | None = None) -> Tensor:
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
    if _cm2_wanted(rt, a.dtype):  # its tensor layouts take a unit stride in one dimension
        a3, sa_b = _with_unit_stride(a3, sa_b, len(batch_shape))
        b3, sb_b = _with_unit_stride(b3, sb_b, len(batch_shape))
    kernel, groups, kc, nsplit, reduce_kernel = _plan(rt, a.dtype, M, N, K, batch, a3, b3, sa_b, sb_b,
                                                      [t.buf.byte_offset // t.dtype.itemsize for t in (a3, b3, c)],
                                                      bias is not None, act)
    fields = {"M": M, "N": N, "K": K, "sa_b": sa_b, "sa_m": a3.strides[-2], "sa_k": a3.strides[-1], "sb_b": sb_b,
              "sb_k": b3.strides[-2], "sb_n": b3.strides[-1], "kc": kc, "nbatch": batch}
    z = [] if bias is None else [bias.buf]  # bound after the buffers of the kernel that stores the output
    placed = {} if bias is None else {"sz": bias.strides[0]}
    if nsplit == 1:
        bufs = [c.buf, a3.buf, b3.buf] + z
        push, second = kernel.spec.pack(bufs, fields | placed), None
        rt.run(kernel, bufs, push, groups)
    elif reduce_kernel is None:  # split-K in one dispatch: the partials' last 16-byte unit whole
        part = contiguous_like((-(-nsplit * batch * M * N // 4) * 4,), float32, rt)
        words = groups[0] * groups[1] * batch
        bufs = [c.buf, a3.buf, b3.buf] + z + [part.buf, election.counts(rt, "matmul", words, COUNT_SLOTS)]
        push = kernel.spec.pack(bufs, fields | placed)
        second = (None, None, words, part.shape, part.strides, part.buf.nbytes)
        rt.run(kernel, bufs, push, groups)
    else:
        n = batch * M * N
        part = contiguous_like((nsplit, batch, M, N), float32, rt)
        push = kernel.spec.pack([part.buf, a3.buf, b3.buf], fields)
        reduce_fields = {"n": n, "nsplit": nsplit} | ({"cols": N} | placed if z else {})
        second = (reduce_kernel, reduce_kernel.spec.pack([c.buf, part.buf] + z, reduce_fields), n,
                  part.shape, part.strides, part.buf.nbytes)
        _run_split(rt, kernel, push, groups, c.buf, a3.buf, b3.buf, second, part, z[0] if z else None)
    # Operands read in place (views, no copies) make a plan: the next call with these layouts skips all of the above.
    in_place = all(x.buf._allocation is y.buf._allocation and x.buf.byte_offset == y.buf.byte_offset
                   for x, y in ((a3, a), (b3, b)))
    if in_place and (out is None or final_shape == shape):
        rt.plans[key] = (kernel, push, groups, shape, c.strides, c.buf.nbytes, final_shape, second)
    return c.reshape(final_shape)


def _run_split(rt, kernel, push, groups, c, a, b, second, part=None, z=None) -> None:
    """Split-K: every chunk's float32 sum into ``part``, then their sum in chunk order (plus the
    bias ``z``, where the plan has one) into ``c``: in the same dispatch where the plan has no
    second kernel (``n`` is then the number of election counts), else in a second one."""
    reduce_kernel, reduce_push, n, shape, strides, nbytes = second
    if part is None:  # a plan's run: partials in a fresh allocation, at offset 0 as when it was planned
        part = Tensor(rt.memory.fresh(shape, float32, strides, nbytes), rt)
    if reduce_kernel is None:
        bufs = [c, a, b] if z is None else [c, a, b, z]
        rt.run(kernel, bufs + [part.buf, election.counts(rt, "matmul", n, COUNT_SLOTS)], push, groups)
        return
    rt.run(kernel, [part.buf, a, b], push, groups)
    rt.run(reduce_kernel, [c, part.buf] if z is None else [c, part.buf, z], reduce_push, n)


def _aligned(width, contiguous_stride, other_stride, batch_stride, offset, extent) -> bool:
    """Loads of ``width`` elements along a dimension of stride 1 stay aligned and whole."""
    return (contiguous_stride == 1 and other_stride % width == 0 and batch_stride % width == 0
            and offset % width == 0 and extent % width == 0)


def _plan(rt, dtype, M, N, K, batch, a3, b3, sa_b, sb_b, offsets, bias=False, act=None):
    """(kernel, grid, kc, number of splits, split-K reduce kernel) for one product; with ``bias``
    and ``act``, the kernel that stores the output (the product's, or split-K's second pass) adds
    the bias and applies the activation."""
    sa_m, sa_k = a3.strides[-2:]
    sb_k, sb_n = b3.strides[-2:]
    off_a, off_b, off_o = offsets
    # Transposed views are loaded along their contiguous dimension.
    a_cols = int(sa_k != 1 and sa_m == 1)
    b_cols = int(sb_n != 1 and sb_k == 1)
    kc = chunk_length(K, dtype)
    nchunks = -(-K // kc)
    coop = coopmat_available(rt, dtype) and not is_strict()  # strict: no cooperative matrices
    cm2 = (not bias and act is None and _cm2_wanted(rt, dtype) and _unit_stride(sa_m, sa_k, sa_b)
           and _unit_stride(sb_k, sb_n, sb_b))
    force = FORCE_TILE if (FORCE_TILE in TILES or (coop and FORCE_TILE in COOP_TILES)
                           or (cm2 and FORCE_TILE in CM2_TILES)) else None

    def vec(w):  # (A, B): loads of w elements along the contiguous dimension stay aligned and whole
        return (_aligned(w, sa_m, sa_k, sa_b, off_a, M) if a_cols else _aligned(w, sa_k, sa_m, sa_b, off_a, K),
                _aligned(w, sb_k, sb_n, sb_b, off_b, K) if b_cols else _aligned(w, sb_n, sb_k, sb_b, off_b, N))
    if cm2 and force not in TILES and force not in COOP_TILES:
        planned = _plan_cm2(rt, dtype, force, M, N, batch, kc, nchunks, a_cols, b_cols, vec(8))
        if planned is not None:
            return planned
    force = None if force in CM2_TILES else force
    coop = coop and force not in TILES
    direct = force is None and not coop and rt.device.physical.type == "cpu"
    if direct:
        tile, (bm, bn) = None, (DIRECT_TILE, DIRECT_TILE)
    elif coop:
        tiles = {name: (t[0] * t[2] * 16, t[1] * t[3] * 16) for name, t in COOP_TILES.items()}
        tile = force or _pick(tiles, M, N, batch, SMALLEST["coop"])
        bm, bn = tiles[tile]
    else:
        tiles = {name: t[:2] for name, t in TILES.items()}
        tile = force or _pick(tiles, M, N, batch, SMALLEST["tiled"])
        bm, bn = tiles[tile]
    # Several chunks: split-K (the CPU kernel sums its chunks in one pass, in the same order), in
    # one dispatch (elect) or with a second pass (two).
    split = nchunks > 1 and not direct
    elect = (split and SPLIT_ONE_DISPATCH and M * N * batch <= ELECT_MAX_OUTPUTS
             and election.ready(rt, "matmul", -(-N // bn) * -(-M // bm) * batch, COUNT_SLOTS))
    two = split and not elect
    nsplit = nchunks if split else 1
    if batch * nsplit > rt.max_groups[2]:
        raise errors.LimitExceededError(f"matmul over {batch} batches of {nsplit} chunks; at most "
                                        f"{rt.max_groups[2]} in one launch")
    dtypes = {"O": float32 if two else dtype, "A": dtype, "B": dtype}
    defines = {"CT": "float", "OCT": "float", "A_COLS": a_cols, "B_COLS": b_cols, "SPLIT": 2 if elect else int(split)}
    w = 8 if coop else 4
    defines["A_VEC"], defines["B_VEC"] = map(int, vec(w))
    # Outputs are contiguous; a split's partials are fresh (aligned) float32.
    defines["O_VEC"] = int(N % w == 0 and (two or off_o % w == 0))
    if elect:
        defines["P_VEC"] = int(N % 4 == 0)
    epilogue = ({"BIAS": 1} if bias else {}) | ({"ACT": ACTIVATIONS[act]} if act else {})
    fused = {} if two else epilogue

    def spec(s):
        s = _biased(s) if "BIAS" in fused else s
        return _elected(s) if elect else s
    if direct:
        kernel = rt.kernels.get(spec(DIRECT), {"CT": "float", "OCT": "float"} | fused, dtypes, (8, 8, 1))
    elif coop:
        sgm, sgn, fm, fn, bk, stages = COOP_TILES[tile]
        defines.update(SGM=sgm, SGN=sgn, FM=fm, FN=fn, BK=bk, STAGES=stages, **fused)
        if dtype.name == "bfloat16":
            defines["HLX_COOPMAT_BF16"] = 1
        kernel = rt.kernels.get(spec(COOPMAT), defines, dtypes, (32 * sgm * sgn, 1, 1), target_env="vulkan1.3")
    else:
        tbm, tbn, bk, tm, tn, pad = TILES[tile]
        bk = _tiled_k_step(rt, tbm, tbn, bk, pad)
        defines.update(BM=tbm, BN=tbn, BK=bk, TM=tm, TN=tn, PAD=pad, **fused)
        kernel = rt.kernels.get(spec(TILED), defines, dtypes, (tbn // tn, tbm // tm, 1))
    reduce_kernel = None
    if two:
        reduce_defines = {"CT": "float", "OCT": "float"} | epilogue
        reduce_kernel = rt.kernels.get(_biased(SPLITK) if bias else SPLITK, reduce_defines, {"O": dtype})
    return kernel, (-(-N // bn), -(-M // bm), batch * nsplit), kc, nsplit, reduce_kernel


def _tiled_k_step(rt, bm: int, bn: int, bk: int, pad: int) -> int:
    """A tiled-kernel tile's BK, halved (not below 8) until its two shared stages, with strict
    mode's two marks, fit the device: lavapipe's 32 KiB holds the large tile's 32 KiB, not the
    marks as well. Tile shape does not change a product's bits, so neither does this."""
    budget = rt.ctx.physical_device.limits["max_compute_shared_memory_size"]
    marks = 8 if is_strict() else 0
    while bk > 8 and 2 * bk * (bm // 4 + bn // 4 + 2 * pad) * 16 + marks > budget:
        bk //= 2
    return bk


def _plan_cm2(rt, dtype, force, M, N, batch, kc, nchunks, a_cols, b_cols, aligned):
    """The plan on matmul_cm2.comp (as :func:`_plan`'s), or None where no tile the device lists
    fits or its kernel cannot be built (noted in :data:`CM2_FAILED`; coopmat-1 serves instead).
    A forced tile that fails raises."""
    listed = {name: t[:2] for name, t in CM2_TILES.items() if cm2_tile_listed(rt, dtype, name)}
    tile = force or (_pick(listed, M, N, batch, SMALLEST["cm2"]) if listed else None)
    if tile is None:
        return None
    if tile not in listed and force is None:  # SMALLEST["cm2"] is not listed: the smallest listed one
        tile = min(listed, key=lambda name: listed[name][0] * listed[name][1])
    bm, bn, bk, threads, group_m = CM2_TILES[tile]
    split = nchunks > 1
    if batch * nchunks > rt.max_groups[2]:
        raise errors.LimitExceededError(f"matmul over {batch} batches of {nchunks} chunks; at most "
                                        f"{rt.max_groups[2]} in one launch")
    defines = {"BM": bm, "BN": bn, "BK": bk, "THREADS": threads, "GROUP_M": group_m, "A_COLS": a_cols,
               "B_COLS": b_cols, "A_VEC": int(aligned[0]), "B_VEC": int(aligned[1]), "SPLIT": int(split)}
    if dtype.name == "bfloat16":
        defines["HLX_CM2_BF16"] = 1
    dtypes = {"O": float32 if split else dtype, "A": dtype, "B": dtype}
    try:
        kernel = rt.kernels.get(CM2, defines, dtypes, (threads, 1, 1), target_env="vulkan1.3")
    except errors.HlxError as exc:
        if force is not None:
            raise
        CM2_FAILED[dtype.name] = f"{type(exc).__name__}: {exc}"
        return None
    reduce_kernel = rt.kernels.get(SPLITK, {"CT": "float", "OCT": "float"}, {"O": dtype}) if split else None
    return kernel, (-(-N // bn), -(-M // bm), batch * nchunks), kc, nchunks if split else 1, reduce_kernel


def _unit_stride(s_outer, s_inner, s_batch) -> bool:
    """An operand matmul_cm2.comp's tensor layouts address: one of its matrix strides is 1, none negative."""
    return (s_inner == 1 or s_outer == 1) and min(s_outer, s_inner, s_batch) >= 0


def _with_unit_stride(t: Tensor, batch_stride: int, nb: int) -> tuple[Tensor, int]:
    if _unit_stride(*t.strides[-2:], batch_stride):
        return t, batch_stride
    full = ew.copy(t)
    return full, full.strides[nb - 1] if nb else 0


def _cm2_wanted(rt, dtype) -> bool:
    """matmul_cm2.comp is asked for (``$HLX_MATMUL_CM2=1`` or a forced cm2 tile) and can run here."""
    return (CM2_AUTO or FORCE_TILE in CM2_TILES) and not is_strict() and cm2_available(rt, dtype)


def _pick(tiles, M, N, batch, smallest):
    """The largest tile of MIN_GROUPS (by area) that still makes its workgroups and pads the
    product by at most a quarter more than the tile that pads it least; else ``smallest``.
    Without the padding bound the 128x256 tile took products 64 columns wide (four times the
    work). The quarter is a judgement, not a measurement: it keeps every choice the H100 figures
    made (multiples of the tiles) and turns away tiles twice as wide or tall as the product."""
    def padded(bm, bn):
        return -(-M // bm) * bm * -(-N // bn) * bn
    least = min(padded(bm, bn) for bm, bn in tiles.values())
    fits = [(bm * bn, name) for name, (bm, bn) in tiles.items()
            if name in MIN_GROUPS and -(-M // bm) * -(-N // bn) * batch >= MIN_GROUPS[name]
            and 4 * padded(bm, bn) <= 5 * least]
    return max(fits)[1] if fits else smallest


def coopmat_available(rt, dtype) -> bool:
    """The device runs matmul_coopmat.comp for ``dtype`` (float16 or bfloat16): 16x16x16 matrices of
    it with float32 accumulation, subgroups of 32 (and, for bfloat16, VK_KHR_shader_bfloat16)."""
    name = getattr(dtype, "name", dtype)
    feats = rt.device.enabled_features
    if name not in ("float16", "bfloat16") or not feats.get("cooperative_matrix", False):
        return False
    if name == "bfloat16" and not feats.get("bfloat16_cooperative_matrix", False):
        return False
    info = rt.ctx.physical_device
    return info.limits["subgroup_size"] == 32 and any(
        s["M"] == s["N"] == s["K"] == 16 and s["a"] == s["b"] == name and s["c"] == "float32" and s["scope"] == 3
        for s in info.cooperative_matrix_shapes)


def cm2_available(rt, dtype) -> bool:
    """The device runs matmul_cm2.comp for ``dtype``: coopmat-1 of it (above), VK_NV_cooperative_matrix2,
    the glslang library that compiles it, and no failed build of it in this process."""
    name = getattr(dtype, "name", dtype)
    return (coopmat_available(rt, dtype) and rt.device.enabled_features.get("cooperative_matrix2", False)
            and name not in CM2_FAILED and glslang_library.available())


def cm2_tile_listed(rt, dtype, tile: str) -> bool:
    """The device lists workgroup-scope matrices of ``dtype`` (float32 accumulation) for the tile of
    :data:`CM2_TILES`: its workgroup size, and BM, BN, BK multiples of the listed granularities."""
    bm, bn, bk, threads = CM2_TILES[tile][:4]
    return cm2_shape_listed(rt, dtype, threads, (bm,), (bn,), (bk,))


def cm2_shape_listed(rt, dtype, threads: int, ms, ns, ks, unlisted: bool = False) -> bool:
    """A workgroup of ``threads`` may use workgroup-scope matrices, and the device lists a
    flexible-dimension combination of ``dtype`` into float32 for it whose granularities divide every
    row count in ``ms``, column count in ``ns`` and inner dimension in ``ks``; ``unlisted`` where the
    device lists none (matmul_cm2's and attention_cm2's kernels ask this of their products)."""
    name = getattr(dtype, "name", dtype)
    info = rt.ctx.physical_device
    if threads > info.limits.get("cooperative_matrix2_workgroup_scope_max_workgroup_size", 0):
        return False
    shapes = info.cooperative_matrix2_shapes
    for s in shapes:
        if not (s["scope"] == 2 and s["a"] == s["b"] == name and s["c"] == s["result"] == "float32"
                and s["workgroup_invocations"] in (0, threads)):
            continue
        mg, ng, kg = max(1, s["M_granularity"]), max(1, s["N_granularity"]), max(1, s["K_granularity"])
        if all(m % mg == 0 for m in ms) and all(n % ng == 0 for n in ns) and all(k % kg == 0 for k in ks):
            return True
    return unlisted and not shapes
