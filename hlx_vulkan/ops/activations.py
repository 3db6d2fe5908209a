"""Activation functions beyond the core set, as torch.nn.functional has them: ``elu``, ``selu``,
``celu``, ``softplus``, ``mish``, ``hardswish``, ``hardsigmoid``, ``hardtanh``, ``relu6``,
``logsigmoid``, ``softsign``, and ``erf``. Each is one expression of the pointwise kernel with its
backward expression beside it; NaN propagates, as torch."""

from __future__ import annotations

from ..autograd.graph import differentiable
from .. import errors
from .pointwise import launch
from .tensor import Tensor

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
# log(1 + e) for e = exp(v) >= 0, accurate where e is tiny (Goldberg's log1p: the rounding of
# 1 + e cancels out).
_LOG1P_EXP = "(CT(1) + exp({v}) == CT(1) ? exp({v}) : log(CT(1) + exp({v})) * exp({v}) / ((CT(1) + exp({v})) - CT(1)))"


def _float(x: Tensor, name: str) -> None:
    if not x.dtype.is_float:
        raise errors.DTypeError(f"{name} needs a floating-point tensor, not {x.dtype.name}")


def _rule(grad_expr: str, nargs: int, alpha=None, beta=None):
    """A backward rule: ``grad_expr`` over (the saved input x, the gradient y); alpha and beta
    from the op's arguments by position (or constants)."""
    def backward(ctx, g):
        (x,) = ctx.saved
        a = ctx.args[alpha] if isinstance(alpha, int) else (alpha or 0.0)
        b = ctx.args[beta] if isinstance(beta, int) else (beta or 0.0)
        return (launch(grad_expr, [x, g], alpha=float(a), beta=float(b), out_dtype=g.dtype),) + (None,) * (nargs - 1)
    return backward


_ELU = "x > CT(0) ? x * beta : alpha * beta * (exp(x) - CT(1))"
_ELU_GRAD = "x > CT(0) ? y * beta : y * alpha * beta * exp(x)"


@differentiable(_rule(_ELU_GRAD, 3, 1, 2), saves=(0,))
def _elu(x: Tensor, alpha: float, scale: float) -> Tensor:
    return launch(_ELU, [x], alpha=float(alpha), beta=float(scale))


