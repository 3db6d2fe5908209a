"""Cross-entropy of integer class targets, fused: log_softmax and the negative log-likelihood
in one kernel per row forward, one backward (``cross_entropy/cross_entropy.comp``).

The per-row losses come from the kernel; the reductions (``mean`` over the rows whose target
is not ``ignore_index``, ``sum``) are this library's deterministic sums, so a row's loss has
the same bits whatever the batch and the total a fixed order. Logits may be float32, float16 or
bfloat16; the arithmetic is float32. Host targets are checked before launch
(IndexOutOfRangeError); a device tensor's on the device (DeviceIndexError at the next sync point).

Forcing (tests, benchmarks): :data:`FORCE_SCALAR` turns 4-element vector loads off,
:data:`FORCE_STREAM` makes rows that fit in registers be read again per pass.
"""

from __future__ import annotations

import numpy as np
from importlib import resources

from .. import errors
from ..autograd.graph import differentiable
from ..memory import float32
from ..runtime import KernelSpec
from . import elementwise as ew
from . import reduce as red
from .shape import index_tensor
from .softmax import row_workgroup
from .tensor import Tensor, contiguous_like

_SOURCE = resources.files(__package__) / "cross_entropy" / "cross_entropy.comp"
_PUSH = [("rows", "I"), ("C", "I"), ("ignore", "i"), ("off_o", "I"), ("off_a", "I"), ("off_t", "I"), ("off_s", "I"),
         ("off_g", "I")]
FORWARD = KernelSpec(_SOURCE, [("O", "write"), ("A", "read", "A"), ("T", "read", "I"), ("S", "write"),
                               ("ERR", "readwrite")], _PUSH + [("site", "I")])
BACKWARD = KernelSpec(_SOURCE, [("O", "write", "O"), ("A", "read", "A"), ("T", "read", "I"), ("S", "read"),
                                ("G", "read")], _PUSH)
MAX_NC = 8
FORCE_SCALAR = False
FORCE_STREAM = False
# The mean over device targets replays traced dispatches (ops/cross_entropy_trace.py); tests turn it off to compare.
TRACED = True


def _defines(x: Tensor, C: int, backward: bool, tensors) -> tuple[dict, int]:
    wg = row_workgroup(C)
    slots = -(-(-(-C // 4)) // wg)
    nc = 0 if FORCE_STREAM or slots > MAX_NC else slots
    vec = int(not FORCE_SCALAR and C % 4 == 0 and all((t.buf.byte_offset // t.dtype.itemsize) % 4 == 0
                                                       for t in tensors))
    return {"BACKWARD": int(backward), "NC": nc, "VEC": vec}, wg


def _rows_backward(ctx, g):
    logits, target, stats = ctx.saved
    ignore = ctx.args[3]
    rt = logits.runtime
    n, C = logits.shape
    dx = contiguous_like(logits.shape, logits.dtype, rt)
    g = g if g.dtype is float32 and g.is_contiguous() else ew.launch("x", [g], out_dtype=float32)
    defines, wg = _defines(logits, C, True, (logits, dx))
    kernel = rt.kernels.get(BACKWARD, defines, {"O": logits.dtype, "A": logits.dtype, "I": target.dtype}, (wg,))
    rt.run(kernel, {"O": dx.buf, "A": logits.buf, "T": target.buf, "S": stats.buf, "G": g.buf},
           {"rows": n, "C": C, "ignore": ignore}, n * wg)
    return dx, None, None, None


@differentiable(_rows_backward, saves=(0, 1, 2))
def _rows(logits: Tensor, target: Tensor, stats: Tensor, ignore: int) -> Tensor:
    """Per-row losses (float32) of contiguous ``logits`` (N, C); ``stats`` (2, N) float32, written:
    each row's log-sum-exp, then 1 for each row counted (0 where the target is ignored)."""
    rt = logits.runtime
    n, C = logits.shape
    loss = contiguous_like((n,), float32, rt)
    defines, wg = _defines(logits, C, False, (logits,))
    kernel = rt.kernels.get(FORWARD, defines, {"A": logits.dtype, "I": target.dtype}, (wg,))
    rt.run(kernel, {"O": loss.buf, "A": logits.buf, "T": target.buf, "S": stats.buf},
           {"rows": n, "C": C, "ignore": ignore}, n * wg, check="cross_entropy")
    return loss


def cross_entropy(logits: Tensor, target, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Cross-entropy of integer class ``target`` (N,) against ``logits`` (N, C), as torch: each
    target in ``[0, C)`` or equal to ``ignore_index``, whose rows count for nothing (the mean is
    over the other rows: 0/0, NaN, if none)."""
    if TRACED and _traced.applies(logits, target, reduction):
        return _traced.cross_entropy(logits, target, int(ignore_index))
    return composed(logits, target, reduction, ignore_index)


def composed(logits: Tensor, target, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """:func:`cross_entropy` through its ops (what a trace replays; ops/cross_entropy_trace.py)."""
    if logits.ndim != 2:
        raise errors.ShapeError(f"cross_entropy expects logits of shape (N, C), got {logits.shape}")
    if not logits.dtype.is_float:
        raise errors.DTypeError(f"cross_entropy needs floating-point logits, not {logits.dtype.name}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    n, C = logits.shape
    target_shape = target.shape if isinstance(target, Tensor) else np.shape(target)
    if target_shape != (n,):
        raise errors.ShapeError(f"cross_entropy: target of shape {target_shape} does not match {n} rows of "
                                f"{logits.shape}")
    if C == 0:
        raise errors.ShapeError(f"cross_entropy over logits of shape {logits.shape}: no classes")
    if n * C >= 2**31:
        raise errors.LimitExceededError(f"cross_entropy of {n * C} logits is more than one launch indexes")
    rt = logits.runtime
    idx = index_tensor(target, C, rt, "cross_entropy", "target index", int(ignore_index))
    idx = idx if idx.is_contiguous() else ew.copy(idx)
    stats = contiguous_like((2, n), float32, rt)
    loss = _rows(logits.contiguous(), idx, stats, int(ignore_index)) if n else contiguous_like((0,), float32, rt)
    if reduction == "none":
        return loss if logits.dtype is float32 else loss.to(logits.dtype)
    total = red.sum(loss)
    if reduction == "mean":
        total = total / red.sum(stats[1])
    return total if logits.dtype is float32 else total.to(logits.dtype)


__all__ = ["cross_entropy"]

from . import cross_entropy_trace as _traced  # noqa: E402 - it builds on this module
