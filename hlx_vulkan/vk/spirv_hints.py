"""Loop hints a driver obeys at any cost, dropped from modules a caller hands in.

A loop marked ``Unroll`` (or with a ``PeelCount`` / ``PartialCount``) is unrolled as told: Mesa's
compiler does so whatever the trip count, and one fuzzed module whose 4-trip loops became 65,536-trip
loops kept lavapipe's pipeline creation busy for over five minutes. The hints never change what a
kernel computes, so :func:`drop_unroll_hints` clears them from modules that did not come from this
library's own compiler (whose loops are short and whose hints matter for speed); the driver's own
heuristics still unroll the small loops.
"""

from __future__ import annotations

from array import array

from .spirv import _words as module_words  # the header checked, a big-endian module swapped

_OP_LOOP_MERGE = 246
_UNROLL, _PEEL_COUNT, _PARTIAL_COUNT = 0x1, 0x80, 0x100
# Loop-control bits that carry one literal operand, in operand order (SPIR-V 3.23).
_WITH_LITERAL = (0x8, 0x10, 0x20, 0x40, 0x80, 0x100)


def drop_unroll_hints(spirv: bytes) -> bytes:
    """``spirv`` with every OpLoopMerge's Unroll, PeelCount and PartialCount removed (the same bytes
    when there is none). ``spirv`` must have passed the loader's checks (well-formed words)."""
    words = module_words(spirv)
    out, pos, changed = array("I", words[:5]), 5, False
    while pos < len(words):
        count = words[pos] >> 16
        if count == 0 or pos + count > len(words):
            return spirv  # malformed: the loader refuses it before this runs
        inst = words[pos:pos + count]
        pos += count
        if (inst[0] & 0xFFFF) == _OP_LOOP_MERGE and len(inst) >= 4 and inst[3] & (_UNROLL | _PEEL_COUNT | _PARTIAL_COUNT):
            control, literals = inst[3], list(inst[4:])
            kept, i = [], 0
            for bit in _WITH_LITERAL:
                if control & bit:
                    if bit not in (_PEEL_COUNT, _PARTIAL_COUNT) and i < len(literals):
                        kept.append(literals[i])
                    i += 1
            control &= ~(_UNROLL | _PEEL_COUNT | _PARTIAL_COUNT)
            inst = [((4 + len(kept)) << 16) | _OP_LOOP_MERGE, inst[1], inst[2], control, *kept]
            changed = True
        out.extend(inst)
    return out.tobytes() if changed else spirv
