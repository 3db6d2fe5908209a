"""Attention on NVIDIA's cooperative-matrix-2 extension (forward: ``attention/attention_cm2.comp``):
workgroup-scope matrices, tensor-addressed loads, row reductions and per-element operations keep the
online softmax on the accumulators, where :mod:`.attention_coopmat`'s kernel (cooperative-matrix-1,
whose accumulator layout is opaque) takes every score tile through shared memory.

Same bindings, push fields, outputs and logsumexp as that kernel's forward (:mod:`.attention_launch`),
so its backward follows either. :func:`chosen` decides: the device enables ``cooperative_matrix2`` (every part this kernel
uses), the glslang library that compiles it is installed, the tile fits the device's limits and the
operands start on 16-byte boundaries. ``$HLX_ATTENTION_COOPMAT`` overrides: ``1`` never takes it,
``2`` requires it (an error where it cannot run, and no silent fallback when it fails to compile);
unset or ``auto``, a compile failure falls back to cooperative-matrix-1 once and for all.

The backward (``attention/attention_cm2_bwd.comp``: dQ a workgroup per query block, dK and dV one per
key block, blocks ascending, no atomics) is chosen the same way, with ``$HLX_ATTENTION_COOPMAT_BWD``
and :data:`BACKWARD`; either backward follows either forward (they share the saved logsumexp).
"""

from __future__ import annotations

import os
from importlib import resources

from .. import errors, glslang_library
from .attention_launch import backward_args, backward_specs, forward_args, forward_specs
from .matmul import cm2_shape_listed

ENV = "HLX_ATTENTION_COOPMAT"
ENV_BWD = "HLX_ATTENTION_COOPMAT_BWD"
FORWARD = forward_specs(resources.files(__package__) / "attention" / "attention_cm2.comp")
# (BQ query rows a workgroup, BK keys a block, THREADS, ROWSUM_MMA): the default, and the variants the
# check script sweeps (tried in order where the device does not take the default); FORCE_CONFIG
# (benchmarks) replaces them.
DEFAULT_CONFIG = (64, 64, 128, 1)
VARIANTS = [(bq, bk, th, 1) for bq in (64, 128) for bk in (32, 64) for th in (128, 256)] + [(64, 64, 128, 0)]
FORCE_CONFIG: tuple[int, int, int, int] | None = None
GRAD_Q, GRAD_KV = backward_specs(resources.files(__package__) / "attention" / "attention_cm2_bwd.comp")
# The backward's (BR rows a workgroup, BT columns a block, THREADS); BACKWARD False keeps the
# cooperative-matrix-1 backward in auto mode: on the H100 the cm2 forward with the coopmat-1
# backward was faster than both on cm2 in 14 of 16 rows (check_attention_cm2.py, NOTES.md), so
# the cm2 backward runs where $HLX_ATTENTION_COOPMAT_BWD=2 asks for it.
BACKWARD = False
BWD_DEFAULT_CONFIG = (64, 64, 256)
BWD_VARIANTS = [(64, 32, 128), (64, 64, 128), (64, 64, 256), (128, 64, 256), (128, 32, 256)]
FORCE_BWD_CONFIG: tuple[int, int, int] | None = None
_PARTS = ("workgroup_scope", "flexible_dimensions", "reductions", "conversions", "per_element_operations",
          "tensor_addressing")
_failed = {"fwd": False, "bwd": False}  # a compile failure in auto mode: cooperative-matrix-1 from then on


def mode(env: str = ENV) -> str:
    """``$HLX_ATTENTION_COOPMAT`` (forward) or ``$HLX_ATTENTION_COOPMAT_BWD`` (backward): "1"
    (coopmat-1 only), "2" (cm2 required) or "auto"."""
    value = os.environ.get(env, "auto").strip().lower() or "auto"
    if value not in ("1", "2", "auto"):
        raise errors.HlxError(f"${env} is {value!r}: 1 (cooperative-matrix-1), 2 (cooperative-matrix-2) or auto")
    return value


def _fits(rt, dtype: str, threads: int, ms, ns, ks) -> bool:
    """The device's limits take the workgroup and every dimension, and (where it lists them) some
    flexible-dimension combination of ``dtype`` into float32 at this workgroup size divides the
    rows ``ms``, columns ``ns`` and inner dims ``ks`` of every product."""
    limits = rt.ctx.physical_device.limits
    if limits.get("cooperative_matrix2_flexible_dimensions_max_dimension", 0) < max(*ms, *ns, *ks):
        return False
    return cm2_shape_listed(rt, dtype, threads, ms, ns, ks, unlisted=True)


def config(rt, dtype, e: int, ev: int):
    """(BQ, BK, THREADS, ROWSUM_MMA) for these head dims: FORCE_CONFIG, else the default or the first
    variant the device takes (products Q K^T: BQ x BK x E, P V: BQ x EV x BK, rows of ones: BQ x BK
    x BK); None where none fits."""
    tried = [FORCE_CONFIG] if FORCE_CONFIG else [DEFAULT_CONFIG] + VARIANTS
    return next((c for c in tried if _fits(rt, dtype.name, c[2], (c[0],), (c[1], ev), (e, c[1]))), None)


def bwd_config(rt, dtype, e: int, ev: int):
    """(BR, BT, THREADS) of the backward, chosen as :func:`config` chooses (products BR x BT x E and
    EV, BR x E and EV x BT)."""
    tried = [FORCE_BWD_CONFIG] if FORCE_BWD_CONFIG else [BWD_DEFAULT_CONFIG] + BWD_VARIANTS
    return next((c for c in tried if _fits(rt, dtype.name, c[2], (c[0],), (c[1], e, ev), (e, ev, c[1]))), None)


