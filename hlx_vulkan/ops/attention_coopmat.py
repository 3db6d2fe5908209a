"""Scaled-dot-product attention on cooperative matrices, FlashAttention-2 style: float16 (and bfloat16
where the device multiplies it) operands, float32 accumulation, where the device runs matmul's
cooperative matrices (:func:`matmul.coopmat_available`), strict mode is off, both head dims are in
:data:`HEAD_DIMS` and there is no dropout; everything else runs the fused kernel of ``ops/attention.py``.

The forward (``attention/attention_coopmat.comp``) writes what the fused one does: the output and each
row's logsumexp. The backward (``attention/attention_coopmat_bwd.comp``, with :data:`BACKWARD`) reads
them: one kernel gives dQ (a workgroup per query block, key tiles ascending), another dK and dV (a
workgroup per key block, query tiles ascending): fixed orders, no atomics. Where the device has
NVIDIA's cooperative-matrix-2 extension the forward and backward run :mod:`.attention_cm2`'s kernels
instead (same outputs).
"""

from __future__ import annotations

from importlib import resources

from .. import errors
from ..strict_mode import is_strict
from . import attention_cm2
from .attention_launch import backward_args, backward_specs, forward_args, forward_specs
from .matmul import coopmat_available

FORWARD = forward_specs(resources.files(__package__) / "attention" / "attention_coopmat.comp")
GRAD_Q, GRAD_KV = backward_specs(resources.files(__package__) / "attention" / "attention_coopmat_bwd.comp")
# The backward on cooperative matrices where the forward ran on them (False: the fused backward).
BACKWARD = True
BWD_NSG = 4
HEAD_DIMS = (64, 128)
KEY_TILES = (64, 32, 16)
# (subgroups a workgroup, prefetch, keys a tile, 16-row blocks a subgroup): the forward kernel's
# variants (NSG, PREFETCH, BK, RM). Tried in order, the first whose shared memory fits serves;
# FORCE_CONFIG (benchmarks) takes their place.
CONFIGS = [(4, 0, bk, 1) for bk in KEY_TILES]
FORCE_CONFIG: tuple[int, int, int, int] | None = None


def shared_bytes(e: int, ev: int, bk: int, nsg: int = 4, rm: int = 1) -> int:
    """Shared memory of the forward kernel for head dims ``e``, ``ev``, ``bk`` keys a tile, ``nsg``
    subgroups of ``rm`` 16-row blocks (mirrors its UNITS, rowv and pairv)."""
    ks, vs, ss = e // 8 + 1, ev // 8 + 1, bk // 4 + 1
    units = max(bk * (ks + vs) + nsg * 16 * rm * ss, 16 * rm * nsg * ks)
    return 16 * units + 4 * (16 * rm * nsg + 32 * nsg)


def bwd_shared_bytes(e: int, ev: int, bt: int, nsg: int = 4) -> int:
    """Shared memory of the backward kernels (mirrors attention_coopmat_bwd.comp's UNITS, tl and td)."""
    ks, vs, ss = e // 8 + 1, ev // 8 + 1, bt // 4 + 1
    return 16 * max(bt * (ks + vs) + nsg * 16 * ss, 16 * nsg * (ks + vs)) + 8 * bt


def bwd_tile(rt, e: int, ev: int) -> int | None:
    """Columns a tile of the backward kernels: the largest of KEY_TILES that fits; None where none does."""
    budget = rt.ctx.physical_device.limits["max_compute_shared_memory_size"]
    return next((bt for bt in KEY_TILES if bwd_shared_bytes(e, ev, bt, BWD_NSG) <= budget), None)


def config(rt, e: int, ev: int):
    """(NSG, PREFETCH, BK, RM) for head dims ``e`` and ``ev``: :data:`FORCE_CONFIG` or the first of
    :data:`CONFIGS` whose shared memory fits the device; None where none does."""
    budget = rt.ctx.physical_device.limits["max_compute_shared_memory_size"]
    tried = [FORCE_CONFIG] if FORCE_CONFIG is not None else CONFIGS
    return next((c for c in tried if shared_bytes(e, ev, c[2], c[0], c[3]) <= budget), None)


