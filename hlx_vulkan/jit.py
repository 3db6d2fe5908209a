"""``hv.jit``: run a function eagerly once, capture it on the next call, replay it from then on,
copying each call's arguments in (what CUDA graphs and ``torch.compile(mode="reduce-overhead")``
do for PyTorch, built on :func:`hv.capture <hlx_vulkan.runtime.capture>`).

Example::

    @hv.jit
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for bx, by in batches:    # numpy arrays or hv tensors
        loss = step(bx, by)   # call 1 eager, call 2 captured (and run once), then replayed

**Signatures.** A call's signature is the shape and dtype of each tensor or array argument,
the value of every other argument, and the grad, float16-arithmetic and strict modes. Per signature,
the first ``warmup`` calls (default 1) run eagerly: the optimizer makes its state and the
kernels compile. The next call captures the function, which runs it once, so that call has
its effect; later calls replay the graph. A new signature gets a graph of its own, up to
``max_graphs``; past that, new signatures run eagerly, with a warning that names what
changed. ``strict=True`` allows one signature and refuses any other with
:class:`~hlx_vulkan.errors.JitError`, naming the argument that changed.

**Arguments.** Tensors and arrays (numpy arrays, anything with ``__array__``), also inside
tuples, lists and dicts, are the graph's inputs. The graph owns one tensor per input; each
call copies its argument into it in stream order (a device copy for a tensor, a staged upload
for an array, no host wait), so a caller's tensors are never overwritten. A tensor argument
that the function writes in place gets the result copied back after each replay. A tensor that
requires grad (a parameter) is used as it is: a different one is a different signature.
Anything else (numbers, strings, modules, options) is baked into the graph, as is whatever
the function reads from outside its arguments (globals, closures, ``model.train()`` or
``eval()``): call :meth:`JitFunction.reset` after changing those.

**Results.** A call returns what the function returned, with tensors detached from autograd
(call ``backward()`` inside the function). Tensors made inside a graph are its outputs,
rewritten by every replay: each call with that signature returns the same objects, so read a
result (``loss.item()``) or copy it (``mine.copy_(out)``) before the next call if you keep it.

Random draws inside (dropout) are fresh on every replay and match the eager sequence. Inside
an outer ``hv.capture()`` (or another jitted function being captured) the function runs as is,
recorded into the outer graph.
"""

from __future__ import annotations

import functools
import inspect
import types
import warnings

import numpy as np

from .autograd.graph import is_grad_enabled, no_grad
from .errors import JitError
from .ops.tensor import Tensor, empty, from_numpy, host_dtype
from .precision import float16_arithmetic
from .runtime import capture, default_runtime
from .strict_mode import is_strict


def jit(fn=None, *, strict: bool = False, max_graphs: int = 8, warmup: int = 1):
    """Replay ``fn`` as a captured graph from its ``warmup + 2``-th call on (see the module's doc).

    Use as ``@hv.jit`` or ``@hv.jit(strict=True, max_graphs=2, warmup=1)``.
    """
    if fn is None:
        return lambda f: JitFunction(f, strict=strict, max_graphs=max_graphs, warmup=warmup)
    return JitFunction(fn, strict=strict, max_graphs=max_graphs, warmup=warmup)


class _Entry:
    """One signature: its eager calls so far, then its graph, input tensors and result."""

    __slots__ = ("calls", "paths", "graph", "inputs", "copy_back", "out")

    def __init__(self, paths):
        self.calls = 0
        self.paths = paths  # (path, signature part) pairs, for messages
        self.graph = None
        self.inputs: list = []
        self.copy_back: list = []
        self.out = None


