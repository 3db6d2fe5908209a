"""Runtime: the stream that records ops, the kernel cache, capture/replay, and the default device runtime."""

from .capture import Graph, capture
from .kernels import Kernel, KernelCache, KernelSpec
from .runtime import Runtime, default_runtime, set_default_runtime
from .stream import Stream

__all__ = ["Graph", "capture", "Kernel", "KernelCache", "KernelSpec", "Runtime", "Stream", "default_runtime", "set_default_runtime"]
