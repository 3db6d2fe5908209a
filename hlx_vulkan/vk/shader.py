"""ShaderModule: SPIR-V checked and reflected before the driver sees it."""

from __future__ import annotations

import hashlib

import vulkan as vkb

from .. import errors
from .api import call, version_str
from .handles import VkObject
from .spirv import max_spirv_version_for, parse_spirv, validate_spirv

_validated: set[tuple[str, str]] = set()


def spirv_digest(spirv: bytes) -> str:
    """SHA-256 (hex) of a SPIR-V binary: the shader's identity."""
    return hashlib.sha256(spirv).hexdigest()


def target_env_for(api_version: int) -> str:
    return "vulkan1.3" if api_version >= vkb.VK_MAKE_VERSION(1, 3, 0) else "vulkan1.2"


def _destroy_module(device, handle) -> None:
    vkb.vkDestroyShaderModule(device.handle, handle, None)


class ShaderModule(VkObject):
    """A VkShaderModule made from SPIR-V that has been checked and reflected.

    Refuses, with :class:`InvalidShaderError`, empty or truncated input, a bad
    magic number, a SPIR-V version the device does not accept, a missing entry
    point, and whatever ``spirv-val`` rejects (where spirv-val is installed).

    Example::

        shader = ShaderModule(ctx.device, compile_glsl(src), "main")
        print(shader.local_size, shader.bindings, shader.push_constant_size)
    """

    def __init__(self, device, spirv: bytes, entry_point: str = "main", *, validate: bool = True):
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
        self.digest = spirv_digest(spirv)
        env = target_env_for(api)
        if validate and (self.digest, env) not in _validated:
            validate_spirv(spirv, env)
            _validated.add((self.digest, env))
        self.device = device
        self.spirv = spirv
        self.entry_point = entry_point
        self.entry = entry
        self.handle = call(vkb.vkCreateShaderModule, device.handle,
                           vkb.VkShaderModuleCreateInfo(codeSize=len(spirv), pCode=spirv), None)
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