class JitFunction:
    """A function run through captured graphs, one per signature; made by :func:`jit`."""

    def __init__(self, fn, *, strict: bool = False, max_graphs: int = 8, warmup: int = 1):
        if max_graphs < 1 or warmup < 0:
            raise ValueError(f"max_graphs must be at least 1 and warmup at least 0 (got {max_graphs}, {warmup})")
        functools.update_wrapper(self, fn, updated=())  # its name and doc, not its attributes (a module's)
        self.fn = fn
        self.strict = strict
        self.max_graphs = max_graphs
        self.warmup = warmup
        self._entries: dict = {}
        self._warned = False

    @property
    def graphs(self) -> list:
        """The captured graphs, one per signature, oldest first."""
        return [e.graph for e in self._entries.values() if e.graph is not None]

    def reset(self) -> None:
        """Destroy every graph (waiting for its replays) and forget every signature: the next
        call runs eagerly again."""
        for entry in self._entries.values():
            if entry.graph is not None:
                entry.graph.destroy()
        self._entries.clear()
        self._warned = False

    def __get__(self, obj, objtype=None):  # a jitted method binds like a function
        return self if obj is None else types.MethodType(self, obj)

    def __call__(self, *args, **kwargs):
        rt = default_runtime()
        if rt.stream.capturing:  # recorded into the graph being captured around this call
            return self.fn(*args, **kwargs)
        key, leaves = _signature(args, kwargs, rt)
        entry = self._entries.get(key)
        if entry is not None and entry.graph is not None:
            return self._replay(entry, leaves)
        if entry is None:
            if self._entries and (self.strict or len(self._entries) >= self.max_graphs):
                self._refuse(args, kwargs, rt)
                return self._eager(args, kwargs, leaves, rt)
            entry = self._entries[key] = _Entry(_signature(args, kwargs, rt, named=True))
        if entry.calls < self.warmup:
            out = self._eager(args, kwargs, leaves, rt)
            entry.calls += 1
            return out
        return self._capture(entry, args, kwargs, leaves, rt)

    def _eager(self, args, kwargs, leaves: list, rt):
        a, kw = _rebuild(args, kwargs, [x if isinstance(x, Tensor) else from_numpy(x, runtime=rt) for x in leaves])
        return _detached(self.fn(*a, **kw))

    def _replay(self, entry: _Entry, leaves: list):
        for static, x in zip(entry.inputs, leaves):
            if x is not static:
                static.copy_(x)
        entry.graph.replay()
        for i in entry.copy_back:
            leaves[i].copy_(entry.inputs[i])
        return entry.out

    def _capture(self, entry: _Entry, args, kwargs, leaves: list, rt):
        with no_grad():
            inputs = [x if isinstance(x, Tensor) and x.requires_grad else _own(x, rt) for x in leaves]
        a, kw = _rebuild(args, kwargs, inputs)
        with capture(rt) as graph:
            out = self.fn(*a, **kw)
        entry.graph, entry.inputs, entry.out = graph, inputs, _detached(out)
        entry.copy_back = [i for i, (s, x) in enumerate(zip(inputs, leaves))
                           if s is not x and isinstance(x, Tensor) and graph.writes(s.buf)]
        for i in entry.copy_back:
            leaves[i].copy_(inputs[i])
        return entry.out

    def _refuse(self, args, kwargs, rt) -> None:
        """A new signature past the limit: raise (strict), or warn once and let it run eagerly."""
        if self._warned and not self.strict:
            return
        new = _signature(args, kwargs, rt, named=True)
        changes = _changes(next(reversed(self._entries.values())).paths, new, self.fn)
        name = getattr(self.fn, "__name__", "fn")
        if self.strict:
            raise JitError(f"hv.jit({name}, strict=True) takes one signature and this call's differs: {changes}. "
                           f"Call {name}.reset() to capture afresh, or drop strict=True to keep a graph per signature")
        self._warned = True
        warnings.warn(f"hv.jit({name}): {self.max_graphs} signatures (max_graphs) are in use; calls with new ones "
                      f"run eagerly. This one differs from the last: {changes}. A value that changes on every call "
                      f"belongs in a tensor argument", stacklevel=3)

    def __repr__(self) -> str:
        return f"<hv.jit {getattr(self.fn, '__qualname__', self.fn)}: {len(self.graphs)} graph(s)>"


# --- signatures ------------------------------------------------------------------------

def _is_array(obj) -> bool:
    return isinstance(obj, np.ndarray) or (hasattr(obj, "__array__") and not isinstance(obj, np.generic))


