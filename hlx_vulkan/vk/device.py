"""The logical device: a VkDevice with one compute queue and the features we use."""

from __future__ import annotations

import atexit
import os
import threading
import weakref

import vulkan as vkb

from .api import call
from .handles import Owner, abandon_at_exit
from .instance import Instance
from .physical import (BFLOAT16_EXT, COOPERATIVE_MATRIX_EXT, COOPMAT2_EXT, COOPMAT2_FEATURES, COOPMAT2_FEATURES_STYPE,
                       PhysicalDeviceInfo, bfloat16_features, raw_struct)


HOST_MEMORY_EXT = "VK_EXT_external_memory_host"  # see vk/host_memory.py
PIPELINE_STATS_EXT = "VK_KHR_pipeline_executable_properties"
_open_devices: "weakref.WeakSet[Device]" = weakref.WeakSet()
_exit_hook_registered = False
# How long the exit hook waits for a lock another thread holds before it goes on without it.
EXIT_LOCK_TIMEOUT_S = 10.0


def _idle_before_teardown(handle) -> None:
    # A lost device has no work left to wait for: its objects are freed all the same, so the
    # result (VK_ERROR_DEVICE_LOST, already reported by the wait that met it) is not raised here.
    vkb.lib.vkDeviceWaitIdle(handle)


def _close_open_devices_at_exit() -> None:
    # Finalizers run at exit in reverse creation order; each device's users first finish the work
    # they recorded, and work still in flight finishes before the first finalizer frees a fence
    # or a buffer. Threads still running at exit (daemon threads) may be anywhere, inside a
    # recording or with a mapped pointer in hand: then the users keep their locks and the queue
    # stays locked, so no thread records or submits again, the device is drained, and the Vulkan
    # objects are left to the operating system rather than freed under a running thread.
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive()]
    for device in list(_open_devices):
        if device.alive:
            device._run_close_hooks(hold=bool(others))
            if others:
                device.queue_lock.acquire(timeout=EXIT_LOCK_TIMEOUT_S)  # kept: no submit after this
            _idle_before_teardown(device.handle)
    if others:
        abandon_at_exit()


def _register_exit_hook() -> None:
    # weakref.finalize registers its own exit hook with the first finalizer;
    # atexit runs hooks last-in first-out, so this one, registered after it, runs first.
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_close_open_devices_at_exit)
        _exit_hook_registered = True


def _destroy_device(instance: Instance, handle) -> None:
    # The instance is an argument so that it outlives every device made from it.
    _idle_before_teardown(handle)
    vkb.vkDestroyDevice(handle, None)


class MemoryType:
    __slots__ = ("index", "flags", "heap_index", "heap_size")

    def __init__(self, index, flags, heap_index, heap_size):
        self.index, self.flags, self.heap_index, self.heap_size = index, flags, heap_index, heap_size

    def __repr__(self):
        return f"MemoryType(index={self.index}, flags={self.flags:#x}, heap={self.heap_index}, heap_size={self.heap_size})"


class MemoryProperties:
    """The device's memory types and heaps, read once.

    Example::

        idx = props.find_type(type_bits, MemoryPropertyFlags.DEVICE_LOCAL)
    """

    def __init__(self, raw):
        heaps = [raw.memoryHeaps[i].size for i in range(raw.memoryHeapCount)]
        self.heap_sizes = heaps
        self.types = [
            MemoryType(i, raw.memoryTypes[i].propertyFlags, raw.memoryTypes[i].heapIndex,
                       heaps[raw.memoryTypes[i].heapIndex])
            for i in range(raw.memoryTypeCount)
        ]

    def find_type(self, type_bits: int, required: int, preferred: int = 0) -> int | None:
        """Index of a memory type allowed by ``type_bits`` with ``required`` flags, preferring ``preferred``."""
        allowed = [t for t in self.types if type_bits & (1 << t.index) and (t.flags & required) == required]
        best = [t for t in allowed if (t.flags & preferred) == preferred]
        pick = (best or allowed or [None])[0]
        return None if pick is None else pick.index


