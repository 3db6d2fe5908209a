import pytest

from hlx_vulkan import VulkanContext, errors
from hlx_vulkan.vk import validation
from conftest import requires_validation
from hlx_vulkan.vk.physical import choose, describe
from hlx_vulkan.vk.instance import Instance


def test_context_attributes(ctx):
    assert ctx.device.alive
    assert ctx.compute_queue is not None
    assert isinstance(ctx.compute_queue_family, int)
    assert ctx.memory_properties.types
    info = ctx.info
    for key in ("device_name", "device_type", "driver", "api_version", "limits", "float_controls", "features"):
        assert key in info
    assert info["limits"]["max_compute_workgroup_invocations"] >= 128
    assert len(info["limits"]["max_compute_workgroup_size"]) == 3
    assert info["validation"] is validation.requested_by_environment()


def test_context_manager_closes_everything():
    with VulkanContext() as c:
        dev = c.device
        assert dev.alive
    assert not dev.alive
    with pytest.raises(errors.DestroyedError):
        dev.wait_idle()


def _devices():
    inst = Instance()
    try:
        return [describe(h, i) for i, h in enumerate(inst.physical_devices())], inst
    except BaseException:
        inst.destroy()
        raise


def test_selection_by_index_and_env(monkeypatch):
    devices, inst = _devices()
    try:
        sel = choose(devices, 0, request=None)
        assert sel.chosen.index == 0
        monkeypatch.setenv("HLX_DEVICE", devices[0].name[:4])
        sel = choose(devices)
        assert sel.chosen.name == devices[0].name and "HLX_DEVICE" in sel.how
        monkeypatch.setenv("HLX_DEVICE", "no-such-device-xyz")
        with pytest.raises(errors.DeviceSelectionError, match="no-such-device-xyz"):
            choose(devices)
        with pytest.raises(errors.DeviceSelectionError, match="out of range"):
            choose(devices, len(devices) + 3, request="")
    finally:
        inst.destroy()


def test_selection_prefers_gpus_and_says_why():
    devices, inst = _devices()
    try:
        import copy
        cpu = copy.copy(devices[0]); cpu.type, cpu.index, cpu.name = "cpu", 0, "cpu-dev"
        gpu = copy.copy(devices[0]); gpu.type, gpu.index, gpu.name = "integrated", 1, "igpu"
        dgpu = copy.copy(devices[0]); dgpu.type, dgpu.index, dgpu.name = "discrete", 2, "dgpu"
        sel = choose([cpu, gpu, dgpu], request="")
        assert sel.chosen is dgpu
        reasons = {d.name: why for d, why in sel.passed_over}
        assert "preferred" in reasons["cpu-dev"] and "preferred" in reasons["igpu"]
        old = copy.copy(devices[0]); old.api_version, old.index, old.name = (1 << 22) | (1 << 12), 0, "old"
        sel = choose([old, cpu], request="")
        assert sel.chosen is cpu
        assert "1.1" in dict((d.name, w) for d, w in sel.passed_over)["old"]
    finally:
        inst.destroy()


@requires_validation
def test_validation_can_be_asked_for_explicitly():
    with VulkanContext(enable_validation=True) as c:
        assert c.validation_enabled
