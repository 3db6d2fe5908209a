"""Compiled kernels: one pipeline per (source, defines, workgroup size), built once.

Descriptor sets are cached by the exact buffer ranges they bind and never
rewritten, so a set can serve any number of dispatches in flight; a training
loop that reuses its tensors' memory reuses its sets.
"""

from __future__ import annotations

from pathlib import Path

from .. import errors
from ..compiler import compile_file
from ..vk import ComputePipeline, DescriptorBindingBuilder, DescriptorType, ShaderModule
from ..vk.api import ffi, vkb

MAX_SETS = 4096


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


class Kernel:
    """A compute pipeline with its own cache of descriptor sets."""

    def __init__(self, device, path: Path, defines: dict, workgroup: tuple[int, int, int], target_env: str,
                 before_reset=None):
        self.device = device
        self._before_reset = before_reset
        self.name = f"{path.parent.name}/{path.stem}"
        self.spirv = compile_file(path, defines, target_env=target_env)
        self.shader = ShaderModule(device, self.spirv)
        self.digest = self.shader.digest
        builder = DescriptorBindingBuilder()
        for b in self.shader.bindings:
            if b.descriptor_type != "storage_buffer" or b.set != 0:
                raise errors.PipelineLayoutError(f"kernel {self.name}: runtime kernels bind storage buffers in set 0 only")
            builder.add_storage_buffer(b.binding)
        self.bindings = [b.binding for b in self.shader.bindings]
        self.push_size = self.shader.push_constant_size
        spec_wg = workgroup if any(i is not None for i in self.shader.entry.local_size_spec_ids) else None
        self.pipeline = ComputePipeline(device, self.shader, builder.build(), self.push_size,
                                        workgroup_size=spec_wg, max_sets=MAX_SETS)
        self.workgroup = self.pipeline.workgroup_size
        self._sets: dict[tuple, object] = {}

    def descriptor_set(self, ranges: tuple) -> object:
        """A set binding ``ranges`` = ((block, offset, size), ...) in binding order, cached."""
        key = tuple((blk._order, off, size) for blk, off, size in ranges)
        ds = self._sets.get(key)
        if ds is None:
            if len(self._sets) >= MAX_SETS:
                # Sets for blocks long gone pile up; once the device is done with all of them, start afresh.
                if self._before_reset is None:
                    raise errors.OutOfDeviceMemoryError(
                        "vkAllocateDescriptorSets", "VK_ERROR_OUT_OF_POOL_MEMORY", f"kernel {self.name} has {MAX_SETS} sets")
                self._before_reset()
                self.reset_sets()
            ds = self.pipeline.allocate_descriptor_set()
            self.pipeline.update_descriptor_set(
                ds, [(b, blk.buffer, off, size) for b, (blk, off, size) in zip(self.bindings, ranges)])
            # Kept as a one-element array: vkCmdBindDescriptorSets takes a pointer to the sets.
            ds = ffi.new("VkDescriptorSet[1]", [ds])
            self._sets[key] = ds
        return ds

    def reset_sets(self) -> None:
        """Forget every cached set (the device must be idle)."""
        if self._sets:
            vkb.vkResetDescriptorPool(self.device.handle, self.pipeline.descriptor_pool, 0)
            self.pipeline._live_sets = 0
            self._sets.clear()

    @property
    def cached_sets(self) -> int:
        return len(self._sets)

    def destroy(self) -> None:
        self.pipeline.destroy()
        self.shader.destroy()


class KernelCache:
    """Kernels by (source path, defines, workgroup size)."""

    def __init__(self, device, float_controls: dict, target_env: str = "vulkan1.2", before_reset=None):
        """``before_reset()`` must make the device finish every use of the cached descriptor sets."""
        self.device = device
        self.before_reset = before_reset
        self.fc_defines = float_control_defines(float_controls)
        self.target_env = target_env
        self._kernels: dict[tuple, Kernel] = {}
        # Per-op-family lookup tables (op key -> Kernel) that skip building define dicts on the hot path.
        self.memo: dict[str, dict] = {}

    def get(self, path: Path, defines: dict | None = None, workgroup=(256, 1, 1), target_env: str | None = None) -> Kernel:
        """The kernel for ``path`` with ``defines``; ``target_env`` overrides the device's default."""
        wg = tuple(workgroup) + (1,) * (3 - len(workgroup))
        key = (str(path), tuple(sorted((defines or {}).items())), wg, target_env)
        k = self._kernels.get(key)
        if k is None:
            k = Kernel(self.device, Path(path), {**self.fc_defines, **(defines or {})}, wg,
                       target_env or self.target_env, self.before_reset)
            self._kernels[key] = k
        return k

    def kernels(self) -> list[Kernel]:
        return list(self._kernels.values())

    def reset_sets(self) -> None:
        for k in self._kernels.values():
            k.reset_sets()

    def destroy(self) -> None:
        for k in self._kernels.values():
            k.destroy()
        self._kernels.clear()
        self.memo.clear()

