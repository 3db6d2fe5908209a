"""Command buffers: a round-robin pool, submission, and fences."""

from __future__ import annotations

import os
import time

import vulkan as vkb

from .. import errors
from .api import call, check_result, ffi
from .handles import Owner, VkObject

DEFAULT_TIMEOUT_S = None  # wait for as long as the work runs
# A wait is a loop of driver waits this long: between them Python delivers Ctrl-C, and a device
# lost meanwhile is reported by the next one even by a driver that does not wake a pending wait.
WAIT_SLICE_S = 1.0
# Before it blocks, a wait polls the fence this long on a GPU: a blocking driver wait wakes the
# thread tens of microseconds after the fence signals (on an H100 a replayed tiny op's round trip
# took 43 us blocking, 19 polling; benchmarks/NOTES.md), and CUDA's default synchronisation spins
# too. No polling on a CPU device (lavapipe), whose own threads need the cores it would take.
SPIN_S = float(os.environ.get("HLX_FENCE_SPIN_US", "2000")) * 1e-6


def _wait_for_fences(device_handle, fences, timeout_ns: int) -> int:
    """One driver wait on all of ``fences`` (a ``VkFence[]``); its VkResult (tests replace this)."""
    return vkb.lib.vkWaitForFences(device_handle, len(fences), fences, vkb.VK_TRUE, timeout_ns)


def _reset_command_buffer(cmd) -> None:
    """vkResetCommandBuffer through the C function (tests replace this to count resets)."""
    check_result("vkResetCommandBuffer", vkb.lib.vkResetCommandBuffer(cmd, 0))


def _destroy_fence(device, handle) -> None:
    vkb.vkDestroyFence(device.handle, handle, None)


