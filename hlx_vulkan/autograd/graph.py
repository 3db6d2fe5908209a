"""The autograd tape: grad mode, graph nodes, and the decorator that makes an op differentiable.

This module sits below the ops: an op declares its backward rule and its saved
residuals with :func:`differentiable`; the engine that walks the graph
(:mod:`hlx_vulkan.autograd.engine`) sits above them.

A node is made only when grad mode is on and some tensor argument requires
grad, so inference pays one flag test per op. The forward of a differentiable
op runs with grad mode off, so the ops it is built from are not taped twice.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading

_state = threading.local()
_sequence = itertools.count()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


def set_grad_enabled(flag: bool) -> bool:
    """Turn taping on or off for this thread; returns the previous setting."""
    previous = is_grad_enabled()
    _state.enabled = bool(flag)
    return previous


class _GradMode:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._previous: list[bool] = []

    def __enter__(self):
        self._previous.append(set_grad_enabled(self.enabled))
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._previous.pop())
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with _GradMode(self.enabled):
                return fn(*args, **kwargs)
        return wrapped


def no_grad() -> _GradMode:
    """Context manager (and decorator) that records no graph.

    Example::

        with hv.no_grad():
            w -= lr * w.grad
    """
    return _GradMode(False)


def enable_grad() -> _GradMode:
    return _GradMode(True)


class Context:
    """What a backward rule sees: the saved residuals, the inputs' shapes and dtypes,
    the op's non-tensor arguments (every parameter, by position, defaults filled in;
    None where a tensor was passed), and which inputs need a gradient."""

    __slots__ = ("saved", "shapes", "dtypes", "args", "needs")

    def saved_tensors(self):
        return self.saved


class Node:
    """One taped op: its backward rule, its context, and an edge per tensor argument.

    An edge is None (no grad needed), a leaf tensor (grad goes to ``.grad``) or
    another node. ``seq`` orders nodes by creation, which is a topological order.
    """

    __slots__ = ("name", "backward", "ctx", "edges", "seq")

    def __init__(self, name, backward, ctx, edges):
        self.name = name
        self.backward = backward
        self.ctx = ctx
        self.edges = edges
        self.seq = next(_sequence)

    def __repr__(self) -> str:
        return f"<{self.name}Backward #{self.seq}>"


_backward_pass = None


def set_backward_pass(fn) -> None:
    """Install the backward pass (``hlx_vulkan.autograd.engine`` does, when imported)."""
    global _backward_pass
    _backward_pass = fn


def run_backward(tensor, gradient=None, retain_graph: bool = False) -> None:
    """``tensor.backward()``: the engine sits above the ops, so Tensor reaches it through here."""
    if _backward_pass is None:
        raise RuntimeError("the autograd engine is not loaded; import hlx_vulkan")
    _backward_pass(tensor, gradient, retain_graph)


def _is_tensor(x) -> bool:
    return hasattr(x, "_node") and hasattr(x, "requires_grad")


# The tensor class, once it registers itself (ops/tensor.py, which sits above this module): the
# taping loop then tests arguments with one isinstance instead of two attribute probes.
_tensor_type: type | None = None


def set_tensor_type(cls: type) -> None:
    global _tensor_type
    _tensor_type = cls


def _edge(t):
    if not _is_tensor(t) or not t.requires_grad:
        return None
    return t._node if t._node is not None else t


class _Positional:
    """Turns a call's arguments into one tuple holding every parameter by position."""

    def __init__(self, fn):
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.names = [p.name for p in params]
        self.varargs = any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(fn).parameters.values())
        self.defaults = [p.default for p in params]
        self.fn = fn.__name__

    def __len__(self) -> int:
        return len(self.names)

    def __call__(self, args, kwargs):
        if len(args) > len(self.names) and not self.varargs:
            raise TypeError(f"{self.fn}() takes {len(self.names)} arguments, {len(args)} were given")
        full = list(args) + self.defaults[len(args):]
        if kwargs and self.varargs:
            raise TypeError(f"{self.fn}() takes its arguments by position")
        for key, value in kwargs.items():
            if key not in self.names:
                raise TypeError(f"{self.fn}() got an unexpected keyword argument {key!r}")
            full[self.names.index(key)] = value
        missing = [n for n, v in zip(self.names, full) if v is inspect.Parameter.empty]
        if missing:
            raise TypeError(f"{self.fn}() is missing argument(s): {', '.join(missing)}")
        return tuple(full)


