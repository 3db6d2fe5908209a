"""Compute pipelines, their layouts and descriptor sets."""

from __future__ import annotations

import operator
import struct
from dataclasses import dataclass

import numpy as np
import vulkan as vkb

from .. import errors
from .api import WHOLE_SIZE, call
from .flags import AccessFlags, DescriptorType, PipelineStageFlags, ShaderStageFlags
from .handles import VkObject
from .shader import storage_problems
from .spirv import MAX_BINDING_NUMBER


@dataclass(frozen=True)
class BindingSpec:
    binding: int
    descriptor_type: DescriptorType
    count: int = 1


class DescriptorBindingBuilder:
    """Fluent list of the buffer bindings of descriptor set 0: binding numbers 0 to
    :data:`~hlx_vulkan.vk.spirv.MAX_BINDING_NUMBER`, each of ``count`` >= 1 descriptors.

    Example::

        bindings = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).build()
    """

    def __init__(self):
        self._specs: dict[int, BindingSpec] = {}

    def _add(self, binding: int, kind: DescriptorType, count: int) -> "DescriptorBindingBuilder":
        binding, count = operator.index(binding), operator.index(count)
        if binding < 0:
            raise ValueError(f"binding index must be >= 0, got {binding}")
        if binding > MAX_BINDING_NUMBER:
            raise errors.LimitExceededError(f"binding number {binding} is past the {MAX_BINDING_NUMBER} allowed")
        if count < 1:
            raise ValueError(f"binding {binding} needs a count >= 1, got {count}")
        if binding in self._specs:
            raise ValueError(f"binding {binding} was already added")
        self._specs[binding] = BindingSpec(binding, kind, count)
        return self

    def add_storage_buffer(self, binding: int, count: int = 1) -> "DescriptorBindingBuilder":
        return self._add(binding, DescriptorType.STORAGE_BUFFER, count)

    def add_uniform_buffer(self, binding: int, count: int = 1) -> "DescriptorBindingBuilder":
        return self._add(binding, DescriptorType.UNIFORM_BUFFER, count)

    def build(self) -> tuple[BindingSpec, ...]:
        return tuple(sorted(self._specs.values(), key=lambda s: s.binding))


def check_layout(shader, bindings, push_constant_size: int, limits: dict) -> None:
    """Raise :class:`PipelineLayoutError` where the layout disagrees with the shader's reflection,
    :class:`LimitExceededError` where it is past the device's limits."""
    given = {b.binding: b for b in bindings}
    totals: dict[str, int] = {}
    for b in bindings:
        if not 0 <= b.binding <= MAX_BINDING_NUMBER or b.count < 1:
            raise errors.LimitExceededError(f"binding {b.binding} of {b.count} descriptors: binding numbers go from "
                                            f"0 to {MAX_BINDING_NUMBER}, counts from 1")
        kind = b.descriptor_type.reflection_name
        totals[kind] = totals.get(kind, 0) + b.count
    for kind, key in (("storage_buffer", "max_per_stage_descriptor_storage_buffers"),
                      ("uniform_buffer", "max_per_stage_descriptor_uniform_buffers")):
        if totals.get(kind, 0) > limits[key]:
            raise errors.LimitExceededError(f"{totals[kind]} {kind} descriptors, past the device's {limits[key]} "
                                            "per stage")
    problems = []
    for used in shader.bindings:
        if used.set != 0:
            problems.append(f"the shader uses descriptor set {used.set} (binding {used.binding}); only set 0 is supported")
            continue
        spec = given.get(used.binding)
        if spec is None:
            problems.append(f"the shader uses binding {used.binding} ({used.descriptor_type}, {used.name!r}) "
                            "but the bindings do not declare it")
        elif spec.descriptor_type.reflection_name != used.descriptor_type:
            problems.append(f"binding {used.binding} is a {used.descriptor_type} in the shader "
                            f"but was declared as {spec.descriptor_type.reflection_name}")
        elif spec.count < used.count:
            problems.append(f"binding {used.binding} is an array of {used.count} in the shader but was declared "
                            f"with count {spec.count}")
    need = shader.push_constant_size
    if push_constant_size < need:
        problems.append(f"the shader's push-constant block is {need} bytes but push_constant_size is {push_constant_size}")
    if push_constant_size % 4:
        problems.append(f"push_constant_size must be a multiple of 4, got {push_constant_size}")
    if problems:
        raise errors.PipelineLayoutError("pipeline layout disagrees with the shader: " + "; ".join(problems))
    if push_constant_size > limits["max_push_constants_size"]:
        raise errors.LimitExceededError(
            f"push_constant_size {push_constant_size} exceeds the device's maxPushConstantsSize "
            f"{limits['max_push_constants_size']}")