def elu(x: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere."""
    _float(x, "elu")
    return _elu(x, alpha, 1.0)


def selu(x: Tensor, inplace: bool = False) -> Tensor:
    """``scale * elu(x, alpha)`` with the self-normalising constants."""
    _float(x, "selu")
    return _elu(x, SELU_ALPHA, SELU_SCALE)


_CELU = "x > CT(0) ? x : alpha * (exp(x / alpha) - CT(1))"


@differentiable(_rule("x > CT(0) ? y : y * exp(x / alpha)", 2, 1), saves=(0,))
def _celu(x: Tensor, alpha: float) -> Tensor:
    return launch(_CELU, [x], alpha=float(alpha))


def celu(x: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    _float(x, "celu")
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0")
    return _celu(x, alpha)


_SOFTPLUS = "x * alpha > beta ? x : " + _LOG1P_EXP.format(v="x * alpha") + " / alpha"


@differentiable(_rule("x * alpha > beta ? y : y * hlx_sigmoid(x * alpha)", 3, 1, 2), saves=(0,))
def _softplus(x: Tensor, beta: float, threshold: float) -> Tensor:
    return launch(_SOFTPLUS, [x], alpha=float(beta), beta=float(threshold))


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta * x)) / beta``, and ``x`` itself where ``beta * x > threshold``."""
    _float(x, "softplus")
    return _softplus(x, beta, threshold)


# tanh(softplus(x)) = n / (n + 2) with n = e^x (e^x + 2): no cancellation for very negative x.
_TSP = "(x > CT(20) ? CT(1) : exp(x) * (exp(x) + CT(2)) / (exp(x) * (exp(x) + CT(2)) + CT(2)))"
_MISH = f"x * {_TSP}"
_MISH_GRAD = f"y * ({_TSP} + x * hlx_sigmoid(x) * (CT(1) - {_TSP} * {_TSP}))"


@differentiable(_rule(_MISH_GRAD, 1), saves=(0,))
def _mish(x: Tensor) -> Tensor:
    return launch(_MISH, [x])


def mish(x: Tensor, inplace: bool = False) -> Tensor:
    """``x * tanh(softplus(x))``."""
    _float(x, "mish")
    return _mish(x)


@differentiable(_rule("x <= CT(-3) ? CT(0) : (x < CT(3) ? y * (CT(2) * x + CT(3)) / CT(6) : y)", 1), saves=(0,))
def _hardswish(x: Tensor) -> Tensor:
    return launch("x * hlx_min(hlx_max(x + CT(3), CT(0)), CT(6)) / CT(6)", [x])  # torch's form: -inf gives NaN


def hardswish(x: Tensor, inplace: bool = False) -> Tensor:
    """``x * relu6(x + 3) / 6``."""
    _float(x, "hardswish")
    return _hardswish(x)


@differentiable(_rule("(x > CT(-3) && x < CT(3)) ? y / CT(6) : CT(0)", 1), saves=(0,))
def _hardsigmoid(x: Tensor) -> Tensor:
    return launch("x <= CT(-3) ? CT(0) : (x >= CT(3) ? CT(1) : x / CT(6) + CT(0.5))", [x])


def hardsigmoid(x: Tensor, inplace: bool = False) -> Tensor:
    """``relu6(x + 3) / 6``."""
    _float(x, "hardsigmoid")
    return _hardsigmoid(x)


@differentiable(_rule("(x > alpha && x < beta) ? y : CT(0)", 3, 1, 2), saves=(0,))
def _hardtanh(x: Tensor, min_val: float, max_val: float) -> Tensor:
    return launch("hlx_min(hlx_max(x, alpha), beta)", [x], alpha=float(min_val), beta=float(max_val))


def hardtanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """``x`` clamped to ``[min_val, max_val]``; the gradient is zero outside the open interval."""
    _float(x, "hardtanh")
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) is larger than max_val ({max_val})")
    return _hardtanh(x, min_val, max_val)


def relu6(x: Tensor, inplace: bool = False) -> Tensor:
    """``min(max(x, 0), 6)``."""
    return hardtanh(x, 0.0, 6.0)


@differentiable(_rule("y * hlx_sigmoid(-x)", 1), saves=(0,))
def _logsigmoid(x: Tensor) -> Tensor:
    return launch("-(-x > CT(20) ? -x : " + _LOG1P_EXP.format(v="-x") + ")", [x])


def logsigmoid(x: Tensor) -> Tensor:
    """``log(sigmoid(x))``, computed as ``-softplus(-x)`` (no overflow)."""
    _float(x, "logsigmoid")
    return _logsigmoid(x)


@differentiable(_rule("y / ((CT(1) + abs(x)) * (CT(1) + abs(x)))", 1), saves=(0,))
def _softsign(x: Tensor) -> Tensor:
    return launch("x / (CT(1) + abs(x))", [x])


def softsign(x: Tensor) -> Tensor:
    """``x / (1 + |x|)``."""
    _float(x, "softsign")
    return _softsign(x)


@differentiable(_rule("y * CT(1.1283791670955126) * exp(-x * x)", 1), saves=(0,))
def erf(x: Tensor) -> Tensor:
    """The error function (integer and bool inputs give float32, as torch)."""
    dt = x.dtype if x.dtype.is_float else None
    return launch("hlx_erf(x)", [x], out_dtype=dt or "float32", compute=dt or "float32")


__all__ = ["celu", "elu", "erf", "hardsigmoid", "hardswish", "hardtanh", "logsigmoid", "mish", "relu6", "selu",
           "softplus", "softsign"]
