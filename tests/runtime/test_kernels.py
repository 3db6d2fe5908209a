"""The op-to-kernel contract: a KernelSpec is checked against its SPIR-V when a kernel is built,
and Runtime.run fills offsets, packs push constants and folds grids from the declaration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.runtime import KernelSpec

SCALE = Path(__file__).parents[2] / "examples" / "scale.comp"
BINDINGS = [("O", "write", "O"), ("A", "read", "A")]
PUSH = [("n", "I"), ("factor", "f"), ("off_o", "I"), ("off_a", "I")]


def _build(spec):
    """The kernel for float32 slots O and A (by defines, so a declaration without a slot builds too)."""
    rt = hv.default_runtime()
    return rt, rt.kernels.get(spec, {"CT": "float", "O_STORAGE": "float", "O_KIND": 0, "A_STORAGE": "float",
                                     "A_KIND": 0})


def test_a_right_declaration_runs_with_offsets_filled_in(rng):
    rt, kernel = _build(KernelSpec(SCALE, BINDINGS, PUSH))
    base = rng.standard_normal(300).astype(np.float32)
    x = hv.tensor(base)
    out = hv.tensor(np.full(300, np.nan, np.float32))
    view_in, view_out = x[37:], out[11:274]   # element offsets inside the bound ranges
    rt.run(kernel, {"O": view_out.buf, "A": view_in.buf}, {"n": 263, "factor": -1.5}, 263)
    got = out.numpy()
    np.testing.assert_array_equal(got[11:274], base[37:300] * np.float32(-1.5))
    assert np.isnan(got[:11]).all() and np.isnan(got[274:]).all()   # nothing outside the view written


@pytest.mark.parametrize("bindings, push, what", [
    ([("A", "read", "A"), ("O", "write", "O")], PUSH, "bindings"),                 # binding order swapped
    ([("O", "write", "O"), ("B", "read", "A")], PUSH, "bindings"),                 # wrong block name
    ([("O", "write", "O")], PUSH, "bindings"),                                     # one binding missing
    (BINDINGS, [("n", "I"), ("off_o", "I"), ("factor", "f"), ("off_a", "I")], "push"),  # fields reordered
    (BINDINGS, [("n", "I"), ("factor", "i"), ("off_o", "I"), ("off_a", "I")][:3], "push"),  # one field short
    (BINDINGS, PUSH + [("extra", "I")], "push"),                                   # one field too many
])
def test_a_wrong_declaration_fails_when_the_kernel_is_built(bindings, push, what):
    with pytest.raises(errors.PipelineLayoutError, match=f"declared {what}|declared push fields"):
        _build(KernelSpec(SCALE, bindings, push))


def test_run_refuses_tensors_and_fields_the_kernel_does_not_declare():
    rt, kernel = _build(KernelSpec(SCALE, BINDINGS, PUSH))
    x, out = hv.randn(8), hv.zeros(8)
    with pytest.raises(errors.HlxError, match="binds"):
        rt.run(kernel, {"O": out.buf}, {"n": 8}, 8)
    with pytest.raises(errors.HlxError, match="no push field 'scale'"):
        rt.run(kernel, {"O": out.buf, "A": x.buf}, {"n": 8, "scale": 2.0}, 8)
    with pytest.raises(errors.HlxError, match="declares no dtype slot"):
        rt.kernels.get(KernelSpec(SCALE, [("O", "write"), ("A", "read")], PUSH), dtypes={"O": hv.float32})
    with pytest.raises(ValueError, match="role"):
        KernelSpec(SCALE, [("O", "writes")], PUSH)


def test_large_grids_fold_past_the_device_limit():
    rt = hv.default_runtime()
    limit = rt.max_groups[0]
    gx, gy, gz = rt.fold(limit * 256 * 3 + 5, 256)
    assert gy > 1 and gx <= limit and gx * gy * 256 >= limit * 256 * 3 + 5 and gz == 1
