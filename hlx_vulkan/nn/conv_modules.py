"""Modules of convolutional nets with PyTorch's names, parameter names, initialisation and
``state_dict`` keys: Conv1d, Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
BatchNorm1d, BatchNorm2d, GroupNorm, Dropout2d.

Initialisation is PyTorch's default (kaiming_uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in),
1/sqrt(fan_in)) for weight and bias), drawn from the seeded device generator.

Example::

    net = hv.nn.Sequential(hv.nn.Conv2d(1, 8, 3, padding=1), hv.nn.BatchNorm2d(8), hv.nn.ReLU(),
                           hv.nn.MaxPool2d(2))
"""

from __future__ import annotations

import math

from .. import errors
from ..ops import conv as cv
from ..ops import pool
from ..ops.creation import ones, zeros
from ..ops.tensor import Tensor, default_int_dtype
from ..runtime import default_runtime
from . import normalization as norm
from . import running_stats
from .modules import Module, Parameter, _uniform


class _ConvNd(Module):
    transposed = False
    dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", dtype="float32",
                 output_padding=0):
        super().__init__()
        n = self.dims
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels {in_channels} and out_channels {out_channels} must be divisible by "
                             f"groups {groups}")
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode {padding_mode!r} is not supported; pad with F.pad first")
        if isinstance(padding, str) and (padding not in ("same", "valid") or self.transposed):
            raise ValueError(f"padding {padding!r}: 'same' or 'valid' (convolutions only) or ints")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = cv.pair(kernel_size, "kernel_size", n)
        self.stride = cv.pair(stride, "stride", n)
        self.padding = padding if isinstance(padding, str) else cv.pair(padding, "padding", n)
        self.dilation = cv.pair(dilation, "dilation", n)
        self.output_padding = cv.pair(output_padding, "output_padding", n)
        self.padding_mode = padding_mode
        k = math.prod(self.kernel_size)
        if self.transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
            fan_in = (out_channels // groups) * k  # torch's fan_in of a (C_in, C_out/g, ...) weight: dim 1
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
            fan_in = (in_channels // groups) * k
        bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
        self.weight = _uniform(shape, bound, dtype)
        self.bias = _uniform((out_channels,), bound, dtype) if bias else None

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}")
        if self.padding not in (0, (0,) * self.dims):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.dims:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv1d(_ConvNd):
    dims = 1

    def forward(self, x: Tensor) -> Tensor:
        pad = self.padding if isinstance(self.padding, str) else self.padding[0]
        return cv.conv1d(x, self.weight, self.bias, self.stride[0], pad, self.dilation[0], self.groups)


class Conv2d(_ConvNd):
    def forward(self, x: Tensor) -> Tensor:
        return cv.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros", dtype="float32"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype, output_padding)

    def forward(self, x: Tensor) -> Tensor:
        return cv.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                   self.groups, self.dilation)


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x: Tensor):
        return pool.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                               self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return pool.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                               self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return pool.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class _BatchNorm(Module):
    """Weight ones and bias zeros (``affine``); buffers ``running_mean`` (zeros), ``running_var``
    (ones) and ``num_batches_tracked`` (``track_running_stats``), as torch. ``momentum=None``
    averages all batches seen (reads the batch count back: not for a captured step)."""

    ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype="float32"):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(zeros(num_features, dtype=dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", zeros((), dtype=default_int_dtype(default_runtime())))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self.ndims:
            raise errors.ShapeError(f"{type(self).__name__} expects a {' or '.join(map(str, self.ndims))}-D input, "
                                    f"got shape {x.shape}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            nbt = self.num_batches_tracked
            if self.momentum is None and running_stats.deferring():
                raise ValueError(f"{type(self).__name__}(momentum=None) reads its batch count on every batch, "
                                 "which data-parallel training cannot replay in rank order: give a momentum")
            running_stats.count(nbt)
            if self.momentum is None:
                momentum = 1.0 / float(nbt.item())
        use_batch = self.training or not self.track_running_stats
        track = self.training and self.track_running_stats
        return norm.batch_norm(x, self.running_mean if track or not use_batch else None,
                               self.running_var if track or not use_batch else None, self.weight, self.bias,
                               use_batch, momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    ndims = (4,)


class GroupNorm(Module):
    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, dtype="float32"):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"num_channels {num_channels} must be divisible by num_groups {num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        self.weight = Parameter(ones(num_channels, dtype=dtype)) if affine else None
        self.bias = Parameter(zeros(num_channels, dtype=dtype)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        return norm.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class Dropout2d(Module):
    """Zero whole channels with probability ``p`` in training mode (scaling the rest by 1/(1-p))."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return norm.dropout2d(x, self.p, self.training)


__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv1d", "Conv2d", "ConvTranspose2d",
           "Dropout2d", "GroupNorm", "MaxPool2d"]
