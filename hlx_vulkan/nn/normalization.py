"""Batch and group normalisation and channel dropout, as torch.nn.functional has them.

Built from the ops (means over fixed axes, which reduce in a fixed order), so their gradients
come from those ops and are deterministic. Running statistics are updated in place on the
device (nothing is read back), so a training step that uses them can be captured and replayed.
"""

from __future__ import annotations

import math

from .. import errors
from ..autograd.graph import no_grad
from ..ops import elementwise as ew
from ..ops import reduce as red
from ..ops import shape as sh
from ..ops.random import rand
from ..ops.tensor import Tensor
from . import running_stats


def _channel_shape(x: Tensor) -> tuple:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _check_channel(name: str, t, c: int) -> None:
    if t is not None and (not isinstance(t, Tensor) or t.shape != (c,)):
        raise errors.ShapeError(f"{name} must be a tensor of shape ({c},), got "
                                f"{getattr(t, 'shape', type(t).__name__)}")


def _channel_major(x: Tensor) -> Tensor:
    """(N, C, *) as (C, N * prod(*)) (a copy)."""
    n, c = x.shape[:2]
    return sh.reshape(sh.permute(sh.reshape(x, (n, c, -1)), (1, 0, 2)), (c, -1))


def _from_channel_major(y: Tensor, shape) -> Tensor:
    n, c = shape[:2]
    return sh.reshape(sh.permute(sh.reshape(y, (c, n, -1)), (1, 0, 2)), shape)


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Normalise each channel (dim 1) of ``x`` (N, C, *) by the batch's statistics (``training``)
    or by the running ones, as torch. In training, ``running_mean`` and ``running_var`` (when
    given) move by ``momentum`` towards the batch mean and unbiased variance, in place."""
    if not isinstance(x, Tensor):
        raise TypeError(f"batch_norm takes a tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise errors.ShapeError(f"batch_norm takes an (N, C, *) input, got shape {x.shape}")
    if not x.dtype.is_float:
        raise errors.DTypeError(f"batch_norm needs a floating-point tensor, not {x.dtype.name}")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        _check_channel(name, t, c)
    cshape = _channel_shape(x)
    if training:
        count = x.numel() // c if c else 0
        if count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input "
                             f"of shape {x.shape}")
        # Channel-major (C, N*spatial): statistics, affine and all their gradients are sums along
        # rows, which reduce in one fast pass; one copy in and one out.
        rows = _channel_major(x)
        mean = red.mean(rows, 1, keepdim=True)
        centered = rows - mean
        var = red.mean(centered * centered, 1, keepdim=True)
        y = centered * ew.rsqrt(var + eps)
        if weight is not None:
            y = y * sh.reshape(weight, (c, 1))
        if bias is not None:
            y = y + sh.reshape(bias, (c, 1))
        if running_mean is not None or running_var is not None:
            with no_grad():
                m = float(momentum)
                if running_mean is not None:
                    running_stats.blend(running_mean, sh.reshape(mean.detach(), (c,)), 1.0 - m, m)
                if running_var is not None:
                    running_stats.blend(running_var, sh.reshape(var.detach(), (c,)), 1.0 - m, m * count / (count - 1))
        return _from_channel_major(y, x.shape)
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm in eval mode needs running_mean and running_var")
    y = (x - sh.reshape(running_mean, cshape)) * sh.reshape(ew.rsqrt(running_var + eps), cshape)
    if weight is not None:
        y = y * sh.reshape(weight, cshape)
    if bias is not None:
        y = y + sh.reshape(bias, cshape)
    return y


def group_norm(x: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise ``x`` (N, C, *) over each group of C/num_groups channels and the spatial dims
    (biased variance), then scale and shift per channel, as torch."""
    if not isinstance(x, Tensor):
        raise TypeError(f"group_norm takes a tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise errors.ShapeError(f"group_norm takes an (N, C, *) input, got shape {x.shape}")
    c = x.shape[1]
    if not isinstance(num_groups, int) or num_groups < 1 or c % num_groups:
        raise errors.ShapeError(f"group_norm: {c} channels do not split into {num_groups} groups")
    _check_channel("weight", weight, c)
    _check_channel("bias", bias, c)
    n = x.shape[0]
    g = sh.reshape(x, (n, num_groups, math.prod(x.shape[1:]) // num_groups))
    centered = g - red.mean(g, -1, keepdim=True)
    var = red.mean(centered * centered, -1, keepdim=True)
    y = sh.reshape(centered * ew.rsqrt(var + eps), x.shape)
    cshape = _channel_shape(x)
    if weight is not None:
        y = y * sh.reshape(weight, cshape)
    if bias is not None:
        y = y + sh.reshape(bias, cshape)
    return y


def dropout2d(x: Tensor, p: float = 0.5, training: bool = True, generator=None) -> Tensor:
    """Zero whole channels of ``x`` (N, C, H, W) or (C, H, W) with probability ``p``, scaling the
    rest by 1/(1-p); identity when not training. The mask comes from the seeded device generator."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if x.ndim not in (3, 4):
        raise errors.ShapeError(f"dropout2d takes an (N, C, H, W) or (C, H, W) input, got shape {x.shape}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    mask_shape = x.shape[:-2] + (1, 1)
    u = rand(*mask_shape, dtype=x.dtype, generator=generator, runtime=x.runtime)
    keep = ew.launch("x >= alpha ? beta : CT(0)", [u], alpha=p, beta=1.0 / (1.0 - p))
    return x * keep


__all__ = ["batch_norm", "dropout2d", "group_norm"]
