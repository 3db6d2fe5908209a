"""ShaderModule: SPIR-V checked and reflected before the driver sees it."""

from __future__ import annotations

import hashlib

import vulkan as vkb

from .. import errors
from .api import call, version_str
from .handles import VkObject
from .spirv import MAX_BINDING_NUMBER, MAX_PRIVATE_BYTES, max_spirv_version_for, parse_spirv, validate_spirv
from .spirv_cfg import cfg_problems
from .spirv_hints import drop_unroll_hints

_validated: set[tuple[str, str]] = set()
_MAX_VALIDATED = 4096  # a fuzzer or a long session builds endless modules; forgetting one costs one spirv-val run

_FLOAT_CONTROLS = {"DenormPreserve": "denorm_preserve", "DenormFlushToZero": "denorm_flush_to_zero",
                   "SignedZeroInfNanPreserve": "signed_zero_inf_nan_preserve", "RoundingModeRTE": "rounding_mode_rte",
                   "RoundingModeRTZ": "rounding_mode_rtz"}
# VkSubgroupFeatureFlagBits behind each GroupNonUniform capability.
_SUBGROUP_OPERATIONS = {"GroupNonUniform": 0x1, "GroupNonUniformVote": 0x2, "GroupNonUniformArithmetic": 0x4,
                        "GroupNonUniformBallot": 0x8, "GroupNonUniformShuffle": 0x10,
                        "GroupNonUniformShuffleRelative": 0x20, "GroupNonUniformClustered": 0x40,
                        "GroupNonUniformQuad": 0x80}
# The capabilities and SPIR-V extensions a module may declare, and the device feature each needs
# (None: every device this library runs on). Anything else is refused.
_CAPABILITY_FEATURES = {
    "Shader": None, "Matrix": None, "Float16": "shader_float16", "Float64": "shader_float64",
    "Int64": "shader_int64", "Int16": "shader_int16", "Int8": "shader_int8",
    "StorageBuffer16BitAccess": "storage_buffer_16bit", "StorageBuffer8BitAccess": "storage_buffer_8bit",
    "VulkanMemoryModel": "vulkan_memory_model", "VulkanMemoryModelDeviceScope": "vulkan_memory_model_device_scope",
    "PhysicalStorageBufferAddresses": "buffer_device_address", "CooperativeMatrixKHR": "cooperative_matrix",
    "BFloat16TypeKHR": "bfloat16_cooperative_matrix", "BFloat16CooperativeMatrixKHR": "bfloat16_cooperative_matrix",
    "CooperativeMatrixReductionsNV": "cooperative_matrix2_reductions",
    "CooperativeMatrixConversionsNV": "cooperative_matrix2_conversions",
    "CooperativeMatrixPerElementOperationsNV": "cooperative_matrix2_per_element_operations",
    "CooperativeMatrixTensorAddressingNV": "cooperative_matrix2_tensor_addressing",
    "CooperativeMatrixBlockLoadsNV": "cooperative_matrix2_block_loads",
    "TensorAddressingNV": "cooperative_matrix2_tensor_addressing",
}
_EXTENSION_FEATURES = {
    "SPV_KHR_storage_buffer_storage_class": None, "SPV_KHR_float_controls": None,
    "SPV_KHR_16bit_storage": "storage_buffer_16bit", "SPV_KHR_8bit_storage": "storage_buffer_8bit",
    "SPV_KHR_vulkan_memory_model": "vulkan_memory_model", "SPV_KHR_physical_storage_buffer": "buffer_device_address",
    "SPV_KHR_cooperative_matrix": "cooperative_matrix", "SPV_KHR_bfloat16": "bfloat16_cooperative_matrix",
    "SPV_NV_cooperative_matrix2": "cooperative_matrix2", "SPV_NV_tensor_addressing": "cooperative_matrix2_tensor_addressing",
}
_DESCRIPTOR_LIMITS = {"storage_buffer": "max_per_stage_descriptor_storage_buffers",
                      "uniform_buffer": "max_per_stage_descriptor_uniform_buffers"}


