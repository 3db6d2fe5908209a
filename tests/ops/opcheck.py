"""The shared checker for ops: compare with numpy in float64 on fresh random inputs."""

from __future__ import annotations

import numpy as np

import hlx_vulkan as hv

TOL = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}


def rel_err(out, ref) -> float:
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise AssertionError(f"shape {out.shape} != reference shape {ref.shape}")
    finite = np.isfinite(ref)
    if not np.array_equal(np.isnan(out), np.isnan(ref)) or not np.array_equal(out[~finite & ~np.isnan(ref)],
                                                                               ref[~finite & ~np.isnan(ref)]):
        raise AssertionError("NaN/Inf positions differ from numpy's")
    a, b = out[finite], ref[finite]
    denom = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else float(np.linalg.norm(a - b))


def check(out, ref, dtype: str, tol: float | None = None) -> None:
    err = rel_err(out, ref)
    limit = TOL[dtype] if tol is None else tol
    assert err < limit, f"relative error {err:.3g} >= {limit:g}"


def randn(rng, shape, dtype: str, positive: bool = False):
    """Fresh random values, rounded to ``dtype`` (returned as the numpy array of that dtype)."""
    x = rng.standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.1
    return x.astype(hv.memory.dtype_of(dtype).numpy)


def f64(a):
    return np.asarray(a).astype(np.float64)
