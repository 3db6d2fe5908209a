"""The stream: ops are recorded into a command buffer with the barriers their data
dependencies need, and submitted at a sync point, when a batch fills, or (outside a capture) once
a batch has touched :data:`SUBMIT_BYTES` of memory and the queue has room.

Hazards are tracked per memory range (an allocation's ``key``: block, offset, size). A
dispatch or copy that reads a range written since the last barrier (read after write), or
writes a range read or written since then (write after read, write after write), is
preceded by a barrier; each batch starts with a barrier that orders it after everything
submitted before it on the queue. Because the pool reuses a freed range only whole, for a
request of the same size class, a reused range has the same key as before, and the tracker
orders the new use after the old one: memory freed on the host serves the next op at once
(stream-ordered reuse), with no wait for the device.

Each batch has a serial; :meth:`Stream.is_done` and :meth:`Stream.wait_for` tell a host
writer whether the device may still use memory that a batch touched.

The stream is safe to use from several threads: recording, submission and waiting are
serialised by one lock, so each op's dispatches land whole and in the order the calls took it.
"""

from __future__ import annotations

import threading
from collections import deque

from .. import errors
from ..vk import CommandBufferPool, record

BATCH_OPS = 512
MAX_IN_FLIGHT = 4
# Outside a capture, a batch is also submitted once its dispatches have touched this many bytes
# and the queue has room (fewer than MAX_IN_FLIGHT batches pending, or the oldest done): the
# device starts on large ops while the host records the next ones, instead of idling until the
# next sync, and the host never waits for the device because of it. A submission cost the host
# 16-40 us on the lent H100 machines, vkQueueSubmit 8-19 us of it (seventh stop), and submitting
# every 16 MiB raised the MLP step's host time by 24-59 %.
# Chosen on the H100 (benchmarks/NOTES.md, fifth stop: ten 64 MiB ops between syncs, and the
# MLP step, which touches 127 MiB): 128 MiB with 4 batches in flight matched or beat 16 and
# 512 MiB, and 2 in flight, on the ops, and kept the step's host time; 16 MiB cost the step.
SUBMIT_BYTES = 128 << 20


