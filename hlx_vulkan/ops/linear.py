"""``x @ weight.T + bias`` (torch.nn.functional.linear) as one taped op, and ``linear_relu``, the
same followed by relu (nn.Sequential's Linear then ReLU).

The forward is one launch where it can be (``matmul.fuses_epilogue``: a 1-D bias of the weight's
dtype, outside strict mode): the product's kernel adds the bias (and applies relu) as it stores
each output, rounding as the composed ops do (the product to the output dtype, then the add, then
relu), so its bits are those of the matmul, the add and relu, which serve everywhere else. The
backward records the kernels of the backward rules (relu's, the transpose's, matmul's, the add's)
on the same operand layouts, so its bits are the composed form's too; the tape holds one node
instead of three or four, and a small layer's host time is mostly that bookkeeping.

Both directions are planned once per layout, as single launches are: the first call runs the ops,
then takes the launch plans they made (matmul's, the add's, the bias sum's) into one plan of the
layer, keyed by the operands' geometry and the settings those plans depend on; later calls make
the outputs and record the same dispatches with no views, keys or checks in between.
"""

from __future__ import annotations

import functools

from .. import errors
from ..autograd.graph import _state as _grad
from ..autograd.graph import differentiable, tape
from ..precision import float16_arithmetic
from . import contract
from . import elementwise as ew
from . import matmul as mm
from . import pointwise as pw
from . import reduce
from . import shape as sh
from .tensor import Tensor


class _ProductContext:
    """What matmul's backward rule reads: the operands and which of them need a gradient."""

    __slots__ = ("saved", "needs")

    def __init__(self, saved, needs):
        self.saved, self.needs = saved, needs


def _settings(dtype) -> tuple:
    """What the launch plans taken into a layer's plan depend on besides the operands' layouts."""
    return (mm.FORCE_TILE, mm.CHUNK_K.get(dtype.name), mm.MAX_CHUNKS, mm.SPLIT_ONE_DISPATCH, mm.ELECT_MAX_OUTPUTS,
            float16_arithmetic(), pw.VECTOR, reduce.MIN_CHUNK, reduce.TARGET_GROUPS)


def _linear_backward(ctx, g):
    x, weight = ctx.saved[:2]
    need_x, need_w, need_b = ctx.needs
    rt = g.runtime
    key = ("linear backward", g.buf.geometry, x.buf.geometry, weight.buf.geometry, ctx.needs, _settings(g.dtype))
    plan = rt.plans.get(key)
    if plan is not None:
        bias_plan, x_plan, w_plan = plan
        gb = gx = gw = None
        if bias_plan is not None:
            kernel, push, groups, shape, strides, nbytes = bias_plan
            gb = Tensor(rt.memory.fresh(shape, g.dtype, strides, nbytes), rt)
            rt.run(kernel, [gb.buf, g.buf], push, groups)
        if x_plan is not None:
            gx = mm.run_plan(rt, x_plan, g.buf, weight.buf)
        if w_plan is not None:
            gwt = mm.run_plan(rt, w_plan, x.buf, g.buf)
            gw = gwt._view(gwt.shape[::-1], gwt.strides[::-1])  # the transpose's rule
        return gx, gw, gb
    gb = reduce.sum_to_shape(g, ctx.shapes[2]) if need_b else None  # the add's rule for the bias
    gx = gw = None
    if need_x or need_w:
        # The product's gradient in its own dtype (the add may have promoted), then matmul's rule.
        gy = g if g.dtype is x.dtype else ew.cast(g, x.dtype)
        wt = sh.transpose(weight, 0, 1)
        gx, gwt, _ = mm.matmul.backward_rule(_ProductContext((x, wt), (need_x, need_w, False)), gy)
        if gwt is not None:
            gw = sh.permute(gwt, (1, 0))  # the transpose's rule
    if g.dtype is x.dtype and g.ndim == 2 and x.ndim == 2 and (not need_b or ctx.shapes[2] == g.shape[1:]):
        _plan_backward(rt, key, g, x, weight, need_x, need_w, need_b)
    return gx, gw, gb


def _plan_backward(rt, key, g, x, weight, need_x, need_w, need_b) -> None:
    """The layer's backward plan from the plans the composed rules just made (none if one is missing)."""
    plans = rt.plans
    bias_plan = x_plan = w_plan = None
    if need_b:
        bias_plan = plans.get(reduce.axis_plan_key(g, 0, "sum", 1.0, g.dtype))
        if bias_plan is None:
            return
    if need_x:  # matmul's rule multiplies by the transpose of the transposed weight: the weight's layout
        x_plan = plans.get(mm.plan_key(g, weight))
        if x_plan is None or x_plan[6] != x_plan[3]:
            return
    if need_w:
        w_plan = plans.get(mm.plan_key(sh.transpose(x, -1, -2), g))
        if w_plan is None or w_plan[6] != w_plan[3]:
            return
    plans[key] = (bias_plan, x_plan, w_plan)


def _linear_relu_backward(ctx, g):
    """relu's rule on the saved output, then the layer's."""
    return _linear_backward(ctx, pw.launch(ew.RELU_GRAD, [ctx.saved[2], g]))


