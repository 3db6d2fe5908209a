"""Loss functions with torch.nn.functional's signatures and options: ``nll_loss`` and
``cross_entropy`` (class weights, ``ignore_index``, ``label_smoothing``, inputs of shape (N, C),
(N, C, d1, ...) or (C,), class-probability targets), ``binary_cross_entropy``,
``binary_cross_entropy_with_logits`` (``pos_weight``), ``l1_loss``, ``smooth_l1_loss``,
``huber_loss`` and ``kl_div``; ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"`` (and
``"batchmean"`` for kl_div). Built from differentiable ops, so their gradients come from
those; the elementwise pieces with a kink have their own backward expression.

Class-index targets are checked as before: host targets before launch, a device tensor's on
the device (DeviceIndexError at the next sync point)."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..autograd.graph import differentiable, no_grad
from ..ops import activations as act
from ..ops import cross_entropy as fused
from ..ops import elementwise as ew
from ..ops import reduce as red
from ..ops import shape as sh
from ..ops import softmax as sm
from ..ops.pointwise import launch
from ..ops.tensor import Tensor

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str, extra=()) -> None:
    if reduction not in REDUCTIONS + tuple(extra):
        raise ValueError(f"reduction must be one of {REDUCTIONS + tuple(extra)}, not {reduction!r}")


def check_legacy(size_average, reduce) -> None:
    if size_average is not None or reduce is not None:
        raise TypeError("size_average and reduce are deprecated in torch and not supported; use reduction=")


def _reduce(x: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return red.mean(x)
    if reduction == "sum":
        return red.sum(x)
    return x


def _classes_last(x: Tensor, target, op: str):
    """``x`` (N, C), (N, C, d1, ...) or (C,) as (M, C) with the class dim last, the target flat
    (M,), and the target's expected shape."""
    if x.ndim == 0:
        raise errors.ShapeError(f"{op}: the input must have a class dim, not shape ()")
    if x.ndim == 1:
        expected, x2 = (), x.reshape(1, x.shape[0])
    elif x.ndim == 2:
        expected, x2 = (x.shape[0],), x
    else:
        expected = (x.shape[0],) + x.shape[2:]
        order = (0,) + tuple(range(2, x.ndim)) + (1,)
        x2 = sh.reshape(sh.permute(x, order), (-1, x.shape[1]))
    shape = target.shape if isinstance(target, Tensor) else np.shape(target)
    if tuple(shape) != expected:
        raise errors.ShapeError(f"{op}: target of shape {tuple(shape)} does not match input of shape {x.shape} "
                                f"(expected {expected})")
    flat = target.reshape(-1) if isinstance(target, Tensor) else np.asarray(target).reshape(-1)
    return x2, flat, expected


def _weight(weight, c: int, op: str):
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise TypeError(f"{op}: weight must be a tensor, not {type(weight).__name__}")
    if weight.shape != (c,):
        raise errors.ShapeError(f"{op}: weight of shape {weight.shape}, expected one per class ({c},)")
    return weight


def _mean_over(total: Tensor, count: Tensor) -> Tensor:
    """``total / count`` for the mean over the targets not ignored, as torch: NaN when every
    target is ignored (0 / 0), with a zero gradient then rather than NaN."""
    with no_grad():
        empty = ew.eq(count, 0.0)
        safe = ew.where(empty, 1.0, count)
        nan = ew.where(empty, float("nan"), 0.0)
    return total / safe + nan


def _nll(log_probs: Tensor, target, weight, ignore_index: int, reduction: str, label_smoothing: float, op: str):
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], not {label_smoothing}")
    c = log_probs.shape[1] if log_probs.ndim > 1 else log_probs.shape[0]
    weight = _weight(weight, c, op)
    if isinstance(target, Tensor) and target.dtype.is_float:
        return _soft_targets(log_probs, target, weight, reduction, label_smoothing, op)
    lp, flat, shape = _classes_last(log_probs, target, op)
    mask = sh.class_mask(flat, c, lp.dtype, ignore_index, op, lp.runtime)   # rows of ignored targets stay zero
    wmask = mask * weight if weight is not None else mask
    rows = -red.sum(lp * wmask, 1)
    if reduction == "mean":
        total = red.sum(wmask.detach())
        loss = _mean_over(red.sum(rows), total)
    else:
        loss = _reduce(rows, reduction)
    if label_smoothing == 0.0:
        return loss.reshape(shape) if reduction == "none" else loss
    valid = red.sum(mask, 1) > 0
    smooth = -red.sum(lp * weight if weight is not None else lp, 1)
    smooth = ew.where(valid, smooth, 0.0)
    if reduction == "mean":
        smooth = _mean_over(red.sum(smooth), total if weight is not None else red.sum(valid, dtype=lp.dtype))
    else:
        smooth = _reduce(smooth, reduction)
    out = loss * (1.0 - label_smoothing) + smooth * (label_smoothing / c)
    return out.reshape(shape) if reduction == "none" else out


