"""Buffer: a VkBuffer with its own memory, and host transfers."""

from __future__ import annotations

import numpy as np
import vulkan as vkb

from .. import errors
from .api import WHOLE_SIZE, call
from .commands import run_one_shot
from .flags import BufferUsageFlags, MemoryPropertyFlags
from .handles import VkObject


def as_bytes_view(data) -> memoryview:
    """A flat byte view of bytes, bytearray, memoryview or a numpy array (C order)."""
    if isinstance(data, np.ndarray):
        # Through uint8: dtypes such as ml_dtypes' bfloat16 have no buffer-protocol format.
        return memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).cast("B")
    raise TypeError(f"upload takes bytes, bytearray, memoryview or a numpy array, not {type(data).__name__}")


def _destroy_buffer(device, handle, memory, mapped) -> None:
    if mapped:
        vkb.vkUnmapMemory(device.handle, memory)
    vkb.vkDestroyBuffer(device.handle, handle, None)
    vkb.vkFreeMemory(device.handle, memory, None)


class Buffer(VkObject):
    """A VkBuffer bound to a dedicated VkDeviceMemory allocation.

    Host-visible memory stays mapped for the buffer's life; other memory (or
    any, with ``mappable=False``) is written and read through a temporary
    staging buffer.

    Example::

        buf = Buffer(ctx.device, 4096, vk.BufferUsageFlags.STORAGE_BUFFER,
                     vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT,
                     ctx.memory_properties)
        buf.upload(np.arange(1024, dtype=np.float32))
        data = np.frombuffer(buf.download(), np.float32)
    """

    def __init__(self, device, size: int, usage: int = BufferUsageFlags.STORAGE_BUFFER,
                 memory_flags: int = MemoryPropertyFlags.DEVICE_LOCAL, memory_properties=None,
                 *, mappable: bool | None = None, preferred_flags: int = 0):
        device._check_alive()
        size = int(size)
        if size <= 0:
            raise ValueError(f"a buffer needs a positive size, got {size}")
        props = memory_properties if memory_properties is not None else device.memory_properties
        self.device = device
        self.size = size
        self.usage = int(usage) | BufferUsageFlags.TRANSFER_SRC | BufferUsageFlags.TRANSFER_DST
        heap_max = max(props.heap_sizes)
        if size > heap_max:
            raise errors.OutOfDeviceMemoryError(
                "vkAllocateMemory", "VK_ERROR_OUT_OF_DEVICE_MEMORY",
                f"{size} bytes asked, the largest memory heap holds {heap_max}")
        handle = call(vkb.vkCreateBuffer, device.handle, vkb.VkBufferCreateInfo(
            size=size, usage=self.usage, sharingMode=vkb.VK_SHARING_MODE_EXCLUSIVE), None)
        try:
            req = vkb.vkGetBufferMemoryRequirements(device.handle, handle)
            type_index = props.find_type(req.memoryTypeBits, int(memory_flags), int(preferred_flags))
            if type_index is None:
                raise errors.FeatureNotPresentError(
                    "vkAllocateMemory", "VK_ERROR_FEATURE_NOT_PRESENT",
                    f"no memory type has {MemoryPropertyFlags(int(memory_flags))!r} for this buffer")
            memory = call(vkb.vkAllocateMemory, device.handle, vkb.VkMemoryAllocateInfo(
                allocationSize=req.size, memoryTypeIndex=type_index), None)
        except BaseException:
            vkb.vkDestroyBuffer(device.handle, handle, None)
            raise
        try:
            call(vkb.vkBindBufferMemory, device.handle, handle, memory, 0)
            self.memory_flags = props.types[type_index].flags
            self.host_visible = bool(self.memory_flags & MemoryPropertyFlags.HOST_VISIBLE)
            self.host_coherent = bool(self.memory_flags & MemoryPropertyFlags.HOST_COHERENT)
            if mappable and not self.host_visible:
                raise errors.FeatureNotPresentError(
                    "vkMapMemory", "VK_ERROR_MEMORY_MAP_FAILED", "mappable=True needs host-visible memory")
            map_it = self.host_visible if mappable is None else mappable
            self._mapped = call(vkb.vkMapMemory, device.handle, memory, 0, size, 0) if map_it else None
        except BaseException:
            vkb.vkDestroyBuffer(device.handle, handle, None)
            vkb.vkFreeMemory(device.handle, memory, None)
            raise
        self.buffer = handle
        self.memory = memory
        self._own(device, _destroy_buffer, device, handle, memory, self._mapped is not None)

    def _check_range(self, nbytes: int, offset: int, what: str) -> None:
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(f"{what} of {nbytes} bytes at offset {offset} does not fit a buffer of {self.size} bytes")

    def _flush_range(self, offset: int, nbytes: int, invalidate: bool) -> None:
        if self.host_coherent or nbytes == 0:
            return
        atom = self.device.limits["non_coherent_atom_size"]
        start = offset - offset % atom
        end = min(-(-(offset + nbytes) // atom) * atom, self.size)
        rng = vkb.VkMappedMemoryRange(memory=self.memory, offset=start,
                                      size=WHOLE_SIZE if end >= self.size else end - start)
        fn = vkb.vkInvalidateMappedMemoryRanges if invalidate else vkb.vkFlushMappedMemoryRanges
        call(fn, self.device.handle, 1, [rng])

    @property
    def is_mapped(self) -> bool:
        return self._mapped is not None

    def mapped_view(self, offset: int, size: int) -> memoryview:
        """``size`` bytes of the mapped memory from ``offset``, zero-copy (mapped buffers only)."""
        self._check_alive()
        if self._mapped is None:
            raise errors.HlxError("this memory is not host-visible; go through a staging copy")
        self._check_range(size, offset, "mapped_view")
        return memoryview(self._mapped)[offset:offset + size]

    def upload(self, data, offset: int = 0) -> None:
        """Copy bytes or a numpy array into the buffer at ``offset``."""
        self._check_alive()
        view = as_bytes_view(data)
        self._check_range(view.nbytes, offset, "upload")
        if view.nbytes == 0:
            return
        if self._mapped is not None:
            self._mapped[offset:offset + view.nbytes] = view
            self._flush_range(offset, view.nbytes, invalidate=False)
            return
        staging = Buffer(self.device, view.nbytes, BufferUsageFlags.TRANSFER_SRC,
                         MemoryPropertyFlags.HOST_VISIBLE | MemoryPropertyFlags.HOST_COHERENT)
        try:
            staging.upload(view)
            region = vkb.VkBufferCopy(srcOffset=0, dstOffset=offset, size=view.nbytes)
            run_one_shot(self.device, lambda cmd: vkb.vkCmdCopyBuffer(cmd, staging.buffer, self.buffer, 1, [region]))
        finally:
            staging.destroy()

    def download(self, size: int | None = None, offset: int = 0) -> bytes:
        """The buffer's bytes (all of them by default)."""
        self._check_alive()
        nbytes = self.size - offset if size is None else int(size)
        self._check_range(nbytes, offset, "download")
        if self._mapped is not None:
            self._flush_range(offset, nbytes, invalidate=True)
            return bytes(self._mapped[offset:offset + nbytes])
        staging = Buffer(self.device, max(nbytes, 1), BufferUsageFlags.TRANSFER_DST,
                         MemoryPropertyFlags.HOST_VISIBLE | MemoryPropertyFlags.HOST_COHERENT)
        try:
            if nbytes:
                region = vkb.VkBufferCopy(srcOffset=offset, dstOffset=0, size=nbytes)
                run_one_shot(self.device, lambda cmd: vkb.vkCmdCopyBuffer(cmd, self.buffer, staging.buffer, 1, [region]))
            return staging.download(nbytes)
        finally:
            staging.destroy()

    def numpy(self, dtype=np.float32) -> np.ndarray:
        """The buffer's contents as a new 1-D numpy array of ``dtype``."""
        return np.frombuffer(self.download(), dtype=dtype).copy()