class Device(Owner):
    """A logical device and its compute queue.

    Made by :class:`~hlx_vulkan.VulkanContext`; every buffer, shader, pipeline
    and pool is created against it and destroyed before it.

    Example::

        ctx = VulkanContext()
        buf = Buffer(ctx.device, 1024, BufferUsageFlags.STORAGE_BUFFER, ...)
    """

    def __init__(self, instance: Instance, physical: PhysicalDeviceInfo):
        self.instance = instance
        self.physical = physical
        self.queue_family = physical.compute_family()
        feats = physical.features
        v11 = vkb.VkPhysicalDeviceVulkan11Features(storageBuffer16BitAccess=feats["storage_buffer_16bit"])
        v12 = vkb.VkPhysicalDeviceVulkan12Features(
            pNext=v11,
            shaderFloat16=feats["shader_float16"], shaderInt8=feats["shader_int8"],
            storageBuffer8BitAccess=feats["storage_buffer_8bit"],
            timelineSemaphore=feats["timeline_semaphore"],
            bufferDeviceAddress=feats["buffer_device_address"],
            vulkanMemoryModel=feats["vulkan_memory_model"],
            vulkanMemoryModelDeviceScope=feats["vulkan_memory_model_device_scope"],
        )
        head, extensions = v12, []
        # Every struct of the pNext chain, held until the device is made: a raw struct points at
        # the one before it without holding it, and the H100 (whose chain has one) crashed in
        # vkCreateDevice reading the structs freed behind it.
        chain = [v11, v12]
        if feats["maintenance4"] or feats["subgroup_size_control"]:
            head = vkb.VkPhysicalDeviceVulkan13Features(pNext=head, maintenance4=feats["maintenance4"],
                                                        subgroupSizeControl=feats["subgroup_size_control"])
            chain.append(head)
        if feats["cooperative_matrix"]:
            head = vkb.VkPhysicalDeviceCooperativeMatrixFeaturesKHR(pNext=head, cooperativeMatrix=True)
            chain.append(head)
            extensions.append(COOPERATIVE_MATRIX_EXT)
        if feats.get("bfloat16_cooperative_matrix"):
            head = bfloat16_features(pNext=head, type=True, cooperative_matrix=True)
            chain.append(head)
            extensions.append(BFLOAT16_EXT)
        if feats.get("cooperative_matrix2"):
            head = raw_struct(COOPMAT2_FEATURES_STYPE, [feats[f"cooperative_matrix2_{k}"] for k in COOPMAT2_FEATURES],
                              pNext=head)
            chain.append(head)
            extensions.append(COOPMAT2_EXT)
        if HOST_MEMORY_EXT in physical.extensions:  # data parallel: copies straight to MPI shared memory
            extensions.append(HOST_MEMORY_EXT)
        # The compiler's statistics of each pipeline (registers, shared memory: what sets a kernel's
        # occupancy; benchmarks/bench_gemm.py and probe_gemm_stages.py print them): only when asked
        # for, since drivers may bypass their pipeline caches to keep them.
        self.pipeline_statistics = (os.environ.get("HLX_PIPELINE_STATS") == "1"
                                    and PIPELINE_STATS_EXT in physical.extensions)
        if self.pipeline_statistics:
            head = vkb.VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR(pNext=head, pipelineExecutableInfo=True)
            chain.append(head)
            extensions.append(PIPELINE_STATS_EXT)
        core = vkb.VkPhysicalDeviceFeatures(shaderInt64=feats["shader_int64"], shaderFloat64=feats["shader_float64"],
                                            shaderInt16=feats["shader_int16"])
        features2 = vkb.VkPhysicalDeviceFeatures2(pNext=head, features=core)
        queue_info = vkb.VkDeviceQueueCreateInfo(queueFamilyIndex=self.queue_family, queueCount=1, pQueuePriorities=[1.0])
        info = vkb.VkDeviceCreateInfo(pNext=features2, pQueueCreateInfos=[queue_info], ppEnabledExtensionNames=extensions)
        self.handle = call(vkb.vkCreateDevice, physical.handle, info, None)
        del chain
        self.enabled_features = dict(feats)
        self.enabled_extensions = tuple(extensions)
        self.queue = vkb.vkGetDeviceQueue(self.handle, self.queue_family, 0)
        self.memory_properties = MemoryProperties(vkb.vkGetPhysicalDeviceMemoryProperties(physical.handle))
        self.limits = physical.limits
        # vkQueueSubmit and vkDeviceWaitIdle need external synchronisation of the queue.
        self.queue_lock = threading.RLock()
        self._close_hooks: list = []
        self._init_children()
        self._own(instance, _destroy_device, instance, self.handle)
        _open_devices.add(self)
        _register_exit_hook()

    def wait_idle(self) -> None:
        self._check_alive()
        with self.queue_lock:
            call(vkb.vkDeviceWaitIdle, self.handle)

    def on_close(self, callback) -> None:
        """Call ``callback(hold)`` once before the device is destroyed (``destroy()``, the context's
        cleanup) or the process exits, so that a user of the device (a runtime) finishes the work
        it recorded first. ``hold`` is true at an exit with other threads still running: the user
        then keeps its locks for good and frees nothing. A bound method is held weakly."""
        ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else (lambda: callback)
        self._close_hooks.append(ref)

    def _run_close_hooks(self, hold: bool) -> BaseException | None:
        """Run every hook, even past one that fails; returns the first failure (teardown goes on)."""
        hooks, self._close_hooks = self._close_hooks, []
        failure = None
        for ref in hooks:
            callback = ref()
            if callback is not None:
                try:
                    callback(hold)
                except Exception as exc:  # noqa: BLE001 - raised by destroy() once the device is gone
                    failure = failure or exc
        return failure

    def clone(self) -> "Device":
        """The same device (Python shares references; kept for the design document's ``device.clone()``)."""
        return self

    def destroy(self) -> None:
        failure = None
        if self._finalizer is not None and self._finalizer.alive:
            failure = self._run_close_hooks(hold=False)
            with self.queue_lock:
                _idle_before_teardown(self.handle)
        failure = self._destroy_children() or failure
        super().destroy()
        if failure is not None:
            raise failure  # a user of the device failed to finish its work (a lost device, say)
