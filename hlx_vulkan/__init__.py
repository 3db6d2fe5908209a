"""hlx_vulkan: deterministic, reproducible machine-learning compute on any Vulkan device.

Two faces: the tensor API, for a numpy or PyTorch user::

    import hlx_vulkan as hv
    hv.manual_seed(0)
    x = hv.randn(64, 32)
    y = hv.nn.functional.softmax(x @ hv.randn(32, 10), dim=-1)
    print(y.sum(dim=1).numpy(), y.digest())

and the Vulkan foundation under it (VulkanContext, Buffer, ShaderModule,
ComputePipeline, CommandBufferPool), for running your own SPIR-V.
"""

from . import checkpoint, errors, memory, nn, optim, vk
from .autograd import engine as _engine  # binds Tensor.backward
from .autograd.graph import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .compiler import compile_glsl
from .errors import HlxError
from .jit import JitFunction, jit
from .memory.dtypes import bfloat16, float16, float32, int8, int32, int64, promote_types, uint8, uint32
from .memory.dtypes import bool_ as bool  # noqa: A001 - torch's name (hv.bool), as the aliases below
from .ops import Tensor, tensor
from .ops import contract as _ct
from .ops import elementwise as _ew
from .ops.matmul import matmul
from .ops import reduce as _red
from .ops import shape as _sh
from .ops import softmax as _sm
from .ops.creation import (arange, empty, empty_like, eye, full, full_like, linspace, ones, ones_like, zeros,
                           zeros_like)
from .ops.random import Generator, manual_seed, rand, rand_like, randint, randn, randn_like
from .ops.tensor import Device, from_numpy
from .precision import float16_arithmetic, precision_report, set_float16_arithmetic
from .runtime import Graph, Runtime, capture, default_runtime, set_default_runtime
from .strict_mode import is_strict, set_strict, strict
from .version import __version__
from .vk import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, ShaderModule,
                 VulkanContext)

# PyTorch's other names for the dtypes.
float, half, long, int = float32, float16, int64, int32  # noqa: A001

exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu = (_ew.exp, _ew.log, _ew.sqrt, _ew.rsqrt, _ew.tanh, _ew.sigmoid,
                                                     _ew.relu, _ew.gelu)
sin, cos, reciprocal, floor, ceil, round, trunc, sign = (_ew.sin, _ew.cos, _ew.reciprocal, _ew.floor, _ew.ceil,
                                                         _ew.round, _ew.trunc, _ew.sign)
add, sub, mul, div, pow, maximum, minimum, clamp, where = (_ew.add, _ew.sub, _ew.mul, _ew.div, _ew.pow, _ew.maximum,
                                                           _ew.minimum, _ew.clamp, _ew.where)
floor_divide, remainder, masked_fill, result_type, clip = (_ew.floor_divide, _ew.remainder, _ew.masked_fill,
                                                           _ew.result_type, _ew.clamp)
abs, neg, eq, ne, lt, le, gt, ge = _ew.abs, _ew.neg, _ew.eq, _ew.ne, _ew.lt, _ew.le, _ew.gt, _ew.ge
isnan, isinf, isfinite, isclose, allclose = _ew.isnan, _ew.isinf, _ew.isfinite, _ew.isclose, _ew.allclose
logical_and, logical_or, logical_xor, logical_not = _ew.logical_and, _ew.logical_or, _ew.logical_xor, _ew.logical_not
bitwise_and, bitwise_or, bitwise_xor, bitwise_not = _ew.bitwise_and, _ew.bitwise_or, _ew.bitwise_xor, _ew.bitwise_not
sum, mean, max, min, argmax, argmin, var = _red.sum, _red.mean, _red.max, _red.min, _red.argmax, _red.argmin, _red.var
amax, amin, std, logsumexp, cumsum, any, all, norm = (_red.amax, _red.amin, _red.std, _red.logsumexp, _red.cumsum,
                                                      _red.any, _red.all, _red.norm)
reshape, permute, transpose, concat, cat, stack, index_select, one_hot = (
    _sh.reshape, _sh.permute, _sh.transpose, _sh.concat, _sh.concat, _sh.stack, _sh.index_select, _sh.one_hot)
squeeze, unsqueeze, flatten, unflatten, split, chunk, tril, triu = (
    _sh.squeeze, _sh.unsqueeze, _sh.flatten, _sh.unflatten, _sh.split, _sh.chunk, _sh.tril, _sh.triu)
masked_select, nonzero, t = _sh.masked_select, _sh.nonzero, _sh.t
softmax, log_softmax = _sm.softmax, _sm.log_softmax
mm, bmm, einsum = _ct.mm, _ct.bmm, _ct.einsum
from .ops import activations as _act, indexing as _ix, scan as _scan, sort as _so  # noqa: E402
gather, scatter, scatter_add, flip, roll, repeat_interleave = (_ix.gather, _ix.scatter, _ix.scatter_add, _ix.flip,
                                                              _ix.roll, _ix.repeat_interleave)
sort, argsort, topk, msort, kthvalue, cumprod = _so.sort, _so.argsort, _so.topk, _so.msort, _so.kthvalue, _scan.cumprod
erf, selu, celu = _act.erf, _act.selu, _act.celu
from .ops.attention import baddbmm  # noqa: E402 - after the ops it builds on
from .ops.linear import addmm  # noqa: E402


def clone(x: Tensor) -> Tensor:
    return x.clone()


def numel(x: Tensor) -> int:
    return x.numel()


def synchronize() -> None:
    """Submit every recorded op on the default device and wait for it."""
    default_runtime().synchronize()



__all__ = [
    "Graph", "JitFunction", "capture", "jit", "enable_grad", "is_grad_enabled", "no_grad", "set_grad_enabled",
    "Buffer", "CommandBufferPool", "ComputePipeline", "DescriptorBindingBuilder", "Device", "Generator", "HlxError",
    "Runtime", "ShaderModule", "Tensor", "VulkanContext", "arange", "bfloat16", "bool", "compile_glsl",
    "default_runtime", "checkpoint", "errors", "optim", "float16", "float32", "full", "int8", "int32", "int64",
    "manual_seed", "matmul", "memory", "nn", "ones", "precision_report", "promote_types", "rand", "randn",
    "set_default_runtime", "set_float16_arithmetic", "float16_arithmetic", "synchronize", "tensor", "uint8", "uint32",
    "vk", "zeros",
    "is_strict", "set_strict", "strict",
]
