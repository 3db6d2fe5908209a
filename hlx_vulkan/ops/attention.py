"""Scaled dot-product attention as PyTorch's ``F.scaled_dot_product_attention``, fused: one kernel
forward and two backward (``attention/attention.comp``), flash style.

Forward: a workgroup takes 32 query rows of one (batch, head) and walks the keys in tiles held in
shared memory, keeping each row's running maximum, sum and weighted values (online softmax), so
the L x S scores are never stored; it writes the output and each row's logsumexp (float32).
Backward: the probabilities are recomputed from the logsumexp; one kernel gives dQ (an invocation
per query row, keys ascending), another dK and dV (an invocation per key row, queries ascending),
so every gradient is a sum in one fixed order, with no atomics, whatever the batch. The
per-row ``delta = sum(dO * O)`` comes from the reduce op.

Masks: a bool mask (True takes part) or a float mask (added to the scores), broadcast to
(..., L, S) by strides (a broadcast mask is never expanded in memory). ``is_causal`` keeps key
``j <= i`` (top-left aligned, as PyTorch). A row whose keys are all masked out gives zeros, as
PyTorch. fp16/bf16 inputs are read as storage and accumulated in float32.

Dropout on the attention weights draws from the seeded counter generator (``ops/random.py``,
Philox4x32-10): element (n, i, j) is kept where the bits at counter ``(n*L + i)*ceil(S/4) + j//4``
(word ``j % 4``) give a uniform >= p, so the backward recomputes the same mask without storing it.

This path needs no subgroup operation or cooperative matrix: it runs on any Vulkan device
(lavapipe included). Where the device has cooperative matrices, the float16/bfloat16 forward at head
dims 64 and 128 without dropout runs ``attention_coopmat.py``'s kernel instead (same outputs).
"""

from __future__ import annotations

import math
from importlib import resources

from .. import errors
from ..strict_mode import is_strict
from ..autograd.graph import differentiable, is_grad_enabled
from ..memory import dtype_of, float32
from ..runtime import KernelSpec
from . import attention_coopmat
from . import elementwise as ew
from . import reduce as red
from . import shape as sh
from .attention_composed import composed_attention
from .creation import zeros
from .random import default_generator
from .tensor import Tensor, contiguous_like

_SOURCE = resources.files(__package__) / "attention" / "attention.comp"
_PUSH = [("N", "I"), ("L", "I"), ("S", "I"), ("scale", "f"), ("p_drop", "f"), ("keep_scale", "f"),
         ("seed_lo", "I"), ("seed_hi", "I"), ("ctr_lo", "I"), ("ctr_hi", "I"), ("mshape", "4I"), ("mst", "4i"),
         ("mst_l", "i"), ("mst_s", "i"), ("off_o", "I"), ("off_dq", "I"), ("off_dk", "I"), ("off_dv", "I"),
         ("off_lse", "I"), ("off_dlt", "I"), ("off_q", "I"), ("off_k", "I"), ("off_v", "I"), ("off_do", "I"),
         ("off_m", "I")]
_QKV = [("Q", "read", "A"), ("K", "read", "A"), ("V", "read", "A")]
_MASK = [("M", "read")]


def _spec(head, mask):
    return KernelSpec(_SOURCE, head + (_MASK if mask else []), _PUSH)


FORWARD = {m: _spec([("O", "write", "O"), ("Lse", "write")] + _QKV, m) for m in (False, True)}
GRAD_Q = {m: _spec([("DQ", "write", "O"), ("Lse", "read"), ("Dlt", "read")] + _QKV + [("DO", "read", "A")], m)
          for m in (False, True)}
GRAD_KV = {m: _spec([("DK", "write", "O"), ("DV", "write", "O"), ("Lse", "read"), ("Dlt", "read")] + _QKV
                    + [("DO", "read", "A")], m) for m in (False, True)}
