import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors


def test_creation_functions():
    np.testing.assert_array_equal(hv.zeros(2, 3).numpy(), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(hv.ones((4,), dtype=hv.float16).numpy(), np.ones(4, np.float16))
    np.testing.assert_array_equal(hv.full((2, 2), -3, dtype=hv.int32).numpy(), np.full((2, 2), -3, np.int32))
    assert hv.arange(7).dtype is hv.int64 and hv.full((2,), 7).dtype is hv.int64  # as torch
    np.testing.assert_array_equal(hv.arange(7).numpy(), np.arange(7, dtype=np.int64))
    np.testing.assert_array_equal(hv.arange(2, 11, 3).numpy(), np.arange(2, 11, 3, dtype=np.int64))
    np.testing.assert_allclose(hv.arange(0.0, 1.0, 0.1).numpy(), np.arange(0.0, 1.0, 0.1), rtol=1e-6)
    assert hv.zeros(0, 5).shape == (0, 5)


def test_tensor_from_data_and_back(rng):
    t = hv.tensor([[1.5, 2.0], [3.0, 4.0]])
    assert t.dtype is hv.float32 and t.shape == (2, 2) and t.ndim == 2 and t.numel() == 4
    assert hv.tensor([1, 2]).dtype is hv.int64  # Python ints: int64, as torch
    assert hv.tensor(3.5).item() == 3.5
    x = rng.standard_normal((3, 3)).astype(np.float32)
    assert hv.tensor(x).digest("hlx-flat-sha256-v1") == hv.memory.tensor_digest("float32", (3, 3), x)
    with pytest.raises(errors.ShapeError, match="one element"):
        t.item()
    c = hv.zeros(2, 2)
    c.copy_(t)
    np.testing.assert_array_equal(c.numpy(), t.numpy())
    assert "tensor(" in repr(t)