def spirv_digest(spirv: bytes) -> str:
    """SHA-256 (hex) of a SPIR-V binary: the shader's identity."""
    return hashlib.sha256(spirv).hexdigest()


def target_env_for(api_version: int) -> str:
    return "vulkan1.3" if api_version >= vkb.VK_MAKE_VERSION(1, 3, 0) else "vulkan1.2"


def _capability_problem(cap: str, device) -> str | None:
    feats, limits, fc = device.enabled_features, device.limits, device.physical.float_controls
    if cap in _CAPABILITY_FEATURES:
        need = _CAPABILITY_FEATURES[cap]
        return None if need is None or feats.get(need) else f"capability {cap} needs the {need} feature"
    if cap in _FLOAT_CONTROLS:
        ok = any(fc.get(f"{_FLOAT_CONTROLS[cap]}_float{bits}") for bits in (16, 32, 64))
        return None if ok else f"capability {cap} is not supported at any float width"
    if cap in _SUBGROUP_OPERATIONS:
        ok = limits.get("subgroup_operations", 0) & _SUBGROUP_OPERATIONS[cap]
        return None if ok else f"capability {cap}: the device has no such subgroup operations in compute shaders"
    return f"capability {cap} is not one this library enables"


def device_problems(reflection, entry_point: str, device) -> list[str]:
    """What in a reflected module the device cannot run, or a driver is not required to survive."""
    problems = [p for p in (_capability_problem(c, device) for c in sorted(reflection.capabilities)) if p]
    feats, limits = device.enabled_features, device.limits
    for ext in reflection.extensions:
        if ext not in _EXTENSION_FEATURES:
            problems.append(f"SPIR-V extension {ext!r} is not one this library enables")
        elif _EXTENSION_FEATURES[ext] is not None and not feats.get(_EXTENSION_FEATURES[ext]):
            problems.append(f"SPIR-V extension {ext} needs the {_EXTENSION_FEATURES[ext]} feature")
    fc = device.physical.float_controls
    for mode, operands in reflection.execution_modes.get(entry_point, ()):
        if mode == "LocalSizeId" and not feats.get("maintenance4"):
            problems.append("execution mode LocalSizeId needs the maintenance4 feature")
        elif mode in _FLOAT_CONTROLS and (not operands or not fc.get(f"{_FLOAT_CONTROLS[mode]}_float{operands[0]}")):
            width = operands[0] if operands else "?"
            problems.append(f"execution mode {mode} is not supported for {width}-bit floats")
    per_type: dict[str, int] = {}
    for b in reflection.bindings:
        where = f"binding {b.binding} of set {b.set}"
        if b.set >= limits["max_bound_descriptor_sets"]:
            problems.append(f"{where}: the device binds {limits['max_bound_descriptor_sets']} sets at most")
        if b.binding > MAX_BINDING_NUMBER:
            problems.append(f"{where}: binding numbers go up to {MAX_BINDING_NUMBER}")
        if b.count == 0:
            problems.append(f"{where} is an array of descriptors of unknown size (descriptor indexing is not enabled)")
        per_type[b.descriptor_type] = per_type.get(b.descriptor_type, 0) + b.count
    for kind, total in per_type.items():
        key = _DESCRIPTOR_LIMITS.get(kind)
        if key is not None and total > limits[key]:
            problems.append(f"{total} {kind} descriptors, past the device's {limits[key]} per stage")
    if sum(per_type.values()) > limits["max_per_stage_resources"]:
        problems.append(f"{sum(per_type.values())} descriptors, past the device's {limits['max_per_stage_resources']} "
                        "resources per stage")
    if reflection.push_constant_size > limits["max_push_constants_size"]:
        problems.append(f"a push-constant block of {reflection.push_constant_size} bytes, past the device's "
                        f"{limits['max_push_constants_size']}")
    problems += storage_problems(reflection, {}, limits)
    return problems