def _specialization_info(values: dict[int, object]):
    if not values:
        return None
    data = bytearray()
    entries = []
    for spec_id in sorted(values):
        v = values[spec_id]
        try:
            if isinstance(v, bool):
                raw = struct.pack("<I", int(v))
            elif isinstance(v, (int, np.integer)):
                raw = struct.pack("<i" if v < 0 else "<I", int(v))
            elif isinstance(v, (float, np.floating)):
                raw = struct.pack("<f", float(v))
            else:
                raise TypeError(f"specialization constant {spec_id} must be bool, int or float, not {type(v).__name__}")
        except (struct.error, OverflowError):
            raise errors.LimitExceededError(f"specialization constant {spec_id} = {v!r} does not fit 32 bits") from None
        entries.append(vkb.VkSpecializationMapEntry(constantID=spec_id, offset=len(data), size=4))
        data += raw
    return vkb.VkSpecializationInfo(pMapEntries=entries, dataSize=len(data), pData=vkb.ffi.from_buffer(bytes(data)))


def _c_text(chars) -> str:
    return vkb.ffi.string(chars).decode(errors="replace") if not isinstance(chars, str) else chars


def _statistic_value(stat):
    kind, value = stat.format, stat.value
    if kind == vkb.VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
        return bool(value.b32)
    if kind == vkb.VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
        return int(value.i64)
    if kind == vkb.VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR:
        return float(value.f64)
    return int(value.u64)


def _pool_sizes(bindings, max_sets: int) -> list:
    counts: dict[int, int] = {}
    for b in bindings:
        counts[int(b.descriptor_type)] = counts.get(int(b.descriptor_type), 0) + b.count * max_sets
    return [vkb.VkDescriptorPoolSize(type=t, descriptorCount=n) for t, n in counts.items()] or [
        vkb.VkDescriptorPoolSize(type=vkb.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=1)]


def _destroy_pipeline(device, pipeline, layout, set_layout, pool) -> None:
    vkb.vkDestroyPipeline(device.handle, pipeline, None)
    vkb.vkDestroyPipelineLayout(device.handle, layout, None)
    vkb.vkDestroyDescriptorPool(device.handle, pool, None)
    vkb.vkDestroyDescriptorSetLayout(device.handle, set_layout, None)


