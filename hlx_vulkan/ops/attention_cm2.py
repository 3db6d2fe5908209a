"""The attention forward on NVIDIA's cooperative-matrix-2 extension (``attention/attention_cm2.comp``):
workgroup-scope matrices, tensor-addressed loads, row reductions and per-element operations keep the
online softmax on the accumulators, where :mod:`.attention_coopmat`'s kernel (cooperative-matrix-1,
whose accumulator layout is opaque) takes every score tile through shared memory.

Same bindings, push fields, outputs and logsumexp as that kernel's forward, so its backward follows
either. :func:`chosen` decides: the device enables ``cooperative_matrix2`` (every part this kernel
uses), the glslang library that compiles it is installed, the tile fits the device's limits and the
operands start on 16-byte boundaries. ``$HLX_ATTENTION_COOPMAT`` overrides: ``1`` never takes it,
``2`` requires it (an error where it cannot run, and no silent fallback when it fails to compile);
unset or ``auto``, a compile failure falls back to cooperative-matrix-1 once and for all.
"""

from __future__ import annotations

import math
import os
from importlib import resources

from .. import errors, glslang_library
from ..runtime import KernelSpec

ENV = "HLX_ATTENTION_COOPMAT"
_SOURCE = resources.files(__package__) / "attention" / "attention_cm2.comp"
_PUSH = [("N", "I"), ("L", "I"), ("S", "I"), ("scale2", "f"), ("mshape", "4I"), ("mst", "4i"), ("mst_l", "i"),
         ("mst_s", "i"), ("off_o", "I"), ("off_lse", "I"), ("off_q", "I"), ("off_k", "I"), ("off_v", "I"),
         ("off_m", "I")]
_BINDINGS = [("O", "write", "O"), ("Lse", "write"), ("Q", "read", "A"), ("K", "read", "A"), ("V", "read", "A")]
FORWARD = {m: KernelSpec(_SOURCE, _BINDINGS + ([("M", "read")] if m else []), _PUSH) for m in (False, True)}
# (BQ query rows a workgroup, BK keys a block, THREADS, ROWSUM_MMA): the default, and the variants the
# check script sweeps; FORCE_CONFIG (benchmarks) replaces the default.
DEFAULT_CONFIG = (64, 64, 128, 1)
VARIANTS = [(bq, bk, th, 1) for bq in (64, 128) for bk in (32, 64) for th in (128, 256)] + [(64, 64, 128, 0)]
FORCE_CONFIG: tuple[int, int, int, int] | None = None
_PARTS = ("workgroup_scope", "flexible_dimensions", "reductions", "conversions", "per_element_operations",
          "tensor_addressing")
_failed = False  # a compile failure in auto mode: cooperative-matrix-1 from then on


def mode() -> str:
    """``$HLX_ATTENTION_COOPMAT``: "1" (coopmat-1 only), "2" (cm2 required) or "auto"."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in ("1", "2", "auto"):
        raise errors.HlxError(f"${ENV} is {value!r}: 1 (cooperative-matrix-1), 2 (cooperative-matrix-2) or auto")
    return value


def _shape_fits(shapes, dtype: str, cfg, e: int, ev: int) -> bool:
    """Some flexible-dimension combination of the device takes every product of the kernel
    (Q K^T: BQ x BK x E; P V: BQ x EV x BK; rows of ones: BQ x BK x BK) at its workgroup size."""
    bq, bk, threads, _ = cfg
    for s in shapes:
        if not (s["a"] == s["b"] == dtype and s["c"] == s["result"] == "float32" and s["scope"] == 2
                and s["workgroup_invocations"] in (0, threads)):
            continue
        mg, ng, kg = s["M_granularity"] or 1, s["N_granularity"] or 1, s["K_granularity"] or 1
        if bq % mg == 0 and bk % ng == 0 and ev % ng == 0 and e % kg == 0 and bk % kg == 0:
            return True
    return False


def config(rt, dtype, e: int, ev: int):
    """(BQ, BK, THREADS, ROWSUM_MMA) for these head dims, or None where the device cannot run it."""
    cfg = FORCE_CONFIG or DEFAULT_CONFIG
    limits = rt.ctx.physical_device.limits
    if limits.get("cooperative_matrix2_workgroup_scope_max_workgroup_size", 0) < cfg[2]:
        return None
    if limits.get("cooperative_matrix2_flexible_dimensions_max_dimension", 0) < max(cfg[0], cfg[1], e, ev):
        return None
    shapes = rt.ctx.info.get("cooperative_matrix2_shapes") or []
    if shapes and not _shape_fits(shapes, dtype.name, cfg, e, ev):
        return None
    return cfg


def available(rt, dtype, e: int, ev: int) -> bool:
    """The device and the installed compiler can run this kernel for ``dtype`` and head dims ``e``, ``ev``."""
    feats = rt.device.enabled_features
    if not feats.get("cooperative_matrix2") or not all(feats.get(f"cooperative_matrix2_{p}") for p in _PARTS):
        return False
    if dtype.name not in ("float16", "bfloat16") or e % 16 or ev % 16:
        return False
    if dtype.name == "bfloat16" and not feats.get("bfloat16_cooperative_matrix"):
        return False
    return glslang_library.available() and config(rt, dtype, e, ev) is not None


def chosen(rt, dtype, e: int, ev: int, offsets) -> bool:
    """Whether the forward takes this kernel (``offsets``: the operands' element offsets)."""
    m = mode()
    if m == "1":
        return False
    ok = available(rt, dtype, e, ev) and all(off % 8 == 0 for off in offsets)
    if m == "2":
        if not ok:
            raise errors.HlxError(f"${ENV}=2 but the cooperative-matrix-2 attention cannot run here (device "
                                  f"feature, glslang library, {dtype.name}, head dims {e}/{ev} or operand alignment)")
        return True
    return ok and not _failed


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
    global _failed
    rt = q.runtime
    try:
        kern, bq = kernel(rt, q.dtype, plan.E, plan.EV, mask is not None, plan.causal, plan.L, plan.S)
    except errors.ShaderCompileError:
        if mode() == "2":
            raise
        _failed = True
        return False
    fields = {"N": plan.N, "L": plan.L, "S": plan.S, "scale2": plan.scale * math.log2(math.e)}
    tensors = {"O": out.buf, "Lse": lse.buf, "Q": q.buf, "K": k.buf, "V": v.buf}
    if mask is not None:
        tensors["M"] = mask.buf
        fields.update(mshape=plan.mshape, mst=plan.mst, mst_l=mask.strides[-2], mst_s=mask.strides[-1])
    rt.run(kern, tensors, fields, (-(-plan.L // bq), plan.N, 1))
    return True
