"""The backward pass: walk the taped graph from a scalar and accumulate gradients.

Nodes run in reverse creation order (a topological order), one at a time, so a
gradient that reaches a tensor along several paths is summed in one fixed
order: the same graph gives the same bits on every run. Leaf gradients are
accumulated in place into each tensor's ``.grad`` buffer.
"""

from __future__ import annotations

import heapq

from .. import errors
from ..ops import elementwise as ew
from ..ops.creation import ones_like
from ..ops.tensor import Tensor
from . import graph
from .graph import Node, no_grad


_leaf_hooks: list = []


def add_leaf_hook(fn):
    """Call ``fn(tensor)`` each time backward() adds a gradient into a leaf's ``.grad``;
    returns a function that removes the hook (DistributedDataParallel starts sending a bucket
    of gradients from here while the rest of the backward pass runs)."""
    _leaf_hooks.append(fn)
    return lambda: _leaf_hooks.remove(fn) if fn in _leaf_hooks else None


def _accumulate(slot: dict, key, g: Tensor) -> None:
    prev = slot.get(key)
    slot[key] = g if prev is None else ew.add(prev, g)


def _to_leaf(t: Tensor, g: Tensor) -> None:
    gb, tb = g.buf, t.buf
    if gb.shape != tb.shape:
        raise errors.ShapeError(f"gradient of shape {g.shape} for a tensor of shape {t.shape}")
    if gb.dtype is not tb.dtype:
        g = ew.cast(g, t.dtype)
    if t.grad is None:
        t.grad = ew.copy(g)
    else:
        ew.launch("x + y", [t.grad, g], out=t.grad)
    for fn in _leaf_hooks:
        fn(t)


def backward(self: Tensor, gradient: Tensor | None = None, retain_graph: bool = False) -> None:
    """Compute the gradient of this tensor with respect to every leaf that requires grad.

    ``gradient`` is d(out)/d(self); it may be left out for a one-element tensor.
    Gradients are added into ``.grad`` (call ``zero_grad()`` between steps).

    Example::

        w = hv.randn(3, requires_grad=True)
        (w * w).sum().backward()
        w.grad.numpy()      # 2 * w
    """
    if not self.requires_grad:
        raise errors.HlxError("backward() on a tensor that does not require grad (no input requires grad, "
                              "or it was computed under no_grad)")
    if gradient is None:
        if self.numel() != 1:
            raise errors.ShapeError(f"backward() without a gradient needs a one-element tensor, not shape "
                                    f"{self.shape}")
        gradient = ones_like(self)
    elif gradient.shape != self.shape:
        raise errors.ShapeError(f"gradient of shape {gradient.shape} for a tensor of shape {self.shape}")
    with no_grad():
        if self._node is None:
            _to_leaf(self, gradient)
            return
        grads: dict[Node, Tensor] = {self._node: gradient}
        heap = [(-self._node.seq, self._node)]
        queued = {self._node}
        while heap:
            _, node = heapq.heappop(heap)
            g = grads.pop(node)
            if node.ctx is None:
                raise errors.HlxError(f"the graph through {node!r} was already freed by an earlier backward(); "
                                      "pass retain_graph=True to the first call")
            needs, dtypes = node.ctx.needs, node.ctx.dtypes
            results = node.backward(node.ctx, g)
            if not retain_graph:
                node.ctx = None
            for edge, need, gi, dt in zip(node.edges, needs, results, dtypes):
                if edge is None or not need or gi is None:
                    continue
                if gi.dtype is not dt:  # mixed-dtype ops: each input gets its gradient in its own dtype
                    gi = ew.cast(gi, dt)
                if isinstance(edge, Node):
                    _accumulate(grads, edge, gi)
                    if edge not in queued:
                        queued.add(edge)
                        heapq.heappush(heap, (-edge.seq, edge))
                else:
                    _to_leaf(edge, gi)


graph.set_backward_pass(backward)

__all__ = ["add_leaf_hook", "backward"]
