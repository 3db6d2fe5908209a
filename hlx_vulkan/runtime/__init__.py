"""Runtime: the stream that records ops, the kernel cache, and the default device runtime."""

from .kernels import Kernel, KernelCache
from .runtime import Runtime, default_runtime, set_default_runtime
from .stream import Stream

__all__ = ["Kernel", "KernelCache", "Runtime", "Stream", "default_runtime", "set_default_runtime"]
