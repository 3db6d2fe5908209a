"""The error words of the device index checks start at zero in stream order (regression: they were
written from the host at first use, so a pending kernel's write into a range freed just before
left its values in the words, and a correct index_select raised DeviceIndexError)."""

from __future__ import annotations

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan.ops import shape as sh


def test_first_checked_kernel_after_a_freed_pending_tensor_reports_nothing():
    rt = hv.Runtime()
    try:
        pos = hv.arange(12, dtype="int32", runtime=rt)
        hv.full((12, 12), 1.0, runtime=rt) + 1   # its fill is still pending when its range is freed
        w = hv.tensor(np.arange(24, dtype=np.float32).reshape(12, 2), runtime=rt)
        got = sh.index_select(w, 0, pos).numpy()
        np.testing.assert_array_equal(got, np.arange(24, dtype=np.float32).reshape(12, 2))
    finally:
        rt.close()
