import textwrap

import vulkan as vkb

from hlx_vulkan import VulkanContext
from conftest import requires_validation

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
