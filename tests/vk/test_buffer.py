import numpy as np
import pytest

from hlx_vulkan import Buffer, errors, vk

HOST = vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT


@pytest.mark.parametrize("mappable", [None, False], ids=["mapped", "staging"])
def test_round_trip_numpy_and_bytes(ctx, mappable):
    rng = np.random.default_rng(1)
    data = rng.standard_normal(1000).astype(np.float32)
    buf = Buffer(ctx.device, data.nbytes, vk.BufferUsageFlags.STORAGE_BUFFER,
                 vk.MemoryPropertyFlags.DEVICE_LOCAL, ctx.memory_properties, mappable=mappable)
    try:
        buf.upload(np.full(1000, np.nan, np.float32))
        buf.upload(data)
        assert buf.download() == data.tobytes()
        raw = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        buf.upload(raw, offset=128)
        assert buf.download(64, offset=128) == raw
        assert buf.download(128) == data.tobytes()[:128]
        np.testing.assert_array_equal(buf.numpy(np.uint8)[128:192], np.frombuffer(raw, np.uint8))
    finally:
        buf.destroy()


def test_upload_too_large_is_refused_and_buffer_unchanged(ctx):
    buf = Buffer(ctx.device, 16, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)
    before = np.arange(4, dtype=np.float32)
    buf.upload(before)
    with pytest.raises(ValueError, match="does not fit"):
        buf.upload(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        buf.upload(b"12345678", offset=12)
    assert buf.download() == before.tobytes()
    buf.destroy()


def test_bad_arguments(ctx):
    with pytest.raises(ValueError, match="positive size"):
        Buffer(ctx.device, 0, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)
    buf = Buffer(ctx.device, 16, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)
    with pytest.raises(TypeError, match="numpy array"):
        buf.upload([1, 2, 3])
    buf.destroy()


def test_out_of_device_memory_is_typed(ctx):
    heap = max(ctx.memory_properties.heap_sizes)
    with pytest.raises(errors.OutOfDeviceMemoryError, match="asked"):
        Buffer(ctx.device, heap * 4, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)


def test_use_after_destroy_and_double_destroy(ctx):
    buf = Buffer(ctx.device, 64, vk.BufferUsageFlags.STORAGE_BUFFER, HOST)
    buf.destroy()
    buf.destroy()
    with pytest.raises(errors.DestroyedError):
        buf.upload(b"1234")
    with pytest.raises(errors.DestroyedError):
        buf.download()
