"""The one door to the Vulkan binding: every native call goes through :func:`call`.

The cffi ``vulkan`` package raises one exception class per VkResult; ``call``
turns those into this library's typed errors, named after the Vulkan call, so
the traceback points at the caller's line and says which call failed.
"""

from __future__ import annotations

import vulkan as vkb

from .. import errors

ffi = vkb.ffi
WHOLE_SIZE = 0xFFFF_FFFF_FFFF_FFFF  # VK_WHOLE_SIZE; the binding defines it as -1

_RESULT_ERRORS = {
    "VkErrorOutOfDeviceMemory": errors.OutOfDeviceMemoryError,
    "VkErrorOutOfHostMemory": errors.OutOfHostMemoryError,
    "VkErrorOutOfPoolMemory": errors.OutOfDeviceMemoryError,
    "VkErrorFragmentedPool": errors.OutOfDeviceMemoryError,
    "VkErrorTooManyObjects": errors.OutOfDeviceMemoryError,
    "VkErrorDeviceLost": errors.DeviceLostError,
    "VkTimeout": errors.FenceTimeoutError,
    "VkErrorLayerNotPresent": errors.FeatureNotPresentError,
    "VkErrorExtensionNotPresent": errors.FeatureNotPresentError,
    "VkErrorFeatureNotPresent": errors.FeatureNotPresentError,
    "VkErrorIncompatibleDriver": errors.FeatureNotPresentError,
}


def _result_name(exc_type: type) -> str:
    """VkErrorOutOfDeviceMemory -> VK_ERROR_OUT_OF_DEVICE_MEMORY."""
    name = exc_type.__name__
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.upper())
    return "".join(out)


def raise_for(name: str, exc: BaseException, detail: str = "") -> None:
    """Re-raise a binding exception as this library's error for call ``name``."""
    cls = _RESULT_ERRORS.get(type(exc).__name__, errors.VulkanError)
    raise cls(name, _result_name(type(exc)), detail) from None


def call(fn, *args):
    """Call a Vulkan function of the binding and translate failures.

    Example::

        buf = call(vkb.vkCreateBuffer, device, info, None)
    """
    try:
        return fn(*args)
    except vkb.VkException as exc:
        raise_for(getattr(fn, "__name__", "vulkan call"), exc)


def check_result(name: str, result: int) -> None:
    """Raise this library's error for a raw ``vkb.lib`` call's VkResult (hot paths skip the binding's wrappers)."""
    if result != vkb.VK_SUCCESS:
        exc_type = vkb.exception_codes.get(result)
        if exc_type is None:
            raise errors.VulkanError(name, str(result), "")
        raise_for(name, exc_type())


def api_version(major: int, minor: int, patch: int = 0) -> int:
    return vkb.VK_MAKE_VERSION(major, minor, patch)


def version_str(v: int) -> str:
    return f"{v >> 22}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"