def available(rt, dtype, e: int, ev: int, backward: bool = False) -> bool:
    """The device and the installed compiler can run the forward (or ``backward``) kernels for ``dtype``
    and head dims ``e``, ``ev``."""
    feats = rt.device.enabled_features
    if not feats.get("cooperative_matrix2") or not all(feats.get(f"cooperative_matrix2_{p}") for p in _PARTS):
        return False
    if dtype.name not in ("float16", "bfloat16") or e % 16 or ev % 16:
        return False
    if dtype.name == "bfloat16" and not feats.get("bfloat16_cooperative_matrix"):
        return False
    fits = bwd_config(rt, dtype, e, ev) if backward else config(rt, dtype, e, ev)
    return glslang_library.available() and fits is not None


def chosen(rt, dtype, e: int, ev: int, offsets, backward: bool = False) -> bool:
    """Whether the forward (or ``backward``) takes these kernels (``offsets``: the operands' element offsets)."""
    env = ENV_BWD if backward else ENV
    m = mode(env)
    if m == "1" or (backward and not BACKWARD and m == "auto"):
        return False
    ok = available(rt, dtype, e, ev, backward) and all(off % 8 == 0 for off in offsets)
    if m == "2":
        if not ok:
            raise errors.HlxError(f"${env}=2 but the cooperative-matrix-2 attention cannot run here (device "
                                  f"feature, glslang library, {dtype.name}, head dims {e}/{ev} or operand alignment)")
        return True
    return ok and not _failed["bwd" if backward else "fwd"]


def kernel(rt, dtype, e: int, ev: int, has_mask: bool, causal: bool, L: int, S: int):
    """The compiled kernel for ``L`` queries and ``S`` keys, and its query rows a workgroup (raises
    :class:`~hlx_vulkan.errors.ShaderCompileError` where it cannot be built)."""
    bq, bk, threads, rowsum = config(rt, dtype, e, ev)
    defines = {"E": e, "EV": ev, "BQ": bq, "BK": bk, "THREADS": threads, "ROWSUM_MMA": rowsum,
               "HAS_MASK": int(has_mask), "CAUSAL": int(causal), "ALIGNED": int(L % bq == 0 and S % bk == 0),
               "AT_BF16": int(dtype.name == "bfloat16"), "CT": "float", "OCT": "float"}
    return rt.kernels.get(FORWARD[has_mask], defines, {"O": dtype, "A": dtype}, (threads, 1, 1),
                          target_env="vulkan1.3"), bq


def forward(q, k, v, mask, plan, out, lse) -> bool:
    """attention_coopmat.forward on this kernel; False (nothing recorded) where it failed to compile
    in auto mode, so the caller runs cooperative-matrix-1."""
    rt = q.runtime
    try:
        kern, bq = kernel(rt, q.dtype, plan.E, plan.EV, mask is not None, plan.causal, plan.L, plan.S)
    except errors.ShaderCompileError:
        if mode() == "2":
            raise
        _failed["fwd"] = True
        return False
    tensors, fields = forward_args(q, k, v, mask, plan, out, lse)
    rt.run(kern, tensors, fields, (-(-plan.L // bq), plan.N, 1))
    return True


def bwd_kernels(rt, dtype, e: int, ev: int, has_mask: bool, causal: bool, L: int, S: int):
    """The dQ and dK/dV kernels and their rows a workgroup (raises ShaderCompileError where they cannot be built)."""
    br, bt, threads = bwd_config(rt, dtype, e, ev)
    aligned = L % br == 0 and S % br == 0 and L % bt == 0 and S % bt == 0
    defines = {"E": e, "EV": ev, "BR": br, "BT": bt, "THREADS": threads, "HAS_MASK": int(has_mask),
               "CAUSAL": int(causal), "ALIGNED": int(aligned), "AT_BF16": int(dtype.name == "bfloat16"),
               "CT": "float", "OCT": "float"}
    dtypes = {"O": dtype, "A": dtype}
    return tuple(rt.kernels.get(specs[has_mask], {**defines, "MODE": m}, dtypes, (threads, 1, 1),
                                target_env="vulkan1.3") for m, specs in ((1, GRAD_Q), (2, GRAD_KV))) + (br,)


def backward(q, k, v, g, mask, plan, lse, delta, dq, dk, dv) -> bool:
    """attention_coopmat.backward on these kernels; False (nothing recorded) where they failed to
    compile in auto mode, so the caller runs cooperative-matrix-1."""
    rt = q.runtime
    try:
        kq, kkv, br = bwd_kernels(rt, q.dtype, plan.E, plan.EV, mask is not None, plan.causal, plan.L, plan.S)
    except errors.ShaderCompileError:
        if mode(ENV_BWD) == "2":
            raise
        _failed["bwd"] = True
        return False
    common, fields = backward_args(q, k, v, g, mask, plan, lse, delta)
    if dq.numel():
        rt.run(kq, {"DQ": dq.buf, **common}, fields, (-(-plan.L // br), plan.N, 1))
    if dk.numel() or dv.numel():
        rt.run(kkv, {"DK": dk.buf, "DV": dv.buf, **common}, fields, (-(-plan.S // br), plan.N, 1))
    return True
