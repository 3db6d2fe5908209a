"""VK_EXT_external_memory_host: host memory (here an anonymous shared mapping, as an MPI window's)
imported as a buffer that copy commands read and write in place."""

import mmap

import numpy as np
import pytest
import vulkan as vkb

from hlx_vulkan import Buffer, errors, vk
from hlx_vulkan.vk.commands import run_one_shot
from hlx_vulkan.vk.host_memory import ImportedHostBuffer, import_alignment


def _copy(device, src, dst, nbytes, src_offset=0, dst_offset=0):
    region = vkb.VkBufferCopy(srcOffset=src_offset, dstOffset=dst_offset, size=nbytes)
    run_one_shot(device, lambda cmd: vkb.vkCmdCopyBuffer(cmd, src.buffer, dst.buffer, 1, [region]))


def test_the_device_reads_and_writes_imported_host_memory_in_place(ctx):
    align = import_alignment(ctx.device)
    assert align is not None and align & (align - 1) == 0  # lavapipe offers the extension
    nbytes = 3 * align
    mapping = mmap.mmap(-1, nbytes + align)
    host = np.frombuffer(mapping, np.uint8)
    start = (-host.ctypes.data) % align
    window = host[start:start + nbytes]
    window[:] = 0xFF  # poison: every byte below must be written by the device
    rng = np.random.default_rng(7)
    data = rng.standard_normal(nbytes // 4 - 5).astype(np.float32)  # an odd length, inside the range
    before = vk.live_objects().get("ImportedHostBuffer", 0)
    imported = ImportedHostBuffer(ctx.device, window.ctypes.data, nbytes, keep=mapping)
    dev = Buffer(ctx.device, nbytes, vk.BufferUsageFlags.STORAGE_BUFFER, vk.MemoryPropertyFlags.DEVICE_LOCAL,
                 mappable=False)
    try:
        assert vk.live_objects()["ImportedHostBuffer"] == before + 1
        dev.upload(data, offset=8)
        _copy(ctx.device, dev, imported, data.nbytes, 8, 20)  # device -> host memory
        np.testing.assert_array_equal(window[20:20 + data.nbytes].view(np.float32), data)
        assert (window[:20] == 0xFF).all() and (window[20 + data.nbytes:] == 0xFF).all()
        other = rng.standard_normal(nbytes // 4).astype(np.float32)
        window[:] = other.view(np.uint8)
        _copy(ctx.device, imported, dev, nbytes)  # host memory -> device
        np.testing.assert_array_equal(np.frombuffer(dev.download(), np.float32), other)
    finally:
        imported.destroy()
        dev.destroy()
    assert not imported.alive
    assert vk.live_objects().get("ImportedHostBuffer", 0) == before


def test_unaligned_or_empty_ranges_are_refused(ctx):
    align = import_alignment(ctx.device)
    mapping = mmap.mmap(-1, 4 * align)
    base = np.frombuffer(mapping, np.uint8).ctypes.data
    base += (-base) % align
    with pytest.raises(ValueError, match=f"aligned to {align}"):
        ImportedHostBuffer(ctx.device, base + 64, align)
    with pytest.raises(ValueError, match=f"aligned to {align}"):
        ImportedHostBuffer(ctx.device, base, align + 4)
    with pytest.raises(ValueError, match=f"aligned to {align}"):
        ImportedHostBuffer(ctx.device, base, 0)


def test_a_device_without_the_extension_says_so(ctx):
    class NoExtension:
        enabled_extensions = ()
        physical = ctx.device.physical

        def _check_alive(self):
            pass

    assert import_alignment(NoExtension()) is None
    with pytest.raises(errors.FeatureNotPresentError, match="VK_EXT_external_memory_host"):
        ImportedHostBuffer(NoExtension(), 0, 4096)