class Stream:
    """Records dispatches; submits in batches; :meth:`synchronize` waits for all of it.

    Example::

        stream.dispatch(kernel, [out_alloc, a_alloc, b_alloc], push, (groups, 1, 1))
        stream.synchronize()
    """

    def __init__(self, device, host_pool=None, batch_ops: int = BATCH_OPS):
        self.device = device
        self.host_pool = host_pool
        self.batch_ops = batch_ops
        self.lock = threading.RLock()
        self._pool = CommandBufferPool(device, device.queue_family, MAX_IN_FLIGHT + 1)
        self._cmd = None
        self._ops = 0
        self._bytes = 0              # bytes the dispatches of this batch touched (SUBMIT_BYTES)
        self._bound = None           # the kernel whose pipeline was bound last in this command buffer
        self._pushed = None          # the push constants pushed last, and for which layout
        self._keep: list = []        # staging memory, kept until its batch has finished
        self._written: set = set()
        self._read: set = set()
        self._in_flight: deque = deque()  # (serial or None, waitable, keep)
        self._capture = None
        self.checks = None           # the runtime's DeviceChecks (set by the runtime)
        self._checked = False        # a checking kernel is recorded in this command buffer
        self.serial = 1              # the batch being recorded
        self.completed = 0           # every batch up to this one has finished
        self.dispatches = 0
        self.barriers = 0
        self.submits = 0
        # While a Tracer (runtime/trace.py) runs on thread ``trace_thread``: each of that thread's
        # dispatches, and None for what a replay cannot repeat (an upload, a host copy, a wait).
        self.trace: list | None = None
        self.trace_thread = 0

    @property
    def recording(self) -> bool:
        return self._cmd is not None

    @property
    def capturing(self) -> bool:
        return self._capture is not None

    @property
    def capture_graph(self):
        """The graph being captured, or None."""
        return self._capture

    def begin_capture(self, graph) -> None:
        """From now on, record into ``graph``'s command buffers, which are kept, not submitted.

        The capturing thread holds the stream until :meth:`end_capture`: ops of other threads wait
        rather than land in the graph."""
        self.lock.acquire()
        try:
            if self._capture is not None:
                raise errors.CaptureError("a capture is already in progress on this device")
            self.submit()
            self._capture = graph
        except BaseException:
            self.lock.release()
            raise

    def end_capture(self) -> None:
        try:
            self.submit()
        finally:
            self._capture = None
            self.lock.release()

    def track(self, waitable, keep=(), depth: int = 3) -> None:
        """Count work submitted outside the stream (a replay) as in flight: synchronize waits for
        it. More than ``depth`` submissions in flight and the oldest is waited for."""
        with self.lock:
            self._in_flight.append((None, waitable, list(keep)))
            while len(self._in_flight) > depth:
                self._retire_oldest()

    def _untraceable(self) -> None:
        """The tracing thread did what a replay cannot repeat."""
        trace = self.trace
        if trace is not None and self.trace_thread == threading.get_ident():
            trace.append(None)

    def _retire_oldest(self) -> None:
        serial, waitable, _ = self._in_flight[0]
        waitable.wait()
        self._in_flight.popleft()
        if serial is not None:
            self.completed = serial
            # The batch's command buffer is reset here, at the wait, not by the next batch's first op.
            waitable.recycle()

    def _begin(self):
        self._cmd = (self._capture.new_command_buffer() if self._capture is not None
                     else self._pool.begin_command_buffer())
        self._cmd_handle = record.handle(self._cmd)
        self._bound = None
        self._pushed = None
        record.barrier(self._cmd_handle)
        self._written.clear()
        self._read.clear()

    def barrier(self) -> None:
        """A full barrier now (hazard tracking inserts these itself)."""
        with self.lock:
            if self._cmd is None:
                self._begin()
            record.barrier(self._cmd_handle)
            self._written.clear()
            self._read.clear()
            self.barriers += 1

    def dispatch(self, kernel, allocations, push: bytes, groups) -> None:
        """Record one dispatch of ``kernel`` over ``allocations`` in binding order; the kernel's
        declared roles say which are read and which written."""
        spec = kernel.spec
        keys = []
        touched = 0
        for a in allocations:
            keys.append(a.key)
            touched += a.size
        keys = tuple(keys)
        with self.lock:
            if self.trace is not None and self.trace_thread == threading.get_ident():
                self.trace.append((kernel, tuple(allocations), push, groups))
            # First: making a set may have to flush the stream (see Kernel.descriptor_set).
            descriptor_set = kernel.sets.get(keys) if self._capture is None else None
            if descriptor_set is None:
                descriptor_set = kernel.descriptor_set(keys, allocations, self._capture)
            if self._cmd is None:
                self._begin()
            pipeline, layout = kernel.handles
            # Push constants stay set across dispatches of one layout: the bytes object of a launch
            # plan pushed last need not be pushed again.
            last = self._pushed
            same_push = last is not None and last[1] is push and last[0] == layout
            # The barrier the ranges need (read after write, write after read or write), then the dispatch.
            self.barriers += record.dispatch_tracked(
                self._cmd_handle, pipeline, layout, descriptor_set, None if same_push else push, groups[0], groups[1],
                groups[2], self._bound is not kernel, keys, spec.reads, spec.writes, self._written, self._read,
                allocations, self.serial)
            self._bound = kernel
            self._pushed = (layout, push)
            if self._capture is not None:
                self._capture.keep(allocations, [keys[i] for i in spec.writes])
            kernel.used = True
            if spec.checked:
                self._checked = True
            self._ops += 1
            self.dispatches += 1
            touched += self._bytes
            self._bytes = touched
            if self._ops >= self.batch_ops:
                self.submit()
            elif touched >= SUBMIT_BYTES and self._capture is None and (
                    len(self._in_flight) < MAX_IN_FLIGHT or self._in_flight[0][1].done()):
                self.submit()

    def upload(self, allocation, offset: int, data) -> None:
        """Record a copy of ``data`` (bytes-like) into ``allocation`` at ``offset``, ordered after
        every use of that memory recorded before it: no host wait. The bytes travel through
        staging memory kept until the batch has finished."""
        view = memoryview(data).cast("B")
        n = view.nbytes
        if offset < 0 or offset + n > allocation.size:
            raise ValueError(f"{n} bytes at offset {offset} do not fit an allocation of {allocation.size}")
        if n == 0:
            return
        with self.lock:
            if self.trace is not None:
                self._untraceable()
            if self._capture is not None:
                raise errors.CaptureError("an upload from the host inside hv.capture() would copy the same data "
                                          "on every replay; copy inputs in before graph.replay()")
            staging = self.host_pool.allocate(n)
            staging.mapped()[:n] = view
            if self._cmd is None:
                self._begin()
            key = allocation.key
            if key in self._written or key in self._read:
                self.barrier()
            record.copy_buffer(self._cmd, staging.buffer, allocation.buffer, staging.offset,
                               allocation.offset + offset, n)
            self._written.add(key)
            allocation.busy = self.serial
            self._keep.append(staging)
            self._ops += 1
            if self._ops >= self.batch_ops:
                self.submit()

    def copy(self, regions) -> None:
        """Record buffer-to-buffer copies ``(src, src_offset, dst, dst_offset, nbytes)`` between
        allocations (device to mapped host staging, or back), ordered after every recorded use of
        their memory: no host wait. One barrier at most for the lot, so the regions must not
        overlap one another (data-parallel gradient buckets: hlx_vulkan.distributed.ddp)."""
        with self.lock:
            if self.trace is not None:
                self._untraceable()
            if self._capture is not None:
                raise errors.CaptureError("a copy through host memory inside hv.capture() cannot be replayed")
            if self._cmd is None:
                self._begin()
            written, read = self._written, self._read
            if any(s.key in written or d.key in written or d.key in read for s, _, d, _, _ in regions):
                self.barrier()
            for src, so, dst, do, n in regions:
                record.copy_buffer(self._cmd, src.buffer, dst.buffer, src.offset + so, dst.offset + do, n)
                read.add(src.key)
                written.add(dst.key)
                src.busy = dst.busy = self.serial
                self._ops += 1
            if self._ops >= self.batch_ops:
                self.submit()

    def submit(self) -> None:
        """Send what is recorded to the device without waiting."""
        with self.lock:
            if self._cmd is None:
                return
            if self._checked:
                # The error words, copied where a sync point reads them without another submission.
                self._checked = False
                self.barrier()
                self.checks.record_copy(self._cmd)
            record.barrier_to_host(self._cmd)
            cmd = self._cmd
            self._cmd = None
            self._ops = 0
            self._bytes = 0
            if self._capture is not None:
                self._capture.add_segment(cmd)
                return
            self._pool.end_command_buffer(cmd)
            sub = self._pool.submit(cmd)
            self._in_flight.append((self.serial, sub, self._keep))
            self._keep = []
            self.serial += 1
            self.submits += 1
            while len(self._in_flight) > MAX_IN_FLIGHT:
                self._retire_oldest()

    def is_done(self, serial: int) -> bool:
        """Whether the device has finished the batch ``serial`` (and every one before it)."""
        if serial <= self.completed:
            return True
        with self.lock:
            while self._in_flight and self._in_flight[0][1].done():
                serial_done = self._in_flight.popleft()[0]
                if serial_done is not None:
                    self.completed = serial_done
            if not self._in_flight and self._cmd is None:
                self.completed = self.serial - 1
            return serial <= self.completed

    def wait_for(self, serial: int) -> None:
        """Block until batch ``serial`` has finished, submitting it first if it is still recording."""
        if self.trace is not None:
            self._untraceable()
        if serial <= self.completed:
            return
        with self.lock:
            if serial >= self.serial:
                if self._capture is not None:
                    raise errors.CaptureError("this memory is still used by work recorded in this capture")
                self.submit()
            while self._in_flight and serial > self.completed:
                self._retire_oldest()
            if not self._in_flight:
                self.completed = self.serial - 1

    def synchronize(self) -> None:
        """Submit what is recorded and wait until the device has finished all of it."""
        with self.lock:
            if self.trace is not None:
                self._untraceable()
            if not self._pool.alive:
                raise errors.DestroyedError("this runtime was closed, or its device destroyed")
            if self._capture is not None:
                raise errors.CaptureError("a host sync (.numpy(), .item(), synchronize(), a read-back) inside "
                                          "hv.capture() cannot be replayed; read results after graph.replay()")
            self.submit()
            while self._in_flight:
                self._retire_oldest()
            self.completed = self.serial - 1

    @property
    def alive(self) -> bool:
        return self._pool.alive

    def drain(self) -> None:
        """Submit what is recorded (unless it belongs to a capture) and wait for all of it: what
        teardown does first. No CaptureError: a capture in progress is simply not submitted."""
        with self.lock:
            if not self._pool.alive:
                return
            if self._capture is None:
                self.submit()
            while self._in_flight:
                self._retire_oldest()
            self.completed = self.serial - 1

    def destroy(self) -> None:
        """Finish the recorded work (:meth:`drain`), then free the command buffers; later use of
        the stream raises :class:`~hlx_vulkan.errors.DestroyedError`."""
        with self.lock:
            if self._pool.alive:
                try:
                    self.drain()
                finally:
                    self._cmd = None
                    self._in_flight.clear()
                    self._keep = []
                    self._pool.destroy()
