"""The SPIR-V pass of strict mode (:mod:`hlx_vulkan.strict_mode`): applied by the compiler to every
module built with the define ``HLX_STRICT``.

:func:`harden` returns the module with

- every float add, subtract and multiply (OpVectorTimesScalar too) decorated NoContraction: no device fuses a * b + c
  into an fma, so each is one correctly rounded operation;
- every float32 result of those (scalars and vectors), and every float32 value loaded from a
  storage buffer, uniform or push constant, or made by a bitcast, flushed to a zero of the same
  sign when it is denormal (exponent bits zero), in integer instructions: a device that flushes
  denormals and one that keeps them then compute the same bits;

except the results of ``hlx_exact_mul`` and ``hlx_exact_add`` (``glsl/strict.glsl``): a kernel calls
these where it has proven that the result is never denormal, so the flush would return it
unchanged; they reach the pass as instructions of the extended set :data:`EXACT_SET` and leave it
as OpFMul and OpFAdd decorated NoContraction, without the flush;

and refuses, with :class:`~hlx_vulkan.errors.StrictModeError` naming the instruction, a module
that uses one whose result a driver may round its own way or whose order follows the device:
OpFDiv, OpFRem, OpFMod, dot and matrix products, every GLSL.std.450 function outside
:data:`EXACT_GLSL` (exp, log, pow, sqrt, inversesqrt, sin, fma, mix, ...), subgroup operations,
cooperative matrices and float atomics.
"""

from __future__ import annotations

from array import array

from .errors import StrictModeError

_OP_NAME = {136: "OpFDiv", 140: "OpFRem", 141: "OpFMod", 144: "OpVectorTimesMatrix", 145: "OpMatrixTimesVector",
            146: "OpMatrixTimesMatrix", 147: "OpOuterProduct", 148: "OpDot", 143: "OpMatrixTimesScalar",
            4459: "OpCooperativeMatrixMulAddKHR", 5361: "OpCooperativeMatrixMulAddNV", 6035: "OpAtomicFAddEXT",
            5614: "OpAtomicFMinEXT", 5615: "OpAtomicFMaxEXT"}
_FORBIDDEN = set(_OP_NAME) | set(range(259, 272)) | set(range(334, 367))  # OpGroup*, OpGroupNonUniform* but Elect
# GLSL.std.450 instructions whose result is exact (or an integer operation): all others are refused.
EXACT_GLSL = {1: "Round", 2: "RoundEven", 3: "Trunc", 4: "FAbs", 5: "SAbs", 6: "FSign", 7: "SSign", 8: "Floor",
              9: "Ceil", 10: "Fract", 35: "Modf", 36: "ModfStruct", 37: "FMin", 38: "UMin", 39: "SMin", 40: "FMax",
              41: "UMax", 42: "SMax", 43: "FClamp", 44: "UClamp", 45: "SClamp", 48: "Step", 51: "Frexp",
              52: "FrexpStruct", 62: "UnpackHalf2x16", 73: "FindILsb", 74: "FindSMsb", 75: "FindUMsb",
              79: "NMin", 80: "NMax", 81: "NClamp"}
_GLSL_NAMES = {13: "Sin", 14: "Cos", 15: "Tan", 26: "Pow", 27: "Exp", 28: "Log", 29: "Exp2", 30: "Log2", 31: "Sqrt",
               32: "InverseSqrt", 46: "FMix", 49: "SmoothStep", 50: "Fma", 53: "Ldexp", 21: "Tanh"}

# The extended set of hlx_exact_mul (1) and hlx_exact_add (2): float32 results the pass leaves unflushed.
EXACT_SET = "HLX.strict.exact"
_EXACT_OPS = {1: 133, 2: 129}  # -> OpFMul, OpFAdd

# Opcodes
_EXTENSION, _EXT_INST_IMPORT, _EXT_INST, _DECORATE, _LOAD, _BITCAST = 10, 11, 12, 71, 61, 124
_TYPE_BOOL, _TYPE_INT, _TYPE_FLOAT, _TYPE_VECTOR, _TYPE_POINTER = 20, 21, 22, 23, 32
_CONSTANT, _CONSTANT_COMPOSITE, _VARIABLE, _FUNCTION = 43, 44, 59, 54
_FADD, _FSUB, _FMUL, _SELECT, _IEQUAL, _BITWISE_AND = 129, 131, 133, 169, 170, 199
_VECTOR_TIMES_SCALAR = 142
_ARITH = (_FADD, _FSUB, _FMUL, _VECTOR_TIMES_SCALAR)
_ACCESS_CHAINS = (65, 66, 67, 4350)  # OpAccessChain, OpInBoundsAccessChain, OpPtrAccessChain, ...InBounds
_NO_CONTRACTION = 42
# Storage classes whose float32 loads are flushed: Uniform, PushConstant, StorageBuffer, PhysicalStorageBuffer.
_FLUSHED_CLASSES = {2, 9, 12, 5349}
# The module's sections before the types: header, debug and annotation instructions.
_BEFORE_TYPES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 14, 15, 16, 17, 71, 72, 73, 74, 75, 330, 331, 332, 5632, 5633}
_TYPE_INT_32 = ("int", 32, 0)


