"""Neural-network functions built from the ops (numerically stable forms).

Example::

    import hlx_vulkan as hv
    logits = hv.randn(4, 10)
    loss = hv.nn.functional.cross_entropy(logits, hv.tensor([1, 0, 9, 3]))
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..ops import attention as _attn
from ..ops import elementwise as ew
from ..ops import layer_norm as ln
from ..ops import linear as _linear
from ..ops import reduce as red
from ..ops import shape as sh
from ..ops import softmax as sm
from ..ops.random import rand
from ..ops.tensor import Tensor, normalize_axis
from ..ops.activations import (celu, elu, hardsigmoid, hardswish, hardtanh, logsigmoid, mish,
                               relu6, selu, softplus, softsign)
from .losses import (binary_cross_entropy, binary_cross_entropy_with_logits, check_legacy, cross_entropy,
                     huber_loss, kl_div, l1_loss, nll_loss, smooth_l1_loss)

softmax = sm.softmax            # softmax(x, dim=-1), axis= as numpy's alias
log_softmax = sm.log_softmax
relu = ew.relu
gelu = ew.gelu
tanh = ew.tanh
sigmoid = ew.sigmoid
silu = ew.silu
leaky_relu = ew.leaky_relu
one_hot = sh.one_hot            # int64, as torch
scaled_dot_product_attention = _attn.scaled_dot_product_attention


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` (weight of shape (out_features, in_features), as torch)."""
    return _linear.linear(x, weight, bias)


def embedding(index, weight: Tensor) -> Tensor:
    """Rows of ``weight`` picked by ``index`` (any shape)."""
    return sh.index_select(weight, 0, index)


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dims (biased variance, as torch): one fused
    kernel forward and one backward (ops/layer_norm.py)."""
    return ln.layer_norm(x, normalized_shape, weight, bias, eps)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002 - torch's name
    if input.shape != target.shape:
        raise errors.ShapeError(f"mse_loss: input shape {input.shape} and target shape {target.shape} differ")
    d = input - target
    return _reduce(d * d, reduction)


def dropout(x: Tensor, p: float = 0.5, training: bool = True, generator=None) -> Tensor:
    """Zero elements with probability ``p`` and scale the rest by 1/(1-p); identity when not training.
    The mask is drawn from the seeded device generator, so the same seed drops the same elements."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    u = rand(*x.shape, dtype=x.dtype, generator=generator, runtime=x.runtime)
    keep = ew.launch("x >= alpha ? beta : CT(0)", [u], alpha=p, beta=1.0 / (1.0 - p))
    return x * keep


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return red.mean(x)
    if reduction == "sum":
        return red.sum(x)
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


__all__ = ["cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "leaky_relu", "linear", "log_softmax",
           "mse_loss", "nll_loss", "normalize_axis", "one_hot", "relu", "sigmoid", "silu", "softmax", "tanh",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "celu", "elu", "hardsigmoid", "hardswish",
           "hardtanh", "huber_loss", "kl_div", "l1_loss", "logsigmoid", "mish", "relu6", "selu", "smooth_l1_loss",
           "softplus", "softsign"]

# Convolutional nets (issue 13): convolutions, pooling, padding, resampling, batch and group norm.
from ..ops.conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d  # noqa: E402
from ..ops.pool import (adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d, max_pool1d,  # noqa: E402
                        max_pool2d)
from ..ops.spatial import interpolate, pad  # noqa: E402
from .normalization import batch_norm, dropout2d, group_norm  # noqa: E402

__all__ += ["adaptive_avg_pool1d", "adaptive_avg_pool2d", "avg_pool1d", "avg_pool2d", "batch_norm", "conv1d",
            "conv2d", "conv_transpose1d", "conv_transpose2d", "dropout2d", "group_norm", "interpolate",
            "max_pool1d", "max_pool2d", "pad"]

__all__ += ["scaled_dot_product_attention"]
