"""Eager plans at the top of an elementwise op's chain: a repeated call with the same layouts goes
straight to "allocate the output, record the dispatch, wrap the tensor".

The first call of an op on given operand layouts runs the op as written (type promotion,
broadcasting, the pointwise launch and its plan, :mod:`hlx_vulkan.ops.pointwise`) while the
launch reports what it recorded. When that was exactly one launch over the op's own tensors, in
argument order, into a fresh output that the op returned as is, the launch's plan is kept under
a key holding everything the op's decisions depend on: the op, each tensor's geometry (dtype,
shape, strides, offset), a number's type and value (a zero's sign too), float16 arithmetic and
vector loads; strict mode has its own plans (``runtime.plans``), the runtime its integer dtype.
Where grad mode is on and an operand requires grad, the output is taped as the op's own
wrapper tapes it (:func:`hlx_vulkan.autograd.graph.tape`: the same node, saved residuals and
edges). Anything else (a bool or numpy scalar, an op that makes a temporary or raises) runs the
op as written each time, so results, gradients and the command stream are those of the written
path, dispatch for dispatch.
"""

from __future__ import annotations

import functools
import math
import threading

from .. import precision as _precision
from ..autograd import graph as _graph
from ..memory.tensor import TensorBuffer
from ..strict_mode import _state as _strict
from . import pointwise as _pw
from .tensor import Tensor

_grad = _graph._state
_ZERO_KEYS = _pw._ZERO_KEYS  # a zero scalar keys by its sign, as pointwise plans do


def _learn(op, rt, plans, key, args, inputs):
    """Run ``op(*args)`` as written; keep its launch's plan under ``key`` when it was one launch over
    ``inputs`` (the op's tensors, in order) into the fresh output it returned, and the only dispatch
    the stream recorded meanwhile (a plan's run, or another thread's op, makes no launch)."""
    tid = threading.get_ident()
    if tid in _pw.PROBES:  # an op learning inside another's forward: that one learns, not this
        return op(*args)
    probe = _pw.PROBES[tid] = []
    dispatches = rt.stream.dispatches
    try:
        result = op(*args)
    finally:
        del _pw.PROBES[tid]
    if len(probe) == 1 and rt.stream.dispatches == dispatches + 1:
        plan, launched, out_given, out = probe[0]
        if (not out_given and out is result and plan[0] is not None and len(launched) == len(inputs)
                and all(x is y for x, y in zip(launched, inputs))):
            plans[key] = plan
    return result


def binary(op):
    """``op(a, b)`` for tensors and Python numbers, through an eager plan where one is kept (and
    taped as ``op`` tapes, where it is differentiable and grad mode and an operand ask for it)."""
    differentiable = hasattr(op, "backward_rule")

    @functools.wraps(op)
    def fast(a, b):
        if isinstance(a, Tensor):
            t = a
            if isinstance(b, Tensor):
                key = (fast, a.buf.geometry, b.buf.geometry, _precision._float16_arithmetic, _pw.VECTOR)
                inputs = (a, b)
                taped = a.requires_grad or b.requires_grad
            else:
                tb = type(b)
                if tb is not float and tb is not int:
                    return op(a, b)
                key = (fast, a.buf.geometry, tb, b if b else _ZERO_KEYS[math.copysign(1.0, b) < 0],
                       _precision._float16_arithmetic, _pw.VECTOR)
                inputs = (a,)
                taped = a.requires_grad
        elif isinstance(b, Tensor):
            t = b
            ta = type(a)
            if ta is not float and ta is not int:
                return op(a, b)
            key = (fast, ta, a if a else _ZERO_KEYS[math.copysign(1.0, a) < 0], b.buf.geometry,
                   _precision._float16_arithmetic, _pw.VECTOR)
            inputs = (b,)
            taped = b.requires_grad
        else:
            return op(a, b)
        rt = t.runtime
        plans = rt._plans[_strict[0]]
        plan = plans.get(key)
        if plan is None:
            return _learn(op, rt, plans, key, (a, b), inputs)
        out = _run(rt, plan, inputs)
        if taped and differentiable and getattr(_grad, "enabled", True):
            _graph.tape(op, (a, b), out)
        return out
    return fast


def unary(op):
    """``op(x)`` through an eager plan where one is kept (taped as ``op`` tapes); ``op(x, ...)`` as written."""
    differentiable = hasattr(op, "backward_rule")

    @functools.wraps(op)
    def fast(x, *rest, **options):
        if rest or options or not isinstance(x, Tensor):  # copy(x, out=...) among them
            return op(x, *rest, **options)
        key = (fast, x.buf.geometry, _precision._float16_arithmetic, _pw.VECTOR)
        rt = x.runtime
        plans = rt._plans[_strict[0]]
        plan = plans.get(key)
        if plan is None:
            return _learn(op, rt, plans, key, (x,), (x,))
        out = _run(rt, plan, (x,))
        if x.requires_grad and differentiable and getattr(_grad, "enabled", True):
            _graph.tape(op, (x,), out)
        return out
    return fast


def _run(rt, plan, inputs) -> Tensor:
    # The plan was made by pointwise.launch through Runtime.run, which checked its grid and binding
    # order: the same allocation and the same dispatch, without the checks.
    kernel, shape, strides, dtype, push, groups, nbytes = plan
    mm = rt.memory
    buf = TensorBuffer.fresh(mm, mm.device_pool.allocate(nbytes), shape, dtype, strides, nbytes)
    out = Tensor(buf, rt)
    if len(inputs) == 2:
        allocations = [buf._allocation, inputs[0].buf.allocation, inputs[1].buf.allocation]
    else:
        allocations = [buf._allocation, inputs[0].buf.allocation]
    rt.stream.dispatch(kernel, allocations, push, groups)
    return out


__all__ = ["binary", "unary"]
