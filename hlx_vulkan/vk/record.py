"""Raw command recording for the runtime's hot path: dispatches, barriers, copies and a
prepared queue submission, each through the binding's C functions with prebuilt arguments
(the binding's Python wrappers cost microseconds a call), and dispatches through the small C
extension ``_record`` where it was built (a tenth of cffi's cost). The runtime reaches Vulkan
only through here and the rest of ``vk/``.

Example::

    record.dispatch(record.handle(cmd), record.handle(pipeline.pipeline), record.handle(pipeline.layout),
                    record.descriptor_set_array(descriptor_set), push, 4, 1, 1)
    record.barrier(cmd)
"""

from __future__ import annotations

import os

import vulkan as vkb

from .api import check_result, ffi

_lib = vkb.lib
_COMPUTE = vkb.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
_TRANSFER = vkb.VK_PIPELINE_STAGE_TRANSFER_BIT
_HOST = vkb.VK_PIPELINE_STAGE_HOST_BIT
_BIND_COMPUTE = vkb.VK_PIPELINE_BIND_POINT_COMPUTE
_STAGE_COMPUTE = vkb.VK_SHADER_STAGE_COMPUTE_BIT
_WRITES = vkb.VK_ACCESS_SHADER_WRITE_BIT | vkb.VK_ACCESS_TRANSFER_WRITE_BIT
_ACCESSES = _WRITES | vkb.VK_ACCESS_SHADER_READ_BIT | vkb.VK_ACCESS_TRANSFER_READ_BIT


def _memory_barrier(src_access: int, dst_access: int):
    return ffi.new("VkMemoryBarrier*", {"sType": vkb.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                        "srcAccessMask": src_access, "dstAccessMask": dst_access})


# Compute and transfer writes made visible to compute and transfer reads and writes: the one
# hazard barrier, since a stream mixes dispatches with in-stream uploads.
_HAZARD = _memory_barrier(_WRITES, _ACCESSES)
_TO_HOST = _memory_barrier(_WRITES, vkb.VK_ACCESS_HOST_READ_BIT)


def _cffi_barrier(cmd) -> None:
    _lib.vkCmdPipelineBarrier(cmd, _COMPUTE | _TRANSFER, _COMPUTE | _TRANSFER, 0, 1, _HAZARD, 0, ffi.NULL, 0, ffi.NULL)


def barrier_to_host(cmd) -> None:
    """Make the device's writes visible to host reads once the submission's fence signals."""
    _lib.vkCmdPipelineBarrier(cmd, _COMPUTE | _TRANSFER, _HOST, 0, 1, _TO_HOST, 0, ffi.NULL, 0, ffi.NULL)


def _native():
    """The C recorder (``_record.c``), initialised with the loader's function addresses; None
    where it was not built or ``HLX_NATIVE=0`` asks for the cffi path."""
    if os.environ.get("HLX_NATIVE", "1") == "0":
        return None
    try:
        from . import _record
    except ImportError:
        return None
    _record.init(*native_functions(), _COMPUTE | _TRANSFER, _WRITES, _ACCESSES)
    return _record


def native_functions() -> list[int]:
    """The addresses of the Vulkan functions the C recorder calls, in ``init``'s order."""
    return [int(ffi.cast("uintptr_t", ffi.addressof(_lib, name))) for name in
            ("vkCmdBindPipeline", "vkCmdBindDescriptorSets", "vkCmdPushConstants", "vkCmdDispatch",
             "vkCmdPipelineBarrier")]


_NATIVE = _native()
NATIVE = _NATIVE is not None


def handle(h):
    """A handle as :func:`dispatch` takes it: an integer for the C recorder, else as is."""
    return int(ffi.cast("uintptr_t", h)) if NATIVE else h


def descriptor_set_array(descriptor_set):
    """The descriptor set as :func:`dispatch` binds it: an integer handle for the C recorder, a
    one-element ``VkDescriptorSet[]`` for cffi."""
    return handle(descriptor_set) if NATIVE else ffi.new("VkDescriptorSet[1]", [descriptor_set])


