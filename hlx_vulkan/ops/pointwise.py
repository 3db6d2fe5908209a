"""The pointwise kernel every elementwise op runs through: ``out = EXPR(x, y, z)`` over the
numpy broadcast of up to three inputs, each strided and each of its own dtype, in up to five
merged dimensions (``elementwise/elementwise.comp``), specialised per expression and dtypes.
Inputs are converted on load to the compute type, the output on store to its dtype.

The scalars ``alpha`` and ``beta`` travel as 32-bit patterns read in the compute type: a
float32 for float arithmetic, an exact int32 (or uint32) for integer arithmetic.

A launch is planned once per (expression, scalars, dtypes, shapes, strides, offsets): the
plan holds the kernel, the packed push constants and the grid, so a repeated op costs a
dictionary lookup, an allocation and a dispatch.
"""

from __future__ import annotations

import math
import re
import threading
from importlib import resources

import numpy as np

from .. import errors
from ..memory import dtype_of, promote_types
from ..memory.tensor import contiguous_strides
from .. import precision as _precision
from ..precision import float16_arithmetic
from ..strict_mode import is_strict, refuse
from ..runtime import KernelSpec
from .strict_expr import strict_expr
from .tensor import Tensor

MAX_DIMS = 5
WORKGROUP = 256
# Contiguous, aligned launches of 16-, 32- and 64-bit dtypes take four elements per thread by
# vector loads and stores (the same arithmetic per element); tests turn it off to compare.
VECTOR = True
_VECTOR_DTYPES = ("float32", "float16", "bfloat16", "int32", "uint32", "int64")
# An expression that reads the kernel's offsets or push block keeps one element per thread
# (the element index ``i`` it may read is kept on the vector path).
_READS_LAYOUT = re.compile(r"\b(ia|ib|ic|io|rest|coord)\b|\bp\.")

# A scalar of zero keys a plan by its sign too: 0.0 and -0.0 are equal keys but different bits
# (the defaults' own 0.0, _ZERO, is known to be +0.0 and keys as itself).
_ZERO = 0.0
_ZERO_KEYS = ("+0", "-0")
# While ops/eager.py learns an op's plan on a thread: that thread id -> the launches it recorded.
PROBES: dict = {}

_SLOTS = {"O": "O", "A": "A", "B": "B", "C": "C"}
_PUSH = [("n", "I"), ("alpha", "I"), ("beta", "I"), ("off_o", "I"), ("off_a", "I"), ("off_b", "I"), ("off_c", "I"),
         ("shape", "5I"), ("st_a", "5i"), ("st_b", "5i"), ("st_c", "5i"), ("st_o", "5i")]
_SOURCE = resources.files(__package__) / "elementwise" / "elementwise.comp"
# One declaration per arity: the kernel binds only the inputs it reads.
SPECS = {nargs: KernelSpec(_SOURCE, [("O", "write", "O")] + [(s, "read", s) for s in "ABC"[:nargs]], _PUSH)
         for nargs in (1, 2, 3)}


def compute_type(dtype, native16: bool = False) -> str:
    """The GLSL type arithmetic runs in: float for floats (float16_t for float16 when ``native16``),
    int64_t for int64, int for the other signed integers, uint for unsigned ones and bool."""
    if dtype.is_float:
        return "float16_t" if native16 and dtype.name == "float16" else "float"
    if dtype.name == "int64":
        return "int64_t"
    return "int" if dtype.kind == "int" else "uint"


# How the kernel reads alpha and beta (SK in elementwise.comp): as float bits, int32 or uint32.
_SCALAR_KIND = {"float": 0, "float16_t": 0, "int": 1, "int64_t": 1, "uint": 2}


def scalar_fits(value, ct: str) -> bool:
    """Whether ``value`` travels exactly as a scalar of a kernel computing in ``ct``."""
    if _SCALAR_KIND[ct] == 0:
        return True
    return float(value).is_integer() and -2**31 <= value < (2**32 if ct == "uint" else 2**31)


def scalar_bits(value, ct: str) -> int:
    """The 32-bit pattern of ``value`` as a kernel computing in ``ct`` reads it."""
    if _SCALAR_KIND[ct] == 0:
        with np.errstate(over="ignore"):
            return int(np.array(value, np.float32).view(np.uint32))
    if not scalar_fits(value, ct):
        raise errors.DTypeError(f"the scalar {value!r} does not fit the {ct} arithmetic of this op")
    return int(value) & 0xFFFFFFFF