WORKGROUP = 32          # query (or key) rows per workgroup: one invocation each
MAX_BATCH_DIMS = 4      # batch dims a mask is read through
MAX_HEAD_DIM = 256
# Tiles in shared memory even on a CPU device (tests): there, by default, the kernels read the
# tiles straight from the buffers (DIRECT), as matmul_direct.comp does, and use no barrier.
FORCE_SHARED = False
# llvmpipe (lavapipe) ends a loop after this many iterations in one invocation, counted over all its
# runs, without an error: the key (or query) loop runs once per key, and Philox's 10 rounds per
# dropout draw. The head-dim loops are unrolled.
LLVMPIPE_LOOP_LIMIT = 65535


def _key_tile(rt, e: int, ev: int) -> int:
    """Keys per shared-memory tile: 32, or fewer where the device's shared memory is small."""
    budget = rt.ctx.physical_device.limits["max_compute_shared_memory_size"]
    bk = 32
    while bk > 4 and bk * (e + ev + 2) * 4 > budget:
        bk //= 2
    return bk


class _Plan:
    """What the kernels need besides the tensors (kept by the tape for the backward)."""

    __slots__ = ("batch", "N", "L", "S", "E", "EV", "scale", "causal", "p", "seed", "ctr", "mask", "mshape", "mst",
                 "lse", "coop")

    def push(self, mask) -> dict:
        keep = 1.0 / (1.0 - self.p) if self.p else 1.0
        fields = {"N": self.N, "L": self.L, "S": self.S, "scale": self.scale, "p_drop": self.p, "keep_scale": keep,
                  "seed_lo": self.seed & 0xFFFFFFFF, "seed_hi": self.seed >> 32, "ctr_lo": self.ctr & 0xFFFFFFFF,
                  "ctr_hi": (self.ctr >> 32) & 0xFFFFFFFF}
        if mask is not None:
            fields.update(mshape=self.mshape, mst=self.mst, mst_l=mask.strides[-2], mst_s=mask.strides[-1])
        return fields

    def kernel(self, rt, specs, mask, dtype):
        direct = rt.device.physical.type == "cpu" and not FORCE_SHARED
        defines = {"E": self.E, "EV": self.EV, "BK": 32 if direct else _key_tile(rt, self.E, self.EV),
                   "DIRECT": int(direct),
                   "HAS_MASK": int(mask is not None), "CAUSAL": int(self.causal), "DROPOUT": int(self.p > 0),
                   "CT": "float", "OCT": "float"}
        defines["MODE"] = 0 if specs is FORWARD else 1 if specs is GRAD_Q else 2
        return rt.kernels.get(specs[mask is not None], defines, {"O": dtype, "A": dtype}, (WORKGROUP,))