class ComputePipeline(VkObject):
    """A compute pipeline, its layout, and a descriptor pool for its sets.

    ``specialization`` maps SpecId to a value; ``workgroup_size`` sets the
    shader's ``local_size_*_id`` constants. Both are checked against the
    shader and the device's limits.

    Example::

        pipeline = ComputePipeline(ctx.device, shader, bindings, 0)
        ds = pipeline.allocate_descriptor_set()
        pipeline.update_descriptor_set(ds, [(0, a.buffer), (1, b.buffer)])
        pipeline.record_dispatch(cmd, ds, None, (64, 1, 1))
    """

    def __init__(self, device, shader, bindings, push_constant_size: int = 0, *,
                 specialization: dict | None = None, workgroup_size: tuple | None = None,
                 max_sets: int = 64):
        device._check_alive()
        shader._check_alive()
        bindings = tuple(bindings)
        check_layout(shader, bindings, push_constant_size, device.limits)
        self.device, self.shader = device, shader
        self.bindings = {b.binding: b for b in bindings}
        self.push_constant_size = push_constant_size
        spec = dict(specialization or {})
        self.workgroup_size = self._resolve_workgroup_size(shader, spec, workgroup_size, device.limits)
        problems = shader.reflection.specialization_problems(spec)
        if problems:
            raise errors.InvalidShaderError("with this specialization the shader is invalid: " + "; ".join(problems))
        problems = storage_problems(shader.reflection, spec, device.limits)
        if problems:
            raise errors.LimitExceededError("with this specialization the shader uses " + "; ".join(problems))
        if max_sets < 1 or sum(b.count for b in bindings) * max_sets > 0xFFFF_FFFF:
            raise errors.LimitExceededError(f"max_sets {max_sets} does not give a descriptor pool of 1 to 2**32 - 1 "
                                            "descriptors")
        self.max_sets = max_sets

        handles = []  # created so far, for clean-up if a later step fails
        dev = device.handle
        try:
            layout_bindings = [vkb.VkDescriptorSetLayoutBinding(
                binding=b.binding, descriptorType=int(b.descriptor_type), descriptorCount=b.count,
                stageFlags=ShaderStageFlags.COMPUTE) for b in bindings]
            set_layout = call(vkb.vkCreateDescriptorSetLayout, dev,
                              vkb.VkDescriptorSetLayoutCreateInfo(pBindings=layout_bindings), None)
            handles.append((vkb.vkDestroyDescriptorSetLayout, set_layout))
            ranges = [vkb.VkPushConstantRange(stageFlags=ShaderStageFlags.COMPUTE, offset=0,
                                              size=push_constant_size)] if push_constant_size else []
            layout = call(vkb.vkCreatePipelineLayout, dev, vkb.VkPipelineLayoutCreateInfo(
                pSetLayouts=[set_layout], pPushConstantRanges=ranges), None)
            handles.append((vkb.vkDestroyPipelineLayout, layout))
            stage = vkb.VkPipelineShaderStageCreateInfo(
                stage=vkb.VK_SHADER_STAGE_COMPUTE_BIT, module=shader.handle, pName=shader.entry_point,
                pSpecializationInfo=_specialization_info(spec))
            flags = vkb.VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR if device.pipeline_statistics else 0
            pipeline = call(vkb.vkCreateComputePipelines, dev, None, 1,
                            [vkb.VkComputePipelineCreateInfo(flags=flags, stage=stage, layout=layout)], None)[0]
            handles.append((vkb.vkDestroyPipeline, pipeline))
            pool = call(vkb.vkCreateDescriptorPool, dev, vkb.VkDescriptorPoolCreateInfo(
                flags=vkb.VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT, maxSets=max_sets,
                pPoolSizes=_pool_sizes(bindings, max_sets)), None)
        except BaseException:
            for destroy_fn, h in reversed(handles):
                destroy_fn(dev, h, None)
            raise
        self.pipeline, self.layout, self.descriptor_pool = pipeline, layout, pool
        self.descriptor_set_layouts = [set_layout]
        self._live_sets = 0
        self._own(device, _destroy_pipeline, device, pipeline, layout, set_layout, pool)

    def statistics(self) -> dict[str, dict[str, object]]:
        """The driver's statistics of this pipeline, by executable name (on NVIDIA, for one: the
        register count and shared memory); empty unless the device was made with
        ``HLX_PIPELINE_STATS=1`` and has VK_KHR_pipeline_executable_properties."""
        self._check_alive()
        if not self.device.pipeline_statistics:
            return {}
        dev = self.device.handle
        properties_fn = vkb.vkGetDeviceProcAddr(dev, "vkGetPipelineExecutablePropertiesKHR")
        statistics_fn = vkb.vkGetDeviceProcAddr(dev, "vkGetPipelineExecutableStatisticsKHR")
        executables = call(properties_fn, dev, vkb.VkPipelineInfoKHR(pipeline=self.pipeline))
        out = {}
        for index, executable in enumerate(executables):
            stats = call(statistics_fn, dev, vkb.VkPipelineExecutableInfoKHR(pipeline=self.pipeline,
                                                                             executableIndex=index))
            out[_c_text(executable.name)] = {_c_text(s.name): _statistic_value(s) for s in stats}
        return out

    @staticmethod
    def _resolve_workgroup_size(shader, spec: dict, requested, limits) -> tuple[int, int, int]:
        entry = shader.entry
        base = list(entry.local_size or (1, 1, 1))
        for axis, spec_id in enumerate(entry.local_size_spec_ids):
            if spec_id is not None and spec_id in spec:
                base[axis] = int(spec[spec_id])
        if requested is not None:
            requested = tuple(int(v) for v in requested) + (1,) * (3 - len(requested))
            for axis, (want, spec_id) in enumerate(zip(requested, entry.local_size_spec_ids)):
                if spec_id is not None:
                    spec[spec_id] = want
                    base[axis] = want
                elif want != base[axis]:
                    raise errors.PipelineLayoutError(
                        f"workgroup_size {requested} asks {want} on axis {'xyz'[axis]}, but the shader fixes it at "
                        f"{base[axis]}; declare layout(local_size_{'xyz'[axis]}_id = N) to make it specializable")
        size = tuple(base)
        max_size = limits["max_compute_workgroup_size"]
        if any(s < 1 for s in size) or any(s > m for s, m in zip(size, max_size)):
            raise errors.LimitExceededError(f"workgroup size {size} is outside the device's limit {max_size}")
        invocations = size[0] * size[1] * size[2]
        if invocations > limits["max_compute_workgroup_invocations"]:
            raise errors.LimitExceededError(
                f"workgroup size {size} has {invocations} invocations; the device allows "
                f"{limits['max_compute_workgroup_invocations']}")
        return size

    def allocate_descriptor_set(self):
        """A descriptor set from this pipeline's pool (``max_sets`` live at most)."""
        self._check_alive()
        if self._live_sets >= self.max_sets:
            raise errors.OutOfDeviceMemoryError(
                "vkAllocateDescriptorSets", "VK_ERROR_OUT_OF_POOL_MEMORY",
                f"all {self.max_sets} descriptor sets of this pipeline are in use; free one or raise max_sets")
        sets = call(vkb.vkAllocateDescriptorSets, self.device.handle, vkb.VkDescriptorSetAllocateInfo(
            descriptorPool=self.descriptor_pool, descriptorSetCount=1, pSetLayouts=self.descriptor_set_layouts))
        self._live_sets += 1
        return sets[0]

    def reset_descriptor_sets(self) -> None:
        """Return every set to the pool at once (none may be in use by the device)."""
        self._check_alive()
        call(vkb.vkResetDescriptorPool, self.device.handle, self.descriptor_pool, 0)
        self._live_sets = 0

    def free_descriptor_set(self, descriptor_set) -> None:
        self._check_alive()
        call(vkb.vkFreeDescriptorSets, self.device.handle, self.descriptor_pool, 1, [descriptor_set])
        self._live_sets -= 1

    def update_descriptor_set(self, descriptor_set, buffer_bindings) -> None:
        """Point bindings at buffers: ``[(binding, buffer_or_handle[, offset, range]), ...]``."""
        self._check_alive()
        writes = []
        for item in buffer_bindings:
            binding, target, *rest = item
            spec = self.bindings.get(binding)
            if spec is None:
                raise errors.PipelineLayoutError(
                    f"binding {binding} is not in this pipeline's layout (it has {sorted(self.bindings)})")
            handle = getattr(target, "buffer", target)
            if hasattr(target, "_check_alive"):
                target._check_alive()
            offset = int(rest[0]) if rest else 0
            size = int(rest[1]) if len(rest) > 1 else WHOLE_SIZE
            info = vkb.VkDescriptorBufferInfo(buffer=handle, offset=offset, range=size)
            writes.append(vkb.VkWriteDescriptorSet(
                dstSet=descriptor_set, dstBinding=binding, dstArrayElement=0, descriptorCount=1,
                descriptorType=int(spec.descriptor_type), pBufferInfo=[info]))
        vkb.vkUpdateDescriptorSets(self.device.handle, len(writes), writes, 0, None)

    def record_dispatch(self, cmd, descriptor_set, push_constants, group_counts) -> None:
        """Bind, push constants (bytes or numpy, or None) and dispatch ``(x, y, z)`` workgroups."""
        self._check_alive()
        counts = tuple(int(c) for c in group_counts) + (1,) * (3 - len(group_counts))
        limit = self.device.limits["max_compute_workgroup_count"]
        if any(c < 0 for c in counts) or any(c > m for c, m in zip(counts, limit)):
            raise errors.LimitExceededError(f"dispatch of {counts} workgroups exceeds the device's limit {limit}")
        vkb.vkCmdBindPipeline(cmd, vkb.VK_PIPELINE_BIND_POINT_COMPUTE, self.pipeline)
        if descriptor_set is not None:
            vkb.vkCmdBindDescriptorSets(cmd, vkb.VK_PIPELINE_BIND_POINT_COMPUTE, self.layout, 0, 1,
                                        [descriptor_set], 0, None)
        if push_constants is not None:
            data = bytes(memoryview(np.ascontiguousarray(push_constants)).cast("B")) \
                if isinstance(push_constants, np.ndarray) else bytes(push_constants)
            if len(data) > self.push_constant_size or len(data) % 4:
                raise errors.PipelineLayoutError(
                    f"{len(data)} bytes of push constants do not fit the pipeline's {self.push_constant_size}-byte range "
                    "(and must be a multiple of 4)")
            if data:  # no bytes: nothing to push (Vulkan refuses a zero-sized push)
                vkb.vkCmdPushConstants(cmd, self.layout, ShaderStageFlags.COMPUTE, 0, len(data), vkb.ffi.from_buffer(data))
        vkb.vkCmdDispatch(cmd, *counts)

    def record_barrier(self, cmd, src_access=AccessFlags.SHADER_WRITE, dst_access=AccessFlags.SHADER_READ,
                       src_stage=PipelineStageFlags.COMPUTE_SHADER, dst_stage=PipelineStageFlags.COMPUTE_SHADER) -> None:
        """A global memory barrier between two groups of commands."""
        record_memory_barrier(cmd, src_access, dst_access, src_stage, dst_stage)