def differentiable(backward, saves=()):
    """Make an op differentiable.

    ``backward(ctx, grad)`` returns one gradient (or None) per positional argument.
    ``saves`` names the residuals the rule needs, by positional index or ``"out"``;
    nothing else is kept alive by the tape.

    Example::

        def _exp_backward(ctx, g):
            (out,) = ctx.saved
            return (g * out,)

        @differentiable(_exp_backward, saves=("out",))
        def exp(x): ...
    """
    def decorate(forward):
        name = forward.__name__
        positional = _Positional(forward)

        @functools.wraps(forward)
        def op(*args, **kwargs):
            if not getattr(_state, "enabled", True):
                return forward(*args, **kwargs)
            for a in args:
                if getattr(a, "requires_grad", False) is True:
                    break
            else:  # nothing to tape: inference pays this loop only
                for a in kwargs.values():
                    if getattr(a, "requires_grad", False) is True:
                        break
                else:
                    return forward(*args, **kwargs)
            if kwargs or (len(args) != len(positional) and not positional.varargs):
                args = positional(args, kwargs)
            edges, shapes, dtypes, plain = _inputs(args)
            needs = tuple([e is not None for e in edges])
            if True not in needs:
                return forward(*args)
            _state.enabled = False
            try:
                out = forward(*args)
            finally:
                _state.enabled = True
            return _attach(out, name, backward, saves, args, edges, shapes, dtypes, plain, needs)
        op.backward_rule = backward
        op.saves = saves
        op.node_name = name
        op.positional = positional
        return op
    return decorate


def _inputs(args):
    """Per argument: its edge (None, a leaf tensor or a node), shape, dtype, and value if not a tensor."""
    tensor_type = _tensor_type
    if tensor_type is None:
        return ([_edge(a) for a in args], [a.shape if _is_tensor(a) else None for a in args],
                [a.dtype if _is_tensor(a) else None for a in args], [None if _is_tensor(a) else a for a in args])
    edges, shapes, dtypes, plain = [], [], [], []  # the same four lists in one pass
    for a in args:
        if isinstance(a, tensor_type):
            buf = a.buf
            shapes.append(buf.shape)
            dtypes.append(buf.dtype)
            plain.append(None)
            edges.append((a if a._node is None else a._node) if a.requires_grad else None)
        else:
            shapes.append(None)
            dtypes.append(None)
            plain.append(a)
            edges.append(None)
    return edges, shapes, dtypes, plain


def _attach(out, name, backward, saves, args, edges, shapes, dtypes, plain, needs):
    ctx = Context()
    ctx.saved = tuple([out if s == "out" else args[s] for s in saves])
    ctx.shapes = tuple(shapes)
    ctx.dtypes = tuple(dtypes)
    ctx.args = tuple(plain)
    ctx.needs = needs
    out._node = Node(name, backward, ctx, edges)
    out.requires_grad = True
    return out


def tape(op, args: tuple, out):
    """Tape ``out`` as the differentiable ``op`` would have, for ``args`` (by position; defaults
    filled in here), where its forward was run some other way (ops/eager.py's plans). Grad mode is
    on and some argument requires grad: the caller checked."""
    positional = op.positional
    if len(args) != len(positional) and not positional.varargs:
        args = positional(args, {})
    edges, shapes, dtypes, plain = _inputs(args)
    needs = tuple([e is not None for e in edges])
    if True not in needs:
        return out
    return _attach(out, op.node_name, op.backward_rule, op.saves, args, edges, shapes, dtypes, plain, needs)


__all__ = ["Context", "Node", "differentiable", "enable_grad", "is_grad_enabled", "no_grad", "run_backward",
           "set_backward_pass", "set_grad_enabled", "tape"]
