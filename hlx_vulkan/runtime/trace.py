"""Dispatch traces: the dispatches of one call of a pure composite op, replayed on new operands.

A composite op (a loss built from several kernels, a backward rule chaining others) pays Python
for every op it is made of: keys, views, taping, checks. When its dispatches follow from its
operands' layouts alone, the first call can run under a :class:`Tracer`, which notes each
dispatch (kernel, push constants, grid) and which memory it binds: an operand's, memory the call
allocated, or memory that outlives it (the error words of index checks). :meth:`Trace.replay`
then allocates the same sizes and records the same dispatches over the new operands, with no
Python from the ops in between: the same kernels and push constants, hence the same bits. The
stream still orders it (hazard barriers by memory range), so replays interleave with other ops.

A call that uploads host data, copies through the host, or waits for the device (a read-back,
whose value Python may branch on) cannot be replayed: its trace is None. The caller keys traces
by everything the op's kernels follow from: the operands' geometry and the settings it reads.
"""

from __future__ import annotations

import threading

from ..memory import TensorBuffer


class Trace:
    """What :meth:`Tracer.finish` found: allocation sizes, dispatches over slots, outputs."""

    __slots__ = ("runtime", "sizes", "kept", "dispatches", "outputs", "ninputs")

    def __init__(self, runtime, ninputs, sizes, kept, dispatches, outputs):
        self.runtime, self.ninputs, self.sizes, self.kept = runtime, ninputs, sizes, kept
        self.dispatches, self.outputs = dispatches, outputs

    def replay(self, inputs) -> list | None:
        """Record the traced dispatches over ``inputs`` (TensorBuffers of the traced layouts);
        the output TensorBuffers, or None where memory the trace kept was freed since."""
        kept = self.kept
        for a in kept:
            if a.freed:
                return None
        rt = self.runtime
        allocate = rt.memory.device_pool.allocate
        slots = [b.allocation for b in inputs]
        slots += [allocate(n) for n in self.sizes]
        slots += kept
        dispatch = rt.stream.dispatch
        for kernel, where, push, groups in self.dispatches:
            dispatch(kernel, [slots[i] for i in where], push, groups)
        manager = rt.memory
        out = []
        for slot, shape, dtype, strides, offset, nbytes in self.outputs:
            if slot < self.ninputs:
                out.append(inputs[slot].view(shape, strides, offset))
            elif offset == 0 and nbytes:
                out.append(TensorBuffer.fresh(manager, slots[slot], shape, dtype, strides, nbytes))
            else:
                out.append(TensorBuffer(manager, slots[slot], shape, dtype, strides, offset))
        return out


class Tracer:
    """Notes the dispatches of the ops this thread runs inside it; other threads' ops go on
    (the stream orders them among the traced ones) and are not noted. One trace at a time per
    stream: a Tracer entered while another runs gives no trace.

    Memory a traced call binds is an operand's, memory the call made (first bound by a dispatch
    that only writes it: a replay allocates its size afresh), or memory that outlives the call
    (first read or updated: a replay binds the same). So the call must write no memory it was not
    given or did not make, as a pure op does.

    Example::

        with Tracer(rt, [x.buf, y.buf]) as tracer:
            z = composite(x, y)
        trace = tracer.finish([z.buf])      # None: not replayable
        (z_buf,) = trace.replay([x.buf, y.buf])
    """

    def __init__(self, runtime, inputs):
        self.runtime = runtime
        self.inputs = list(inputs)
        self.recorded: list = []

    def __enter__(self):
        stream = self.runtime.stream
        with stream.lock:
            if stream.trace is not None:  # inside another trace (or another thread's): no trace here
                self.recorded = None
            else:
                stream.trace, stream.trace_thread = self.recorded, threading.get_ident()
        return self

    def __exit__(self, *exc):
        if self.recorded is not None:
            stream = self.runtime.stream
            with stream.lock:
                stream.trace = None
        return False

    def finish(self, outputs) -> Trace | None:
        """The trace, with ``outputs`` (TensorBuffers made inside, or views of the inputs) as what
        a replay returns; None where the call did something a replay cannot repeat."""
        if self.recorded is None or None in self.recorded:
            return None
        n_in = len(self.inputs)
        slot = {}
        for i, b in enumerate(self.inputs):
            a = b._allocation
            # Operands sharing memory in the trace would have to share it in a replay: the
            # caller's key has their geometry, not their aliasing, so such a trace is not kept.
            if a is None or id(a) in slot:
                return None
            slot[id(a)] = i
        made, kept = [], []
        first = []  # per dispatch, per binding: (allocation, first use only writes it)
        for kernel, allocations, push, groups in self.recorded:
            writes_only = {i for i in kernel.spec.writes if i not in kernel.spec.reads}
            for i, a in enumerate(allocations):
                if id(a) not in slot:
                    slot[id(a)] = None
                    first.append((a, i in writes_only))
        for a, fresh in first:
            (made if fresh else kept).append(a)
        for j, a in enumerate(made):
            slot[id(a)] = n_in + j
        for j, a in enumerate(kept):
            slot[id(a)] = n_in + len(made) + j
        dispatches = tuple((kernel, tuple([slot[id(a)] for a in allocations]), push, groups)
                           for kernel, allocations, push, groups in self.recorded)
        out = []
        for b in outputs:
            a = b._allocation
            i = slot.get(id(a)) if a is not None else None
            if i is None or i >= n_in + len(made):
                return None
            out.append((i, b.shape, b.dtype, b.strides, b.byte_offset, b.nbytes if i >= n_in else 0))
        return Trace(self.runtime, n_in, tuple(a.nbytes for a in made), kept, dispatches, tuple(out))


__all__ = ["Trace", "Tracer"]
