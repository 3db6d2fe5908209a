"""SPIR-V word surgery for tests: read a module's instructions, edit them, and build small modules by hand."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

MAGIC = 0x07230203
OP_CAPABILITY, OP_EXTENSION, OP_MEMORY_MODEL, OP_ENTRY_POINT, OP_EXECUTION_MODE = 17, 10, 14, 15, 16
OP_NAME, OP_DECORATE, OP_TYPE_VOID, OP_TYPE_INT, OP_TYPE_FLOAT, OP_TYPE_ARRAY = 5, 71, 19, 21, 22, 28
OP_TYPE_VECTOR, OP_TYPE_STRUCT, OP_TYPE_POINTER, OP_CONSTANT, OP_CONSTANT_COMPOSITE = 23, 30, 32, 43, 44
OP_VARIABLE, OP_ACCESS_CHAIN, OP_EXECUTION_MODE_ID, OP_NOP, OP_SPEC_CONSTANT_OP = 59, 65, 331, 0, 52
DEC_BINDING, DEC_DESCRIPTOR_SET = 33, 34


def words_of(spirv: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(spirv) // 4}I", spirv))


def pack(words) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)


def instructions(words):
    """(word index, opcode, operands) of each instruction after the header."""
    i = 5
    while i < len(words):
        count, op = words[i] >> 16, words[i] & 0xFFFF
        yield i, op, words[i + 1:i + count]
        i += count


def find(words, op, where=lambda operands: True) -> int:
    """Word index of the first instruction ``op`` whose operands satisfy ``where``."""
    return next(i for i, o, operands in instructions(words) if o == op and where(operands))


def instr(op: int, *operands: int) -> list[int]:
    return [(len(operands) + 1) << 16 | op, *operands]


def string(text: str | bytes) -> list[int]:
    """A literal string's words, nul-terminated and padded."""
    raw = (text.encode() if isinstance(text, str) else text) + b"\0"
    raw += b"\0" * (-len(raw) % 4)
    return list(struct.unpack(f"<{len(raw) // 4}I", raw))


def module(*body: list[int], bound: int = 100, version: int = 0x00010500) -> bytes:
    """A compute module: OpCapability Shader, OpMemoryModel Logical GLSL450, OpEntryPoint GLCompute %1 "main",
    then ``body``. Enough for the parser; not meant for a driver."""
    words = [MAGIC, version, 0, bound, 0]
    words += instr(OP_CAPABILITY, 1) + instr(OP_MEMORY_MODEL, 0, 1) + instr(OP_ENTRY_POINT, 5, 1, *string("main"))
    for part in body:
        words += part
    return pack(words)


@st.composite
def mutated_modules(draw, seeds):
    """One of ``seeds`` with one to four bit flips, word changes, cuts, insertions, deletions or splices."""
    words = words_of(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not words:
            break
        kind = draw(st.sampled_from(["flip", "word", "small", "cut", "insert", "delete", "splice"]))
        at = draw(st.integers(0, len(words) - 1))
        if kind == "flip":
            words[at] ^= 1 << draw(st.integers(0, 31))
        elif kind == "word":
            words[at] = draw(st.integers(0, 0xFFFFFFFF))
        elif kind == "small":
            words[at] = draw(st.sampled_from([0, 1, 2, 3, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]))
        elif kind == "cut":
            words = words[:max(at, 1)]
        elif kind == "insert":
            words[at:at] = draw(st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=4))
        elif kind == "delete":
            del words[at:at + draw(st.integers(1, 4))]
        else:
            other = words_of(draw(st.sampled_from(seeds)))
            start = draw(st.integers(0, len(other) - 1))
            words[at:at] = other[start:start + draw(st.integers(1, 32))]
    return pack(words) + draw(st.sampled_from([b"", b"\x00", b"\x01\x02\x03"]))
