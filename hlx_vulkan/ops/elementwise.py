"""Elementwise ops with numpy broadcasting and PyTorch's type promotion, each an expression run
by the pointwise kernel (:mod:`hlx_vulkan.ops.pointwise`), with its backward rule beside it.

Types follow ``torch.result_type``: tensors with dimensions decide within a category (bool <
integer < float); a 0-dim tensor or a Python number only matters when its category is higher,
so ``float16_tensor * 2.0`` stays float16 and ``int_tensor * 2.5`` is float32. ``/`` is true
division (integers give float32); ``//`` and ``%`` floor as Python does, and refuse an integer
zero divisor with ``ZeroDivisionError`` (as torch on CPU). Comparisons give ``bool``.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..autograd.graph import differentiable
from ..memory import DType, bool_, category, dtype_of, float32, int32, int64, promote_types
from . import eager, reduce
from .pointwise import broadcast_shapes, compute_type, launch, scalar_fits
from .tensor import Tensor, default_int_dtype, from_numpy

# --- the op table ---------------------------------------------------------------------------
# Each differentiable op names its backward as an expression over (saved value x, gradient y),
# run by the same kernel; the saved value is the op's input ("in") or output ("out").
UNARY_FLOAT = {
    "exp": ("exp(x)", "y * x", "out"), "log": ("log(x)", "y / x", "in"),
    "sqrt": ("sqrt(x)", "y * CT(0.5) / x", "out"), "rsqrt": ("inversesqrt(x)", "y * CT(-0.5) * x * x * x", "out"),
    "tanh": ("hlx_tanh(x)", "y * (CT(1) - x * x)", "out"),
    "sigmoid": ("hlx_sigmoid(x)", "y * x * (CT(1) - x)", "out"),
    "sin": ("sin(x)", "y * cos(x)", "in"), "cos": ("cos(x)", "-y * sin(x)", "in"),
    "silu": ("x * hlx_sigmoid(x)", "y * hlx_sigmoid(x) * (CT(1) + x * (CT(1) - hlx_sigmoid(x)))", "in"),
    "reciprocal": ("CT(1) / x", "-y * x * x", "out"),
}
GELU = {"tanh": ("hlx_gelu_tanh(x)", "y * hlx_gelu_tanh_grad(x)"),
        "none": ("hlx_gelu_erf(x)", "y * hlx_gelu_erf_grad(x)")}
COMPARE = {"eq": "x == y", "ne": "x != y", "lt": "x < y", "le": "x <= y", "gt": "x > y", "ge": "x >= y"}
# Rounding and sign: integers pass through unchanged; the gradient is zero almost everywhere.
STEP = {"floor": "floor(x)", "ceil": "ceil(x)", "round": "roundEven(x)", "trunc": "trunc(x)"}


def _is_number(v) -> bool:
    return isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)) and not isinstance(v, Tensor)


def _number(v):
    if not _is_number(v):
        raise TypeError(f"expected a tensor or a number, not {type(v).__name__}")
    return v.item() if isinstance(v, np.generic) else v


def _runtime(*operands):
    return next(o.runtime for o in operands if isinstance(o, Tensor))


def _scalar_dtype(v, rt) -> DType:
    if isinstance(v, (bool, np.bool_)):
        return bool_
    if isinstance(v, (int, np.integer)):
        return default_int_dtype(rt)
    return float32


def result_type(*operands) -> DType:
    """The dtype an op over ``operands`` (tensors and Python numbers) computes in, as
    ``torch.result_type``: tensors with dimensions first, then 0-dim tensors, then numbers,
    a later group counting only where its category is higher."""
    if len(operands) == 2:  # the common cases, without the general walk
        a, b = operands
        if isinstance(a, Tensor):
            if isinstance(b, Tensor):
                if a.dtype is b.dtype:
                    return a.dtype
            elif a.dtype.is_float and isinstance(b, (float, int)) and a.ndim:
                return a.dtype
    rt = _runtime(*operands)
    groups = ([o.dtype for o in operands if isinstance(o, Tensor) and o.ndim],
              [o.dtype for o in operands if isinstance(o, Tensor) and not o.ndim],
              [_scalar_dtype(_number(o), rt) for o in operands if o is not None and not isinstance(o, Tensor)])
    result = None
    for group in groups:
        if not group:
            continue
        g = group[0]
        for d in group[1:]:
            g = promote_types(g, d)
        if result is None or category(g) > category(result):
            result = g
    return result


def _float_of(dt: DType) -> DType:
    """The dtype a floating-point op computes in: the dtype itself, or float32 for integers and bool."""
    return dt if dt.is_float else float32


def _require_float(t: Tensor, name: str) -> None:
    if not t.dtype.is_float:
        raise errors.DTypeError(f"{name} needs a floating-point tensor, not {t.dtype.name}")


def _as_tensor(value, dt: DType, rt) -> Tensor:
    """A Python number as a 0-dim tensor (for scalars the kernel's 32-bit scalar cannot hold)."""
    return from_numpy(np.array(value, dt.numpy), dt, rt)


def _pair(exprs, a, b, compute: DType, out_dtype: DType | None = None) -> Tensor:
    """``exprs`` = (over x and y, over x and alpha, over alpha and x) for a tensor/number pair."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return launch(exprs[0], [a, b], out_dtype=out_dtype, compute=compute)
    t, s, expr = (a, _number(b), exprs[1]) if isinstance(a, Tensor) else (b, _number(a), exprs[2])
    if compute.is_float or scalar_fits(s, compute_type(compute)):
        return launch(expr, [t], out_dtype=out_dtype, compute=compute, alpha=s)
    if compute is not int64:
        raise errors.DTypeError(f"the number {s!r} cannot be converted to {compute.name} without overflow")
    st = _as_tensor(s, compute, t.runtime)
    return launch(exprs[0], [t, st] if t is a else [st, t], out_dtype=out_dtype, compute=compute)


def _saved_grad_rule(grad_expr: str):
    def backward(ctx, g):
        (saved,) = ctx.saved
        return (launch(grad_expr, [saved, g]),) + (None,) * (len(ctx.needs) - 1)
    return backward


def unary(name: str):
    expr, grad_expr, saves = UNARY_FLOAT[name]

    @differentiable(_saved_grad_rule(grad_expr), saves=("out",) if saves == "out" else (0,))
    def op(x: Tensor) -> Tensor:
        dt = _float_of(x.dtype)
        return launch(expr, [x], out_dtype=dt, compute=dt)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name} (integer and bool inputs give float32, as torch)."
    return op


exp, log, sqrt, rsqrt, tanh, sigmoid, sin, cos, silu, reciprocal = (unary(n) for n in UNARY_FLOAT)


def _refuse_bool(x: Tensor, what: str, instead: str) -> None:
    if x.dtype is bool_:
        raise errors.DTypeError(f"{what} on a bool tensor is not supported (as torch); use {instead} instead")


@differentiable(lambda ctx, g: (launch("-x", [g]),))
def neg(x: Tensor) -> Tensor:
    _refuse_bool(x, "negation, the - operator,", "~ or logical_not()")
    return launch("-x", [x])


@differentiable(_saved_grad_rule("x > CT(0) ? y : (x < CT(0) ? -y : CT(0))"), saves=(0,))
def abs(x: Tensor) -> Tensor:  # noqa: A001 - mirrors torch.abs
    return launch("x", [x]) if compute_type(x.dtype) == "uint" else launch("abs(x)", [x])


RELU_GRAD = "x > CT(0) ? y : CT(0)"  # relu's rule over its output x and the gradient y


@differentiable(_saved_grad_rule(RELU_GRAD), saves=("out",))
def relu(x: Tensor) -> Tensor:
    """max(x, 0); NaN stays NaN, as torch."""
    return launch("(x < CT(0) ? CT(0) : x)", [x])


def _leaky_relu_backward(ctx, g):
    (x,) = ctx.saved
    return launch("x > CT(0) ? y : y * alpha", [x, g], alpha=float(ctx.args[1])), None


@differentiable(_leaky_relu_backward, saves=(0,))
def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """``x`` where positive, ``negative_slope * x`` elsewhere (torch.nn.functional.leaky_relu)."""
    _require_float(x, "leaky_relu")
    return launch("x > CT(0) ? x : x * alpha", [x], alpha=float(negative_slope))


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


def _step(name: str):
    @differentiable(lambda ctx, g: (launch("CT(0)", [g]),))
    def op(x: Tensor) -> Tensor:
        return launch(STEP[name], [x]) if x.dtype.is_float else launch("x", [x])
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name} (integers unchanged); its gradient is zero."
    return op


floor, ceil, round, trunc = (_step(n) for n in STEP)  # noqa: A001 - torch's names


@differentiable(lambda ctx, g: (launch("CT(0)", [g]),))
def sign(x: Tensor) -> Tensor:
    """-1, 0 or 1 by the sign of ``x`` (NaN gives 0, as torch)."""
    return launch("CT(x > CT(0)) - CT(x < CT(0))", [x]) if x.dtype.kind != "uint" else launch("CT(x != CT(0))", [x])


def _predicate(float_expr: str, other: str):
    def op(x: Tensor) -> Tensor:
        return launch(float_expr if x.dtype.is_float else other, [x], out_dtype=bool_)
    return op


isnan = _predicate("isnan(x)", "false")
isinf = _predicate("isinf(x)", "false")
isfinite = _predicate("!(isnan(x) || isinf(x))", "true")
isnan.__doc__, isinf.__doc__, isfinite.__doc__ = ("Where ``x`` is NaN (bool).", "Where ``x`` is +-inf (bool).",
                                                    "Where ``x`` is neither NaN nor infinite (bool).")


def _binary(name: str, exprs, grads, saves=(), compute=None, out=None):
    """A binary op over tensors and numbers; ``grads(ctx, g, a, b)`` gives the broadcast gradients
    for ``a`` and ``b`` (either may be a number, whose gradient is not asked for). ``compute``
    and ``out`` map the promoted dtype to the one the op computes in and the result's."""
    def backward(ctx, g):
        saved = dict(zip(saves, ctx.saved))
        a = saved.get(0, ctx.args[0])
        b = saved.get(1, ctx.args[1])
        ga, gb = grads(ctx, g, a, b)
        return (reduce.sum_to_shape(ga, ctx.shapes[0]) if ctx.needs[0] else None,
                reduce.sum_to_shape(gb, ctx.shapes[1]) if ctx.needs[1] else None)

    # Both operands are saved when either rule needs them: a number saves nothing.
    @differentiable(backward, saves=saves)
    def op(a, b) -> Tensor:
        dt = result_type(a, b)
        cdt = compute(dt) if compute is not None else dt
        return _pair(exprs, a, b, cdt, out(dt) if out is not None else cdt)
    op.__name__ = op.__qualname__ = name
    return op


def _scaled(g: Tensor, other, expr: str, expr_scalar: str) -> Tensor:
    """``expr`` over (other, g) for a tensor ``other``; ``expr_scalar`` with alpha = other otherwise."""
    if isinstance(other, Tensor):
        return launch(expr, [other, g], out_dtype=g.dtype)
    return launch(expr_scalar, [g], alpha=float(other))


def _div_grads(ctx, g, a, b):
    ga = _scaled(g, b, "y / x", "x / alpha") if ctx.needs[0] else None
    if not ctx.needs[1]:
        return ga, None
    gb = launch("-z * x / (y * y)", [a, b, g], out_dtype=g.dtype) if isinstance(a, Tensor) else \
        launch("-y * alpha / (x * x)", [b, g], alpha=float(a), out_dtype=g.dtype)
    return ga, gb


def _extreme_grads(first_wins: str):
    # Ties split the gradient evenly, as torch.maximum does.
    def grads(ctx, g, a, b):
        def one(x, y):
            if isinstance(y, Tensor) and isinstance(x, Tensor):
                return launch(f"x {first_wins} y ? z : (x == y ? CT(0.5) * z : CT(0))", [x, y, g], out_dtype=g.dtype)
            if isinstance(x, Tensor):
                return launch(f"x {first_wins} alpha ? y : (x == alpha ? CT(0.5) * y : CT(0))", [x, g],
                              alpha=float(y), out_dtype=g.dtype)
            return launch(f"alpha {first_wins} x ? y : (x == alpha ? CT(0.5) * y : CT(0))", [y, g],
                          alpha=float(x), out_dtype=g.dtype)
        return (one(a, b) if ctx.needs[0] else None), (one(b, a) if ctx.needs[1] else None)
    return grads


def _no_bool_sub(dt: DType) -> DType:
    if dt is bool_:
        raise errors.DTypeError("subtraction, the - operator, with two bools is not supported (as torch); use ^ or "
                                "logical_xor() instead")
    return dt


add = _binary("add", ("x + y", "x + alpha", "alpha + x"), lambda ctx, g, a, b: (g, g))
sub = _binary("sub", ("x - y", "x - alpha", "alpha - x"),
              lambda ctx, g, a, b: (g, launch("-x", [g]) if ctx.needs[1] else None), compute=_no_bool_sub)
mul = _binary("mul", ("x * y", "x * alpha", "alpha * x"),
              lambda ctx, g, a, b: (_scaled(g, b, "x * y", "x * alpha") if ctx.needs[0] else None,
                                    _scaled(g, a, "x * y", "x * alpha") if ctx.needs[1] else None), saves=(0, 1))
div = _binary("div", ("x / y", "x / alpha", "alpha / x"), _div_grads, saves=(0, 1), compute=_float_of)
maximum = _binary("maximum", ("hlx_max(x, y)", "hlx_max(x, alpha)", "hlx_max(alpha, x)"), _extreme_grads(">"),
                  saves=(0, 1))
minimum = _binary("minimum", ("hlx_min(x, y)", "hlx_min(x, alpha)", "hlx_min(alpha, x)"), _extreme_grads("<"),
                  saves=(0, 1))
add.__doc__ = "``a + b`` with broadcasting and type promotion."
sub.__doc__ = "``a - b`` (refused for two bools, as torch)."
mul.__doc__ = "``a * b`` with broadcasting and type promotion."
div.__doc__ = "True division ``a / b``: integers give float32; a zero divisor gives inf or nan."
maximum.__doc__ = "The larger of ``a`` and ``b``; NaN wins, as torch.maximum."
minimum.__doc__ = "The smaller of ``a`` and ``b``; NaN wins, as torch.minimum."


def _check_divisor(b) -> None:
    """Integer division by zero raises, as Python and torch on CPU do (a device divisor is read
    back: a sync point)."""
    if isinstance(b, Tensor):
        if not b.dtype.is_float and b.numel() and bool(reduce.any(eq(b, 0)).item()):
            raise errors.DivisionByZeroError("integer division by zero (a divisor tensor holds a 0)")
    elif _number(b) == 0:
        raise errors.DivisionByZeroError("integer division by zero")


def _floor_like(name: str, fn: str):
    zero_grad = _binary(name, (f"{fn}(x, y)", f"{fn}(x, alpha)", f"{fn}(alpha, x)"),
                        lambda ctx, g, a, b: (launch("CT(0)", [g]), launch("CT(0)", [g])))

    def op(a, b) -> Tensor:
        if not result_type(a, b).is_float:
            _check_divisor(b)
        return zero_grad(a, b)
    op.__name__ = op.__qualname__ = name
    return op


floor_divide = _floor_like("floor_divide", "hlx_floordiv")
floor_divide.__doc__ = ("``a // b``: the floor of the quotient (Python's rule, as torch); an integer zero divisor "
                        "raises ZeroDivisionError, which reads a divisor tensor back (a sync point).")


def _remainder_grads(ctx, g, a, b):
    gb = None
    if ctx.needs[1]:  # d(a - b * floor(a / b)) / db = -floor(a / b)
        gb = launch("-hlx_floordiv(x, y) * z", [a, b, g], out_dtype=g.dtype) if isinstance(a, Tensor) else \
            launch("-hlx_floordiv(alpha, x) * y", [b, g], alpha=float(a), out_dtype=g.dtype)
    return g, gb


_remainder = _binary("remainder", ("hlx_mod(x, y)", "hlx_mod(x, alpha)", "hlx_mod(alpha, x)"), _remainder_grads,
                     saves=(0, 1))


def remainder(a, b) -> Tensor:
    """``a % b`` with the divisor's sign (Python's rule, as torch.remainder); an integer zero divisor
    raises ZeroDivisionError (a sync point for a divisor tensor). Floats: ``a - b * floor(a / b)``."""
    if not result_type(a, b).is_float:
        _check_divisor(b)
    return _remainder(a, b)


def _bits(name: str, op: str):
    def fn(a, b) -> Tensor:
        dt = result_type(a, b)
        if dt.is_float:
            raise errors.DTypeError(f"{name} needs integer or bool tensors, not {dt.name}")
        return _pair((f"x {op} y", f"x {op} alpha", f"alpha {op} x"), a, b, dt)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``a {op} b`` on integers; logical on bools."
    return fn


bitwise_and, bitwise_or, bitwise_xor = _bits("bitwise_and", "&"), _bits("bitwise_or", "|"), _bits("bitwise_xor", "^")


def bitwise_not(x: Tensor) -> Tensor:
    """``~x``: logical not for bool, bitwise not for integers."""
    if x.dtype.is_float:
        raise errors.DTypeError(f"~ needs an integer or bool tensor, not {x.dtype.name}")
    return launch("x == CT(0)", [x], out_dtype=bool_) if x.dtype is bool_ else launch("~x", [x])


def _bool_op(name: str, expr: str, doc: str):
    """A binary op with a bool result: ``expr`` over (x, y) after type promotion, either may be a number."""
    def op(a, b) -> Tensor:
        return _pair((expr, expr.replace("y", "alpha"), expr.replace("x", "alpha").replace("y", "x")), a, b,
                     result_type(a, b), bool_)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


def _logical(name: str, expr: str):
    return _bool_op(name, expr, f"Elementwise {name.replace('_', ' ')} of the truth values (nonzero is true); "
                                "bool result.")


logical_and = _logical("logical_and", "(x != CT(0)) && (y != CT(0))")
logical_or = _logical("logical_or", "(x != CT(0)) || (y != CT(0))")
logical_xor = _logical("logical_xor", "(x != CT(0)) != (y != CT(0))")


def logical_not(x: Tensor) -> Tensor:
    """Where ``x`` is zero (bool)."""
    return launch("x == CT(0)", [x], out_dtype=bool_)


def _pow_scalar_backward(ctx, g):
    (x,) = ctx.saved
    e = float(ctx.args[1])
    if e == 0.0:  # torch: the gradient of x ** 0 is 0, also at x == 0
        return launch("CT(0)", [g]), None, None
    if e == 1.0:
        return g, None, None
    if e == 2.0:
        return launch("y * CT(2) * x", [x, g], out_dtype=g.dtype), None, None
    return launch("y * alpha * hlx_pow(x, alpha - CT(1))", [x, g], alpha=e, out_dtype=g.dtype), None, None


@differentiable(_pow_scalar_backward, saves=(0,))
def _pow_scalar(x: Tensor, e: float, dt: DType) -> Tensor:
    if e == 2.0:
        return launch("x * x", [x], compute=dt)
    if e == 0.5:
        return launch("sqrt(x)", [x], compute=dt)
    if e == 1.0:
        return launch("x", [x], compute=dt)
    return launch("hlx_pow(x, alpha)", [x], alpha=e, compute=dt)


def _pow_tensor_backward(ctx, g):
    x, e, out = ctx.saved
    gx = ge = None
    if ctx.needs[0]:  # x and e are both tensors here; torch: zero where the exponent is 0
        gx = launch("y == CT(0) ? CT(0) : z * y * hlx_pow(x, y - CT(1))", [x, e, g], out_dtype=g.dtype)
    if ctx.needs[1]:  # d(x ** e)/de = x ** e * log(x), zero where x == 0 and e >= 0 (torch)
        if isinstance(x, Tensor):
            ge = launch("(x == CT(0) && y >= CT(0)) ? CT(0) : z * y * log(x)", [x, out, g], out_dtype=g.dtype)
        else:
            ge = launch("alpha == CT(0) ? CT(0) : y * x * log(alpha)", [out, g], alpha=float(x), out_dtype=g.dtype)
    return (reduce.sum_to_shape(gx, ctx.shapes[0]) if gx is not None else None,
            reduce.sum_to_shape(ge, ctx.shapes[1]) if ge is not None else None, None)


@differentiable(_pow_tensor_backward, saves=(0, 1, "out"))
def _pow_tensors(x, exponent, dt: DType) -> Tensor:
    return _pair(("hlx_pow(x, y)", "hlx_pow(x, alpha)", "hlx_pow(alpha, x)"), x, exponent, dt)


def pow(x, exponent) -> Tensor:  # noqa: A001 - mirrors torch.pow
    """``x ** exponent``: a tensor or number on either side (numbers do not upcast tensors). An
    integer tensor to a non-negative integer power stays integer; a negative one is refused."""
    dt = result_type(x, exponent)
    if not dt.is_float:
        if not isinstance(exponent, Tensor) and _number(exponent) < 0:
            raise errors.DTypeError("integers to negative integer powers are not allowed (as torch)")
        return _pair(("hlx_ipow(x, y)", "hlx_ipow(x, alpha)", "hlx_ipow(alpha, x)"), x, exponent, dt)
    if isinstance(x, Tensor) and not isinstance(exponent, Tensor):
        return _pow_scalar(x, float(_number(exponent)), dt)
    return _pow_tensors(x, exponent, dt)


def _clamp_backward(ctx, g):
    x = ctx.saved[0]
    lo, hi = ctx.args[1], ctx.args[2]
    lo = -np.inf if lo is None else float(lo)
    hi = np.inf if hi is None else float(hi)
    return launch("(x >= alpha && x <= beta) ? y : CT(0)", [x, g], alpha=lo, beta=hi, out_dtype=g.dtype), None, None


@differentiable(_clamp_backward, saves=(0,))
def _clamp(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002
    dt = result_type(x, min, max)
    if min is not None and max is not None:
        return launch("hlx_min(hlx_max(x, alpha), beta)", [x], alpha=min, beta=max, compute=dt)
    if min is not None:
        return launch("hlx_max(x, alpha)", [x], alpha=min, compute=dt)
    return launch("hlx_min(x, alpha)", [x], alpha=max, compute=dt)


def clamp(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - torch's names
    """``x`` limited to [min, max] (either may be left out, or a tensor); NaN in ``x`` or a bound
    propagates, as torch; where min > max the result is max."""
    if min is None and max is None:
        raise ValueError("clamp needs min or max")
    bounds = [b for b in (min, max) if b is not None]
    ct = compute_type(result_type(x, *bounds))
    if any(isinstance(b, Tensor) or not scalar_fits(_number(b), ct) for b in bounds):
        out = x if min is None else maximum(x, min)
        return out if max is None else minimum(out, max)
    return _clamp(x, None if min is None else _number(min), None if max is None else _number(max))


def _where_backward(ctx, g):
    (cond,) = ctx.saved
    ga = reduce.sum_to_shape(launch("x != CT(0) ? y : CT(0)", [cond, g], out_dtype=g.dtype), ctx.shapes[1]) \
        if ctx.needs[1] else None
    gb = reduce.sum_to_shape(launch("x != CT(0) ? CT(0) : y", [cond, g], out_dtype=g.dtype), ctx.shapes[2]) \
        if ctx.needs[2] else None
    return None, ga, gb


@differentiable(_where_backward, saves=(0,))
def _where(cond: Tensor, a, b) -> Tensor:
    dt = result_type(a, b)
    ct = compute_type(dt)
    a, b = (_as_tensor(_number(v), dt, cond.runtime) if not isinstance(v, Tensor) and not scalar_fits(_number(v), ct)
            else v for v in (a, b))
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return launch("x != CT(0) ? y : z", [cond, a, b], compute=dt)
    if isinstance(a, Tensor):
        return launch("x != CT(0) ? y : alpha", [cond, a], alpha=_number(b), compute=dt)
    if isinstance(b, Tensor):
        return launch("x != CT(0) ? alpha : y", [cond, b], alpha=_number(a), compute=dt)
    return launch("x != CT(0) ? alpha : beta", [cond], alpha=_number(a), beta=_number(b), compute=dt)


def where(cond: Tensor, a=None, b=None):
    """``a`` where ``cond`` is true, else ``b`` (all broadcast; ``a`` and ``b`` may be numbers;
    the result type promotes as torch.where's). ``where(cond)`` alone is torch's
    ``nonzero(cond, as_tuple=True)``: one int64 index tensor per dim (a sync point)."""
    if not isinstance(cond, Tensor):
        raise TypeError(f"where needs a condition tensor, not {type(cond).__name__}")
    if a is None and b is None:
        from .shape import nonzero
        found = nonzero(cond)
        return tuple(found[:, d] for d in range(cond.ndim))
    if a is None or b is None:
        raise TypeError("where takes a condition alone, or a condition and two values")
    if cond.dtype is not bool_:
        cond = ne(cond, 0)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):  # two numbers: torch's dtype for them
        rt = cond.runtime
        a = _as_tensor(_number(a), promote_types(_scalar_dtype(_number(a), rt), _scalar_dtype(_number(b), rt)), rt)
    return _where(cond, a, b)


def masked_fill(x: Tensor, mask: Tensor, value) -> Tensor:
    """``x`` with ``value`` where ``mask`` is true (mask broadcasts; the result keeps ``x``'s dtype,
    so a float value in an integer tensor truncates, as torch)."""
    if isinstance(value, Tensor):
        if value.ndim:
            raise errors.ShapeError(f"masked_fill takes a number or a 0-dim tensor, not shape {value.shape}")
        value = cast(value, x.dtype) if value.dtype is not x.dtype else value
    out = where(mask, value, x)  # a float into an integer tensor truncates, as torch
    return out if out.dtype is x.dtype else cast(out, x.dtype)


def isclose(a, b, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> Tensor:
    """Where ``|a - b| <= atol + rtol * |b|`` (bool), as torch.isclose; infinities match themselves."""
    dt = _float_of(result_type(a, b))
    nan = "(isnan(x) && isnan(y))" if equal_nan else "false"
    expr = (f"(x == y) || {nan} || (!isinf(x) && !isinf(y) && abs(x - y) <= CT({float(atol)!r}) + "
            f"CT({float(rtol)!r}) * abs(y))")
    if not isinstance(b, Tensor):
        b = _as_tensor(_number(b), dt, a.runtime)
    return launch(expr, [a, b], out_dtype=bool_, compute=dt)


def allclose(a, b, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
    """Whether :func:`isclose` holds everywhere (a sync point)."""
    return bool(reduce.all(isclose(a, b, rtol, atol, equal_nan)).item())


def _compare(name: str):
    expr = COMPARE[name]
    return _bool_op(name, expr, f"Elementwise ``{expr.replace('x', 'a').replace('y', 'b')}`` after type promotion; "
                                "bool result.")


eq, ne, lt, le, gt, ge = (_compare(n) for n in COMPARE)


def _cast_backward(ctx, g):
    return (cast(g, ctx.dtypes[0]) if ctx.dtypes[0].is_float else None), None


@differentiable(_cast_backward)
def cast(x: Tensor, dtype) -> Tensor:
    """A copy converted to ``dtype`` (float to int truncates toward zero, as torch; anything to bool
    is ``x != 0``)."""
    dt = dtype_of(dtype)
    if dt is x.dtype:
        return copy(x)
    if dt is bool_:
        return launch("x != CT(0)", [x], out_dtype=dt)
    # Compute in the wider of the two kinds so integers survive a trip through float.
    if x.dtype.is_float and not dt.is_float:
        conv = {"uint8": "uint(int(x))", "uint32": "uint(x)"}.get(dt.name, f"{compute_type(dt)}(x)")
        return launch(conv, [x], out_dtype=dt)
    return launch("x", [x], out_dtype=dt)


@differentiable(lambda ctx, g: (reduce.sum_to_shape(g, ctx.shapes[0]), None))
def copy(x: Tensor, out: Tensor | None = None) -> Tensor:
    """A contiguous copy of ``x``, or a copy into ``out`` (broadcasting ``x``)."""
    return launch("x", [x], out=out, shape=None if out is None else out.shape)


# The eager plans' front (ops/eager.py): a repeated call on the same layouts skips to the dispatch.
add, sub, mul, div, maximum, minimum, eq, ne, lt, le, gt, ge = (
    eager.binary(op) for op in (add, sub, mul, div, maximum, minimum, eq, ne, lt, le, gt, ge))
(exp, log, sqrt, rsqrt, tanh, sigmoid, sin, cos, silu, reciprocal, neg, abs, relu, floor, ceil, round, trunc, sign,
 copy) = (eager.unary(op) for op in (exp, log, sqrt, rsqrt, tanh, sigmoid, sin, cos, silu, reciprocal, neg, abs, relu,
                                     floor, ceil, round, trunc, sign, copy))  # noqa: A001

__all__ = ["abs", "add", "allclose", "bitwise_and", "bitwise_not", "bitwise_or", "bitwise_xor", "broadcast_shapes",
           "cast", "ceil", "clamp", "copy", "cos", "div", "eq", "exp", "floor", "floor_divide", "ge", "gelu", "gt",
           "isclose", "isfinite", "isinf", "isnan", "launch", "le", "leaky_relu", "log", "logical_and", "logical_not",
           "logical_or", "logical_xor", "lt", "masked_fill", "maximum", "minimum", "mul", "ne", "neg", "pow",
           "reciprocal", "relu", "remainder", "result_type", "round", "rsqrt", "sigmoid", "sign", "silu", "sin", "sqrt",
           "sub", "tanh", "trunc", "where"]
