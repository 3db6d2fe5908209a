"""Test-wide set-up: every Vulkan context runs with the validation layer, and any
validation ERROR reported while a test runs fails that test.

HLX_VALIDATION=0 turns the layer off, for a machine that lacks it (the lent GPU
machine); CI and `make test` always run with it on.
"""

from __future__ import annotations

import os

os.environ.setdefault("HLX_VALIDATION", "1")

import pytest  # noqa: E402

from hlx_vulkan.vk import validation  # noqa: E402

pytest_plugins = ["pytester"]

requires_validation = pytest.mark.skipif(not validation.requested_by_environment(),
                                         reason="HLX_VALIDATION=0: the validation layer is off")


class ValidationGate:
    """Where the test's share of the validation log starts."""

    def __init__(self):
        self.start = validation.mark()

    def take_errors(self) -> list:
        """The errors reported so far in this test; they no longer fail it."""
        errs = validation.errors_since(self.start)
        self.start = validation.mark()
        _accounted[0] += len(errs)
        return errs

    def check(self) -> None:
        errs = self.take_errors()
        if errs:
            pytest.fail("Vulkan validation reported errors:\n" + "\n".join(f"- {m.text}" for m in errs),
                        pytrace=False)


@pytest.fixture(autouse=True)
def validation_gate():
    gate = ValidationGate()
    yield gate
    gate.check()


_session_start = validation.mark()
_accounted = [0]


def pytest_sessionfinish(session, exitstatus):
    # Errors raised in teardown of shared fixtures or at exit land outside any test.
    leftover = validation.errors_since(_session_start)[_accounted[0]:]
    if leftover and session.exitstatus == 0:
        print("\nVulkan validation errors outside tests:\n" + "\n".join(m.text for m in leftover))
        session.exitstatus = 1


@pytest.fixture(scope="module")
def ctx():
    from hlx_vulkan import VulkanContext

    context = VulkanContext()
    yield context
    context.cleanup()


@pytest.fixture
def rng(request):
    """Fresh random inputs per test, seeded by the test's name so a failure reproduces."""
    import zlib

    import numpy as np
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
