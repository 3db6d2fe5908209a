"""VulkanContext: instance, chosen device, compute queue, and loaded shaders."""

from __future__ import annotations

from .. import errors
from . import validation
from .device import Device
from .instance import Instance
from .physical import choose, describe
from .shader import ShaderModule, spirv_digest


class VulkanContext:
    """Everything needed to run compute on one Vulkan device.

    The device is chosen by ``device_index``, else by ``HLX_DEVICE`` (an index
    or a name substring), else the first discrete GPU, then integrated, then
    the CPU implementation (lavapipe). ``selection.passed_over`` says why the
    others were not taken. Validation is on when ``enable_validation`` is true
    or ``HLX_VALIDATION=1``.

    Example::

        with VulkanContext() as ctx:
            shader_id = ctx.load_shader(spirv, "main")
            shader = ctx.get_shader(shader_id)
            print(ctx.info["device_name"])
    """

    def __init__(self, device_index: int | None = None, enable_validation: bool = False):
        enable_validation = enable_validation or validation.requested_by_environment()
        self.instance = Instance(enable_validation=enable_validation)
        try:
            devices = [describe(h, i, self.instance.handle) for i, h in enumerate(self.instance.physical_devices())]
            self.selection = choose(devices, device_index)
            self.device = Device(self.instance, self.selection.chosen)
        except BaseException:
            self.instance.destroy()
            raise
        self.physical_device = self.selection.chosen
        self.compute_queue = self.device.queue
        self.compute_queue_family = self.device.queue_family
        self.memory_properties = self.device.memory_properties
        self._shaders: dict[str, ShaderModule] = {}

    @property
    def validation_enabled(self) -> bool:
        return self.instance.validation

    @property
    def alive(self) -> bool:
        return self.device.alive

    @property
    def info(self) -> dict:
        """Device name and type, driver, API version, features and the limits that matter."""
        p = self.physical_device
        return {
            "device_name": p.name, "device_type": p.type, "driver": f"{p.driver_name} {p.driver_info}".strip(),
            "api_version": p.api_version_str, "vendor_id": p.vendor_id, "device_id": p.device_id,
            "queue_family": self.compute_queue_family, "features": dict(self.device.enabled_features),
            "limits": dict(p.limits), "float_controls": dict(p.float_controls),
            "validation": self.validation_enabled, "selected_because": self.selection.how,
            "cooperative_matrix_shapes": list(p.cooperative_matrix_shapes),
            "cooperative_matrix2_shapes": list(p.cooperative_matrix2_shapes),
        }

    def load_shader(self, spirv: bytes, entry_point: str = "main") -> str:
        """Check and load SPIR-V; returns its id, the SHA-256 of the bytes (same bytes, same module)."""
        self.device._check_alive()
        spirv = bytes(spirv)
        shader_id = spirv_digest(spirv)
        key = f"{shader_id}:{entry_point}" if entry_point != "main" else shader_id
        existing = self._shaders.get(key)
        if existing is None or not existing.alive:
            self._shaders[key] = ShaderModule(self.device, spirv, entry_point)
        return key

    def get_shader(self, shader_id: str) -> ShaderModule:
        self.device._check_alive()
        try:
            shader = self._shaders[shader_id]
        except KeyError:
            raise KeyError(f"no shader with id {shader_id[:16]}... was loaded in this context") from None
        if not shader.alive:
            raise errors.DestroyedError(f"shader {shader_id[:16]}... was destroyed")
        return shader

    def wait_idle(self) -> None:
        self.device.wait_idle()

    def cleanup(self) -> None:
        """Wait for the device, destroy everything made from it, then the device and instance."""
        self._shaders.clear()
        self.instance.destroy()

    def __enter__(self) -> "VulkanContext":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "open" if self.alive else "closed"
        return f"<VulkanContext {self.physical_device.name!r} ({self.physical_device.type}), {state}>"