def _split(spirv: bytes) -> tuple[list[int], list[list[int]]]:
    words = list(memoryview(spirv).cast("I"))
    header, pos, insts = words[:5], 5, []
    while pos < len(words):
        count = words[pos] >> 16
        if count == 0:
            raise StrictModeError("malformed SPIR-V: an instruction of zero words")
        insts.append(words[pos:pos + count])
        pos += count
    return header, insts


def _inst(op: int, *operands: int) -> list[int]:
    return [((1 + len(operands)) << 16) | op, *operands]


def harden(spirv: bytes, name: str = "kernel") -> bytes:
    """The strict form of ``spirv`` (see the module's docstring); ``name`` labels errors."""
    header, insts = _split(spirv)
    glsl_sets = {i[1] for i in insts if i[0] & 0xFFFF == _EXT_INST_IMPORT
                 and array("I", i[2:]).tobytes().rstrip(b"\0").startswith(b"GLSL.std.450")}
    def exact_name(words) -> bool:
        return array("I", words).tobytes().rstrip(b"\0") == EXACT_SET.encode()

    exact_sets = {i[1] for i in insts if i[0] & 0xFFFF == _EXT_INST_IMPORT and exact_name(i[2:])}
    types: dict[int, tuple] = {}      # type id -> ("float", width) / ("int", width, signed) / ("bool",) / ...
    result_type: dict[int, int] = {}  # value id -> its type id
    for inst in insts:
        op = inst[0] & 0xFFFF
        if op in _FORBIDDEN:
            raise StrictModeError(f"{name} is not strict-ready: it uses {_OP_NAME.get(op, f'subgroup op {op}')}, "
                                  "whose result or order differs between devices")
        if op == _EXT_INST and inst[3] in glsl_sets and inst[4] not in EXACT_GLSL:
            fn = _GLSL_NAMES.get(inst[4], f"instruction {inst[4]}")
            raise StrictModeError(f"{name} is not strict-ready: it calls GLSL.std.450 {fn}, which drivers round "
                                  "their own way (strict.glsl gives software forms of exp, log, sqrt, pow, tanh, fma)")
        if op == _TYPE_FLOAT:
            types[inst[1]] = ("float", inst[2])
        elif op == _TYPE_INT:
            types[inst[1]] = ("int", inst[2], inst[3])
        elif op == _TYPE_BOOL:
            types[inst[1]] = ("bool",)
        elif op == _TYPE_VECTOR:
            types[inst[1]] = ("vector", inst[2], inst[3])
        elif op == _TYPE_POINTER:
            types[inst[1]] = ("pointer", inst[2], inst[3])
        elif op in (_LOAD, _BITCAST, _VARIABLE, _CONSTANT, _CONSTANT_COMPOSITE, *_ARITH) or \
                op in _ACCESS_CHAINS:
            result_type[inst[2]] = inst[1]

    bound = [header[3]]

    def fresh() -> int:
        bound[0] += 1
        return bound[0] - 1

    new_decls: list[list[int]] = []
    found = {v: k for k, v in types.items() if v[0] != "pointer"}
    consts: dict[tuple, int] = {}
    for inst in insts:
        if inst[0] & 0xFFFF == _CONSTANT and types.get(inst[1]) == _TYPE_INT_32 and len(inst) == 4:
            consts.setdefault((inst[1], inst[3]), inst[2])

    def type_id(desc: tuple) -> int:
        tid = found.get(desc)
        if tid is None:
            tid = found[desc] = fresh()
            if desc[0] == "vector":
                new_decls.append(_inst(_TYPE_VECTOR, tid, desc[1], desc[2]))
            elif desc[0] == "bool":
                new_decls.append(_inst(_TYPE_BOOL, tid))
            else:
                new_decls.append(_inst(_TYPE_INT, tid, 32, 0))
        return tid

    def const_id(tid: int, value) -> int:
        key = (tid, value)
        cid = consts.get(key)
        if cid is None:
            cid = consts[key] = fresh()
            desc = types.get(tid) or next(d for d, t in found.items() if t == tid)
            if desc[0] == "vector":
                scalar = const_id(desc[1], value)
                new_decls.append(_inst(_CONSTANT_COMPOSITE, tid, cid, *([scalar] * desc[2])))
            else:
                new_decls.append(_inst(_CONSTANT, tid, cid, value))
        return cid

    def guarded_shape(tid: int) -> int | None:
        """Components of a float32 scalar (1) or vector (n) type; None for anything else."""
        desc = types.get(tid)
        if desc == ("float", 32):
            return 1
        if desc and desc[0] == "vector" and types.get(desc[1]) == ("float", 32):
            return desc[2]
        return None

    def flushes_load(pointer: int) -> bool:
        desc = types.get(result_type.get(pointer, -1))
        return bool(desc) and desc[0] == "pointer" and desc[1] in _FLUSHED_CLASSES

    out_body: list[list[int]] = []
    renamed: set[int] = set()
    decorations: list[list[int]] = []
    for inst in insts:
        op = inst[0] & 0xFFFF
        if (op == _EXT_INST_IMPORT and inst[1] in exact_sets) or (op == _EXTENSION and exact_name(inst[1:])):
            continue  # glslang declares the set as an extension too
        if op == _EXT_INST and inst[3] in exact_sets:
            if inst[4] not in _EXACT_OPS or len(inst) != 7 or not guarded_shape(inst[1]):
                raise StrictModeError(f"{name}: {EXACT_SET} instruction {inst[4]} with {len(inst) - 5} operands is not "
                                      "hlx_exact_mul or hlx_exact_add of float32 values")
            out_body.append(_inst(_EXACT_OPS[inst[4]], inst[1], inst[2], inst[5], inst[6]))
            decorations.append(_inst(_DECORATE, inst[2], _NO_CONTRACTION))
            continue
        guard = None
        if op in (*_ARITH, _BITCAST) or (op == _LOAD and flushes_load(inst[3])):
            guard = guarded_shape(inst[1])
        if op in _ARITH:
            value = fresh() if guard else inst[2]
            decorations.append(_inst(_DECORATE, value, _NO_CONTRACTION))
        elif guard:
            value = fresh()
        if not guard:
            out_body.append(inst)
            continue
        original = inst[2]
        renamed.add(original)
        out_body.append([inst[0], inst[1], value, *inst[3:]])
        ftype = inst[1]
        n = guard
        utype = type_id(_TYPE_INT_32) if n == 1 else type_id(("vector", type_id(_TYPE_INT_32), n))
        btype = type_id(("bool",)) if n == 1 else type_id(("vector", type_id(("bool",)), n))
        if n == 1 and utype not in types:
            types[utype] = _TYPE_INT_32
        u, e, z, s, f = fresh(), fresh(), fresh(), fresh(), fresh()
        out_body += [_inst(_BITCAST, utype, u, value),
                     _inst(_BITWISE_AND, utype, e, u, const_id(utype, 0x7F800000)),
                     _inst(_IEQUAL, btype, z, e, const_id(utype, 0)),
                     _inst(_BITWISE_AND, utype, s, u, const_id(utype, 0x80000000)),
                     _inst(_BITCAST, ftype, f, s),
                     _inst(_SELECT, ftype, original, z, f, value)]
    # glslang's own NoContraction decorations of renamed results now sit on their new ids.
    body = [i for i in out_body if not (i[0] & 0xFFFF == _DECORATE and i[1] in renamed and i[2] == _NO_CONTRACTION)]
    # New types and constants go after the module's own, before its first function; scalars first,
    # so each declaration follows what it uses. The decorations end the annotation section.
    new_decls.sort(key=lambda i: {_TYPE_INT: 0, _TYPE_BOOL: 0, _TYPE_VECTOR: 1, _CONSTANT: 2}.get(i[0] & 0xFFFF, 3))
    first_function = next(k for k, i in enumerate(body) if i[0] & 0xFFFF == _FUNCTION)
    body[first_function:first_function] = new_decls
    first_type = next(k for k, i in enumerate(body) if i[0] & 0xFFFF not in _BEFORE_TYPES)
    body[first_type:first_type] = decorations
    header[3] = bound[0]
    return array("I", header + [w for i in body for w in i]).tobytes()
