"""Strict mode: every kernel's result depends only on its inputs and the library's version.

In strict mode every kernel is compiled with the define ``HLX_STRICT=1`` (part of the kernel
and compiler cache keys), which makes ``glsl/float_controls.glsl`` include ``glsl/strict.glsl``:
exp, log, sqrt, inversesqrt, pow, tanh, fma, sin and cos become software functions built from
correctly rounded +, - and * alone (``HLX_DIV`` likewise for division), the same algorithm on
every device. The compiled SPIR-V then goes through :func:`hlx_vulkan.strict_spirv.harden`,
which marks every float add, subtract and multiply NoContraction (no fma fusion), flushes every
float32 result of them and every float32 read from a buffer to a signed zero when it is
denormal (so a flushing and a preserving device agree), and refuses any instruction whose
result a driver may round its own way (division, the GLSL.std.450 transcendentals, fma, dot
products, subgroup arithmetic, cooperative matrices, float atomics).

Example::

    import hlx_vulkan as hv
    with hv.strict():
        y = hv.softmax(x, -1)   # the same bits on lavapipe and on an H100
"""

from __future__ import annotations

import contextlib
import os

from .errors import StrictModeError

# Device properties strict mode needs, as (key in the float-controls dict, Vulkan's name, why).
REQUIRED_FLOAT_CONTROLS = (
    ("rounding_mode_rte_float32", "shaderRoundingModeRTEFloat32",
     "float32 +, -, * and conversions must round to nearest even"),
    ("signed_zero_inf_nan_preserve_float32", "shaderSignedZeroInfNanPreserveFloat32",
     "NaN, Inf and signed zeros must pass through float32 arithmetic unchanged"),
)
# For float16 tensors (storage only: strict arithmetic runs in float32).
REQUIRED_FLOAT16 = (
    ("storage_buffer_16bit", "storageBuffer16BitAccess", "float16 tensors are read and written as 16-bit storage"),
    ("rounding_mode_rte_float16", "shaderRoundingModeRTEFloat16",
     "float32 results stored as float16 must round to nearest even"),
)

_state = [os.environ.get("HLX_STRICT", "0") not in ("", "0")]


def is_strict() -> bool:
    """Whether strict mode is on (``HLX_STRICT=1`` in the environment turns it on at import)."""
    return _state[0]


def set_strict(enabled: bool) -> bool:
    """Turn strict mode on or off for the whole process; returns the previous setting.

    Kernels already built stay cached for both modes; launch plans are kept per mode.

    Example::

        previous = hv.set_strict(True)
    """
    previous, _state[0] = _state[0], bool(enabled)
    return previous


@contextlib.contextmanager
def strict(enabled: bool = True):
    """``with hv.strict():`` runs its body in strict mode and restores the previous mode."""
    previous = set_strict(enabled)
    try:
        yield
    finally:
        set_strict(previous)


def refuse(what: str) -> None:
    """Raise :class:`StrictModeError` if strict mode is on: ``what`` has no strict path."""
    if _state[0]:
        raise StrictModeError(f"{what} has no strict path; it is refused in strict mode "
                              "(hv.set_strict(False) to run it with the device's own rounding)")


def check_device(device_name: str, float_controls: dict, features: dict, dtypes=()) -> None:
    """Raise :class:`StrictModeError` naming the first feature strict mode needs that the device
    lacks; ``dtypes``: names of the dtypes a kernel touches (float16 needs more)."""
    missing = [(vk, why) for key, vk, why in REQUIRED_FLOAT_CONTROLS if not float_controls.get(key)]
    if "float16" in dtypes:
        merged = {**float_controls, **features}
        missing += [(vk, why) for key, vk, why in REQUIRED_FLOAT16 if not merged.get(key)]
    if missing:
        vk, why = missing[0]
        raise StrictModeError(f"strict mode needs {vk}, which {device_name} lacks ({why}); "
                              f"missing: {', '.join(m[0] for m in missing)}")