def usable(rt, dtype, e: int, ev: int, dropout_p: float) -> bool:
    """Whether the forward of this attention runs on cooperative matrices."""
    return (dropout_p == 0 and e in HEAD_DIMS and ev in HEAD_DIMS and not is_strict()
            and coopmat_available(rt, dtype) and config(rt, e, ev) is not None)


def forward(q, k, v, mask, plan, out, lse) -> None:
    """O and the rows' logsumexp of ``plan`` (ops/attention.py's _Plan) into ``out`` and ``lse``;
    ``q``, ``k``, ``v`` contiguous, ``mask`` None or float32 broadcast to (..., L, S)."""
    rt = q.runtime
    if plan.N > rt.max_groups[1]:
        raise errors.LimitExceededError(f"attention over {plan.N} (batch x heads) is more than the device's "
                                        f"{rt.max_groups[1]} workgroups in y")
    offsets = [t.buf.byte_offset // t.dtype.itemsize for t in (q, k, v)]
    if attention_cm2.chosen(rt, q.dtype, plan.E, plan.EV, offsets) and \
            attention_cm2.forward(q, k, v, mask, plan, out, lse):
        return
    nsg, prefetch, bk, rm = config(rt, plan.E, plan.EV)
    groups = (-(-plan.L // (16 * rm * nsg)), plan.N, 1)
    defines = {"E": plan.E, "EV": plan.EV, "BK": bk, "NSG": nsg, "PREFETCH": prefetch, "RM": rm, "HAS_MASK": int(mask is not None),
               "CAUSAL": int(plan.causal), "QKV_VEC": int(all(off % 8 == 0 for off in offsets)),
               "CT": "float", "OCT": "float"}
    if q.dtype.name == "bfloat16":
        defines["HLX_COOPMAT_BF16"] = 1
    kernel = rt.kernels.get(FORWARD[mask is not None], defines, {"O": q.dtype, "A": q.dtype}, (32 * nsg, 1, 1),
                            target_env="vulkan1.3")
    tensors, fields = forward_args(q, k, v, mask, plan, out, lse)
    rt.run(kernel, tensors, fields, groups)


def backward_usable(rt, plan) -> bool:
    """Whether the backward of an attention whose forward ran here runs here too."""
    return BACKWARD and bwd_tile(rt, plan.E, plan.EV) is not None


def backward(q, k, v, g, mask, plan, lse, delta, dq, dk, dv) -> None:
    """dQ, dK, dV of ``plan`` into ``dq``, ``dk``, ``dv`` from the output gradient ``g`` (contiguous, q's
    dtype), the forward's ``lse`` and ``delta = rowsum(g * out)`` (float32)."""
    rt = q.runtime
    offsets = [t.buf.byte_offset // t.dtype.itemsize for t in (q, k, v, g)]
    if attention_cm2.chosen(rt, q.dtype, plan.E, plan.EV, offsets, backward=True) and \
            attention_cm2.backward(q, k, v, g, mask, plan, lse, delta, dq, dk, dv):
        return
    defines = {"E": plan.E, "EV": plan.EV, "BT": bwd_tile(rt, plan.E, plan.EV), "NSG": BWD_NSG,
               "HAS_MASK": int(mask is not None), "CAUSAL": int(plan.causal),
               "QKV_VEC": int(all(off % 8 == 0 for off in offsets)), "CT": "float", "OCT": "float"}
    if q.dtype.name == "bfloat16":
        defines["HLX_COOPMAT_BF16"] = 1
    common, fields = backward_args(q, k, v, g, mask, plan, lse, delta)
    rows = 16 * BWD_NSG
    dtypes = {"O": q.dtype, "A": q.dtype}
    if dq.numel():
        kernel = rt.kernels.get(GRAD_Q[mask is not None], {**defines, "MODE": 1}, dtypes, (32 * BWD_NSG, 1, 1),
                                target_env="vulkan1.3")
        rt.run(kernel, {"DQ": dq.buf, **common}, fields, (-(-plan.L // rows), plan.N, 1))
    if dk.numel() or dv.numel():
        kernel = rt.kernels.get(GRAD_KV[mask is not None], {**defines, "MODE": 2}, dtypes, (32 * BWD_NSG, 1, 1),
                                target_env="vulkan1.3")
        rt.run(kernel, {"DK": dk.buf, "DV": dv.buf, **common}, fields, (-(-plan.S // rows), plan.N, 1))
