"""``x @ weight.T + bias`` (torch.nn.functional.linear) as one taped op.

The forward records the kernels of the three ops it stands for (a transposed view of the weight,
the matmul, the broadcast add of the bias) and the backward those of their three backward rules,
on the same operand layouts, so the bits are the composed form's; the tape holds one node instead
of three, and a small layer's host time is mostly that bookkeeping.
"""

from __future__ import annotations

from ..autograd.graph import differentiable
from . import elementwise as ew
from . import matmul as mm
from . import reduce
from . import shape as sh
from .tensor import Tensor


class _ProductContext:
    """What matmul's backward rule reads: the operands and which of them need a gradient."""

    __slots__ = ("saved", "needs")

    def __init__(self, saved, needs):
        self.saved, self.needs = saved, needs


def _linear_backward(ctx, g):
    x, weight = ctx.saved
    need_x, need_w, need_b = ctx.needs
    gb = reduce.sum_to_shape(g, ctx.shapes[2]) if need_b else None  # the add's rule for the bias
    gx = gw = None
    if need_x or need_w:
        # The product's gradient in its own dtype (the add may have promoted), then matmul's rule.
        gy = g if g.dtype is x.dtype else ew.cast(g, x.dtype)
        gx, gwt, _ = mm.matmul.backward_rule(_ProductContext((x, sh.transpose(weight, 0, 1)), (need_x, need_w, False)),
                                             gy)
        if gwt is not None:
            gw = sh.permute(gwt, (1, 0))  # the transpose's rule
    return gx, gw, gb


@differentiable(_linear_backward, saves=(0, 1))
def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` (weight of shape (out_features, in_features), as torch)."""
    y = mm.matmul(x, sh.transpose(weight, 0, 1))
    return y if bias is None else ew.add(y, bias)


__all__ = ["linear"]