def _signature(args, kwargs, rt, named: bool = False):
    """(key, leaves): the call's hashable signature and its tensor and array arguments in order;
    with ``named``, the signature as (path, part) pairs instead."""
    key, leaves, paths = [], [], [] if named else None
    for i, a in enumerate(args):
        _flatten(a, (i,), key, leaves, paths)
    for k, v in kwargs.items():
        _flatten(v, (k,), key, leaves, paths)
    key.append(("modes", (is_grad_enabled(), float16_arithmetic(), is_strict(), rt)))
    if named:
        paths.append(("modes",))
        return list(zip(paths, key))
    return tuple(key), leaves


def _flatten(obj, path, key, leaves, paths) -> None:
    if isinstance(obj, Tensor):
        if obj.requires_grad:
            if not obj.is_leaf:
                raise JitError(f"hv.jit: argument {_name(path)} carries gradients from outside the function (it "
                               f"requires grad and was made by an op); a graph cannot take them: pass it "
                               f".detach(), or move the ops that make it into the jitted function")
            key.append(("requires grad", id(obj)))
        else:
            key.append((obj.shape, obj.dtype))
        leaves.append(obj)
    elif _is_array(obj):
        a = np.asarray(obj)
        key.append((a.shape, host_dtype(a)))
        leaves.append(a)
    elif isinstance(obj, (tuple, list, dict)):
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        key.append((type(obj), tuple(obj) if isinstance(obj, dict) else len(obj)))
        if paths is not None:
            paths.append(path)
        for k, v in items:
            _flatten(v, path + (k,), key, leaves, paths)
        return
    else:
        try:
            hash(obj)
            key.append((type(obj), obj))
        except TypeError:  # an unhashable object: baked in by identity
            key.append((type(obj), id(obj)))
    if paths is not None:
        paths.append(path)


def _map(obj, f):
    """``obj`` with ``f`` applied to every leaf inside its tuples, lists and dicts."""
    if isinstance(obj, dict):
        return type(obj)((k, _map(v, f)) for k, v in obj.items())
    if isinstance(obj, (tuple, list)):
        items = [_map(v, f) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)  # namedtuples take fields
    return f(obj)


def _rebuild(args, kwargs, feeds: list):
    """``args`` and ``kwargs`` with their tensor and array leaves replaced by ``feeds``, in order."""
    it = iter(feeds)

    def feed(obj):
        return next(it) if isinstance(obj, Tensor) or _is_array(obj) else obj

    return _map(args, feed), _map(kwargs, feed)


def _detached(out):
    return _map(out, lambda t: t.detach() if isinstance(t, Tensor) and t.requires_grad else t)


def _own(x, rt) -> Tensor:
    """A tensor of the graph's own holding the value of ``x`` (a tensor or an array)."""
    if isinstance(x, Tensor):
        t = empty(x.shape, x.dtype, rt)
        t.copy_(x)
        return t
    return from_numpy(x, runtime=rt)


def _name(path, fn=None) -> str:
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        try:
            params = list(inspect.signature(fn).parameters) if fn is not None else []
        except (TypeError, ValueError):  # a callable without a signature
            params = []
        head = params[head] if head < len(params) else f"positional argument {head}"
    return str(head) + "".join(f"[{k!r}]" for k in rest)


def _describe(part) -> str:
    kind, value = part
    if kind == "requires grad":
        return "a tensor that requires grad"
    if isinstance(kind, tuple):  # (shape, dtype) of a tensor or array
        return f"shape {kind} {value}"
    if isinstance(kind, type) and kind in (tuple, list, dict):
        return f"{kind.__name__} of {value if kind is not dict else list(value)}"
    if kind == "modes":
        return f"grad {'on' if value[0] else 'off'}, float16 arithmetic {'on' if value[1] else 'off'}"
    return repr(value) if isinstance(value, (int, float, str, bytes, bool, type(None))) else f"{kind.__name__} object"


def _changes(old: list, new: list, fn) -> str:
    """What differs between two named signatures, argument by argument."""
    before, after = dict(old), dict(new)
    out = []
    for path in dict.fromkeys([p for p, _ in old] + [p for p, _ in new]):
        a, b = before.get(path), after.get(path)
        if a != b:
            was, now = (_describe(p) if p is not None else "absent" for p in (a, b))
            out.append(f"{_name(path, fn)}: {was} -> {now}{' (another object)' if was == now else ''}")
    return "; ".join(out) or "the same arguments"


__all__ = ["JitFunction", "jit"]
