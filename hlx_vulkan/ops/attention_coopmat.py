"""The forward of scaled-dot-product attention on cooperative matrices (``attention/attention_coopmat.comp``):
FlashAttention-2 style, float16 (and bfloat16 where the device multiplies it) inputs, float32
accumulation, where the device runs matmul's cooperative matrices (:func:`matmul.coopmat_available`),
strict mode is off, both head dims are in :data:`HEAD_DIMS` and there is no dropout. It writes the
same outputs as the fused kernel of ``ops/attention.py`` (output, and each row's logsumexp for that
module's backward), so only the forward changes. Everything else runs the fused kernel.
"""

from __future__ import annotations

import math
from importlib import resources

from .. import errors
from ..runtime import KernelSpec
from ..strict_mode import is_strict
from .matmul import coopmat_available

_SOURCE = resources.files(__package__) / "attention" / "attention_coopmat.comp"
_PUSH = [("N", "I"), ("L", "I"), ("S", "I"), ("scale2", "f"), ("mshape", "4I"), ("mst", "4i"), ("mst_l", "i"),
         ("mst_s", "i"), ("off_o", "I"), ("off_lse", "I"), ("off_q", "I"), ("off_k", "I"), ("off_v", "I"),
         ("off_m", "I")]
_BINDINGS = [("O", "write", "O"), ("Lse", "write"), ("Q", "read", "A"), ("K", "read", "A"), ("V", "read", "A")]
FORWARD = {m: KernelSpec(_SOURCE, _BINDINGS + ([("M", "read")] if m else []), _PUSH) for m in (False, True)}
HEAD_DIMS = (64, 128)
KEY_TILES = (64, 32, 16)
# (subgroups a workgroup, prefetch, keys a tile): the kernel's variants (NSG, PREFETCH, BK). Tried in
# order, the first whose shared memory fits serves; FORCE_CONFIG (benchmarks) puts one first.
CONFIGS = [(4, 0, bk) for bk in KEY_TILES]
FORCE_CONFIG: tuple[int, int, int] | None = None


def shared_bytes(e: int, ev: int, bk: int, nsg: int = 4) -> int:
    """Shared memory of the kernel for head dims ``e``, ``ev``, ``bk`` keys a tile and ``nsg`` subgroups
    (mirrors its UNITS)."""
    ks, vs, ss = e // 8 + 1, ev // 8 + 1, bk // 4 + 1
    units = max(bk * (ks + vs) + nsg * 16 * ss, 16 * nsg * ks)
    return 16 * units + 4 * (16 * nsg + 32 * nsg)


def config(rt, e: int, ev: int):
    """(NSG, PREFETCH, BK) for head dims ``e`` and ``ev``: :data:`FORCE_CONFIG` or the first of
    :data:`CONFIGS` whose shared memory fits the device; None where none does."""
    budget = rt.ctx.physical_device.limits["max_compute_shared_memory_size"]
    tried = [FORCE_CONFIG] if FORCE_CONFIG is not None else CONFIGS
    return next((c for c in tried if shared_bytes(e, ev, c[2], c[0]) <= budget), None)


def usable(rt, dtype, e: int, ev: int, dropout_p: float) -> bool:
    """Whether the forward of this attention runs on cooperative matrices."""
    return (dropout_p == 0 and e in HEAD_DIMS and ev in HEAD_DIMS and not is_strict()
            and coopmat_available(rt, dtype) and config(rt, e, ev) is not None)


def forward(q, k, v, mask, plan, out, lse) -> None:
    """O and the rows' logsumexp of ``plan`` (ops/attention.py's _Plan) into ``out`` and ``lse``;
    ``q``, ``k``, ``v`` contiguous, ``mask`` None or float32 broadcast to (..., L, S)."""
    rt = q.runtime
    nsg, prefetch, bk = config(rt, plan.E, plan.EV)
    groups = (-(-plan.L // (16 * nsg)), plan.N, 1)
    if plan.N > rt.max_groups[1]:
        raise errors.LimitExceededError(f"attention over {plan.N} (batch x heads) is more than the device's "
                                        f"{rt.max_groups[1]} workgroups in y")
    offsets = [t.buf.byte_offset // t.dtype.itemsize for t in (q, k, v)]
    defines = {"E": plan.E, "EV": plan.EV, "BK": bk, "NSG": nsg, "PREFETCH": prefetch, "HAS_MASK": int(mask is not None),
               "CAUSAL": int(plan.causal), "QKV_VEC": int(all(off % 8 == 0 for off in offsets)),
               "CT": "float", "OCT": "float"}
    if q.dtype.name == "bfloat16":
        defines["HLX_COOPMAT_BF16"] = 1
    kernel = rt.kernels.get(FORWARD[mask is not None], defines, {"O": q.dtype, "A": q.dtype}, (32 * nsg, 1, 1),
                            target_env="vulkan1.3")
    fields = {"N": plan.N, "L": plan.L, "S": plan.S, "scale2": plan.scale * math.log2(math.e)}
    tensors = {"O": out.buf, "Lse": lse.buf, "Q": q.buf, "K": k.buf, "V": v.buf}
    if mask is not None:
        tensors["M"] = mask.buf
        fields.update(mshape=plan.mshape, mst=plan.mst, mst_l=mask.strides[-2], mst_s=mask.strides[-1])
    rt.run(kernel, tensors, fields, groups)
