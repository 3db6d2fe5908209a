"""Exception types raised by hlx_vulkan.

One base class, :class:`HlxError`, and one subclass per failure a caller can act
on. Errors that come from a Vulkan call carry the call's name and its VkResult.

Example::

    try:
        buf = Buffer(ctx.device, 1 << 40, ...)
    except OutOfDeviceMemoryError as e:
        print(e.call, e.result)
"""

from __future__ import annotations


class HlxError(Exception):
    """Base class of every error this library raises."""


class VulkanError(HlxError):
    """A Vulkan call returned a result other than success."""

    def __init__(self, call: str, result: str, detail: str = ""):
        self.call = call
        self.result = result
        msg = f"{call} failed with {result}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class OutOfDeviceMemoryError(VulkanError, MemoryError):
    """VK_ERROR_OUT_OF_DEVICE_MEMORY, or an allocation larger than the device allows."""


class OutOfHostMemoryError(VulkanError, MemoryError):
    """VK_ERROR_OUT_OF_HOST_MEMORY, or VK_ERROR_MEMORY_MAP_FAILED (no host address space left to map)."""


class DeviceLostError(VulkanError):
    """VK_ERROR_DEVICE_LOST: the device must be recreated."""


class FenceTimeoutError(VulkanError, TimeoutError):
    """A wait on a fence or semaphore did not finish in time."""


class FeatureNotPresentError(VulkanError):
    """A layer, extension or feature the call needs is missing."""


class DeviceSelectionError(HlxError):
    """No physical device matched the request; the message says why each was passed over."""


class InvalidShaderError(HlxError, ValueError):
    """SPIR-V that is malformed or that the device cannot run."""


class ShaderCompileError(HlxError):
    """GLSL that the compiler rejected; the message holds the compiler's log."""


class PipelineLayoutError(HlxError, ValueError):
    """Descriptor bindings or push-constant size that disagree with the shader."""


class LimitExceededError(HlxError, ValueError):
    """A request past a device limit (dispatch size, workgroup size, buffer range)."""


class ShapeError(HlxError, ValueError):
    """Shapes that do not fit together."""


class IndexOutOfRangeError(ShapeError, IndexError):
    """An index (or class target) given from the host lies outside the axis it indexes; refused
    before anything is recorded."""


class DeviceIndexError(HlxError, IndexError):
    """An index read from a device tensor lay outside the axis it indexes. Found by the kernel
    (which keeps its memory accesses in bounds) and raised at the next sync point, naming the op,
    as CUDA's device-side asserts are; the results of the ops recorded with it are not to be used.
    ``ops`` names the ops that found one."""

    def __init__(self, message: str, ops=()):
        super().__init__(message)
        self.ops = tuple(ops)


class DTypeError(HlxError, TypeError):
    """A dtype that is not supported here, or dtypes that do not match."""


class DivisionByZeroError(HlxError, ZeroDivisionError):
    """Integer division or remainder by zero (as Python and PyTorch on CPU refuse it)."""


class DeviceTransferError(HlxError, RuntimeError):
    """A request to move a tensor to a device this library does not run on (``.cuda()``)."""


class DeviceMismatchError(HlxError, RuntimeError):
    """An op given tensors of two runtimes (two Vulkan devices), as torch refuses tensors on two devices."""


class DestroyedError(HlxError, RuntimeError):
    """Use of an object after it, or the context that owns it, was destroyed."""


class ValidationError(HlxError):
    """The Vulkan validation layer reported an error."""


class CheckpointError(HlxError):
    """A checkpoint file or its manifest is truncated, corrupt, inconsistent, or tampered with."""


class CaptureError(HlxError):
    """Something inside ``hv.capture()`` cannot be recorded for replay (a host sync, a random
    draw, a host upload into a captured tensor), or a live graph still uses what was freed."""


class JitError(CaptureError):
    """A call that ``hv.jit`` will not replay: arguments that differ from the captured ones
    under ``strict=True``, or an argument a graph cannot take (a tensor that carries gradients
    from outside the function)."""


class DigestVersionError(HlxError, ValueError):
    """A tensor digest version this library does not know (see ``hlx_vulkan.memory.tree_digest``)."""


class StrictModeError(HlxError, RuntimeError):
    """Strict mode (``hv.set_strict(True)``) cannot keep its promise here: the device lacks a
    feature it requires (named in the message), or an op or kernel has no strict path."""


class DistributedError(HlxError, RuntimeError):
    """A data-parallel run cannot go on: another rank failed, or MPI is missing. ``rank`` names the
    rank at fault where it is known."""

    def __init__(self, message: str, rank: int | None = None):
        super().__init__(message)
        self.rank = rank


class RankMismatchError(DistributedError, ValueError):
    """The ranks disagree on what must be the same everywhere (library version, model structure,
    parameter shapes or dtypes); found at ``init()`` or when a model is wrapped."""


class CollectiveTimeoutError(DistributedError, TimeoutError):
    """A collective did not complete in time: some rank stopped taking part (hung, or died
    without MPI noticing)."""
