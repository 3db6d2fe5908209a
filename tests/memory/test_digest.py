import hashlib

import numpy as np
import pytest

from hlx_vulkan.memory import MemoryManager, tensor_digest
from conftest import assert_clean_exit, run_python


@pytest.fixture(scope="module")
def managers(ctx):
    a = MemoryManager(ctx, block_size=1 << 20)
    b = MemoryManager(ctx, block_size=1 << 20, device_mappable=False)
    yield a, b
    a.destroy(); b.destroy()


def documented_encoding(dtype_name, shape, array):
    h = hashlib.sha256()
    h.update(b"hlx-tensor\0" + dtype_name.encode() + b"\0" + ",".join(map(str, shape)).encode() + b"\0")
    h.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def test_digest_is_the_documented_encoding(managers):
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    t = managers[0].from_numpy(x)
    assert t.digest() == documented_encoding("float32", (4, 5), x) == tensor_digest("float32", (4, 5), x)


def test_equal_content_equal_digest_across_pools_and_offsets(managers):
    mapped, staged = managers
    x = np.random.default_rng(1).standard_normal(300).astype(np.float16)
    padding = mapped.from_numpy(np.ones(37, np.uint8))  # pushes the next one to another offset
    t1 = mapped.from_numpy(x)
    _, t2 = staged.allocate_many([((13,), "int8"), ((300,), "float16")])
    t2.write(x)
    assert t1.offset != t2.offset or t1.buffer != t2.buffer
    assert not t2.allocation.host_visible  # t1's memory is host-visible on lavapipe, not on a discrete GPU
    assert t1.digest() == t2.digest()
    padding.free()


def test_one_bit_changes_the_digest(managers):
    x = np.random.default_rng(2).standard_normal(256).astype(np.float32)
    base = managers[0].from_numpy(x).digest()
    for i in (0, 100, 255):
        for bit in (0, 17, 31):
            y = x.copy().view(np.uint32)
            y[i] ^= np.uint32(1 << bit)
            assert managers[0].from_numpy(y.view(np.float32)).digest() != base


def test_dtype_and_shape_are_part_of_the_address(managers):
    mm = managers[0]
    raw = np.arange(24, dtype=np.int32)
    as_int = mm.from_numpy(raw).digest()
    as_uint = mm.from_numpy(raw.view(np.uint32)).digest()
    as_float = mm.from_numpy(raw.view(np.float32)).digest()
    reshaped = mm.from_numpy(raw.reshape(4, 6)).digest()
    reshaped2 = mm.from_numpy(raw.reshape(6, 4)).digest()
    assert len({as_int, as_uint, as_float, reshaped, reshaped2}) == 5


def test_digest_is_identical_in_another_process(managers):
    x = np.random.default_rng(3).standard_normal((8, 8)).astype(np.float32)
    here = managers[1].from_numpy(x).digest()
    script = (
        "import numpy as np\n"
        "from hlx_vulkan import VulkanContext\n"
        "from hlx_vulkan.memory import MemoryManager\n"
        "x = np.random.default_rng(3).standard_normal((8, 8)).astype(np.float32)\n"
        "with VulkanContext() as ctx:\n"
        "    mm = MemoryManager(ctx)\n"
        "    print(mm.from_numpy(x).digest())\n"
    )
    proc = run_python(["-c", script], timeout=120)
    assert_clean_exit(proc)
    assert proc.stdout.strip() == here