if NATIVE:
    def barrier(cmd) -> None:
        """Order everything recorded before against everything after (compute and transfer);
        ``cmd`` from :func:`handle`."""
        _NATIVE.barrier(cmd)

    dispatch_tracked = _NATIVE.dispatch_tracked

    def dispatch(cmd, pipeline, layout, descriptor_set, push: bytes | None, gx: int, gy: int, gz: int,
                 bind_pipeline: bool = True) -> None:
        """Bind the pipeline (unless ``bind_pipeline`` is False: it is bound already) and the set,
        push and dispatch; every handle from :func:`handle`, the set from :func:`descriptor_set_array`."""
        _NATIVE.dispatch(cmd, pipeline, layout, descriptor_set, push, gx, gy, gz, bind_pipeline)
else:
    def dispatch(cmd, pipeline, layout, descriptor_set, push: bytes | None, gx: int, gy: int, gz: int,
                 bind_pipeline: bool = True) -> None:
        """Bind the pipeline (unless ``bind_pipeline`` is False: it is bound already) and the set,
        push and dispatch; every handle from :func:`handle`, the set from :func:`descriptor_set_array`."""
        if bind_pipeline:
            _lib.vkCmdBindPipeline(cmd, _BIND_COMPUTE, pipeline)
        _lib.vkCmdBindDescriptorSets(cmd, _BIND_COMPUTE, layout, 0, 1, descriptor_set, 0, ffi.NULL)
        if push:
            _lib.vkCmdPushConstants(cmd, layout, _STAGE_COMPUTE, 0, len(push), push)
        _lib.vkCmdDispatch(cmd, gx, gy, gz)

    barrier = _cffi_barrier


def _cffi_dispatch_tracked(cmd, pipeline, layout, descriptor_set, push, gx, gy, gz, bind_pipeline, keys, reads,
                           writes, written: set, read: set, allocations, serial) -> int:
    """The hazard barrier where the ranges need it, then :func:`dispatch`; returns 1 if a barrier
    was recorded. ``keys``: each binding's memory range; ``reads``/``writes``: the binding indices
    the kernel reads and writes; ``written``/``read``: the ranges used since the last barrier
    (updated here); every allocation's ``busy`` becomes ``serial``. The C recorder's
    ``dispatch_tracked`` follows these rules exactly."""
    hazard = any(keys[i] in written for i in reads) or any(keys[i] in written or keys[i] in read for i in writes)
    if hazard:
        barrier(cmd)
        written.clear()
        read.clear()
    dispatch(cmd, pipeline, layout, descriptor_set, push, gx, gy, gz, bind_pipeline)
    for i in reads:
        read.add(keys[i])
    for i in writes:
        written.add(keys[i])
    for a in allocations:
        a.busy = serial
    return int(hazard)


if not NATIVE:
    dispatch_tracked = _cffi_dispatch_tracked


def copy_buffer(cmd, src, dst, src_offset: int, dst_offset: int, size: int) -> None:
    """One region from buffer handle ``src`` to ``dst``."""
    region = ffi.new("VkBufferCopy*", {"srcOffset": src_offset, "dstOffset": dst_offset, "size": size})
    _lib.vkCmdCopyBuffer(cmd, src, dst, 1, region)


class PreparedSubmit:
    """A submission of fixed command buffers, built once: each :meth:`submit` is two raw calls.

    Example::

        prepared = PreparedSubmit(device, [cmd1, cmd2])
        prepared.submit(fence)
    """

    def __init__(self, device, command_buffers):
        self.device = device
        self._cmds = ffi.new("VkCommandBuffer[]", list(command_buffers))
        self._info = ffi.new("VkSubmitInfo*", {"sType": vkb.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                                               "commandBufferCount": len(command_buffers),
                                               "pCommandBuffers": self._cmds})
        self._fences: dict[int, object] = {}

    def submit(self, fence) -> None:
        """Reset ``fence`` (a :class:`~hlx_vulkan.vk.Fence`), then submit, signalling it."""
        handles = self._fences.get(id(fence))
        if handles is None:
            handles = self._fences[id(fence)] = ffi.new("VkFence[1]", [fence.handle])
        dev = self.device.handle
        check_result("vkResetFences", _lib.vkResetFences(dev, 1, handles))
        with self.device.queue_lock:
            check_result("vkQueueSubmit", _lib.vkQueueSubmit(self.device.queue, 1, self._info, handles[0]))
