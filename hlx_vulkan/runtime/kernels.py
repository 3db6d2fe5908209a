"""The op-to-kernel contract: a kernel is declared once, beside the op that launches it.

A :class:`KernelSpec` names the kernel's GLSL source, its storage-buffer bindings in binding
order (each by its GLSL block name, with its role: read, write or readwrite, and the dtype
slot of ``glsl/dtypes.glsl`` it uses), and its push-constant fields in order. A push field
named ``off_<binding>`` receives that binding's element offset, filled in by the runtime.
When a variant is built (:meth:`KernelCache.get`), the declaration is checked against the
SPIR-V's reflection, so a wrong declaration fails at build time, not as garbage at run time.
A kernel that checks indices on the device declares a ``readwrite`` binding named ``ERR`` and a
push field ``site``: the runtime fills both (see :mod:`hlx_vulkan.runtime.checks`).

Descriptor sets are cached by the exact memory ranges they bind and never rewritten, so a
set can serve any number of dispatches in flight; a loop whose tensors reuse their memory
reuses its sets. A kernel's sets come from a pool of ``MAX_SETS``; when it is full, the pool
starts afresh once the device is done with it, unless a captured graph uses one of its sets:
then it is set aside, untouched, until those graphs are gone, and another pool serves eager
work meanwhile. Nothing a graph replays is ever reset, and eager work goes on beside live
graphs for as long as memory allows.

Example::

    ADD = KernelSpec(Path("add.comp"), [("O", "write", "O"), ("A", "read", "A"), ("B", "read", "A")],
                     [("n", "I"), ("off_o", "I"), ("off_a", "I"), ("off_b", "I")])
    kernel = rt.kernels.get(ADD, dtypes={"O": float32, "A": float32})
    rt.run(kernel, {"O": out, "A": a, "B": b}, {"n": n}, n)
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path

from .. import errors
from ..compiler import compile_file, read_from_cache
from ..strict_mode import _state as _strict, check_device
from ..vk import ComputePipeline, DescriptorBindingBuilder, DescriptorPool, ShaderModule, record

MAX_SETS = 4096
ROLES = ("read", "write", "readwrite")
CHECK_BINDING = "ERR"

# How a slot's loads and stores convert (S_KIND in glsl/dtypes.glsl): 0 by constructor,
# 1 bfloat16 held as uint16_t bits, 2 bool held as a uint8_t 0 or 1.
_SLOT_KIND = {"bfloat16": 1, "bool": 2}
# The GLSL type of four elements of each dtype, for vector loads and stores (S_STORAGE4).
GLSL_STORAGE4 = {"float32": "vec4", "float16": "f16vec4", "bfloat16": "u16vec4", "int32": "ivec4", "uint32": "uvec4",
                 "int8": "i8vec4", "uint8": "u8vec4", "bool": "u8vec4", "int64": "i64vec4"}


def float_control_defines(float_controls: dict) -> dict:
    """The HLX_FC_* macros of glsl/float_controls.glsl that this device supports."""
    table = {
        "rounding_mode_rte_float32": "HLX_FC_RTE_32",
        "signed_zero_inf_nan_preserve_float32": "HLX_FC_PRESERVE_32",
        "rounding_mode_rte_float16": "HLX_FC_RTE_16",
        "signed_zero_inf_nan_preserve_float16": "HLX_FC_PRESERVE_16",
        "denorm_preserve_float32": "HLX_FC_DENORM_PRESERVE_32",
    }
    return {macro: 1 for prop, macro in table.items() if float_controls.get(prop)}


def slot_defines(slot: str, dtype) -> dict:
    """``S_STORAGE``, ``S_STORAGE4``, ``S_BYTES`` and ``S_KIND`` for dtype slot ``S`` of glsl/dtypes.glsl."""
    return {f"{slot}_STORAGE": dtype.glsl, f"{slot}_STORAGE4": GLSL_STORAGE4[dtype.name],
            f"{slot}_BYTES": dtype.itemsize, f"{slot}_KIND": _SLOT_KIND.get(dtype.name, 0)}


class KernelSpec:
    """A kernel's declaration: source, bindings by name and role, push fields by name.

    ``bindings``: ``[(name, role), ...]`` or ``[(name, role, slot), ...]`` in binding order;
    ``slot`` is the dtype slot (``"O"``, ``"A"``, ...) whose defines the binding's dtype sets.
    ``push``: ``[(field, format), ...]`` in declaration order, with struct formats such as
    ``"I"``, ``"f"`` or ``"5i"`` (a five-element array).
    """

    def __init__(self, path, bindings, push=()):
        self.path = Path(path)
        self.name = f"{self.path.parent.name}/{self.path.stem}"
        self.bindings = tuple((b[0], b[1]) for b in bindings)
        self.slots = {b[0]: b[2] for b in bindings if len(b) > 2}
        for name, role in self.bindings:
            if role not in ROLES:
                raise ValueError(f"kernel {self.name}: binding {name!r} has role {role!r}; one of {ROLES}")
        self.names = tuple(name for name, _ in self.bindings)
        # Binds the runtime's error words (runtime/checks.py): indices are checked on the device.
        self.checked = CHECK_BINDING in self.names
        if self.checked and dict(self.bindings)[CHECK_BINDING] != "readwrite":
            raise ValueError(f"kernel {self.name}: binding {CHECK_BINDING!r} (the error words) must be readwrite")
        self.writes = tuple(i for i, (_, role) in enumerate(self.bindings) if role != "read")
        self.reads = tuple(i for i, (_, role) in enumerate(self.bindings) if role != "write")
        self.fields = tuple(push)
        self.struct = struct.Struct("<" + "".join(fmt for _, fmt in self.fields)) if self.fields else None
        self._slices: dict[str, tuple[int, int]] = {}
        self.offsets: list[tuple[str, int]] = []  # (field, byte offset) in the push block
        pos = byte = 0
        for name, fmt in self.fields:
            count = int(fmt[:-1] or 1)
            self._slices[name] = (pos, count)
            self.offsets.append((name, byte))
            pos += count
            byte += struct.calcsize("<" + fmt)
        self._nvalues = pos
        # binding index -> position of its off_<name> field among the packed values
        self.offset_fields = tuple((i, self._slices[f"off_{name.lower()}"][0])
                                   for i, name in enumerate(self.names) if f"off_{name.lower()}" in self._slices)

    @property
    def push_size(self) -> int:
        return self.struct.size if self.struct is not None else 0

    def check(self, reflection) -> None:
        """Raise :class:`~hlx_vulkan.errors.PipelineLayoutError` where the SPIR-V disagrees."""
        where = f"kernel {self.name}"
        found = [(b.set, b.binding, b.descriptor_type, b.name) for b in reflection.bindings]
        declared = [(0, i, "storage_buffer", name) for i, name in enumerate(self.names)]
        if found != declared:
            raise errors.PipelineLayoutError(
                f"{where}: declared bindings {[(d[1], d[3]) for d in declared]} (set 0, storage buffers) but the "
                f"shader has {[(f[1], f[3], f[2], f'set {f[0]}') for f in found]}")
        members = list(reflection.push_constant_members)
        if members != self.offsets or reflection.push_constant_size != self.push_size:
            raise errors.PipelineLayoutError(
                f"{where}: declared push fields {self.offsets} ({self.push_size} bytes) but the shader's push block "
                f"has {members} ({reflection.push_constant_size} bytes)")

    def pack(self, buffers, fields) -> bytes:
        """The push block from ``fields`` by name; ``off_<binding>`` fields come from ``buffers``
        (binding order), as the element offset of each tensor inside the range its kernel binds."""
        if self.struct is None:
            if fields:
                raise errors.HlxError(f"kernel {self.name} declares no push constants, got {sorted(fields)}")
            return b""
        values = [0] * self._nvalues
        slices = self._slices
        for name, value in fields.items():
            where = slices.get(name)
            if where is None:
                raise errors.HlxError(f"kernel {self.name} declares no push field {name!r}; it has {list(slices)}")
            pos, count = where
            if count == 1:
                values[pos] = value
            else:
                if len(value) != count:
                    raise errors.HlxError(f"kernel {self.name}: push field {name!r} takes {count} values")
                values[pos:pos + count] = value
        for i, pos in self.offset_fields:
            buf = buffers[i]
            values[pos] = buf.byte_offset // buf.dtype.itemsize
        try:
            return self.struct.pack(*values)
        except struct.error as exc:
            raise errors.HlxError(f"kernel {self.name}: a push value does not fit its field ({exc})") from None

    def __repr__(self) -> str:
        return f"<KernelSpec {self.name}>"


class SetPool:
    """One descriptor pool of a kernel and the sets cached in it by the ranges they bind.

    ``pins``: live graphs (or the capture in progress) that use a set of it; ``retired_at``: the
    last stream batch that may use it eagerly, once it was set aside."""

    __slots__ = ("pool", "sets", "pins", "retired_at")

    def __init__(self, pool: DescriptorPool):
        self.pool, self.sets, self.pins, self.retired_at = pool, {}, 0, 0

    def reset(self) -> None:
        self.pool.reset()
        self.sets.clear()


class Kernel:
    """One compiled variant of a :class:`KernelSpec`: a pipeline and its cache of descriptor sets."""

    def __init__(self, device, spec: KernelSpec, defines: dict, workgroup, target_env: str, stream=None):
        self.device = device
        self.spec = spec
        self.name = spec.name
        self.defines = defines
        self._stream = stream
        self.spirv = compile_file(spec.path, defines, target_env=target_env)
        # spirv-val ran when this binary was compiled into the cache: a start-up reads it back unchecked.
        self.shader = ShaderModule(device, self.spirv, validate=not read_from_cache(self.spirv), trusted=True)
        spec.check(self.shader.reflection)
        self.digest = self.shader.digest
        builder = DescriptorBindingBuilder()
        for i in range(len(spec.bindings)):
            builder.add_storage_buffer(i)
        spec_wg = workgroup if any(i is not None for i in self.shader.entry.local_size_spec_ids) else None
        # The sets come from the kernel's own pools (SetPool), not the pipeline's.
        self.pipeline = ComputePipeline(device, self.shader, builder.build(), spec.push_size,
                                        workgroup_size=spec_wg, max_sets=1)
        self.workgroup = self.pipeline.workgroup_size
        self.handles = (record.handle(self.pipeline.pipeline), record.handle(self.pipeline.layout))
        self.used = False  # set by the stream when a dispatch of it is recorded
        self._max_range = device.limits["max_storage_buffer_range"]
        self._current: SetPool | None = None
        # The serving pool's sets by their ranges' keys: the stream looks a set up here before it
        # asks descriptor_set (which makes one where none is cached).
        self.sets: dict = {}
        self._retired: list[SetPool] = []  # set aside while graphs use them, or until the device is done

    def descriptor_set(self, keys, allocations, graph=None) -> object:
        """A set binding each allocation's range in binding order, cached by the ranges' ``keys``;
        ``graph``: the graph being captured, which pins the set's pool for its life."""
        key = tuple(keys)
        current = self._current
        ds = current.sets.get(key) if current is not None else None
        if ds is None:
            # Ranges are keyed by block, and blocks are numbered across devices: a range met here
            # for the first time is checked once to be this device's memory.
            for a in allocations:
                if a.block.device is not self.device:
                    raise errors.DeviceMismatchError(
                        f"kernel {self.name}: its tensors belong to different runtimes (Vulkan devices); "
                        "move them to one first (as torch refuses tensors on two devices in one op)")
            if current is None or len(current.sets) >= MAX_SETS:
                current = self._next_pool()
            ds = current.pool.allocate()
            self.pipeline.update_descriptor_set(
                ds, [(b, a.block, a.offset, min(a.size, self._max_range)) for b, a in enumerate(allocations)])
            # Kept as a one-element array: vkCmdBindDescriptorSets takes a pointer to the sets.
            ds = record.descriptor_set_array(ds)
            current.sets[key] = ds
        if graph is not None:
            graph.pin_sets(current)
        return ds

    def _next_pool(self) -> SetPool:
        """A pool with room, for the next set: the current one started afresh where nothing but
        eager work used it, else a set-aside one whose graphs are gone, else a new one."""
        old, stream = self._current, self._stream
        if old is not None:
            if stream is None:
                raise errors.OutOfDeviceMemoryError("vkAllocateDescriptorSets", "VK_ERROR_OUT_OF_POOL_MEMORY",
                                                    f"kernel {self.name} has {MAX_SETS} sets")
            if old.pins == 0 and not stream.capturing:
                # Sets for memory long gone pile up; once the device is done with all of them, start afresh.
                stream.synchronize()
                old.reset()
                return old
            old.retired_at = stream.serial
            self._retired.append(old)
        for spare in self._retired:
            if spare.pins == 0 and (stream is None or stream.is_done(spare.retired_at)):
                self._retired.remove(spare)
                spare.reset()
                self._current = spare
                self.sets = spare.sets
                return spare
        self._current = SetPool(DescriptorPool(self.pipeline, MAX_SETS))
        self.sets = self._current.sets
        return self._current

    @property
    def cached_sets(self) -> int:
        """Sets cached in the pool that serves new ones."""
        return len(self._current.sets) if self._current is not None else 0

    @property
    def descriptor_pools(self) -> int:
        """Pools this kernel holds: the serving one and those set aside."""
        return len(self._retired) + (self._current is not None)

    def destroy(self) -> None:
        for sp in self._retired + ([self._current] if self._current is not None else []):
            sp.pool.destroy()
        self.pipeline.destroy()
        self.shader.destroy()