class Fence(VkObject):
    """A VkFence.

    Example::

        fence = Fence(ctx.device); ...; fence.wait()
    """

    def __init__(self, device, signaled: bool = False):
        device._check_alive()
        self.device = device
        flags = vkb.VK_FENCE_CREATE_SIGNALED_BIT if signaled else 0
        self.handle = call(vkb.vkCreateFence, device.handle, vkb.VkFenceCreateInfo(flags=flags), None)
        self._own(device, _destroy_fence, device, self.handle)
        # The wait and reset go straight to the C functions with this prebuilt array: the binding's
        # wrappers build their arguments anew on every call (tens of microseconds per submission).
        self._array = ffi.new("VkFence[1]", [self.handle])
        self._spin_s = 0.0 if device.physical.type == "cpu" else SPIN_S

    def is_signaled(self) -> bool:
        """True once the work finished; :class:`DeviceLostError` if the device was lost."""
        self._check_alive()
        result = vkb.lib.vkGetFenceStatus(self.device.handle, self.handle)
        if result == vkb.VK_NOT_READY:
            return False
        check_result("vkGetFenceStatus", result)
        return True

    def wait(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        """Block until signaled, for as long as the work runs; with ``timeout`` (seconds),
        :class:`FenceTimeoutError` once it has passed. A lost device raises :class:`DeviceLostError`."""
        self._check_alive()
        start = time.monotonic()
        deadline = None if timeout is None else start + max(0.0, float(timeout))
        spin_end = start + self._spin_s
        while True:
            now = time.monotonic()
            if now < spin_end:  # a poll
                left = 0.0
            else:
                left = WAIT_SLICE_S if deadline is None else min(WAIT_SLICE_S, max(0.0, deadline - now))
            result = _wait_for_fences(self.device.handle, self._array, int(left * 1e9))
            if result != vkb.VK_TIMEOUT:
                check_result("vkWaitForFences", result)
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.FenceTimeoutError(
                    "vkWaitForFences", "VK_TIMEOUT", f"the GPU work did not finish within {timeout} s")

    def reset(self) -> None:
        self._check_alive()
        check_result("vkResetFences", vkb.lib.vkResetFences(self.device.handle, 1, self._array))


class Submission:
    """What :meth:`CommandBufferPool.submit` returns: something to wait on.

    Example::

        sub = pool.submit(cmd, ctx.compute_queue); ...; sub.wait()
    """

    def __init__(self, pool: "CommandBufferPool", slot: int):
        self._pool, self._slot, self._use = pool, slot, pool._uses[slot]

    def done(self) -> bool:
        return self._pool._fences[self._slot].is_signaled()

    def wait(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        self._pool._wait_slot(self._slot, timeout)

    def recycle(self) -> None:
        """After :meth:`wait`: reset the command buffer now (its slot's next begin then need not), unless
        the slot was begun again since. The stream does this as it retires a batch: at a sync point,
        not when the first op after it is recorded."""
        self._pool._recycle(self._slot, self._use)


def _destroy_command_pool(device, handle) -> None:
    vkb.vkDestroyCommandPool(device.handle, handle, None)


class CommandBufferPool(Owner):
    """N command buffers allocated up front and handed out round-robin.

    A buffer still in flight is waited for before it is reset and reused.

    Example::

        pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 4)
        cmd = pool.begin_command_buffer()
        pipeline.record_dispatch(cmd, desc_set, None, (64, 1, 1))
        pool.end_command_buffer(cmd)
        pool.submit_and_wait(cmd, ctx.compute_queue)
    """

    def __init__(self, device, queue_family: int | None = None, count: int = 4):
        device._check_alive()
        if count < 1:
            raise ValueError(f"a command buffer pool needs at least 1 buffer, got {count}")
        self.device = device
        self.queue_family = device.queue_family if queue_family is None else queue_family
        info = vkb.VkCommandPoolCreateInfo(
            flags=vkb.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, queueFamilyIndex=self.queue_family)
        self.handle = call(vkb.vkCreateCommandPool, device.handle, info, None)
        self._init_children()
        self._own(device, _destroy_command_pool, device, self.handle)
        alloc = vkb.VkCommandBufferAllocateInfo(
            commandPool=self.handle, level=vkb.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=count)
        buffers = call(vkb.vkAllocateCommandBuffers, device.handle, alloc)
        self.command_buffers = [buffers[i] for i in range(count)]
        self._slots = {self._key(cb): i for i, cb in enumerate(self.command_buffers)}
        self._fences = [Fence(device, signaled=True) for _ in range(count)]
        # Begin and submit infos built once per buffer (see Fence: raw calls, prebuilt arguments).
        self._begin_infos = {reusable: ffi.new("VkCommandBufferBeginInfo*", {
            "sType": vkb.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
            "flags": vkb.VK_COMMAND_BUFFER_USAGE_SIMULTANEOUS_USE_BIT if reusable
            else vkb.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT}) for reusable in (False, True)}
        self._cmd_arrays = [ffi.new("VkCommandBuffer[1]", [cb]) for cb in self.command_buffers]
        self._submit_infos = [ffi.new("VkSubmitInfo*", {"sType": vkb.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                                                        "commandBufferCount": 1, "pCommandBuffers": arr})
                              for arr in self._cmd_arrays]
        self._in_flight = [False] * count
        self._uses = [0] * count      # begins per slot: a Submission recycles only the use it submitted
        self._reset = [True] * count  # the buffer is in the initial state (new, or recycled)
        self._recording = [False] * count
        self.next_buffer_index = 0

    @staticmethod
    def _key(cmd) -> int:
        return int(vkb.ffi.cast("uintptr_t", cmd))

    def _slot_of(self, cmd) -> int:
        self._check_alive()
        slot = self._slots.get(self._key(cmd))
        if slot is None:
            raise ValueError("that command buffer does not belong to this pool")
        return slot

    def _wait_slot(self, slot: int, timeout: float | None) -> None:
        if self._in_flight[slot]:
            self._fences[slot].wait(timeout)
            self._in_flight[slot] = False

    def begin_command_buffer(self, timeout: float | None = DEFAULT_TIMEOUT_S, reusable: bool = False):
        """The next buffer in round-robin order, reset and recording: for one submit, or with
        ``reusable`` for any number of submits, overlapping ones included (simultaneous use)."""
        self._check_alive()
        slot = self.next_buffer_index
        self.next_buffer_index = (slot + 1) % len(self.command_buffers)
        self._wait_slot(slot, timeout)
        cmd = self.command_buffers[slot]
        if not self._reset[slot]:
            _reset_command_buffer(cmd)
        self._reset[slot] = False
        self._uses[slot] += 1
        check_result("vkBeginCommandBuffer", vkb.lib.vkBeginCommandBuffer(cmd, self._begin_infos[bool(reusable)]))
        self._recording[slot] = True
        return cmd

    def _recycle(self, slot: int, use: int) -> None:
        if (use == self._uses[slot] and not self._reset[slot] and not self._in_flight[slot]
                and not self._recording[slot] and self.alive):
            _reset_command_buffer(self.command_buffers[slot])
            self._reset[slot] = True

    def end_command_buffer(self, cmd) -> None:
        slot = self._slot_of(cmd)
        if not self._recording[slot]:
            raise RuntimeError("end_command_buffer: that command buffer is not recording")
        check_result("vkEndCommandBuffer", vkb.lib.vkEndCommandBuffer(cmd))
        self._recording[slot] = False

    def submit(self, cmd, queue=None) -> Submission:
        """Submit without blocking; returns a :class:`Submission` to wait on."""
        slot = self._slot_of(cmd)
        if self._recording[slot]:
            raise RuntimeError("submit: end_command_buffer was not called on that command buffer")
        if self._in_flight[slot]:
            raise RuntimeError("submit: that command buffer is already in flight")
        fence = self._fences[slot]
        fence.reset()
        with self.device.queue_lock:
            check_result("vkQueueSubmit", vkb.lib.vkQueueSubmit(self.device.queue if queue is None else queue, 1,
                                                                 self._submit_infos[slot], fence.handle))
        self._in_flight[slot] = True
        return Submission(self, slot)

    def submit_and_wait(self, cmd, queue=None, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        """Submit and block until the GPU finishes (see :meth:`Fence.wait` for ``timeout``)."""
        self.submit(cmd, queue).wait(timeout)

    def wait_all(self, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        for slot in range(len(self.command_buffers)):
            self._wait_slot(slot, timeout)

    def destroy(self) -> None:
        if self.alive:
            self.device.wait_idle()
        self._destroy_children()
        super().destroy()


def run_one_shot(device, record, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
    """Record with ``record(cmd)`` into a fresh command buffer, submit, wait, free.

    A pool of its own per call: caching one on the device would form a cycle
    that keeps the device alive after its last user lets go.
    """
    pool = CommandBufferPool(device, device.queue_family, 1)
    try:
        cmd = pool.begin_command_buffer()
        record(cmd)
        pool.end_command_buffer(cmd)
        pool.submit_and_wait(cmd, timeout=timeout)
    finally:
        pool.destroy()
