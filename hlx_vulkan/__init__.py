"""hlx_vulkan: deterministic, reproducible machine-learning compute on any Vulkan device.

Two faces: the tensor API, for a numpy or PyTorch user::

    import hlx_vulkan as hv
    hv.manual_seed(0)
    x = hv.randn(64, 32)
    y = hv.nn.functional.softmax(x @ hv.randn(32, 10), axis=-1)
    print(y.sum(axis=1).numpy(), y.digest())

and the Vulkan foundation under it (VulkanContext, Buffer, ShaderModule,
ComputePipeline, CommandBufferPool), for running your own SPIR-V.
"""

from . import checkpoint, errors, memory, nn, optim, vk
from .autograd import engine as _engine  # binds Tensor.backward
from .autograd.graph import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .compiler import compile_glsl
from .errors import HlxError
from .jit import JitFunction, jit
from .memory.dtypes import bfloat16, float16, float32, int8, int32, uint8, uint32
from .ops import Tensor, tensor
from .ops import elementwise as _ew
from .ops.matmul import matmul
from .ops import reduce as _red
from .ops import shape as _sh
from .ops.creation import arange, full, ones, ones_like, zeros, zeros_like
from .ops.random import Generator, manual_seed, rand, randn
from .precision import float16_arithmetic, precision_report, set_float16_arithmetic
from .runtime import Graph, Runtime, capture, default_runtime, set_default_runtime
from .version import __version__
from .vk import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, ShaderModule,
                 VulkanContext)

exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu = (_ew.exp, _ew.log, _ew.sqrt, _ew.rsqrt, _ew.tanh, _ew.sigmoid,
                                                     _ew.relu, _ew.gelu)
add, sub, mul, div, pow, maximum, minimum, clamp, where = (_ew.add, _ew.sub, _ew.mul, _ew.div, _ew.pow, _ew.maximum,
                                                           _ew.minimum, _ew.clamp, _ew.where)
abs, neg, eq, ne, lt, le, gt, ge = _ew.abs, _ew.neg, _ew.eq, _ew.ne, _ew.lt, _ew.le, _ew.gt, _ew.ge
sum, mean, max, min, argmax, argmin, var = _red.sum, _red.mean, _red.max, _red.min, _red.argmax, _red.argmin, _red.var
reshape, permute, transpose, concat, cat, stack, index_select, one_hot = (
    _sh.reshape, _sh.permute, _sh.transpose, _sh.concat, _sh.concat, _sh.stack, _sh.index_select, _sh.one_hot)


def synchronize() -> None:
    """Submit every recorded op on the default device and wait for it."""
    default_runtime().synchronize()



__all__ = [
    "Graph", "JitFunction", "capture", "jit", "enable_grad", "is_grad_enabled", "no_grad", "set_grad_enabled",
    "Buffer",
    "CommandBufferPool", "ComputePipeline", "DescriptorBindingBuilder", "Generator", "HlxError", "Runtime",
    "ShaderModule", "Tensor", "VulkanContext", "arange", "bfloat16", "compile_glsl", "default_runtime",
    "checkpoint", "errors", "optim", "float16", "float32", "full", "int8", "int32", "manual_seed", "matmul",
    "memory", "nn", "ones", "precision_report", "rand", "randn", "set_default_runtime", "set_float16_arithmetic",
    "float16_arithmetic", "synchronize", "tensor", "uint8", "uint32", "vk", "zeros",
]
