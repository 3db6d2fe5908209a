"""What the flash-attention kernels share (:mod:`.attention_coopmat`'s and :mod:`.attention_cm2`'s):
their bindings and push fields, forward and backward, and the tensors and push values a launch
passes. Either backward follows either forward because both read the same saved logsumexp."""

from __future__ import annotations

import math

from ..runtime import KernelSpec

_PUSH = [("N", "I"), ("L", "I"), ("S", "I"), ("scale2", "f"), ("mshape", "4I"), ("mst", "4i"), ("mst_l", "i"),
         ("mst_s", "i"), ("off_o", "I"), ("off_lse", "I"), ("off_q", "I"), ("off_k", "I"), ("off_v", "I"),
         ("off_m", "I")]
_BINDINGS = [("O", "write", "O"), ("Lse", "write"), ("Q", "read", "A"), ("K", "read", "A"), ("V", "read", "A")]
_MASK = [("M", "read")]
_BWD_PUSH = [("N", "I"), ("L", "I"), ("S", "I"), ("scale2", "f"), ("scale", "f"), ("mshape", "4I"), ("mst", "4i"),
             ("mst_l", "i"), ("mst_s", "i"), ("off_dq", "I"), ("off_dk", "I"), ("off_dv", "I"), ("off_lse", "I"),
             ("off_dlt", "I"), ("off_q", "I"), ("off_k", "I"), ("off_v", "I"), ("off_do", "I"), ("off_m", "I")]
_BWD_READS = [("Lse", "read"), ("Dlt", "read"), ("Q", "read", "A"), ("K", "read", "A"), ("V", "read", "A"),
              ("DO", "read", "A")]


def forward_specs(source) -> dict:
    """The forward kernel of ``source``, without and with a mask (keyed False, True)."""
    return {m: KernelSpec(source, _BINDINGS + (_MASK if m else []), _PUSH) for m in (False, True)}


def backward_specs(source) -> tuple[dict, dict]:
    """The dQ and the dK/dV kernels of ``source``, each without and with a mask."""
    grad_q = {m: KernelSpec(source, [("DQ", "write", "O")] + _BWD_READS + (_MASK if m else []), _BWD_PUSH)
              for m in (False, True)}
    grad_kv = {m: KernelSpec(source, [("DK", "write", "O"), ("DV", "write", "O")] + _BWD_READS
                             + (_MASK if m else []), _BWD_PUSH) for m in (False, True)}
    return grad_q, grad_kv


def _with_mask(tensors: dict, fields: dict, mask, plan) -> None:
    if mask is not None:
        tensors["M"] = mask.buf
        fields.update(mshape=plan.mshape, mst=plan.mst, mst_l=mask.strides[-2], mst_s=mask.strides[-1])


def forward_args(q, k, v, mask, plan, out, lse) -> tuple[dict, dict]:
    """The forward's tensors by binding and push fields (ops/attention.py's _Plan ``plan``)."""
    fields = {"N": plan.N, "L": plan.L, "S": plan.S, "scale2": plan.scale * math.log2(math.e)}
    tensors = {"O": out.buf, "Lse": lse.buf, "Q": q.buf, "K": k.buf, "V": v.buf}
    _with_mask(tensors, fields, mask, plan)
    return tensors, fields


def backward_args(q, k, v, g, mask, plan, lse, delta) -> tuple[dict, dict]:
    """The backward kernels' inputs by binding (their outputs added by the caller) and push fields."""
    fields = {"N": plan.N, "L": plan.L, "S": plan.S, "scale2": plan.scale * math.log2(math.e), "scale": plan.scale}
    common = {"Lse": lse.buf, "Dlt": delta.buf, "Q": q.buf, "K": k.buf, "V": v.buf, "DO": g.buf}
    _with_mask(common, fields, mask, plan)
    return common, fields


__all__ = ["backward_args", "backward_specs", "forward_args", "forward_specs"]
