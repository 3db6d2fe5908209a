"""The mean cross-entropy of class indices as one taped op, replayed from dispatch traces.

``cross_entropy(logits, target)`` with ``reduction="mean"`` is four dispatches forward (the fused
rows, two flat sums, a division) and three nodes on the tape (rows, sum, division) whose
backward rules add three more. Its dispatches follow from the operands' layouts alone, so the
first call per layout runs those ops as they are, taped as usual, under a
:class:`~hlx_vulkan.runtime.trace.Tracer`; it keeps the trace and, from the three nodes, their
rules and contexts. Later calls replay the forward's dispatches and tape one node, whose backward
runs the three rules in the order the engine would (traced once too, then replayed): the same
kernels, push constants and order, hence the same bits, with none of the ops' Python between.
"""

from __future__ import annotations

from ..autograd.graph import Context, Node, is_grad_enabled
from ..memory import float32, int32, int64
from ..precision import float16_arithmetic
from ..runtime.trace import Tracer
from . import cross_entropy as fused
from . import elementwise as ew
from . import pointwise as pw
from . import reduce as red
from . import reduce_flat
from .tensor import Tensor

# Calls of one key traced without a plan (another thread's trace, a sync under memory pressure,
# a tape not the expected chain) before the key keeps to the composed ops: an int in place of a plan.
MAX_ATTEMPTS = 3


class _Plan:
    """The forward trace and, per node of the chain (division, sum, rows), its rule, its context
    less the saved tensors, and where its saved tensors are among the trace's outputs."""

    __slots__ = ("forward", "steps", "backward")

    def __init__(self, forward, steps):
        self.forward, self.steps, self.backward = forward, steps, {}


class _Ctx:
    """The one node's context: what the engine reads (needs, dtypes) and what the rules need."""

    __slots__ = ("saved", "needs", "dtypes", "plan")


def _settings() -> tuple:
    return (fused.FORCE_SCALAR, fused.FORCE_STREAM, reduce_flat.ENABLED, reduce_flat.FORCE_SCALAR,
            reduce_flat.SINGLE_PASS, reduce_flat.SINGLE_PASS_MAX, reduce_flat.GROUPS, pw.VECTOR, float16_arithmetic())


def applies(logits: Tensor, target, reduction: str) -> bool:
    """The calls this path takes: mean over float32 logits (N, C), N > 0, class indices already
    on the device as int32 or int64, both contiguous."""
    return (reduction == "mean" and logits.dtype is float32 and isinstance(target, Tensor)
            and (target.dtype is int32 or target.dtype is int64) and logits.ndim == 2 and logits.shape[0] > 0
            and target.shape == logits.shape[:1] and logits.is_contiguous() and target.is_contiguous())


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    rt = logits.runtime
    key = ("cross_entropy trace", logits.buf.geometry, target.buf.geometry, ignore_index, _settings())
    plan = rt.plans.get(key)
    taped = logits.requires_grad and is_grad_enabled()
    if type(plan) is int:
        if plan >= MAX_ATTEMPTS:
            return fused.composed(logits, target, "mean", ignore_index)
        return _first(rt, key, logits, target, ignore_index, plan)
    if plan is None or (taped and plan.steps is None):
        return _first(rt, key, logits, target, ignore_index, 0)
    outs = plan.forward.replay([logits.buf, target.buf])
    if outs is None:  # memory the trace kept is gone: trace again
        rt.plans.pop(key, None)
        return cross_entropy(logits, target, ignore_index)
    total = Tensor(outs[0], rt)
    if taped:
        ctx = _Ctx()
        ctx.saved = [Tensor(b, rt) for b in outs[1:]]
        ctx.needs, ctx.dtypes, ctx.plan = (True, False), (logits.dtype, target.dtype), plan
        total._node = Node("cross_entropy", _backward, ctx, [logits if logits._node is None else logits._node, None])
        total.requires_grad = True
    return total


def _first(rt, key, logits, target, ignore_index, attempts: int) -> Tensor:
    """The ops as they are, traced; the plan kept where the trace and the tape allow."""
    # Made (by host writes) before the trace, which a host write voids: the error words the rows
    # kernel binds, and the flat sums' election counter.
    rt.checks
    reduce_flat.election_counter(rt)
    with Tracer(rt, [logits.buf, target.buf]) as tracer:
        total = fused.composed(logits, target, "mean", ignore_index)
    steps = _chain(total, logits) if total.requires_grad else None
    saved = [t for step in steps for t in step[4]] if steps else []
    trace = tracer.finish([total.buf] + [t.buf for t in saved])
    if trace is None or (total.requires_grad and steps is None):
        rt.plans[key] = attempts + 1
        return total
    plan_steps = None
    if steps is not None:
        # Each node's saved tensors by their place among the trace's outputs (after the total).
        at, plan_steps = 1, []
        for rule, shapes, dtypes, args, saved_here in steps:
            plan_steps.append((rule, shapes, dtypes, args, tuple(range(at, at + len(saved_here)))))
            at += len(saved_here)
        plan_steps = tuple(plan_steps)
    # Traced without grad: no steps; the first call that tapes traces again.
    rt.plans[key] = _Plan(trace, plan_steps)
    return total


def _chain(total: Tensor, logits: Tensor):
    """(rule, shapes, dtypes, args, saved) of the division, sum and rows nodes, when the tape is
    exactly that chain ending at ``logits``; else None."""
    rules = (ew.div.backward_rule, red._sum.backward_rule, fused._rows.backward_rule)
    node, steps = total._node, []
    for i, rule in enumerate(rules):
        if node is None or node.backward is not rule or node.ctx is None:
            return None
        ctx = node.ctx
        if ctx.needs[0] is not True or any(ctx.needs[1:]) or ctx.dtypes[0] is not float32:
            return None
        steps.append((rule, ctx.shapes, ctx.dtypes, ctx.args, tuple(ctx.saved)))
        node = node.edges[0]
        if i < 2 and not isinstance(node, Node):
            return None
    return steps if node is (logits if logits._node is None else logits._node) else None


def _run_rules(steps, saved, g) -> Tensor:
    """The chain's rules in the engine's order, each gradient cast to its input's dtype as the engine does."""
    for rule, shapes, dtypes, args, where in steps:
        ctx = Context()
        ctx.saved = tuple(saved[i - 1] for i in where)
        ctx.shapes, ctx.dtypes, ctx.args = shapes, dtypes, args
        ctx.needs = (True,) + (False,) * (len(shapes) - 1)
        g = rule(ctx, g)[0]
        if g.dtype is not dtypes[0]:
            g = ew.cast(g, dtypes[0])
    return g


def _backward(ctx, g):
    plan, saved, rt = ctx.plan, ctx.saved, g.runtime
    key = g.buf.geometry
    trace = plan.backward.get(key)
    inputs = [g.buf] + [t.buf for t in saved]
    if trace is not None:
        outs = trace.replay(inputs)
        if outs is not None:
            return Tensor(outs[0], rt), None
    with Tracer(rt, inputs) as tracer:
        dx = _run_rules(plan.steps, saved, g)
    trace = tracer.finish([dx.buf])
    if trace is not None:
        plan.backward[key] = trace
    return dx, None


__all__ = ["applies", "cross_entropy"]