def record_memory_barrier(cmd, src_access, dst_access,
                          src_stage=PipelineStageFlags.COMPUTE_SHADER, dst_stage=PipelineStageFlags.COMPUTE_SHADER) -> None:
    barrier = vkb.VkMemoryBarrier(srcAccessMask=int(src_access), dstAccessMask=int(dst_access))
    vkb.vkCmdPipelineBarrier(cmd, int(src_stage), int(dst_stage), 0, 1, [barrier], 0, None, 0, None)


def _destroy_descriptor_pool(device, handle) -> None:
    vkb.vkDestroyDescriptorPool(device.handle, handle, None)


class DescriptorPool(VkObject):
    """Another pool of descriptor sets for ``pipeline``'s layout (``max_sets`` of them), beside
    the one the pipeline owns: sets are allocated one by one and returned all at once by
    :meth:`reset`, so pools whose sets are still in use can be kept while others are recycled.

    Example::

        pool = DescriptorPool(pipeline, 1024)
        ds = pool.allocate()
        pipeline.update_descriptor_set(ds, [(0, a.buffer), (1, b.buffer)])
        pool.reset()        # once the device is done with every set of it
    """

    def __init__(self, pipeline: ComputePipeline, max_sets: int):
        pipeline._check_alive()
        self.device, self.pipeline, self.max_sets = pipeline.device, pipeline, max_sets
        # vkCreateDescriptorPool
        self.handle = call(vkb.vkCreateDescriptorPool, self.device.handle, vkb.VkDescriptorPoolCreateInfo(
            maxSets=max_sets, pPoolSizes=_pool_sizes(pipeline.bindings.values(), max_sets)), None)
        self.live_sets = 0
        self._own(self.device, _destroy_descriptor_pool, self.device, self.handle)

    def allocate(self):
        """One set of the pipeline's layout (vkAllocateDescriptorSets)."""
        self._check_alive()
        if self.live_sets >= self.max_sets:
            raise errors.OutOfDeviceMemoryError(
                "vkAllocateDescriptorSets", "VK_ERROR_OUT_OF_POOL_MEMORY",
                f"all {self.max_sets} descriptor sets of this pool are in use; reset it or make another")
        sets = call(vkb.vkAllocateDescriptorSets, self.device.handle, vkb.VkDescriptorSetAllocateInfo(
            descriptorPool=self.handle, descriptorSetCount=1, pSetLayouts=self.pipeline.descriptor_set_layouts))
        self.live_sets += 1
        return sets[0]

    def reset(self) -> None:
        """Return every set at once (vkResetDescriptorPool); none may be in use by the device."""
        self._check_alive()
        call(vkb.vkResetDescriptorPool, self.device.handle, self.handle, 0)
        self.live_sets = 0
