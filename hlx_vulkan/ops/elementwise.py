"""Elementwise ops with numpy broadcasting, each an expression run by the pointwise kernel
(:mod:`hlx_vulkan.ops.pointwise`), with its backward rule beside it."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..autograd.graph import differentiable
from ..memory import dtype_of, uint8
from . import reduce
from .pointwise import broadcast_shapes, compute_type, launch
from .tensor import Tensor

# --- the op table ---------------------------------------------------------------------------
# Each differentiable op names its backward as an expression over (saved value x, gradient y),
# run by the same kernel; the saved value is the op's input ("in") or output ("out").
UNARY_FLOAT = {
    "exp": ("exp(x)", "y * x", "out"), "log": ("log(x)", "y / x", "in"),
    "sqrt": ("sqrt(x)", "y * CT(0.5) / x", "out"), "rsqrt": ("inversesqrt(x)", "y * CT(-0.5) * x * x * x", "out"),
    "tanh": ("hlx_tanh(x)", "y * (CT(1) - x * x)", "out"),
    "sigmoid": ("hlx_sigmoid(x)", "y * x * (CT(1) - x)", "out"),
    "sin": ("sin(x)", "y * cos(x)", "in"), "cos": ("cos(x)", "-y * sin(x)", "in"),
}
GELU = {"tanh": ("hlx_gelu_tanh(x)", "y * hlx_gelu_tanh_grad(x)"),
        "none": ("hlx_gelu_erf(x)", "y * hlx_gelu_erf_grad(x)")}
COMPARE = {"eq": "x == y", "ne": "x != y", "lt": "x < y", "le": "x <= y", "gt": "x > y", "ge": "x >= y"}


def _require_float(t: Tensor, name: str) -> None:
    if not t.dtype.is_float:
        raise errors.DTypeError(f"{name} needs a floating-point tensor, not {t.dtype.name}")


def _saved_grad_rule(grad_expr: str):
    def backward(ctx, g):
        (saved,) = ctx.saved
        return (launch(grad_expr, [saved, g]),) + (None,) * (len(ctx.needs) - 1)
    return backward


def unary(name: str):
    expr, grad_expr, saves = UNARY_FLOAT[name]

    @differentiable(_saved_grad_rule(grad_expr), saves=("out",) if saves == "out" else (0,))
    def op(x: Tensor) -> Tensor:
        _require_float(x, name)
        return launch(expr, [x])
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name}."
    return op


exp, log, sqrt, rsqrt, tanh, sigmoid, sin, cos = (unary(n) for n in UNARY_FLOAT)


@differentiable(lambda ctx, g: (launch("-x", [g]),))
def neg(x: Tensor) -> Tensor:
    return launch("-x", [x])


@differentiable(_saved_grad_rule("x > CT(0) ? y : (x < CT(0) ? -y : CT(0))"), saves=(0,))
def abs(x: Tensor) -> Tensor:  # noqa: A001 - mirrors torch.abs
    return launch("x", [x]) if compute_type(x.dtype) == "uint" else launch("abs(x)", [x])


@differentiable(_saved_grad_rule("x > CT(0) ? y : CT(0)"), saves=("out",))
def relu(x: Tensor) -> Tensor:
    return launch("hlx_max(x, CT(0))", [x])  # NaN propagates, as in torch and numpy


def _gelu_backward(ctx, g):
    (x,) = ctx.saved
    return launch(GELU[ctx.args[1]][1], [x, g]), None


@differentiable(_gelu_backward, saves=(0,))
def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU; ``approximate="tanh"`` for the tanh form, ``"none"`` for the exact erf form."""
    _require_float(x, "gelu")
    if approximate not in GELU:
        raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
    return launch(GELU[approximate][0], [x])


def _scalar_ok(x: Tensor, s) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a tensor or a number, not {type(s).__name__}")
    if not x.dtype.is_float and float(s) != int(s):
        raise errors.DTypeError(f"a {x.dtype.name} tensor cannot be combined with the float {s}; convert with .to()")
    return float(s)