def _planned(rt, plan, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The layer's forward from its plan: the product (with the epilogue, where it was fused), then
    the bias's add (where it was not)."""
    product, add, fused = plan
    y = mm.run_plan(rt, product, x.buf, weight.buf, bias.buf if fused and bias is not None else None)
    if add is None:
        return y
    kernel, out_shape, out_strides, dt, push, groups, nbytes = add
    out = Tensor(rt.memory.fresh(out_shape, dt, out_strides, nbytes), rt)
    rt.run(kernel, [out.buf, y.buf, bias.buf], push, groups)
    return out


def _key(x: Tensor, weight: Tensor, bias: Tensor | None, act: str | None) -> tuple:
    return ("linear", x.buf.geometry, weight.buf.geometry, None if bias is None else bias.buf.geometry,
            _settings(x.dtype), act)


def _front(op, act: str | None):
    """``op`` (linear or linear_relu) that runs a layer's plan where these layouts have one, taped
    as the op's wrapper tapes (graph.tape), without the wrapper."""
    def front(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        if isinstance(x, Tensor) and isinstance(weight, Tensor) and (bias is None or isinstance(bias, Tensor)):
            rt = x.runtime
            plan = rt.plans.get(_key(x, weight, bias, act))
            if plan is not None:
                out = _planned(rt, plan, x, weight, bias)
                if ((x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad))
                        and getattr(_grad, "enabled", True)):
                    tape(op, (x, weight, bias), out)
                return out
        return op(x, weight, bias)
    return functools.wraps(op)(front)


@differentiable(_linear_backward, saves=(0, 1))
def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` (weight of shape (out_features, in_features), as torch)."""
    return _forward(x, weight, bias, None)


@differentiable(_linear_relu_backward, saves=(0, 1, "out"))
def linear_relu(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``relu(x @ weight.T + bias)``, in one launch where the product's kernel can apply both: the
    bits of ``F.relu(F.linear(x, weight, bias))``, one node on the tape (nn.Sequential runs a
    Linear followed by a ReLU through it)."""
    return _forward(x, weight, bias, "relu")


def _forward(x: Tensor, weight: Tensor, bias: Tensor | None, act: str | None) -> Tensor:
    rt = x.runtime
    key = _key(x, weight, bias, act)
    plan = rt.plans.get(key)
    if plan is not None:
        return _planned(rt, plan, x, weight, bias)
    wt = sh.transpose(weight, 0, 1)
    if (bias is not None or act is not None) and mm.fuses_epilogue(x, wt, bias, act):
        # One launch: the epilogue applied as the product is stored, the bits of the ops below.
        out = mm.with_epilogue(x, wt, bias, act)
        product = rt.plans.get(mm.plan_key(x, wt, bias=bias, act=act))
        if product is not None:
            rt.plans[key] = (product, None, True)
        return out
    if act is not None:  # the composed ops (strict mode, cooperative matrices 2, a bias it cannot take)
        return ew.relu(_forward(x, weight, bias, None))
    y = mm.matmul(x, wt)
    out = y if bias is None else ew.add(y, bias)
    if x.ndim >= 2 and x.dtype is weight.dtype and (bias is None or bias.dtype is x.dtype):
        product = rt.plans.get(mm.plan_key(x, wt))
        # ew.add of two tensors of one dtype launches "x + y" computing in that dtype.
        add = None if bias is None else rt.plans.get(pw.plan_key("x + y", [y, bias], x.dtype, compute=x.dtype))
        if product is not None and product[6] == product[3] and (bias is None or (add is not None and
                                                                                  add[0] is not None)):
            rt.plans[key] = (product, add, False)
    return out


_linear_op, _linear_relu_op = linear, linear_relu
linear, linear_relu = _front(_linear_op, None), _front(_linear_relu_op, "relu")


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta=1, alpha=1) -> Tensor:  # noqa: A002 - torch's name
    """``beta * input + alpha * (mat1 @ mat2)`` for (n, m) and (m, p) matrices, ``input`` broadcast
    to (n, p), as torch.addmm (beta 0 ignores ``input``, NaN included). With beta and alpha 1 and
    ``input`` a row of p values it is a linear layer (GPT-2's ``addmm(bias, x, weight)``): one
    launch, the bits of ``mat1 @ mat2 + input``."""
    if not isinstance(input, Tensor):
        raise TypeError(f"addmm: input must be a Tensor, not {type(input).__name__}")
    if not isinstance(mat1, Tensor) or not isinstance(mat2, Tensor) or mat1.ndim != 2 or mat2.ndim != 2:
        raise errors.ShapeError(f"addmm needs two 2-D tensors, got {getattr(mat1, 'shape', type(mat1).__name__)} "
                                f"and {getattr(mat2, 'shape', type(mat2).__name__)}")
    if beta != 0:
        try:
            sh.expand(input, (mat1.shape[0], mat2.shape[1]))
        except errors.ShapeError:
            raise errors.ShapeError(f"addmm: input of shape {input.shape} does not broadcast to "
                                    f"{(mat1.shape[0], mat2.shape[1])}") from None
    if beta == 1 and alpha == 1 and input.ndim == 1 and mat1.shape[1] == mat2.shape[0]:
        return linear(mat1, sh.transpose(mat2, 0, 1), input)
    prod = contract.mm(mat1, mat2)
    if alpha != 1:
        prod = prod * alpha
    if beta == 0:
        return prod
    return prod + (input if beta == 1 else input * beta)


__all__ = ["addmm", "linear", "linear_relu"]
