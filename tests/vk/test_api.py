"""Every failure of a native call reaches the caller as this library's typed error, naming the call."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import vulkan as vkb
import vulkan._vulkan as binding

import hlx_vulkan
from hlx_vulkan import errors
from hlx_vulkan.vk.api import BINDING_ERRORS, call, check_result

EXPECTED = {
    "VkErrorOutOfDeviceMemory": errors.OutOfDeviceMemoryError,
    "VkErrorOutOfHostMemory": errors.OutOfHostMemoryError,
    "VkErrorMemoryMapFailed": errors.OutOfHostMemoryError,
    "VkErrorOutOfPoolMemory": errors.OutOfDeviceMemoryError,
    "VkErrorDeviceLost": errors.DeviceLostError,
    "VkTimeout": errors.FenceTimeoutError,
    "VkErrorExtensionNotPresent": errors.FeatureNotPresentError,
}
EVERY_BINDING_ERROR = sorted({cls for cls in vkb.exception_codes.values()}, key=lambda c: c.__name__)


@pytest.mark.parametrize("exc_type", EVERY_BINDING_ERROR, ids=lambda c: c.__name__)
def test_every_binding_exception_becomes_ours_naming_the_call(exc_type):
    assert issubclass(exc_type, BINDING_ERRORS)

    def vkSomeCall():
        raise exc_type()
    with pytest.raises(errors.VulkanError) as info:
        call(vkSomeCall)
    assert type(info.value) is EXPECTED.get(exc_type.__name__, type(info.value))
    assert info.value.call == "vkSomeCall"
    assert info.value.result.startswith("VK_") and "vkSomeCall" in str(info.value)


def test_memory_errors_are_memory_errors_for_a_caller_catching_the_builtin():
    def vkAllocateMemory():
        raise vkb.VkErrorOutOfDeviceMemory()
    with pytest.raises(MemoryError):
        call(vkAllocateMemory)


@pytest.fixture
def driver_returns(monkeypatch):
    """Make the binding's next native call return a given VkResult, through the binding's own wrapper code."""
    def set_result(result):
        monkeypatch.setattr(binding, "_callApi", lambda fn, *args: result)
    return set_result


def test_a_result_the_binding_raises_as_vkerror(ctx, driver_returns):
    driver_returns(vkb.VK_ERROR_OUT_OF_DEVICE_MEMORY)
    with pytest.raises(errors.OutOfDeviceMemoryError, match="vkCreateFence failed with VK_ERROR_OUT_OF_DEVICE_MEMORY"):
        call(vkb.vkCreateFence, ctx.device.handle, vkb.VkFenceCreateInfo(), None)


def test_a_result_the_binding_lists_with_the_wrong_sign(ctx, driver_returns):
    # VK_ERROR_OUT_OF_POOL_MEMORY is -1000069000; the binding's table has +1000069000, so its
    # wrapper fails with KeyError on the code a driver really returns.
    driver_returns(-1000069000)
    with pytest.raises(errors.OutOfDeviceMemoryError, match="vkAllocateDescriptorSets.*VK_ERROR_OUT_OF_POOL_MEMORY"):
        call(vkb.vkAllocateDescriptorSets, ctx.device.handle, vkb.VkDescriptorSetAllocateInfo())
    with pytest.raises(errors.OutOfDeviceMemoryError, match="VK_ERROR_OUT_OF_POOL_MEMORY"):
        check_result("vkAllocateDescriptorSets", -1000069000)


def test_a_result_the_binding_does_not_know(ctx, driver_returns):
    driver_returns(-1000161000)  # VK_ERROR_FRAGMENTATION
    with pytest.raises(errors.VulkanError, match="vkCreateFence failed with VkResult -1000161000"):
        call(vkb.vkCreateFence, ctx.device.handle, vkb.VkFenceCreateInfo(), None)


def test_a_key_error_of_the_callers_own_is_not_taken_for_a_result():
    def vkLookup():
        return {}[-4]
    with pytest.raises(KeyError):
        call(vkLookup)


def test_fence_status_of_a_lost_device_is_an_error(ctx, monkeypatch):
    from hlx_vulkan.vk import Fence
    fence = Fence(ctx.device)
    real = vkb.lib

    class LostDevice:
        def __getattr__(self, name):
            if name == "vkGetFenceStatus":
                return lambda device, fence: vkb.VK_ERROR_DEVICE_LOST
            return getattr(real, name)
    monkeypatch.setattr(vkb, "lib", LostDevice())
    with pytest.raises(errors.DeviceLostError, match="vkGetFenceStatus"):
        fence.is_signaled()
    monkeypatch.undo()
    assert not fence.is_signaled()
    fence.destroy()


OOM = textwrap.dedent("""
    import resource
    from hlx_vulkan import errors, vk
    from hlx_vulkan.vk import validation
    ctx = vk.VulkanContext()
    # Room for 256 MiB more than the process holds now; lavapipe's memory is the process's.
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + (256 << 20), resource.RLIM_INFINITY))
    try:
        vk.Buffer(ctx.device, 1 << 30)
    except errors.OutOfDeviceMemoryError as exc:
        print("typed", exc.call, exc.result)
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    # The layer reports the failed call's result itself (claimed here, so the exit gate passes it);
    # anything else would be a usage error.
    print("validation errors:",
          [m.text for m in validation.claim_errors(0) if "VK_ERROR_OUT_OF_DEVICE_MEMORY" not in m.text])
    ctx.cleanup()
""")


def test_real_out_of_device_memory_is_our_typed_error():
    """Under an address-space cap, lavapipe's vkAllocateMemory fails with the binding's VkError subclass."""
    root = os.path.dirname(os.path.dirname(hlx_vulkan.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", OOM], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "typed vkAllocateMemory VK_ERROR_OUT_OF_DEVICE_MEMORY" in proc.stdout, proc.stdout + proc.stderr
    assert "validation errors: []" in proc.stdout
