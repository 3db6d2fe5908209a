import numpy as np
import pytest

from hlx_vulkan import errors
from hlx_vulkan.memory import DTYPES, MemoryManager, dtype_of


@pytest.fixture(params=[None, False], ids=["mapped", "staged"], scope="module")
def mm(request, ctx):
    m = MemoryManager(ctx, block_size=1 << 20, device_mappable=request.param)
    yield m
    m.destroy()


def special_values(dtype, n, seed):
    """Random elements plus the awkward ones: NaN payloads, ±Inf, -0.0, subnormals, extremes."""
    rng = np.random.default_rng(seed)
    np_dt = dtype.numpy
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[np_dt.itemsize]
    raw = rng.integers(0, np.iinfo(bits).max, n, dtype=bits, endpoint=True)
    if dtype.is_float:
        specials = {
            "float32": [0x7FC00001, 0xFFC12345, 0x7F800000, 0xFF800000, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF],
            "float16": [0x7E01, 0xFD55, 0x7C00, 0xFC00, 0x8000, 0x0001, 0x83FF, 0x7BFF],
            "bfloat16": [0x7FC1, 0xFF81, 0x7F80, 0xFF80, 0x8000, 0x0001, 0x807F, 0x7F7F],
        }[dtype.name]
        k = min(n, len(specials))
        raw[:k] = specials[:k]
    return raw.view(np_dt)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(1,), (9,), (3, 5), (2, 3, 4), (0,), (1000,)])
def test_round_trip_bit_exact(mm, dtype, shape):
    n = int(np.prod(shape))
    data = special_values(dtype, n, seed=n).reshape(shape)
    t = mm.from_numpy(data)
    assert t.shape == shape and t.dtype is dtype and t.nbytes == data.nbytes
    back = t.numpy()
    assert back.dtype == dtype.numpy and back.shape == shape
    assert back.tobytes() == data.tobytes()


def test_creation_helpers(mm):
    z = mm.zeros((3, 4), "float16")
    np.testing.assert_array_equal(z.numpy(), np.zeros((3, 4), np.float16))
    f = mm.full((5,), -2.5, "bfloat16")
    assert f.numpy().astype(np.float32).tolist() == [-2.5] * 5
    e = mm.empty((2, 2), "int32")
    assert e.strides == (2, 1) and e.is_contiguous
    e.write(np.array([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(e.numpy(), [[1, 2], [3, 4]])
    c = mm.from_numpy(np.arange(6, dtype=np.float64), dtype="float32")
    assert c.dtype.name == "float32"


def test_strided_view_reads_as_numpy(mm):
    from hlx_vulkan.memory import TensorBuffer
    base = mm.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4))
    transposed = TensorBuffer(mm, base._allocation, (4, 3), "float32", strides=(1, 4), owns_allocation=False)
    assert not transposed.is_contiguous
    np.testing.assert_array_equal(transposed.numpy(), np.arange(12, dtype=np.float32).reshape(3, 4).T)
    assert transposed.digest() == mm.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4).T.copy()).digest()


def test_allocate_many_places_aligned_tensors_in_one_region(mm):
    specs = [((3, 3), "float32"), ((5,), "float16"), ((7,), "int8"), ((2, 2), "bfloat16")]
    batch = mm.allocate_many(specs)
    align = mm.device_pool.alignment
    assert len({id(t._allocation) for t in batch}) == 1
    assert all(t.offset % align == 0 for t in batch)
    ends = [(t.offset, t.offset + t.nbytes) for t in batch]
    assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:]))
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(t.shape).astype(t.dtype.numpy) if t.dtype.is_float
              else rng.integers(-100, 100, t.shape).astype(t.dtype.numpy) for t in batch]
    mm.write_many(list(zip(batch, arrays)))
    for got, want in zip(mm.read_many(batch), arrays):
        assert got.tobytes() == want.tobytes()
    in_use = mm.device_pool.stats().in_use
    batch.free()
    assert mm.device_pool.stats().in_use == in_use - batch.allocation.nbytes
    with pytest.raises(errors.DestroyedError):
        batch[0].numpy()


def test_bad_input(mm):
    t = mm.empty((2, 3))
    with pytest.raises(errors.ShapeError, match=r"\(3, 2\)"):
        t.write(np.zeros((3, 2)))
    with pytest.raises(errors.DTypeError, match="complex128"):
        mm.from_numpy(np.zeros(3, np.complex128))
    with pytest.raises(errors.DTypeError, match="float64"):
        dtype_of("float64")
    with pytest.raises(errors.ShapeError, match="negative"):
        mm.empty((2, -1))
    t.free()
    t.free()
    with pytest.raises(errors.DestroyedError):
        t.numpy()
    assert dtype_of("torch.float16").name == "float16" and dtype_of(np.int8).name == "int8"


def test_staged_transfers_split_and_double_buffer(ctx):
    """Tiny staging slots force many batches and pieces: every byte must still land in place."""
    mm = MemoryManager(ctx, block_size=1 << 20, device_mappable=False, staging_slot_bytes=256)
    rng = np.random.default_rng(11)
    tensors = [mm.empty((int(rng.integers(1, 800)),), "float32") for _ in range(12)]
    arrays = [rng.standard_normal(t.shape).astype(np.float32) for t in tensors]
    mm.write_many(list(zip(tensors, arrays)))
    for got, want in zip(mm.read_many(tensors), arrays):
        assert got.tobytes() == want.tobytes()
    assert mm.host_pool.stats().in_use == 2 * 256
    mm.destroy()
