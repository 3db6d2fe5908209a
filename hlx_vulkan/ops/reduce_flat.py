"""Sum, mean, max and min of every element of a contiguous float tensor in two fixed passes
(``reduce/reduce_flat.comp``): about :data:`GROUPS` workgroups fold chunks of the tensor into
float32 partials (16-byte loads where aligned, many elements per thread), one workgroup folds
the partials. Chunk and workgroup sizes follow from the element count alone, so the result's
bits do too (never the device's subgroup size); the launch is planned once per layout.

Up to :data:`SINGLE_PASS_MAX` elements both passes run in one dispatch: the workgroup that
finishes last, elected by an integer counter (one word per runtime and mode, zero between
dispatches), folds the partials in the second pass's order, so the bits are the two-dispatch
version's. It saves the host a dispatch and the barrier between the two, which is what a small
reduction costs; a large one is the device's time, where the election measured slower (on an
H100, 64 MiB in 38.0 us against 34.1 in two dispatches).

Forcing (tests, benchmarks): :data:`FORCE_SCALAR` turns vector loads off (same order, same bits);
:data:`SINGLE_PASS` False runs the two passes as two dispatches at every size (same bits);
:data:`ENABLED` False sends every reduction to the general kernel of ops/reduce.py.
"""

from __future__ import annotations

from importlib import resources

from ..memory import float32
from ..runtime import KernelSpec
from . import election
from .tensor import Tensor, contiguous_like

FLAT = KernelSpec(resources.files(__package__) / "reduce" / "reduce_flat.comp",
                  [("O", "write", "O"), ("A", "read", "A")],
                  [("n", "I"), ("chunk", "I"), ("scale", "f"), ("off_o", "I"), ("off_a", "I")])
FLAT_SINGLE = KernelSpec(FLAT.path, [("O", "write", "O"), ("A", "read", "A"), ("P", "write"), ("C", "readwrite")],
                         [("n", "I"), ("chunk", "I"), ("scale", "f"), ("off_o", "I"), ("off_a", "I"), ("off_p", "I"),
                          ("off_c", "I"), ("unit", "f")])
OPS = {"sum": 0, "max": 1, "min": 2}
WG = 256
GROUPS = 2048        # about this many partials
PARTIAL_SLOTS = 4
MIN_CHUNK = 4 * WG * 4
ENABLED = True
FORCE_SCALAR = False
SINGLE_PASS = True
SINGLE_PASS_MAX = 1 << 22   # elements (16 MiB of float32): above, two dispatches


def chunk_for(n: int) -> int:
    """Elements per workgroup of the first pass: a function of ``n`` alone, a multiple of 4 * WG."""
    per = -(-n // GROUPS)
    return max(MIN_CHUNK, -(-per // (4 * WG)) * 4 * WG)


def applies(x: Tensor, op: str) -> bool:
    return ENABLED and op in OPS and x.dtype.is_float and x.is_contiguous() and 0 < x.numel() < 2**31


def reduce_all(x: Tensor, op: str, scale: float, out_dtype) -> Tensor:
    """The ``op`` of all of ``x`` (contiguous, float) times ``scale``, a 0-d tensor of ``out_dtype``."""
    rt = x.runtime
    single = SINGLE_PASS and x.numel() <= SINGLE_PASS_MAX
    key = ("reduce_flat", op, scale, out_dtype, FORCE_SCALAR, single, x.buf.geometry)
    plan = rt.plans.get(key)
    if plan is None:
        plan = rt.plans[key] = (_plan_single if single else _plan)(rt, x, op, scale, out_dtype)
    if single:
        kernel, push, grid, groups, counter = plan
        partial = contiguous_like((groups,), float32, rt)
        out = contiguous_like((), out_dtype, rt)
        rt.run(kernel, [out.buf, x.buf, partial.buf, counter], push, grid)
        return out
    (k1, push1, grid1, groups), (k2, push2) = plan
    partial = _partials(rt, groups)
    out = contiguous_like((), out_dtype, rt)
    rt.run(k1, [partial, x.buf], push1, grid1)
    rt.run(k2, [out.buf, partial], push2, (1, 1, 1))
    return out


def _layout(x: Tensor) -> tuple[int, int, int, int]:
    """(elements, chunk, workgroups, vector loads) of the first pass over ``x``."""
    n = x.numel()
    chunk = chunk_for(n)
    vec = int(not FORCE_SCALAR and n % 4 == 0 and (x.buf.byte_offset // x.dtype.itemsize) % 4 == 0)
    return n, chunk, -(-n // chunk), vec


def _plan(rt, x: Tensor, op: str, scale: float, out_dtype):
    n, chunk, groups, vec = _layout(x)
    k1 = rt.kernels.get(FLAT, {"OP": OPS[op], "VEC": vec}, {"O": float32, "A": x.dtype}, (WG,))
    vec2 = int(not FORCE_SCALAR and groups % 4 == 0)
    k2 = rt.kernels.get(FLAT, {"OP": OPS[op], "VEC": vec2}, {"O": out_dtype, "A": float32}, (WG,))
    push1 = k1.spec.pack([Fresh(float32), x.buf], {"n": n, "chunk": chunk, "scale": 1.0})
    push2 = k2.spec.pack([Fresh(out_dtype), Fresh(float32)],
                         {"n": groups, "chunk": 4 * -(-groups // 4), "scale": scale})
    return (k1, push1, rt.fold(groups * WG, WG), groups), (k2, push2)


def _plan_single(rt, x: Tensor, op: str, scale: float, out_dtype):
    n, chunk, groups, vec = _layout(x)
    kernel = rt.kernels.get(FLAT_SINGLE, {"OP": OPS[op], "VEC": vec, "SINGLE": 1}, {"O": out_dtype, "A": x.dtype},
                            (WG,))
    counter = election_counter(rt)
    push = kernel.spec.pack([Fresh(out_dtype), x.buf, Fresh(float32), counter],
                            {"n": n, "chunk": chunk, "scale": scale, "unit": 1.0})
    return kernel, push, rt.fold(groups * WG, WG), groups, counter


def _partials(rt, groups: int):
    """The next of the runtime's :data:`PARTIAL_SLOTS` partial buffers for two dispatches (each
    holds at least ``groups`` floats; at most :data:`GROUPS` are ever asked for). A fresh
    buffer would take the range the last reduction's second pass read (the pool serves freed
    memory at once), so every first pass would wait for the last second pass; in turn, the
    next reduction's first pass runs beside this one's second (64 MiB sums, H100: NOTES.md)."""
    key = ("reduce_flat partials",)
    ring = rt.plans.get(key)
    if ring is None or ring[0][0].numel < groups:
        size = max(groups, GROUPS)
        ring = rt.plans[key] = [[rt.memory.empty((size,), float32) for _ in range(PARTIAL_SLOTS)], 0]
    slots, i = ring
    ring[1] = (i + 1) % PARTIAL_SLOTS
    return slots[i]


def election_counter(rt):
    """The election counter of this mode's plans (one word, zero between dispatches; every plan
    binds it, so the stream orders one flat reduction after another)."""
    return election.counts(rt, "reduce_flat")


class Fresh:
    """A fresh contiguous tensor's geometry (element offset 0), for packing the push block ahead."""

    __slots__ = ("dtype", "byte_offset")

    def __init__(self, dtype):
        self.dtype, self.byte_offset = dtype, 0


__all__ = ["Fresh", "election_counter", "reduce_all"]
