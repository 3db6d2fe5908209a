"""hlx_vulkan: deterministic, reproducible machine-learning compute on any Vulkan device.

Example::

    import numpy as np
    from hlx_vulkan import VulkanContext, Buffer, vk

    with VulkanContext() as ctx:
        buf = Buffer(ctx.device, 16, vk.BufferUsageFlags.STORAGE_BUFFER,
                     vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT)
        buf.upload(np.arange(4, dtype=np.float32))
"""

from . import errors, vk
from .compiler import compile_glsl
from .errors import HlxError
from .vk import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, ShaderModule,
                 VulkanContext)

__version__ = "0.1.0"

__all__ = [
    "Buffer", "CommandBufferPool", "ComputePipeline", "DescriptorBindingBuilder", "HlxError",
    "ShaderModule", "VulkanContext", "compile_glsl", "errors", "vk",
]
