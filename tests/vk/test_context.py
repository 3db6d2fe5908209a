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


def test_the_feature_chain_outlives_vkcreatedevice(ctx, monkeypatch):
    """Every struct of vkCreateDevice's pNext chain is alive during the call, the optional ones
    (cooperative matrices, bfloat16, cooperative-matrix-2) included: a raw struct points at the
    one before it without holding it, and an H100 crashed in vkCreateDevice reading a freed one.
    The device is claimed to have every optional feature; the call itself is stood in for."""
    import dataclasses
    import gc
    import weakref

    from conftest import CreateDeviceReached, stop_at_create_device
    from hlx_vulkan.vk import device as device_module
    from hlx_vulkan.vk.physical import COOPMAT2_FEATURES

    made = []
    for name in ("bfloat16_features", "raw_struct"):
        real = getattr(device_module, name)

        def spy(*args, _real=real, **kwargs):
            obj = _real(*args, **kwargs)
            made.append(weakref.ref(obj))
            return obj
        monkeypatch.setattr(device_module, name, spy)

    def alive(info):
        gc.collect()
        return [r() is not None for r in made]
    stop_at_create_device(monkeypatch, alive)
    feats = dict(ctx.physical_device.features, cooperative_matrix=True, bfloat16_cooperative_matrix=True,
                 cooperative_matrix2=True, **{f"cooperative_matrix2_{k}": True for k in COOPMAT2_FEATURES})
    physical = dataclasses.replace(ctx.physical_device, features=feats)
    with pytest.raises(CreateDeviceReached) as reached:
        device_module.Device(ctx.instance, physical)
    structs = reached.value.args[0]
    assert len(structs) == 2 and all(structs)