class KernelCache:
    """Built kernels by (spec, defines, dtypes, workgroup size, target)."""

    def __init__(self, device, float_controls: dict, target_env: str = "vulkan1.2", stream=None):
        """``stream``: the stream the kernels are dispatched on, which says when the device is done
        with a descriptor pool; without one, a kernel's sets are limited to ``MAX_SETS``."""
        self.device = device
        self.stream = stream
        self.fc_defines = float_control_defines(float_controls)
        self.float_controls = dict(float_controls)
        self.features = dict(getattr(device, "enabled_features", {}))
        self.target_env = target_env
        # 64-bit integers in kernels need shaderInt64 (hlx_vulkan.memory.dtypes).
        self.int64 = bool(getattr(device, "enabled_features", {}).get("shader_int64", False))
        self._kernels: dict[tuple, Kernel] = {}
        self._lock = threading.RLock()

    def get(self, spec: KernelSpec, defines: dict | None = None, dtypes: dict | None = None, workgroup=(256, 1, 1),
            target_env: str | None = None) -> Kernel:
        """The kernel of ``spec`` with ``defines`` and ``dtypes`` (slot -> dtype for the declared slots);
        ``target_env`` overrides the device's default."""
        wg = tuple(workgroup) + (1,) * (3 - len(workgroup))
        dtypes = dtypes or {}
        strict = _strict[0]
        key = (spec, tuple(sorted((defines or {}).items())), tuple(sorted((s, d.name) for s, d in dtypes.items())),
               wg, target_env, strict)
        k = self._kernels.get(key)
        if k is None:
            with self._lock:
                k = self._kernels.get(key)
                if k is None:
                    declared = set(spec.slots.values())
                    extra = set(dtypes) - declared
                    if extra:
                        raise errors.HlxError(f"kernel {spec.name} declares no dtype slot {sorted(extra)}")
                    all_defines = dict(self.fc_defines)
                    for slot, dt in dtypes.items():
                        all_defines.update(slot_defines(slot, dt))
                    all_defines.update(defines or {})
                    if strict:
                        # Strict mode (hlx_vulkan/strict_mode.py): refuse a device that lacks a feature it needs.
                        check_device(self.device.physical.name, self.float_controls, self.features,
                                     {d.name for d in dtypes.values()})
                        all_defines["HLX_STRICT"] = 1
                    if "int64_t" in all_defines.values():
                        if not self.int64:
                            raise errors.DTypeError(f"kernel {spec.name} needs 64-bit integers, which this device "
                                                    "lacks (no shaderInt64); use int32 tensors")
                        all_defines["HLX_INT64"] = 1  # math.glsl's int64 overloads
                    k = Kernel(self.device, spec, all_defines, wg, target_env or self.target_env, self.stream)
                    self._kernels[key] = k
        return k

    def kernels(self) -> list[Kernel]:
        return list(self._kernels.values())

    def reset_usage(self) -> None:
        """Start a new count of which kernels are dispatched (see :meth:`used`)."""
        for k in self.kernels():
            k.used = False

    def used(self) -> list[Kernel]:
        """The kernels dispatched since :meth:`reset_usage`."""
        return [k for k in self.kernels() if k.used]

    def freeze(self, timeout: float) -> None:
        """Take the build lock for good (waiting up to ``timeout`` seconds for a build in progress):
        no kernel is built after this. For an exit with other threads still running."""
        self._lock.acquire(timeout=timeout)

    def destroy(self) -> None:
        for k in self._kernels.values():
            k.destroy()
        self._kernels.clear()