def storage_problems(reflection, specialization: dict, limits: dict) -> list[str]:
    """Shared and per-invocation memory past the device's limit or :data:`MAX_PRIVATE_BYTES`."""
    used = reflection.storage_bytes(specialization)
    problems = []
    if used["workgroup"] > limits["max_compute_shared_memory_size"]:
        problems.append(f"{used['workgroup']} bytes of shared memory, past the device's "
                        f"{limits['max_compute_shared_memory_size']}")
    if used["private"] > MAX_PRIVATE_BYTES:
        problems.append(f"{used['private']} bytes of Function and Private variables per invocation, past the "
                        f"{MAX_PRIVATE_BYTES} this library allows")
    return problems


def _destroy_module(device, handle) -> None:
    vkb.vkDestroyShaderModule(device.handle, handle, None)


class ShaderModule(VkObject):
    """A VkShaderModule made from SPIR-V that has been checked and reflected.

    Refuses, with :class:`InvalidShaderError` and before the driver sees the
    module, whatever the bytes: malformed SPIR-V (see :func:`parse_spirv`), a
    SPIR-V version the device does not accept, a missing or non-compute entry
    point, capabilities, extensions or execution modes the device has not
    enabled, descriptors, push constants, shared memory or per-invocation
    arrays past the device's limits (see :func:`device_problems`), and
    whatever an installed ``spirv-val`` rejects, in the module as given and
    with its specialization constants frozen (see :func:`validate_spirv`).
    Loop-unrolling hints are dropped from a module that is not ``trusted`` (this
    library's own kernels are): see :mod:`hlx_vulkan.vk.spirv_hints`.

    Example::

        shader = ShaderModule(ctx.device, compile_glsl(src), "main")
        print(shader.local_size, shader.bindings, shader.push_constant_size)
    """

    def __init__(self, device, spirv: bytes, entry_point: str = "main", *, validate: bool = True,
                 trusted: bool = False):
        device._check_alive()
        if not isinstance(spirv, (bytes, bytearray, memoryview)):
            raise errors.InvalidShaderError(f"SPIR-V must be bytes, not {type(spirv).__name__}")
        spirv = bytes(spirv)
        self.reflection = parse_spirv(spirv)
        api = min(device.physical.api_version, device.instance.api_version)
        limit = max_spirv_version_for(api)
        if self.reflection.version > limit:
            raise errors.InvalidShaderError(
                f"SPIR-V {self.reflection.version[0]}.{self.reflection.version[1]} is newer than the "
                f"{limit[0]}.{limit[1]} that Vulkan {version_str(api)} on {device.physical.name} accepts")
        entry = self.reflection.entry_point(entry_point)
        if entry.execution_model != "GLCompute":
            raise errors.InvalidShaderError(
                f"entry point {entry_point!r} is a {entry.execution_model} shader, not a compute shader")
        problems = device_problems(self.reflection, entry_point, device)
        if problems:
            raise errors.InvalidShaderError(f"{device.physical.name} cannot run this module: " + "; ".join(problems))
        self.digest = spirv_digest(spirv)
        env = target_env_for(api)
        if validate and (self.digest, env) not in _validated:
            validate_spirv(spirv, env)
            cfg = cfg_problems(spirv)
            if cfg:
                raise errors.InvalidShaderError(f"the driver's SPIR-V parser cannot follow this control flow: {cfg[0]}")
            if len(_validated) >= _MAX_VALIDATED:
                _validated.clear()
            _validated.add((self.digest, env))
        if not trusted:  # a caller's module: no loop hint may make the driver's compile unbounded
            spirv = drop_unroll_hints(spirv)
        self.device = device
        self.spirv = spirv
        self.entry_point = entry_point
        self.entry = entry
        try:
            self.handle = call(vkb.vkCreateShaderModule, device.handle,
                               vkb.VkShaderModuleCreateInfo(codeSize=len(spirv), pCode=spirv), None)
        except errors.VulkanError as exc:
            if isinstance(exc, (MemoryError, errors.DeviceLostError)):
                raise
            raise errors.InvalidShaderError(f"the driver refuses the module: {exc}") from None
        self._own(device, _destroy_module, device, self.handle)

    @property
    def local_size(self):
        return self.entry.local_size

    @property
    def bindings(self):
        return self.reflection.bindings

    @property
    def push_constant_size(self) -> int:
        return self.reflection.push_constant_size