def _binary(name: str, tensor_expr: str, scalar_expr: str, rscalar_expr: str, grads, saves=()):
    """A binary op; ``grads(ctx, g, a, b)`` gives the broadcast gradients for tensor ``a`` and ``b``
    (either may be a Python number, whose gradient is not asked for)."""
    def backward(ctx, g):
        saved = dict(zip(saves, ctx.saved))
        a = saved.get(0, ctx.args[0])
        b = saved.get(1, ctx.args[1])
        ga, gb = grads(ctx, g, a, b)
        return (reduce.sum_to_shape(ga, ctx.shapes[0]) if ctx.needs[0] else None,
                reduce.sum_to_shape(gb, ctx.shapes[1]) if ctx.needs[1] else None)

    # Both operands are saved when either rule needs them: a scalar saves nothing.
    @differentiable(backward, saves=saves)
    def op(a, b) -> Tensor:
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return launch(tensor_expr, [a, b])
        if isinstance(a, Tensor):
            return launch(scalar_expr, [a], alpha=_scalar_ok(a, b))
        return launch(rscalar_expr, [b], alpha=_scalar_ok(b, a))
    op.__name__ = op.__qualname__ = name
    return op


def _scaled(g: Tensor, other, expr: str, expr_scalar: str) -> Tensor:
    """``expr`` over (other, g) for a tensor ``other``; ``expr_scalar`` with alpha = other otherwise."""
    if isinstance(other, Tensor):
        return launch(expr, [other, g])
    return launch(expr_scalar, [g], alpha=float(other))


def _div_grads(ctx, g, a, b):
    ga = _scaled(g, b, "y / x", "x / alpha") if ctx.needs[0] else None
    if not ctx.needs[1]:
        return ga, None
    gb = launch("-z * x / (y * y)", [a, b, g]) if isinstance(a, Tensor) else \
        launch("-y * alpha / (x * x)", [b, g], alpha=float(a))
    return ga, gb


def _extreme_grads(first_wins: str):
    # Ties split the gradient evenly, as torch.maximum does.
    def grads(ctx, g, a, b):
        def one(x, y):
            if isinstance(y, Tensor) and isinstance(x, Tensor):
                return launch(f"x {first_wins} y ? z : (x == y ? CT(0.5) * z : CT(0))", [x, y, g])
            if isinstance(x, Tensor):
                return launch(f"x {first_wins} alpha ? y : (x == alpha ? CT(0.5) * y : CT(0))", [x, g],
                              alpha=float(y))
            return launch(f"alpha {first_wins} x ? y : (x == alpha ? CT(0.5) * y : CT(0))", [y, g],
                          alpha=float(x))
        return (one(a, b) if ctx.needs[0] else None), (one(b, a) if ctx.needs[1] else None)
    return grads


add = _binary("add", "x + y", "x + alpha", "alpha + x", lambda ctx, g, a, b: (g, g))
sub = _binary("sub", "x - y", "x - alpha", "alpha - x",
              lambda ctx, g, a, b: (g, launch("-x", [g]) if ctx.needs[1] else None))
mul = _binary("mul", "x * y", "x * alpha", "alpha * x",
              lambda ctx, g, a, b: (_scaled(g, b, "x * y", "x * alpha") if ctx.needs[0] else None,
                                    _scaled(g, a, "x * y", "x * alpha") if ctx.needs[1] else None), saves=(0, 1))
div = _binary("div", "x / y", "x / alpha", "alpha / x", _div_grads, saves=(0, 1))
maximum = _binary("maximum", "hlx_max(x, y)", "hlx_max(x, alpha)", "hlx_max(alpha, x)", _extreme_grads(">"),
                  saves=(0, 1))
minimum = _binary("minimum", "hlx_min(x, y)", "hlx_min(x, alpha)", "hlx_min(alpha, x)", _extreme_grads("<"),
                  saves=(0, 1))


def _pow_backward(ctx, g):
    (x,) = ctx.saved
    e = ctx.args[1]
    return launch("y * alpha * hlx_pow(x, alpha - CT(1))", [x, g], alpha=float(e)), None


@differentiable(_pow_backward, saves=(0,))
def pow(x: Tensor, exponent) -> Tensor:  # noqa: A001 - mirrors torch.pow
    """``x ** exponent`` for a scalar exponent (float tensors)."""
    _require_float(x, "pow")
    e = _scalar_ok(x, exponent)
    if e == 2.0:
        return launch("x * x", [x])
    if e == 0.5:
        return launch("sqrt(x)", [x])
    if e == 1.0:
        return launch("x", [x])
    return launch("hlx_pow(x, alpha)", [x], alpha=e)