def _groups(rows: int, n: int, rt):
    groups = (max(1, -(-rows // WORKGROUP)), n, 1)
    if n > rt.max_groups[1]:
        raise errors.LimitExceededError(f"attention over {n} (batch x heads) is more than the device's "
                                        f"{rt.max_groups[1]} workgroups in y")
    return groups


def _forward_launch(q, k, v, mask, plan: _Plan):
    rt = q.runtime
    out = contiguous_like(plan.batch + (plan.L, plan.EV), q.dtype, rt)
    lse = contiguous_like(plan.batch + (plan.L,), float32, rt)
    plan.coop = bool(out.numel()) and attention_coopmat.usable(rt, q.dtype, plan.E, plan.EV, plan.p)
    if plan.coop:
        attention_coopmat.forward(q, k, v, mask, plan, out, lse)
    elif out.numel():
        tensors = {"O": out.buf, "Lse": lse.buf, "Q": q.buf, "K": k.buf, "V": v.buf}
        if mask is not None:
            tensors["M"] = mask.buf
        rt.run(plan.kernel(rt, FORWARD, mask, q.dtype), tensors, plan.push(mask), _groups(plan.L, plan.N, rt))
    return out, lse


def _attention_backward(ctx, g):
    q, k, v, out = ctx.saved
    plan = ctx.args[3]
    mask, lse = plan.mask, plan.lse
    rt = q.runtime
    g = ew.cast(g, q.dtype) if g.dtype is not q.dtype else g
    g = g.contiguous()
    delta = red.sum(ew.cast(g, float32) * ew.cast(out, float32), -1).contiguous()
    dq = contiguous_like(q.shape, q.dtype, rt)
    dk = contiguous_like(k.shape, q.dtype, rt)
    dv = contiguous_like(v.shape, q.dtype, rt)
    common = {"Lse": lse.buf, "Dlt": delta.buf, "Q": q.buf, "K": k.buf, "V": v.buf, "DO": g.buf}
    if mask is not None:
        common["M"] = mask.buf
    if plan.coop and attention_coopmat.backward_usable(rt, plan):
        attention_coopmat.backward(q, k, v, g, mask, plan, lse, delta, dq, dk, dv)
        return dq, dk, dv, None
    push = plan.push(mask)
    if dq.numel():
        rt.run(plan.kernel(rt, GRAD_Q, mask, q.dtype), {"DQ": dq.buf, **common}, push, _groups(plan.L, plan.N, rt))
    if dk.numel() or dv.numel():
        rt.run(plan.kernel(rt, GRAD_KV, mask, q.dtype), {"DK": dk.buf, "DV": dv.buf, **common}, push,
               _groups(plan.S, plan.N, rt))
    return dq, dk, dv, None


@differentiable(_attention_backward, saves=(0, 1, 2, "out"))
def _attention(q: Tensor, k: Tensor, v: Tensor, plan: _Plan) -> Tensor:
    out, plan.lse = _forward_launch(q, k, v, plan.mask, plan)
    return out


def _float_mask(mask: Tensor, batch, L: int, S: int) -> Tensor:
    if not isinstance(mask, Tensor):
        raise TypeError(f"attn_mask must be a Tensor, not {type(mask).__name__}")
    if mask.dtype.name == "bool":
        mask = ew.where(mask, zeros((), dtype=float32, runtime=mask.runtime), -math.inf)
    elif not mask.dtype.is_float:
        raise errors.DTypeError(f"attn_mask must be bool or floating point, not {mask.dtype.name}")
    if mask.dtype is not float32:
        mask = ew.cast(mask, float32)
    try:
        return sh.expand(mask, tuple(batch) + (L, S))
    except errors.ShapeError:
        raise errors.ShapeError(f"attn_mask of shape {mask.shape} does not broadcast to {tuple(batch) + (L, S)}") \
            from None


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, *, generator=None) -> Tensor:
    """``softmax(query @ key^T * scale + mask) @ value`` over the last two dims, as PyTorch's: query
    (..., L, E), key (..., S, E), value (..., S, EV), the same batch dims; ``scale`` defaults to
    1/sqrt(E); ``attn_mask`` bool (True takes part) or float (added), broadcast to (..., L, S);
    ``is_causal`` keeps keys j <= i; ``dropout_p`` drops attention weights with the seeded generator
    (``generator`` or the default one). One fused kernel; the scores are never stored."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention: {name} must be a Tensor, not {type(t).__name__}")
        if t.ndim < 2:
            raise errors.ShapeError(f"scaled_dot_product_attention: {name} needs at least 2 dims, got {t.shape}")
        if not t.dtype.is_float:
            raise errors.DTypeError(f"scaled_dot_product_attention needs floating-point tensors, {name} is "
                                    f"{t.dtype.name}")
    if not (query.dtype is key.dtype is value.dtype):
        raise errors.DTypeError(f"query, key and value must share a dtype, got {query.dtype.name}, "
                                f"{key.dtype.name}, {value.dtype.name}")
    batch, (L, E) = tuple(query.shape[:-2]), query.shape[-2:]
    S, EV = key.shape[-2], value.shape[-1]
    if tuple(key.shape[:-2]) != batch or tuple(value.shape[:-2]) != batch:
        raise errors.ShapeError(f"query {query.shape}, key {key.shape} and value {value.shape} must share their "
                                "batch dims")
    if key.shape[-1] != E or value.shape[-2] != S:
        raise errors.ShapeError(f"key {key.shape} must be (..., S, {E}) and value {value.shape} (..., {S}, EV) "
                                f"for query {query.shape}")
    if not 0 < E <= MAX_HEAD_DIM or EV > MAX_HEAD_DIM:
        raise errors.LimitExceededError(f"head dims {E} and {EV}: this kernel takes 1 to {MAX_HEAD_DIM}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if attn_mask is not None and is_causal:
        raise errors.ShapeError("pass attn_mask or is_causal, not both (as PyTorch)")
    if attn_mask is not None and getattr(attn_mask, "requires_grad", False) and is_grad_enabled():
        raise errors.HlxError("attn_mask takes no gradient here; detach it (or build the scores with matmul)")
    rt = query.runtime
    if 0 in (math.prod(batch), L, S, EV):  # nothing to attend to (S = 0 gives zeros, as PyTorch)
        return zeros(batch + (L, EV), dtype=query.dtype, runtime=rt)
    plan = _Plan()
    plan.batch, plan.L, plan.S, plan.E, plan.EV = batch, L, S, E, EV
    plan.N = math.prod(batch)
    plan.scale = float(1.0 / math.sqrt(E) if scale is None else scale)
    plan.causal, plan.p = bool(is_causal), float(dropout_p)
    plan.seed = plan.ctr = 0
    if plan.N * L * max(S, 1) >= 2**31 or plan.N * L * -(-S // 4) >= 2**32:
        raise errors.LimitExceededError(f"attention of {plan.N} x {L} x {S} is more than this kernel indexes")
    if rt.device.physical.type == "cpu" and max(L, S) * (11 if dropout_p > 0 else 1) > LLVMPIPE_LOOP_LIMIT:
        raise errors.LimitExceededError(
            f"attention over {L} queries and {S} keys{' with dropout' if dropout_p > 0 else ''}: on this CPU device "
            f"(llvmpipe) a loop ends silently after {LLVMPIPE_LOOP_LIMIT} iterations in one invocation")
    mask = None
    if attn_mask is not None:
        if len(batch) > MAX_BATCH_DIMS:
            raise errors.ShapeError(f"a mask is read through at most {MAX_BATCH_DIMS} batch dims, not {len(batch)}")
        mask = _float_mask(attn_mask, batch, L, S)
        pad = MAX_BATCH_DIMS - len(batch)
        plan.mshape = [1] * pad + [int(d) for d in batch]
        plan.mst = [0] * pad + list(mask.strides[:-2])
    if is_strict():  # the fused kernel's order follows its key tile, hence the device
        return composed_attention(query, key, value, mask, plan.causal, plan.scale, plan.p, generator)
    if plan.p > 0:
        if rt.stream.capture_graph is not None:
            raise errors.CaptureError("attention dropout inside a capture is not supported: its counter is taken "
                                      "on the host; use dropout_p=0 in captured steps")
        gen = generator or default_generator
        plan.seed = gen.seed
        plan.ctr = gen.take(plan.N * L * -(-S // 4) * 4)
    q, k, v = (t.contiguous() for t in (query, key, value))
    plan.mask = mask
    return _attention(q, k, v, plan)


def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:  # noqa: A002 - torch's name
    """``beta * input + alpha * (batch1 @ batch2)`` for (B, n, m) and (B, m, p) batches, ``input``
    broadcast to (B, n, p), as torch.baddbmm (beta 0 ignores ``input``, NaN included)."""
    from .contract import bmm
    prod = bmm(batch1, batch2)
    if alpha != 1:
        prod = prod * alpha
    if beta == 0:
        return prod
    try:
        sh.expand(input, prod.shape)
    except errors.ShapeError:
        raise errors.ShapeError(f"baddbmm: input of shape {input.shape} does not broadcast to {prod.shape}") from None
    return prod + (input if beta == 1 else input * beta)


__all__ = ["baddbmm", "scaled_dot_product_attention"]
