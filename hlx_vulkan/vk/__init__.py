"""The thin Vulkan layer: handles, lifetimes, and the design document's flag names.

Example::

    from hlx_vulkan import vk
    vk.BufferUsageFlags.STORAGE_BUFFER
    vk.live_objects()
"""

from . import record
from .api import call
from .buffer import Buffer
from .commands import CommandBufferPool, Fence, Submission
from .context import VulkanContext
from .device import Device
from .flags import (AccessFlags, BufferUsageFlags, DescriptorType, MemoryPropertyFlags,
                    PipelineStageFlags, ShaderStageFlags)
from .handles import live_objects
from .pipeline import ComputePipeline, DescriptorBindingBuilder, DescriptorPool, record_memory_barrier
from .shader import ShaderModule

__all__ = [
    "AccessFlags", "Buffer", "BufferUsageFlags", "CommandBufferPool", "ComputePipeline",
    "DescriptorBindingBuilder", "DescriptorPool", "DescriptorType", "Device", "Fence", "MemoryPropertyFlags",
    "PipelineStageFlags", "ShaderModule", "ShaderStageFlags", "Submission", "VulkanContext",
    "call", "live_objects", "record", "record_memory_barrier",
]
