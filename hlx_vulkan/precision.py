"""What the current device guarantees about floating-point results."""

from __future__ import annotations

from .runtime import default_runtime
from .runtime.kernels import float_control_defines
from .strict_mode import is_strict

_float16_arithmetic = False


def set_float16_arithmetic(enabled: bool) -> bool:
    """Compute elementwise ops on float16 tensors in float16 (True) or in float32 (False, the default).

    Reductions and matmul always accumulate in float32. Returns the previous setting.

    Example::

        previous = hv.set_float16_arithmetic(True)
    """
    global _float16_arithmetic
    previous, _float16_arithmetic = _float16_arithmetic, bool(enabled)
    return previous


def float16_arithmetic() -> bool:
    return _float16_arithmetic


def precision_report(runtime=None) -> dict:
    """The float controls the device has, the ones every shipped kernel declares, and what follows.

    Example::

        import hlx_vulkan as hv
        hv.precision_report()["kernels_declare"]
    """
    rt = runtime or default_runtime()
    fc = dict(rt.ctx.physical_device.float_controls)
    declared = sorted(float_control_defines(fc))
    return {
        "device": rt.ctx.info["device_name"],
        "driver": rt.ctx.info["driver"],
        "float_controls_supported": fc,
        "kernels_declare": declared,
        "float16_arithmetic": _float16_arithmetic,
        "strict_mode": is_strict(),
        "guarantees": [
            "float32 +, -, * are correctly rounded (a Vulkan requirement); kernels declare RoundingModeRTE "
            "where the device supports it" + ("" if "HLX_FC_RTE_32" in declared else " (this device does not)"),
            "NaN, Inf and signed zeros are preserved" if "HLX_FC_PRESERVE_32" in declared else
            "this device may not preserve NaN/Inf/signed zero (no SignedZeroInfNanPreserve)",
            ("float16 elementwise arithmetic runs in float16 (set_float16_arithmetic(True))" if _float16_arithmetic
             else "float16 elementwise arithmetic runs in float32 (set_float16_arithmetic(True) for float16)"),
            "bfloat16 is a storage type: its arithmetic runs in float32",
            "reductions and matmul accumulate in float32 for every floating dtype",
            "reductions and matmul sum in a fixed order: the same inputs give the same bits on every run",
            "rand/randn: the same seed gives the same bits on every device (integer Philox; normals from "
            "correctly rounded +, * only)",
            ("strict mode: division, exp, log, sqrt, tanh, pow, sin, cos in software from correctly rounded +, -, *; "
             "no fma contraction; denormals flushed in software: the same bits on every device" if is_strict() else
             "division, exp, log, sqrt, tanh follow the device's Vulkan precision bounds (a few ULP): results of "
             "these may differ in the last bits between devices, never between runs (hv.set_strict(True) for the "
             "same bits everywhere)"),
        ],
    }
