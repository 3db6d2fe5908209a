"""Test-wide set-up: every Vulkan context runs with the validation layer, and any
validation ERROR reported while a test runs fails that test.

HLX_VALIDATION=0 turns the layer off, for a machine that lacks it (the lent GPU
machine); CI and `make test` always run with it on. Subprocesses inherit the
setting, and with it the library's exit gate (``hlx_vulkan.vk.validation``): a
child process in which the layer reported an error exits with status 1, so every
subprocess test that checks the exit status checks validation too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

os.environ.setdefault("HLX_VALIDATION", "1")
ROOT = Path(__file__).resolve().parents[1]

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
        """The errors reported so far in this test; they no longer fail it (nor the exit gate)."""
        end = validation.mark()
        errs = validation.claim_errors(self.start, end)
        self.start = end
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


def pytest_sessionfinish(session, exitstatus):
    # Errors raised in teardown of shared fixtures land outside any test. Later ones (at
    # interpreter exit) meet the library's exit gate, which fails the run with status 1.
    leftover = validation.unclaimed_errors()
    if leftover:
        validation.claim_errors(0)
        print("\nVulkan validation errors outside tests:\n" + "\n".join(m.text for m in leftover))
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # pytest-randomly prints its seed in the header, which -q hides: say it at the end too.
    if config.pluginmanager.hasplugin("randomly") and getattr(config.option, "randomly_seed", None) is not None:
        terminalreporter.write_line(f"tests ran in random order: --randomly-seed={config.option.randomly_seed} "
                                    "repeats it, -p no:randomly turns it off")


def python_env(**overrides) -> dict:
    """This process's environment for a Python child, with the hlx_vulkan under test first on its
    path; HLX_VALIDATION is inherited, so the child's exit gate is on when this run's layer is."""
    import hlx_vulkan
    src = str(Path(hlx_vulkan.__file__).resolve().parents[1])
    env = {**os.environ, **overrides}
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


def run_python(args, *, timeout: float = 300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``python *args`` in a child process (text output captured)."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env=python_env(**(env or {})), **kwargs)


def assert_clean_exit(proc: subprocess.CompletedProcess) -> None:
    """Status 0 (which, with validation on, also means no validation error: the exit gate), and
    nothing the interpreter or the layer complained about on stderr."""
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{proc.stderr[-4000:]}"
    for bad in ("Exception ignored", "Validation", "VUID-"):
        assert bad not in proc.stderr, f"{bad!r} on stderr:\n{proc.stderr[-4000:]}"


class CreateDeviceReached(Exception):
    """Raised by :func:`stop_at_create_device`'s stand-in, with what its ``inspect`` returned."""


def stop_at_create_device(monkeypatch, inspect) -> None:
    """Stand in for vkCreateDevice: a :class:`hlx_vulkan.vk.device.Device` being made raises
    CreateDeviceReached(inspect(create_info)) where the call would be; other calls go through."""
    import vulkan as vkb

    from hlx_vulkan.vk import device as device_module

    real_call = device_module.call

    def call(fn, *args):
        if fn is vkb.vkCreateDevice:
            raise CreateDeviceReached(inspect(args[1]))
        return real_call(fn, *args)
    monkeypatch.setattr(device_module, "call", call)


@pytest.fixture(scope="module")
def ctx():
    from hlx_vulkan import VulkanContext

    context = VulkanContext()
    yield context
    context.cleanup()


def _test_seed(request) -> int:
    return zlib.crc32(request.node.nodeid.encode())


@pytest.fixture
def rng(request):
    """Fresh random inputs per test, seeded by the test's name so a failure reproduces."""
    import numpy as np
    return np.random.default_rng(_test_seed(request))


@pytest.fixture(autouse=True)
def _seed_device_generator(request):
    """hlx's default generator (hv.rand, hv.randn, module initialisation) is seeded by the test's
    name too: what a test draws does not depend on which tests ran before it."""
    import hlx_vulkan as hv
    hv.manual_seed(_test_seed(request))