def broadcast_shapes(*shapes) -> tuple[int, ...]:
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for d in range(ndim):
        sizes = {s[len(s) - ndim + d] for s in shapes if len(s) - ndim + d >= 0} - {1}
        if len(sizes) > 1:
            raise errors.ShapeError(f"shapes {' and '.join(map(str, shapes))} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def broadcast_strides(t: Tensor, shape) -> list[int]:
    pad = len(shape) - t.ndim
    return [0 if d < pad or t.shape[d - pad] == 1 else t.strides[d - pad] for d in range(len(shape))]


def _coalesce(shape, strides_per_operand):
    """Drop size-1 dims and merge dims that are contiguous for every operand."""
    dims = [(s, [st[d] for st in strides_per_operand]) for d, s in enumerate(shape) if s != 1]
    merged = []
    for size, sts in dims:
        if merged:
            psize, psts = merged[-1]
            if all(p == c * size for p, c in zip(psts, sts)):
                merged[-1] = (psize * size, sts)
                continue
        merged.append((size, sts))
    if len(merged) > MAX_DIMS:
        raise errors.ShapeError(f"an elementwise op over shape {tuple(shape)} needs {len(merged)} dimensions after "
                                f"merging; at most {MAX_DIMS} are supported (call .contiguous() first)")
    pad = MAX_DIMS - len(merged)
    out_shape = [1] * pad + [m[0] for m in merged]
    per_operand = [[0] * pad + [m[1][k] for m in merged] for k in range(len(strides_per_operand))]
    return out_shape, per_operand


def launch(expr: str, inputs: list[Tensor], out_dtype=None, alpha: float = _ZERO, beta: float = _ZERO,
           out: Tensor | None = None, shape=None, compute=None) -> Tensor:
    """Record ``out = expr(x, y, z)`` over the broadcast of ``inputs`` (x, y, z in order).

    ``alpha`` and ``beta`` are scalars the expression may use. The expression computes in the
    compute type of ``compute`` (default: the inputs' promoted dtype; float for float dtypes);
    the result has ``out_dtype`` (default: that dtype). ``out`` (of the result's shape, any
    strides) is written if given; ``shape`` broadcasts the result further.
    """
    rt = inputs[0].runtime
    geometries = []  # a loop, not a comprehension: no frame of its own (CPython 3.11)
    for t in inputs:
        geometries.append(t.buf.geometry)
    key = (expr, out_dtype, compute, alpha if alpha or alpha is _ZERO else _ZERO_KEYS[math.copysign(1.0, alpha) < 0],
           beta if beta or beta is _ZERO else _ZERO_KEYS[math.copysign(1.0, beta) < 0], shape,
           out.buf.geometry if out is not None else None, _precision._float16_arithmetic, VECTOR,
           *geometries)  # plan_key's, inlined
    plan = rt.plans.get(key)
    if plan is None:
        plan = rt.plans[key] = _plan(rt, expr, inputs, out_dtype, alpha, beta, out, shape, compute)
    kernel, out_shape, out_strides, dt, push, groups, nbytes = plan
    given = out is not None
    if not given:
        out = Tensor(rt.memory.fresh(out_shape, dt, out_strides, nbytes), rt)
    if kernel is not None:
        rt.run(kernel, [out.buf] + [t.buf for t in inputs], push, groups)  # binding order: O, A, B, C
    if PROBES:
        probe = PROBES.get(threading.get_ident())
        if probe is not None:
            probe.append((plan, inputs, given or shape is not None, out))
    return out


def plan_key(expr: str, inputs: list[Tensor], out_dtype=None, alpha: float = _ZERO, beta: float = _ZERO,
             out: Tensor | None = None, shape=None, compute=None) -> tuple:
    """The key of :func:`launch`'s plan in ``runtime.plans`` for these arguments: its value, once such
    a launch has run, is ``(kernel, out_shape, out_strides, dtype, push, groups, nbytes)``."""
    return (expr, out_dtype, compute, alpha if alpha or alpha is _ZERO else _ZERO_KEYS[math.copysign(1.0, alpha) < 0],
            beta if beta or beta is _ZERO else _ZERO_KEYS[math.copysign(1.0, beta) < 0], shape,
            out.buf.geometry if out is not None else None, _precision._float16_arithmetic, VECTOR,
            *[t.buf.geometry for t in inputs])


def _plan(rt, expr, inputs, out_dtype, alpha, beta, out, shape, compute):
    if not inputs or len(inputs) > 3:
        raise ValueError("a pointwise launch takes one to three inputs")
    in_dtype = inputs[0].dtype
    for t in inputs[1:]:
        in_dtype = promote_types(in_dtype, t.dtype)
    if compute is not None:
        in_dtype = dtype_of(compute)
    out_shape = broadcast_shapes(*(t.shape for t in inputs))
    if shape is not None:
        if broadcast_shapes(out_shape, tuple(shape)) != tuple(shape):
            raise errors.ShapeError(f"shape {out_shape} does not broadcast to {tuple(shape)}")
        out_shape = tuple(shape)
    dt = dtype_of(out_dtype) if out_dtype is not None else in_dtype
    if out is not None and out.shape != out_shape:
        raise errors.ShapeError(f"output of shape {out.shape} does not match the result shape {out_shape}")
    out_strides = out.strides if out is not None else contiguous_strides(out_shape)
    n = math.prod(out_shape)
    if n == 0:
        return None, out_shape, out_strides, dt, None, None, 0
    if n >= 2**31:
        raise errors.LimitExceededError(f"{n} elements are more than one elementwise launch indexes")
    strides = [broadcast_strides(t, out_shape) for t in inputs] + [list(out_strides)]
    shape5, st = _coalesce(out_shape, strides)
    st_in = st[:-1] + [[0] * MAX_DIMS] * (3 - len(inputs))
    native16 = float16_arithmetic()
    if is_strict():
        if native16 and in_dtype.name == "float16":
            refuse("float16 arithmetic (set_float16_arithmetic(True))")
        expr = strict_expr(expr)  # division in software (hlx_vulkan/strict_mode.py)
    flat = shape5[3] == 1 and max(shape5[:3]) == 1
    ct = compute_type(in_dtype, native16)
    defines = {"NARGS": len(inputs), "FLAT": int(flat), "CT": ct, "OCT": compute_type(dt, native16), "EXPR": expr,
               "SK": _SCALAR_KIND[ct]}
    vec = _vector(flat, n, st, out, inputs, dt) if not _READS_LAYOUT.search(expr) else None
    if vec is not None:
        defines.update(VEC=1, **{f"VEC_{s}": v for s, v in zip("ABC", vec)})
    dtypes = {"O": dt, **{s: t.dtype for s, t in zip("ABC", inputs)}}
    kernel = rt.kernels.get(SPECS[len(inputs)], defines, dtypes, (WORKGROUP,))
    fields = {"n": n, "alpha": scalar_bits(alpha, ct), "beta": scalar_bits(beta, ct), "shape": shape5,
              "st_a": st_in[0], "st_b": st_in[1], "st_c": st_in[2], "st_o": st[-1]}
    out_geometry = out.buf if out is not None else _Geometry(dt, 0)
    bufs = [out_geometry] + [t.buf for t in inputs]
    push = kernel.spec.pack(bufs, fields)
    threads = n // 4 if vec is not None else n
    return kernel, out_shape, out_strides, dt, push, rt.fold(threads, kernel.workgroup[0]), n * dt.itemsize


def _vector(flat: bool, n: int, strides, out, inputs, dt):
    """Per input, 1 for a vector operand or 0 for a broadcast element, where the launch can take
    four elements per thread (flat, a multiple of 4, contiguous and aligned); else None."""
    if not (VECTOR and flat and n % 4 == 0 and dt.name in _VECTOR_DTYPES and strides[-1][4] == 1):
        return None
    if out is not None and (out.buf.byte_offset // dt.itemsize) % 4:
        return None
    vec = []
    for t, st in zip(inputs, strides[:-1]):
        if t.dtype.name not in _VECTOR_DTYPES or st[4] not in (0, 1):
            return None
        if st[4] == 1 and (t.buf.byte_offset // t.dtype.itemsize) % 4:
            return None
        vec.append(st[4])
    return vec


class _Geometry:
    """Stands for a fresh contiguous output when packing its (zero) element offset."""

    __slots__ = ("dtype", "byte_offset")

    def __init__(self, dtype, byte_offset: int):
        self.dtype, self.byte_offset = dtype, byte_offset


__all__ = ["SPECS", "broadcast_shapes", "broadcast_strides", "compute_type", "launch", "plan_key", "scalar_bits", "scalar_fits"]
