"""The one door to the Vulkan binding: every native call goes through :func:`call`.

The cffi ``vulkan`` package raises one exception class per VkResult (under two
roots: ``VkError`` for the VK_ERROR_* codes, ``VkException`` for the others);
``call`` turns every one of them into this library's typed errors, named after
the Vulkan call, so the traceback points at the caller's line and says which
call failed.
"""

from __future__ import annotations

import sys

import vulkan as vkb

from .. import errors

ffi = vkb.ffi
WHOLE_SIZE = 0xFFFF_FFFF_FFFF_FFFF  # VK_WHOLE_SIZE; the binding defines it as -1

_RESULT_ERRORS = {
    "VkErrorOutOfDeviceMemory": errors.OutOfDeviceMemoryError,
    "VkErrorOutOfHostMemory": errors.OutOfHostMemoryError,
    "VkErrorMemoryMapFailed": errors.OutOfHostMemoryError,
    "VkErrorOutOfPoolMemory": errors.OutOfDeviceMemoryError,
    "VkErrorFragmentedPool": errors.OutOfDeviceMemoryError,
    "VkErrorTooManyObjects": errors.OutOfDeviceMemoryError,
    "VkErrorDeviceLost": errors.DeviceLostError,
    "VkTimeout": errors.FenceTimeoutError,
    "VkErrorLayerNotPresent": errors.FeatureNotPresentError,
    "VkErrorExtensionNotPresent": errors.FeatureNotPresentError,
    "VkErrorFeatureNotPresent": errors.FeatureNotPresentError,
    "VkErrorIncompatibleDriver": errors.FeatureNotPresentError,
    "VkErrorFormatNotSupported": errors.FeatureNotPresentError,
}
# The binding's two roots: VkException for non-error results (VK_TIMEOUT, VK_NOT_READY, ...),
# VkError for the VK_ERROR_* ones.
BINDING_ERRORS = (vkb.VkException, vkb.VkError)
_BINDING_FILE = sys.modules[vkb.vkCreateFence.__module__].__file__


def _result_name(exc_type: type) -> str:
    """VkErrorOutOfDeviceMemory -> VK_ERROR_OUT_OF_DEVICE_MEMORY."""
    name = exc_type.__name__
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.upper())
    return "".join(out)


def _binding_class(result: int) -> type | None:
    """The binding's exception class for a VkResult.

    The binding lists some error codes with the wrong sign (VK_ERROR_OUT_OF_POOL_MEMORY as
    +1000069000), so its wrappers raise KeyError for the real, negative code.
    """
    cls = vkb.exception_codes.get(result)
    if cls is None and result < 0:
        cls = vkb.exception_codes.get(-result)
        if cls is not None and not issubclass(cls, vkb.VkError):
            cls = None
    return cls


def raise_for(name: str, exc: BaseException, detail: str = "") -> None:
    """Re-raise a binding exception as this library's error for call ``name``."""
    cls = _RESULT_ERRORS.get(type(exc).__name__, errors.VulkanError)
    raise cls(name, _result_name(type(exc)), detail) from None


def _unlisted_result(exc: KeyError) -> int | None:
    """The VkResult of a binding wrapper's failed ``exception_codes[result]`` lookup, else None."""
    if len(exc.args) != 1 or type(exc.args[0]) is not int or exc.__traceback__ is None:
        return None
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return exc.args[0] if tb.tb_frame.f_code.co_filename == _BINDING_FILE else None


def call(fn, *args):
    """Call a Vulkan function of the binding and translate failures.

    Example::

        buf = call(vkb.vkCreateBuffer, device, info, None)
    """
    try:
        return fn(*args)
    except BINDING_ERRORS as exc:
        raise_for(getattr(fn, "__name__", "vulkan call"), exc)
    except KeyError as exc:
        result = _unlisted_result(exc)
        if result is None:
            raise
        check_result(getattr(fn, "__name__", "vulkan call"), result)
        raise


def check_result(name: str, result: int) -> None:
    """Raise this library's error for a raw ``vkb.lib`` call's VkResult (hot paths skip the binding's wrappers)."""
    if result != vkb.VK_SUCCESS:
        exc_type = _binding_class(result)
        if exc_type is None:
            raise errors.VulkanError(name, f"VkResult {result}")
        raise_for(name, exc_type())


def api_version(major: int, minor: int, patch: int = 0) -> int:
    return vkb.VK_MAKE_VERSION(major, minor, patch)


def version_str(v: int) -> str:
    return f"{v >> 22}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"