def _clamp_bounds(x: Tensor, min, max):  # noqa: A002
    if min is None and max is None:
        raise ValueError("clamp needs min or max")
    lo = -np.inf if min is None else _scalar_ok(x, min)
    hi = np.inf if max is None else _scalar_ok(x, max)
    return lo, hi


def _clamp_backward(ctx, g):
    (x,) = ctx.saved
    lo, hi = _clamp_bounds(x, ctx.args[1], ctx.args[2])
    return launch("(x >= alpha && x <= beta) ? y : CT(0)", [x, g], alpha=lo, beta=hi), None, None


@differentiable(_clamp_backward, saves=(0,))
def clamp(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - torch's names
    lo, hi = _clamp_bounds(x, min, max)
    if x.dtype.is_float:
        return launch("isnan(x) ? x : clamp(x, alpha, beta)", [x], alpha=lo, beta=hi)
    lo, hi = np.maximum(lo, -2**31), np.minimum(hi, 2**31 - 1)
    return launch("clamp(x, alpha, beta)", [x], alpha=lo, beta=hi)


def _where_backward(ctx, g):
    (cond,) = ctx.saved
    c = cond if cond.dtype is g.dtype else cast(cond, g.dtype)
    ga = reduce.sum_to_shape(launch("x != CT(0) ? y : CT(0)", [c, g]), ctx.shapes[1]) if ctx.needs[1] else None
    gb = reduce.sum_to_shape(launch("x != CT(0) ? CT(0) : y", [c, g]), ctx.shapes[2]) if ctx.needs[2] else None
    return None, ga, gb


@differentiable(_where_backward, saves=(0,))
def where(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``a`` where ``cond`` is nonzero, else ``b`` (all broadcast)."""
    if a.dtype is not b.dtype:
        raise errors.DTypeError(f"where: dtypes {a.dtype.name} and {b.dtype.name} do not match")
    c = cond if cond.dtype is a.dtype else cond.to(a.dtype)
    return launch("x != CT(0) ? y : z", [c, a, b])


def _compare(name: str):
    expr = COMPARE[name]

    def op(a, b) -> Tensor:
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            return launch(expr, [a, b], out_dtype=uint8)
        t, s = (a, b) if isinstance(a, Tensor) else (b, a)
        e = expr.replace("y", "alpha") if isinstance(a, Tensor) else expr.replace("x", "alpha").replace("y", "x")
        return launch(e, [t], out_dtype=uint8, alpha=_scalar_ok(t, s))
    op.__name__ = name
    return op


eq, ne, lt, le, gt, ge = (_compare(n) for n in COMPARE)


def _cast_backward(ctx, g):
    return (cast(g, ctx.dtypes[0]) if ctx.dtypes[0].is_float else None), None


@differentiable(_cast_backward)
def cast(x: Tensor, dtype) -> Tensor:
    """A copy converted to ``dtype`` (float to int truncates toward zero, as numpy's astype)."""
    dt = dtype_of(dtype)
    if dt is x.dtype:
        return copy(x)
    # Compute in the wider of the two kinds so integers survive a trip through float.
    if x.dtype.is_float and not dt.is_float:
        return launch(f"{compute_type(dt)}(x)", [x], out_dtype=dt)
    return launch("x", [x], out_dtype=dt)


@differentiable(lambda ctx, g: (reduce.sum_to_shape(g, ctx.shapes[0]), None))
def copy(x: Tensor, out: Tensor | None = None) -> Tensor:
    """A contiguous copy of ``x``, or a copy into ``out`` (broadcasting ``x``)."""
    return launch("x", [x], out=out, shape=None if out is None else out.shape)


__all__ = ["abs", "add", "broadcast_shapes", "cast", "clamp", "copy", "cos", "div", "eq", "exp", "ge", "gelu", "gt",
           "launch", "le", "log", "lt", "maximum", "minimum", "mul", "ne", "neg", "pow", "relu", "rsqrt", "sigmoid",
           "sin", "sqrt", "sub", "sum_to_shape", "tanh", "where"]
