"""What a physical device is and can do, and which one to use.

Selection follows vk-bootstrap's habit: every device passed over gets a reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import vulkan as vkb

from .. import errors
from .api import api_version, call, version_str

DEVICE_TYPES = {
    vkb.VK_PHYSICAL_DEVICE_TYPE_OTHER: "other",
    vkb.VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: "integrated",
    vkb.VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: "discrete",
    vkb.VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: "virtual",
    vkb.VK_PHYSICAL_DEVICE_TYPE_CPU: "cpu",
}
# Lower is preferred when no device is named.
TYPE_PREFERENCE = {"discrete": 0, "integrated": 1, "virtual": 2, "cpu": 3, "other": 4}

COOPERATIVE_MATRIX_EXT = "VK_KHR_cooperative_matrix"
BFLOAT16_EXT = "VK_KHR_shader_bfloat16"
# VkPhysicalDeviceShaderBfloat16FeaturesKHR is newer than the binding. It has the layout of
# VkPhysicalDeviceMultiviewFeatures (sType, pNext, three VkBool32), which stands in for it under
# its own sType: shaderBFloat16Type, shaderBFloat16DotProduct, shaderBFloat16CooperativeMatrix.
BFLOAT16_FEATURES_STYPE = 1000141000


# VK_NV_cooperative_matrix2 (workgroup-scope matrices, tensor-addressed loads, row reductions) is
# newer than the binding too: its feature struct is sType, pNext and seven VkBool32, written here
# into a raw buffer; its properties struct is sType, pNext and three uint32.
COOPMAT2_EXT = "VK_NV_cooperative_matrix2"
COOPMAT2_FEATURES_STYPE = 1000593000
COOPMAT2_FLEXIBLE_STYPE = 1000593001  # VkCooperativeMatrixFlexibleDimensionsPropertiesNV
COOPMAT2_PROPERTIES_STYPE = 1000593002
COOPMAT2_FEATURES = ("workgroup_scope", "flexible_dimensions", "reductions", "conversions",
                     "per_element_operations", "tensor_addressing", "block_loads")
COOPMAT2_PROPERTIES = ("workgroup_scope_max_workgroup_size", "flexible_dimensions_max_dimension",
                       "workgroup_scope_reserved_shared_memory")


def raw_struct(stype: int, fields, pNext=None):
    """A Vulkan struct the binding lacks: ``sType``, ``pNext`` (8 bytes, aligned) and one uint32 a
    field, set from ``fields`` (a sequence of ints). ``pNext`` (a binding struct or another raw
    one) must outlive it: the caller holds both."""
    fields = list(fields)
    buf = vkb.ffi.new("uint32_t[]", 4 + len(fields) + len(fields) % 2)
    buf[0] = stype
    if pNext is None:
        ptr = vkb.ffi.NULL
    elif vkb.ffi.typeof(pNext).kind == "struct":  # the binding's structs are values, not pointers
        ptr = vkb.ffi.cast("void *", vkb.ffi.addressof(pNext))
    else:
        ptr = vkb.ffi.cast("void *", pNext)
    vkb.ffi.cast("void **", buf + 2)[0] = ptr
    for i, value in enumerate(fields):
        buf[4 + i] = int(value)
    return buf


def raw_fields(buf, count: int) -> list[int]:
    return [buf[4 + i] for i in range(count)]


def bfloat16_features(pNext=None, **enabled):
    """The stand-in struct: ``type``, ``dot_product``, ``cooperative_matrix`` set from ``enabled``."""
    st = vkb.VkPhysicalDeviceMultiviewFeatures(pNext=pNext, multiview=enabled.get("type", False),
                                               multiviewGeometryShader=enabled.get("dot_product", False),
                                               multiviewTessellationShader=enabled.get("cooperative_matrix", False))
    st.sType = BFLOAT16_FEATURES_STYPE
    return st


@dataclass
class PhysicalDeviceInfo:
    """Properties, limits and optional features of one physical device.

    Example::

        info = describe(handle, 0); print(info.name, info.type, info.features)
    """

    index: int
    handle: object = field(repr=False)
    name: str
    type: str
    api_version: int
    driver_name: str
    driver_info: str
    vendor_id: int
    device_id: int
    limits: dict
    features: dict
    float_controls: dict
    extensions: frozenset = field(repr=False)
    queue_families: list = field(repr=False)
    cooperative_matrix_shapes: list = field(default_factory=list, repr=False)
    cooperative_matrix2_shapes: list = field(default_factory=list, repr=False)

    @property
    def api_version_str(self) -> str:
        return version_str(self.api_version)

    def compute_family(self) -> int | None:
        """A compute-only family when the device has one, else one with compute."""
        compute = [i for i, q in enumerate(self.queue_families) if q["flags"] & vkb.VK_QUEUE_COMPUTE_BIT]
        dedicated = [i for i in compute if not self.queue_families[i]["flags"] & vkb.VK_QUEUE_GRAPHICS_BIT]
        return (dedicated or compute or [None])[0]

    def summary(self) -> dict:
        return {
            "index": self.index, "name": self.name, "type": self.type,
            "api_version": self.api_version_str, "driver": f"{self.driver_name} {self.driver_info}".strip(),
            "features": self.features, "limits": self.limits, "float_controls": self.float_controls,
        }


def _text(value) -> str:
    """A C char array from the binding as str (nested structs come back as cdata)."""
    return value if isinstance(value, str) else vkb.ffi.string(value).decode(errors="replace")


def _features(handle, extensions) -> dict:
    v11 = vkb.VkPhysicalDeviceVulkan11Features()
    v12 = vkb.VkPhysicalDeviceVulkan12Features(pNext=v11)
    coop = v13 = None
    head = v12
    if vkb.vkGetPhysicalDeviceProperties(handle).apiVersion >= api_version(1, 3):
        v13 = vkb.VkPhysicalDeviceVulkan13Features(pNext=head)
        head = v13
    if COOPERATIVE_MATRIX_EXT in extensions:
        coop = vkb.VkPhysicalDeviceCooperativeMatrixFeaturesKHR(pNext=head)
        head = coop
    bf16 = None
    if BFLOAT16_EXT in extensions:
        bf16 = bfloat16_features(pNext=head)
        head = bf16
    cm2 = None
    if COOPMAT2_EXT in extensions:
        cm2 = raw_struct(COOPMAT2_FEATURES_STYPE, [0] * len(COOPMAT2_FEATURES), pNext=head)
        head = cm2
    f2 = vkb.VkPhysicalDeviceFeatures2(pNext=head)
    vkb.vkGetPhysicalDeviceFeatures2(handle, f2)
    cm2_feats = dict(zip(COOPMAT2_FEATURES, map(bool, raw_fields(cm2, len(COOPMAT2_FEATURES))))) if cm2 is not None else {}
    return {
        "storage_buffer_16bit": bool(v11.storageBuffer16BitAccess),
        "shader_float16": bool(v12.shaderFloat16),
        "shader_int8": bool(v12.shaderInt8),
        "storage_buffer_8bit": bool(v12.storageBuffer8BitAccess),
        "shader_int64": bool(f2.features.shaderInt64),
        "shader_int16": bool(f2.features.shaderInt16),
        "shader_float64": bool(f2.features.shaderFloat64),
        "timeline_semaphore": bool(v12.timelineSemaphore),
        "buffer_device_address": bool(v12.bufferDeviceAddress),
        "vulkan_memory_model": bool(v12.vulkanMemoryModel),
        "vulkan_memory_model_device_scope": bool(v12.vulkanMemoryModelDeviceScope),
        "cooperative_matrix": bool(coop.cooperativeMatrix) if coop is not None else False,
        # bfloat16 cooperative matrices (VK_KHR_shader_bfloat16: the type and its matrices)
        "bfloat16_cooperative_matrix": bool(coop is not None and coop.cooperativeMatrix and bf16 is not None
                                            and bf16.multiview and bf16.multiviewTessellationShader),
        # SPIR-V 1.6 (Vulkan 1.3) expresses specialised workgroup sizes with LocalSizeId, which needs it.
        "maintenance4": bool(v13.maintenance4) if v13 is not None else False,
        "subgroup_size_control": bool(v13.subgroupSizeControl) if v13 is not None else False,
        # VK_NV_cooperative_matrix2, all of what this library's kernels use of it, beside
        # VK_KHR_cooperative_matrix (which it extends); each part as cooperative_matrix2_<part>.
        "cooperative_matrix2": bool(coop is not None and coop.cooperativeMatrix and cm2_feats
                                    and all(cm2_feats[k] for k in COOPMAT2_FEATURES if k != "block_loads")),
        **{f"cooperative_matrix2_{k}": v for k, v in cm2_feats.items()},
    }


def _properties(handle, extensions=frozenset()):
    cm2 = raw_struct(COOPMAT2_PROPERTIES_STYPE, [0] * len(COOPMAT2_PROPERTIES)) if COOPMAT2_EXT in extensions else None
    m3 = vkb.VkPhysicalDeviceMaintenance3Properties(pNext=cm2)
    fc = vkb.VkPhysicalDeviceFloatControlsProperties(pNext=m3)
    sg = vkb.VkPhysicalDeviceSubgroupProperties(pNext=fc)
    drv = vkb.VkPhysicalDeviceDriverProperties(pNext=sg)
    p2 = vkb.VkPhysicalDeviceProperties2(pNext=drv)
    vkb.vkGetPhysicalDeviceProperties2(handle, p2)
    # p2.properties is a view into p2's memory: return p2 so it stays alive.
    return p2, sg, fc, drv, m3, cm2


_COMPONENT = {0: "float16", 1: "float32", 2: "float64", 3: "int8", 4: "int16", 5: "int32", 6: "int64",
              7: "uint8", 8: "uint16", 9: "uint32", 10: "uint64", 1000141000: "bfloat16"}


def cooperative_matrix_shapes(instance_handle, handle) -> list[dict]:
    """The (M, N, K, A/B type, C/result type, scope) combinations of VK_KHR_cooperative_matrix."""
    name = b"vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR"
    ptr = vkb.lib.vkGetInstanceProcAddr(instance_handle, name)
    if ptr == vkb.ffi.NULL:
        return []
    fn = vkb.ffi.cast("PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR", ptr)
    count = vkb.ffi.new("uint32_t*")
    if fn(handle, count, vkb.ffi.NULL) != vkb.VK_SUCCESS:
        return []
    props = vkb.ffi.new("VkCooperativeMatrixPropertiesKHR[]", count[0])
    for i in range(count[0]):
        props[i].sType = vkb.VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR
    if fn(handle, count, props) != vkb.VK_SUCCESS:
        return []
    return [{"M": p.MSize, "N": p.NSize, "K": p.KSize, "a": _COMPONENT.get(p.AType, p.AType),
             "b": _COMPONENT.get(p.BType, p.BType), "c": _COMPONENT.get(p.CType, p.CType),
             "result": _COMPONENT.get(p.ResultType, p.ResultType), "scope": int(p.scope)}
            for p in (props[i] for i in range(count[0]))]


_FLEX_FIELDS = ("M_granularity", "N_granularity", "K_granularity", "a", "b", "c", "result", "saturating", "scope",
                "workgroup_invocations")


def cooperative_matrix2_shapes(instance_handle, handle) -> list[dict]:
    """VK_NV_cooperative_matrix2's flexible-dimension combinations: the granularity of M, N, K, the
    component types, the scope and the workgroup size each needs."""
    ptr = vkb.lib.vkGetInstanceProcAddr(instance_handle, b"vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV")
    if ptr == vkb.ffi.NULL:
        return []
    fn = vkb.ffi.cast("VkResult(*)(VkPhysicalDevice, uint32_t *, void *)", ptr)
    count = vkb.ffi.new("uint32_t*")
    if fn(handle, count, vkb.ffi.NULL) != vkb.VK_SUCCESS:
        return []
    stride = 4 + len(_FLEX_FIELDS)  # sType, padding, pNext, fields: 14 uint32 (8-byte aligned)
    buf = vkb.ffi.new("uint32_t[]", stride * count[0])
    for i in range(count[0]):
        buf[i * stride] = COOPMAT2_FLEXIBLE_STYPE
    if fn(handle, count, buf) != vkb.VK_SUCCESS:
        return []
    out = []
    for i in range(count[0]):
        row = dict(zip(_FLEX_FIELDS, (buf[i * stride + 4 + j] for j in range(len(_FLEX_FIELDS)))))
        for key in ("a", "b", "c", "result"):
            row[key] = _COMPONENT.get(row[key], row[key])
        out.append(row)
    return out


def describe(handle, index: int, instance_handle=None) -> PhysicalDeviceInfo:
    extensions = frozenset(e.extensionName for e in call(vkb.vkEnumerateDeviceExtensionProperties, handle, None))
    p2, sg, fc, drv, m3, cm2 = _properties(handle, extensions)
    props = p2.properties
    lim = props.limits
    limits = {
        "max_compute_workgroup_size": tuple(lim.maxComputeWorkGroupSize[0:3]),
        "max_compute_workgroup_invocations": lim.maxComputeWorkGroupInvocations,
        "max_compute_workgroup_count": tuple(lim.maxComputeWorkGroupCount[0:3]),
        "max_compute_shared_memory_size": lim.maxComputeSharedMemorySize,
        "max_storage_buffer_range": lim.maxStorageBufferRange,
        "max_uniform_buffer_range": lim.maxUniformBufferRange,
        "max_push_constants_size": lim.maxPushConstantsSize,
        "max_bound_descriptor_sets": lim.maxBoundDescriptorSets,
        "max_per_stage_descriptor_storage_buffers": lim.maxPerStageDescriptorStorageBuffers,
        "max_per_stage_descriptor_uniform_buffers": lim.maxPerStageDescriptorUniformBuffers,
        "max_per_stage_resources": lim.maxPerStageResources,
        "min_storage_buffer_offset_alignment": lim.minStorageBufferOffsetAlignment,
        "min_uniform_buffer_offset_alignment": lim.minUniformBufferOffsetAlignment,
        "non_coherent_atom_size": lim.nonCoherentAtomSize,
        "max_memory_allocation_count": lim.maxMemoryAllocationCount,
        "max_memory_allocation_size": m3.maxMemoryAllocationSize,
        "timestamp_period_ns": lim.timestampPeriod,
        "subgroup_size": sg.subgroupSize,
        "subgroup_operations": sg.supportedOperations if sg.supportedStages & vkb.VK_SHADER_STAGE_COMPUTE_BIT else 0,
    }
    if cm2 is not None:
        limits.update({f"cooperative_matrix2_{k}": v
                       for k, v in zip(COOPMAT2_PROPERTIES, raw_fields(cm2, len(COOPMAT2_PROPERTIES)))})
    float_controls = {
        f"{key}_float{bits}": bool(getattr(fc, f"shader{field}Float{bits}"))
        for key, field in (("rounding_mode_rte", "RoundingModeRTE"), ("rounding_mode_rtz", "RoundingModeRTZ"),
                           ("signed_zero_inf_nan_preserve", "SignedZeroInfNanPreserve"),
                           ("denorm_preserve", "DenormPreserve"), ("denorm_flush_to_zero", "DenormFlushToZero"))
        for bits in (16, 32, 64)
    }
    families = [
        {"flags": q.queueFlags, "count": q.queueCount, "timestamp_bits": q.timestampValidBits}
        for q in vkb.vkGetPhysicalDeviceQueueFamilyProperties(handle)
    ]
    return PhysicalDeviceInfo(
        index=index, handle=handle, name=_text(props.deviceName),
        type=DEVICE_TYPES.get(props.deviceType, "other"), api_version=props.apiVersion,
        driver_name=_text(drv.driverName), driver_info=_text(drv.driverInfo),
        vendor_id=props.vendorID, device_id=props.deviceID, limits=limits,
        features=_features(handle, extensions), float_controls=float_controls,
        extensions=extensions, queue_families=families,
        cooperative_matrix_shapes=cooperative_matrix_shapes(instance_handle, handle)
        if instance_handle is not None and COOPERATIVE_MATRIX_EXT in extensions else [],
        cooperative_matrix2_shapes=cooperative_matrix2_shapes(instance_handle, handle)
        if instance_handle is not None and COOPMAT2_EXT in extensions else [],
    )


def unusable_reason(info: PhysicalDeviceInfo) -> str | None:
    if info.api_version < api_version(1, 2):
        return f"Vulkan {info.api_version_str} is older than the 1.2 this library needs"
    if info.compute_family() is None:
        return "has no queue family with compute"
    return None


@dataclass
class Selection:
    chosen: PhysicalDeviceInfo
    how: str
    passed_over: list[tuple[PhysicalDeviceInfo, str]]


def choose(devices: list[PhysicalDeviceInfo], device_index: int | None = None,
           request: str | None = None) -> Selection:
    """Pick a device: by index, by HLX_DEVICE (index or name substring), else by type.

    ``request`` stands in for ``HLX_DEVICE`` ("" ignores it). With neither
    an index nor a request: the first discrete GPU, then
    integrated, then virtual, then the CPU implementation (lavapipe).
    """
    if request is None and device_index is None:
        request = os.environ.get("HLX_DEVICE")
    request = request.strip() if request else None
    if not devices:
        raise errors.DeviceSelectionError(
            "no Vulkan physical device found: install a driver (Debian: apt-get install mesa-vulkan-drivers for lavapipe)")
    passed: list[tuple[PhysicalDeviceInfo, str]] = []
    usable = []
    for d in devices:
        reason = unusable_reason(d)
        if reason:
            passed.append((d, reason))
        else:
            usable.append(d)

    def fail(what: str):
        lines = [f"  [{d.index}] {d.name} ({d.type}): {why}" for d, why in passed]
        raise errors.DeviceSelectionError(what + ("\n" + "\n".join(lines) if lines else ""))

    if request is not None and request.lstrip("-").isdigit():
        device_index, request = int(request), None
    if request is not None:
        matches = [d for d in usable if request.lower() in d.name.lower()]
        for d in usable:
            if d not in matches:
                passed.append((d, f"name does not contain HLX_DEVICE={request!r}"))
        if not matches:
            fail(f"no usable Vulkan device matches HLX_DEVICE={request!r}")
        return Selection(matches[0], f"name matches HLX_DEVICE={request!r}", passed)
    if device_index is not None:
        if not 0 <= device_index < len(devices):
            fail(f"device index {device_index} is out of range: {len(devices)} device(s) found")
        chosen = devices[device_index]
        if chosen not in usable:
            fail(f"device {device_index} ({chosen.name}) cannot be used")
        passed += [(d, f"device {device_index} was requested") for d in usable if d is not chosen]
        return Selection(chosen, f"index {device_index} requested", passed)
    if not usable:
        fail("no usable Vulkan device")
    ranked = sorted(usable, key=lambda d: (TYPE_PREFERENCE[d.type], d.index))
    chosen = ranked[0]
    passed += [(d, f"a {chosen.type} device is preferred to a {d.type} one" if d.type != chosen.type
                else "an earlier device of the same type was chosen") for d in ranked[1:]]
    return Selection(chosen, f"first {chosen.type} device", passed)
