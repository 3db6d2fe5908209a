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
from ..ops import matmul as mm
from ..ops import reduce as red
from ..ops import shape as sh
from ..ops import softmax as sm
from ..ops.random import rand
from ..ops.tensor import Tensor, normalize_axis

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
    y = mm.matmul(x, sh.transpose(weight, 0, 1))
    return y if bias is None else y + bias


def embedding(index, weight: Tensor) -> Tensor:
    """Rows of ``weight`` picked by ``index`` (any shape)."""
    return sh.index_select(weight, 0, index)


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dims (biased variance, as torch)."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    k = len(normalized_shape)
    if tuple(x.shape[x.ndim - k:]) != tuple(normalized_shape):
        raise errors.ShapeError(f"layer_norm over {tuple(normalized_shape)} does not match input shape {x.shape}")
    axes = tuple(range(x.ndim - k, x.ndim))
    centered = x - red.mean(x, axes, keepdim=True)
    var = red.mean(centered * centered, axes, keepdim=True)
    y = centered * ew.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def nll_loss(log_probs: Tensor, target, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Negative log-likelihood of integer ``target`` classes under ``log_probs`` (N, C), as torch:
    each target in ``[0, C)`` or equal to ``ignore_index``, whose rows count for nothing (the mean
    is over the other rows). Host targets are checked before launch; a device tensor's on the
    device (DeviceIndexError at the next sync point)."""
    return _nll_loss(log_probs, target, reduction, ignore_index, "nll_loss")


def cross_entropy(logits: Tensor, target, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Cross-entropy of integer class ``target`` (N,) against ``logits`` (N, C); targets as in
    :func:`nll_loss`."""
    return _nll_loss(log_softmax(logits, 1), target, reduction, ignore_index, "cross_entropy")


def _nll_loss(log_probs: Tensor, target, reduction: str, ignore_index: int, op: str) -> Tensor:
    if log_probs.ndim != 2:
        raise errors.ShapeError(f"{op} expects log-probabilities of shape (N, C), got {log_probs.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    n, c = log_probs.shape
    target_shape = target.shape if isinstance(target, Tensor) else np.shape(target)
    if target_shape != (n,):
        raise errors.ShapeError(f"{op}: target of shape {target_shape} does not match {n} rows of {log_probs.shape}")
    mask = sh.class_mask(target, c, log_probs.dtype, ignore_index, op, log_probs.runtime)
    loss = -red.sum(log_probs * mask, 1)
    if reduction == "mean":
        return red.sum(loss) / red.sum(mask)   # over the rows not ignored: 0/0 (NaN) if none, as torch
    return _reduce(loss, reduction)


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
           "mse_loss", "nll_loss", "normalize_axis", "one_hot", "relu", "scaled_dot_product_attention", "sigmoid", "silu",
           "softmax", "tanh"]
