"""The C recorder (hlx_vulkan/vk/_record.c) and its cffi fallback record the same work."""

import os
import subprocess
import sys

import pytest

from hlx_vulkan.vk import record

PROGRAM = r"""
import numpy as np
import hlx_vulkan as hv
from hlx_vulkan.vk import record
hv.manual_seed(3)
x = hv.randn(37, 19)
w = hv.randn(19, 23, requires_grad=True)
y = (hv.relu(x @ w) * 1.5 + x.sum(dim=1, keepdim=True)).softmax(dim=-1)
y.sum().backward()
print(record.NATIVE, y.digest(), w.grad.digest())
"""


def _run(native: str) -> list[str]:
    env = {**os.environ, "HLX_NATIVE": native}
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_the_c_recorder_is_built_by_the_setup():
    # make setup installs gcc and builds the extension; without it every dispatch pays cffi's cost.
    assert os.environ.get("HLX_NATIVE") == "0" or record.NATIVE, \
        "hlx_vulkan/vk/_record.c was not built: run `make setup` (it needs gcc and the Python headers)"


def test_the_c_recorder_and_cffi_give_the_same_bits():
    native, fallback = _run("1"), _run("0")
    assert native[0] == "True" and fallback[0] == "False"
    assert native[1:] == fallback[1:]


def test_the_c_recorder_refuses_bad_arguments_before_any_vulkan_call():
    from hlx_vulkan.vk import _record  # built by the setup (the test above says so when it is not)
    with pytest.raises(TypeError):
        _record.dispatch(1, 2, 3)
    with pytest.raises(TypeError):
        _record.dispatch(1, 2, 3, 4, "push", 1, 1, 1, True)
    with pytest.raises(OverflowError):
        _record.dispatch(1, 2, 3, 4, None, 1 << 32, 1, 1, True)
    with pytest.raises(OverflowError):
        _record.dispatch(1, 2, 3, 4, None, -1, 1, 1, True)
    with pytest.raises(TypeError):
        _record.init(1, 2)
    with pytest.raises(ValueError):
        _record.init(0, 0, 0, 0)
