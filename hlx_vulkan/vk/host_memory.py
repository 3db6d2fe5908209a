"""Host memory the device reads and writes in place (VK_EXT_external_memory_host).

:class:`ImportedHostBuffer` wraps a range of memory this process did not get from Vulkan (an MPI
shared-memory window, say) as a VkBuffer, so that a copy command moves bytes straight between
the device and that memory. The caller keeps the memory mapped until the buffer is destroyed.

Example::

    align = import_alignment(ctx.device)         # None: the device cannot import host memory
    buf = ImportedHostBuffer(ctx.device, address, nbytes)   # both multiples of align
    ...
    buf.destroy()                                # before the memory is unmapped
"""

from __future__ import annotations

import vulkan as vkb

from .. import errors
from .api import call
from .flags import BufferUsageFlags, MemoryPropertyFlags
from .handles import VkObject

from .device import HOST_MEMORY_EXT as EXTENSION
_HANDLE_TYPE = vkb.VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT


def import_alignment(device) -> int | None:
    """minImportedHostPointerAlignment when ``device`` enabled the extension, else None."""
    if EXTENSION not in device.enabled_extensions:
        return None
    ext = vkb.VkPhysicalDeviceExternalMemoryHostPropertiesEXT()
    vkb.vkGetPhysicalDeviceProperties2(device.physical.handle, vkb.VkPhysicalDeviceProperties2(pNext=ext))
    return int(ext.minImportedHostPointerAlignment)


def _destroy(device, handle, memory) -> None:
    vkb.vkDestroyBuffer(device.handle, handle, None)
    vkb.vkFreeMemory(device.handle, memory, None)


class ImportedHostBuffer(VkObject):
    """A VkBuffer over ``nbytes`` of host memory at ``address`` (vkGetMemoryHostPointerPropertiesEXT,
    VkImportMemoryHostPointerInfoEXT). ``address`` and ``nbytes`` must be multiples of
    :func:`import_alignment`. ``keep`` is held as long as the buffer lives."""

    def __init__(self, device, address: int, nbytes: int, keep=None):
        device._check_alive()
        align = import_alignment(device)
        if align is None:
            raise errors.FeatureNotPresentError("vkAllocateMemory", "VK_ERROR_FEATURE_NOT_PRESENT",
                                                f"this device did not enable {EXTENSION}")
        if address % align or nbytes % align or nbytes <= 0:
            raise ValueError(f"host import needs address and size aligned to {align} bytes "
                             f"(got address {address:#x}, {nbytes} bytes)")
        pointer = vkb.ffi.cast("void *", address)
        fn = vkb.ffi.cast("PFN_vkGetMemoryHostPointerPropertiesEXT",
                          vkb.lib.vkGetDeviceProcAddr(device.handle, b"vkGetMemoryHostPointerPropertiesEXT"))
        props = vkb.ffi.new("VkMemoryHostPointerPropertiesEXT *",
                            {"sType": vkb.VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT})
        result = fn(device.handle, _HANDLE_TYPE, pointer, props)
        if result != vkb.VK_SUCCESS:
            raise errors.FeatureNotPresentError("vkGetMemoryHostPointerPropertiesEXT", str(result),
                                                f"the device cannot import host memory at {address:#x}")
        external = vkb.VkExternalMemoryBufferCreateInfo(handleTypes=_HANDLE_TYPE)
        usage = BufferUsageFlags.TRANSFER_SRC | BufferUsageFlags.TRANSFER_DST
        handle = call(vkb.vkCreateBuffer, device.handle, vkb.VkBufferCreateInfo(
            pNext=external, size=nbytes, usage=usage, sharingMode=vkb.VK_SHARING_MODE_EXCLUSIVE), None)
        try:
            req = vkb.vkGetBufferMemoryRequirements(device.handle, handle)
            bits = req.memoryTypeBits & props.memoryTypeBits
            wanted = MemoryPropertyFlags.HOST_VISIBLE | MemoryPropertyFlags.HOST_COHERENT
            type_index = device.memory_properties.find_type(bits, 0, int(wanted))
            if type_index is None:
                raise errors.FeatureNotPresentError("vkAllocateMemory", "VK_ERROR_FEATURE_NOT_PRESENT",
                                                    "no memory type can import this host memory for a buffer")
            info = vkb.VkImportMemoryHostPointerInfoEXT(handleType=_HANDLE_TYPE, pHostPointer=pointer)
            memory = call(vkb.vkAllocateMemory, device.handle, vkb.VkMemoryAllocateInfo(
                pNext=info, allocationSize=nbytes, memoryTypeIndex=type_index), None)
        except BaseException:
            vkb.vkDestroyBuffer(device.handle, handle, None)
            raise
        try:
            call(vkb.vkBindBufferMemory, device.handle, handle, memory, 0)
        except BaseException:
            vkb.vkDestroyBuffer(device.handle, handle, None)
            vkb.vkFreeMemory(device.handle, memory, None)
            raise
        self.device, self.buffer, self.memory, self.size, self.address = device, handle, memory, nbytes, address
        self.keep = keep
        self._own(device, _destroy, device, handle, memory)


__all__ = ["EXTENSION", "ImportedHostBuffer", "import_alignment"]
