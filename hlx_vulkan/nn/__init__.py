"""Neural-network building blocks: ``hlx_vulkan.nn.functional`` for now."""

from . import functional

__all__ = ["functional"]
