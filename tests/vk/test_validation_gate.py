import textwrap

import vulkan as vkb

from conftest import assert_clean_exit, requires_validation, run_python

pytestmark = requires_validation


def _trigger_validation_error(ctx):
    """vkCreateBuffer with size 0, straight through the binding: invalid usage the layer reports."""
    info = vkb.VkBufferCreateInfo(size=0, usage=vkb.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
                                  sharingMode=vkb.VK_SHARING_MODE_EXCLUSIVE)
    try:
        handle = vkb.vkCreateBuffer(ctx.device.handle, info, None)
    except vkb.VkException:
        return
    vkb.vkDestroyBuffer(ctx.device.handle, handle, None)


def test_messenger_reports_a_deliberate_error(ctx, validation_gate):
    _trigger_validation_error(ctx)
    errs = validation_gate.take_errors()
    assert any("VUID-VkBufferCreateInfo-size" in m.text for m in errs), errs


def test_gate_fails_a_test_that_causes_a_validation_error(pytester):
    from pathlib import Path
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makepyfile(test_bad=textwrap.dedent("""
        import vulkan as vkb
        from hlx_vulkan import VulkanContext

        def test_makes_an_invalid_call():
            with VulkanContext() as ctx:
                info = vkb.VkBufferCreateInfo(size=0, usage=vkb.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
                                              sharingMode=vkb.VK_SHARING_MODE_EXCLUSIVE)
                try:
                    vkb.vkDestroyBuffer(ctx.device.handle, vkb.vkCreateBuffer(ctx.device.handle, info, None), None)
                except vkb.VkException:
                    pass

        def test_clean():
            with VulkanContext() as ctx:
                assert ctx.validation_enabled
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # The gate fails the offending test in its teardown: pytest counts that as an error.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_makes_an_invalid_call*",
                                 "Vulkan validation reported errors:",
                                 "*VUID-VkBufferCreateInfo-size*"])


# --- the exit gate: a process with an unclaimed validation error exits with status 1 ---------
_INVALID_CALL = """
import vulkan as vkb
def invalid_call(device_handle):
    info = vkb.VkBufferCreateInfo(size=0, usage=vkb.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
                                  sharingMode=vkb.VK_SHARING_MODE_EXCLUSIVE)
    try:
        vkb.vkDestroyBuffer(device_handle, vkb.vkCreateBuffer(device_handle, info, None), None)
    except vkb.VkException:
        pass
"""


def _child(body: str):
    return run_python(["-c", _INVALID_CALL + textwrap.dedent(body)], timeout=120)


def test_a_process_with_a_validation_error_exits_non_zero_and_prints_it():
    proc = _child("""
        from hlx_vulkan import VulkanContext
        ctx = VulkanContext()
        invalid_call(ctx.device.handle)
        print("reached the end")
    """)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "reached the end" in proc.stdout  # the script ran; the gate spoke at exit
    assert "Vulkan Validation reported 1 error(s)" in proc.stderr
    assert "VUID-VkBufferCreateInfo-size" in proc.stderr


def test_an_error_while_tearing_down_at_exit_is_caught_too():
    # A finalizer made after the context runs at exit before the device goes: its error is
    # reported after every other exit hook of the library has run.
    proc = _child("""
        import weakref
        import hlx_vulkan as hv
        x = hv.ones(3) * 2.0
        print(x.numpy())
        class Late: pass
        late = Late()
        weakref.finalize(late, invalid_call, x.runtime.device.handle)
    """)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "VUID-VkBufferCreateInfo-size" in proc.stderr


def test_a_clean_process_and_a_claimed_error_exit_zero():
    clean = _child("""
        import hlx_vulkan as hv
        print((hv.ones(3) * 2.0).numpy())
    """)
    assert_clean_exit(clean)
    claimed = _child("""
        from hlx_vulkan import VulkanContext
        from hlx_vulkan.vk import validation
        ctx = VulkanContext()
        mark = validation.mark()
        invalid_call(ctx.device.handle)
        assert len(validation.claim_errors(mark)) == 1
        print("claimed")
    """)
    assert_clean_exit(claimed)
    assert "claimed" in claimed.stdout


def test_an_explicit_sys_exit_0_does_not_hide_an_error():
    proc = _child("""
        import sys
        from hlx_vulkan import VulkanContext
        ctx = VulkanContext()
        invalid_call(ctx.device.handle)
        sys.exit(0)
    """)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
