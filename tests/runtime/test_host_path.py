"""The eager host path: the C recorder's dispatch_tracked and its cffi twin record the same command
stream (the same barriers, ranges, push constants and grids, dispatch by dispatch), and the hazard
rule puts a barrier exactly where a range is reused."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan.vk import record

# A mixed workload: views, broadcasting, in-place ops, uploads, reductions, matmuls and an MLP's
# training steps (forward, backward, AdamW); every dispatch is logged with what it recorded.
PROGRAM = r"""
import json, sys
import numpy as np
import hlx_vulkan as hv
from hlx_vulkan import nn, optim
from hlx_vulkan.nn import functional as F
from hlx_vulkan.vk import record

log = []
inner = record.dispatch_tracked

def logged(cmd, pipeline, layout, ds, push, gx, gy, gz, bind, keys, reads, writes, written, read, allocs, serial):
    barrier = inner(cmd, pipeline, layout, ds, push, gx, gy, gz, bind, keys, reads, writes, written, read, allocs,
                    serial)
    log.append([barrier, None if push is None else push.hex(), [gx, gy, gz], bool(bind), [list(k) for k in keys],
                sorted(map(list, written)), sorted(map(list, read)), [a.busy for a in allocs]])
    return barrier

record.dispatch_tracked = logged
hv.manual_seed(5)
rng = np.random.default_rng(5)
x = hv.randn(37, 19)
w = hv.randn(19, 23, requires_grad=True)
y = (hv.relu(x @ w) * 1.5 + x.sum(dim=1, keepdim=True)).softmax(dim=-1)
y.sum().backward()
z = x.T.contiguous()
z += 2.0
z.copy_(rng.standard_normal((19, 37)).astype(np.float32))
model = nn.Sequential(nn.Linear(19, 31), nn.ReLU(), nn.Linear(31, 7))
opt = optim.AdamW(model.parameters(), lr=1e-2)
target = hv.tensor(rng.integers(0, 7, 37))
for _ in range(3):
    opt.zero_grad()
    F.cross_entropy(model(x), target).backward()
    opt.step()
rt = hv.default_runtime()
digests = [t.digest() for t in (y, w.grad, z, *model.parameters())]
print(json.dumps({"native": record.NATIVE, "dispatches": rt.stream.dispatches, "barriers": rt.stream.barriers,
                  "log": log, "digests": digests}))
"""


def _run(native: str) -> dict:
    env = {**os.environ, "HLX_NATIVE": native}
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_c_recorder_and_cffi_record_the_same_command_stream():
    native, fallback = _run("1"), _run("0")
    assert native["native"] is True and fallback["native"] is False
    assert native["log"] and len(native["log"]) == native["dispatches"]
    assert any(entry[0] for entry in native["log"]) and not all(entry[0] for entry in native["log"])
    for i, (a, b) in enumerate(zip(native["log"], fallback["log"])):
        assert a == b, f"dispatch {i} differs: {a} != {b}"
    assert (native["dispatches"], native["barriers"], native["digests"]) == \
        (fallback["dispatches"], fallback["barriers"], fallback["digests"])


def test_a_barrier_exactly_where_a_range_is_reused():
    rt = hv.default_runtime()
    a, b = hv.randn(300), hv.randn(300)
    rt.synchronize()
    keep = [a + b]                      # the first dispatch of a batch: ordered by the batch's barrier
    before = rt.stream.barriers
    keep += [a * b, a - b]              # reads of ranges nobody wrote since: no barrier
    assert rt.stream.barriers == before
    c = keep[0] * 2.0                   # reads what the first add wrote: one barrier
    assert rt.stream.barriers == before + 1
    del c
    d = a * 3.0                         # takes c's freed range, written since the barrier: one barrier
    assert rt.stream.barriers == before + 2
    e = d + 0.0                         # read after write
    assert rt.stream.barriers == before + 3
    assert (e.numpy() == (a.numpy() * 3.0)).all()


def test_dispatch_tracked_refuses_bad_arguments_before_any_vulkan_call():
    from hlx_vulkan.vk import _record  # built by the setup (test_native_recorder.py says so when it is not)
    good = [1, 2, 3, 4, None, 1, 1, 1, True, ((0, 0, 4),), (0,), (), set(), set(), [], 1]
    with pytest.raises(TypeError):
        _record.dispatch_tracked(*good[:15])
    for i, bad in ((9, [(0, 0, 4)]), (12, {}), (14, ())):
        args = list(good)
        args[i] = bad
        with pytest.raises(TypeError):
            _record.dispatch_tracked(*args)
    for i in (10, 11):
        args = list(good)
        args[i] = (1,)
        with pytest.raises(IndexError):
            _record.dispatch_tracked(*args)
    with pytest.raises(OverflowError):
        _record.dispatch_tracked(*good[:5], 1 << 32, *good[6:])


@pytest.mark.parametrize("x_shape,bias", [((37, 19), True), ((3, 11, 19), True), ((19,), False)])
def test_linear_as_one_node_gives_the_composed_form_s_bits(x_shape, bias):
    """F.linear tapes one node; its output and gradients are those of x @ w.T + b, bit for bit."""
    from hlx_vulkan.nn import functional as F
    rng = np.random.default_rng(11)
    data = [rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal((23, 19)).astype(np.float32),
            rng.standard_normal(23).astype(np.float32)]
    g = rng.standard_normal(x_shape[:-1] + (23,)).astype(np.float32)
    results = []
    # The fused layer twice: the first call runs the composed ops and plans, the second runs the plans.
    for fused in (True, True, False):
        x, w, b = (hv.tensor(d, requires_grad=True) for d in data)
        y = F.linear(x, w, b if bias else None) if fused else (x @ w.T + b if bias else x @ w.T)
        assert (y.grad_fn.name == "linear") == fused
        y.backward(hv.tensor(g))
        results.append([t.numpy() for t in (y, x.grad, w.grad)] + ([b.grad.numpy()] if bias else []))
    for first, planned, composed in zip(*results):
        assert first.tobytes() == composed.tobytes() and planned.tobytes() == composed.tobytes()
    assert np.isfinite(results[0][2]).all() and np.abs(results[0][2]).max() > 0