def _soft_targets(log_probs: Tensor, target: Tensor, weight, reduction: str, label_smoothing: float, op: str):
    """Targets of class probabilities, of the input's shape."""
    if target.shape != log_probs.shape:
        raise errors.ShapeError(f"{op}: probability targets of shape {target.shape} must match the input's "
                                f"{log_probs.shape}")
    c = log_probs.shape[1] if log_probs.ndim > 1 else log_probs.shape[0]
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / c
    prod = log_probs * target
    if weight is not None:
        prod = prod * weight.reshape((c,) + (1,) * (log_probs.ndim - 2)) if log_probs.ndim > 1 else prod * weight
    rows = -red.sum(prod, 1 if log_probs.ndim > 1 else 0)
    if reduction == "mean":  # over the batch elements (N * d1 * ...), as torch
        return red.sum(rows) / (float(rows.numel()) if rows.numel() else float("nan"))
    return _reduce(rows, reduction)


def nll_loss(input: Tensor, target, weight: Tensor | None = None, size_average=None,  # noqa: A002 - torch's names
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer ``target`` classes under log-probabilities ``input``
    ((N, C), (N, C, d1, ...) or (C,)), as torch: ``weight`` scales each class; targets equal to
    ``ignore_index`` count for nothing; the mean divides by the summed weights of the targets."""
    check_legacy(size_average, reduce)
    return _nll(input, target, weight, ignore_index, reduction, 0.0, "nll_loss")


def cross_entropy(input: Tensor, target, weight: Tensor | None = None, size_average=None,  # noqa: A002
                  ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of ``target`` (class indices, or class probabilities of the input's shape)
    against logits ``input`` with the class dim 1, as torch, with ``weight``, ``ignore_index``,
    ``label_smoothing`` and ``reduction``."""
    check_legacy(size_average, reduce)
    if (weight is None and not label_smoothing and input.ndim == 2 and input.dtype.is_float
            and not (isinstance(target, Tensor) and target.dtype.is_float)):
        # The common case, class indices over (N, C): one fused kernel forward and one backward.
        return fused.cross_entropy(input, target, reduction, ignore_index)
    return _nll(sm.log_softmax(input, 1 if input.ndim > 1 else 0), target, weight, ignore_index, reduction,
                float(label_smoothing), "cross_entropy")


def _same_shape(a: Tensor, b, op: str) -> None:
    if not isinstance(b, Tensor):
        raise TypeError(f"{op}: target must be a tensor, not {type(b).__name__}")
    if a.shape != b.shape:
        raise errors.ShapeError(f"{op}: input shape {a.shape} and target shape {b.shape} differ")


def _weighted(loss: Tensor, weight, reduction: str) -> Tensor:
    return _reduce(loss * weight if weight is not None else loss, reduction)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,  # noqa: A002
                         reduce=None, reduction: str = "mean") -> Tensor:
    """``-w (t log(x) + (1 - t) log(1 - x))`` with each log clamped at -100, as torch (the input
    is not checked to lie in [0, 1], which would need a sync point)."""
    check_legacy(size_average, reduce)
    _check_reduction(reduction)
    _same_shape(input, target, "binary_cross_entropy")
    log_x = ew.clamp(ew.log(input), min=-100.0)
    log_1mx = ew.clamp(ew.log(1.0 - input), min=-100.0)
    return _weighted(-(target * log_x + (1.0 - target) * log_1mx), weight, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                                     size_average=None, reduce=None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of ``sigmoid(input)`` computed stably:
    ``(1 - t) x + (1 + (pos_weight - 1) t) softplus(-x)``, times ``weight``."""
    check_legacy(size_average, reduce)
    _check_reduction(reduction)
    _same_shape(input, target, "binary_cross_entropy_with_logits")
    sp = act.softplus(-input)
    if pos_weight is not None:
        sp = sp * ((pos_weight - 1.0) * target + 1.0)
    return _weighted((1.0 - target) * input + sp, weight, reduction)


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,  # noqa: A002
            reduction: str = "mean") -> Tensor:
    """``|input - target|``, reduced."""
    check_legacy(size_average, reduce)
    _check_reduction(reduction)
    _same_shape(input, target, "l1_loss")
    return _reduce(ew.abs(input - target), reduction)


def _kink_backward(grad_expr: str):
    def backward(ctx, g):
        (d,) = ctx.saved
        return launch(grad_expr, [d, g], alpha=float(ctx.args[1]), out_dtype=g.dtype), None
    return backward


@differentiable(_kink_backward("abs(x) < alpha ? y * x / alpha : (x > CT(0) ? y : (x < CT(0) ? -y : CT(0)))"),
                saves=(0,))
def _smooth_l1(d: Tensor, beta: float) -> Tensor:
    return launch("abs(x) < alpha ? CT(0.5) * x * x / alpha : abs(x) - CT(0.5) * alpha", [d], alpha=float(beta))


@differentiable(_kink_backward("abs(x) <= alpha ? y * x : (x > CT(0) ? y * alpha : (x < CT(0) ? -y * alpha : CT(0)))"),
                saves=(0,))
def _huber(d: Tensor, delta: float) -> Tensor:
    return launch("abs(x) <= alpha ? CT(0.5) * x * x : alpha * (abs(x) - CT(0.5) * alpha)", [d], alpha=float(delta))


def smooth_l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None,  # noqa: A002
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """``0.5 d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``d = input - target``);
    ``beta = 0`` is the L1 loss."""
    check_legacy(size_average, reduce)
    _check_reduction(reduction)
    _same_shape(input, target, "smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, not {beta}")
    d = input - target
    return _reduce(ew.abs(d) if beta == 0 else _smooth_l1(d, beta), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:  # noqa: A002
    """``0.5 d**2`` where ``|d| <= delta``, else ``delta (|d| - 0.5 delta)`` (``d = input - target``)."""
    _check_reduction(reduction)
    _same_shape(input, target, "huber_loss")
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, not {delta}")
    return _reduce(_huber(input - target, delta), reduction)


def _kl_backward(ctx, g):
    x, t = ctx.saved
    log_target = ctx.args[2]
    gx = launch("-exp(x) * y" if log_target else "-x * y", [t, g], out_dtype=g.dtype) if ctx.needs[0] else None
    gt = None
    if ctx.needs[1]:
        expr = "exp(y) * (y - x + CT(1)) * z" if log_target else "(y == CT(0) ? CT(0) : (log(y) + CT(1) - x) * z)"
        gt = launch(expr, [x, t, g], out_dtype=g.dtype)
    return gx, gt, None


@differentiable(_kl_backward, saves=(0, 1))
def _kl(x: Tensor, t: Tensor, log_target: bool) -> Tensor:
    if log_target:
        return launch("exp(y) * (y - x)", [x, t])
    return launch("(y == CT(0) ? CT(0) : y * log(y)) - y * x", [x, t])


def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",  # noqa: A002
           log_target: bool = False) -> Tensor:
    """KL divergence with ``input`` as log-probabilities: ``t (log t - input)`` pointwise (0 where
    ``t == 0``), or ``exp(t) (t - input)`` with ``log_target``; ``reduction="batchmean"`` divides
    the sum by the batch size (torch's ``"mean"`` divides by every element)."""
    check_legacy(size_average, reduce)
    _check_reduction(reduction, ("batchmean",))
    _same_shape(input, target, "kl_div")
    loss = _kl(input, target, bool(log_target))
    if reduction == "batchmean":
        return red.sum(loss) / float(input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


__all__ = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "check_legacy", "cross_entropy",
           "huber_loss", "kl_div", "l1_loss", "nll_loss", "smooth_l1_loss"]
