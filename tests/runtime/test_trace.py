"""Dispatch traces (runtime/trace.py): a replay records the traced dispatches over new operands
(the same bits as running the ops), and a call a replay could not repeat gives no trace."""

import threading

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan.runtime.trace import Tracer


def _composite(x, y):
    return ((x * 1.5 + y).exp() * y).sum(dim=1)


def test_a_replay_gives_the_ops_bits_on_new_operands(rng):
    rt = hv.default_runtime()
    x, y = (hv.tensor(rng.standard_normal((7, 13)).astype(np.float32)) for _ in range(2))
    with Tracer(rt, [x.buf, y.buf]) as tracer:
        z = _composite(x, y)
    trace = tracer.finish([z.buf])
    assert trace is not None
    n = len(trace.dispatches)
    assert n >= 4
    for _ in range(2):
        a = hv.tensor(rng.standard_normal((7, 13)).astype(np.float32))
        b = hv.tensor(rng.standard_normal((7, 13)).astype(np.float32))
        hv.full((7, 13), float("nan")).numpy()  # poison a range the replay may reuse
        d0 = rt.stream.dispatches
        (out,) = trace.replay([a.buf, b.buf])
        assert rt.stream.dispatches - d0 == n
        got = hv.Tensor(out, rt).numpy()
        assert got.shape == (7,) and got.tobytes() == _composite(a, b).numpy().tobytes()
        a64, b64 = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
        ref = (np.exp(a64 * 1.5 + b64) * b64).sum(axis=1)
        np.testing.assert_allclose(got, ref, rtol=1e-5)


@pytest.mark.parametrize("what", ["upload", "sync", "read"])
def test_a_call_that_touches_the_host_gives_no_trace(what, rng):
    rt = hv.default_runtime()
    x = hv.tensor(rng.standard_normal(9).astype(np.float32))
    with Tracer(rt, [x.buf]) as tracer:
        y = x * 2.0
        if what == "upload":
            y.copy_(rng.standard_normal(9).astype(np.float32))
        elif what == "sync":
            rt.synchronize()
        else:
            y.numpy()
    assert tracer.finish([y.buf]) is None
    assert rt.stream.trace is None  # the stream is left as it was


def test_aliased_operands_and_foreign_outputs_give_no_trace(rng):
    rt = hv.default_runtime()
    x = hv.tensor(rng.standard_normal((4, 6)).astype(np.float32))
    with Tracer(rt, [x.buf, x.T.buf]) as tracer:
        y = x + x.T.T
    assert tracer.finish([y.buf]) is None
    other = hv.ones(3)
    with Tracer(rt, [x.buf]) as tracer:
        y = x * 3.0
    assert tracer.finish([y.buf, other.buf]) is None
    with Tracer(rt, [x.buf]) as tracer:
        y = x * 3.0
    assert tracer.finish([y.buf]) is not None


def test_a_trace_inside_a_trace_is_left_to_the_outer_one(rng):
    rt = hv.default_runtime()
    x = hv.tensor(rng.standard_normal(8).astype(np.float32))
    with Tracer(rt, [x.buf]) as outer:
        with Tracer(rt, [x.buf]) as inner:
            y = x + 1.0
        z = y * 2.0
    assert inner.finish([y.buf]) is None
    trace = outer.finish([z.buf])
    assert trace is not None and len(trace.dispatches) == 2


def test_other_threads_ops_go_on_and_stay_out_of_the_trace(rng):
    rt = hv.default_runtime()
    x = hv.tensor(rng.standard_normal(16).astype(np.float32))
    other = hv.tensor(rng.standard_normal(16).astype(np.float32))
    seen = {}

    def elsewhere():
        with Tracer(rt, [other.buf]) as tracer:  # a second trace while the first runs: none
            seen["y"] = (other * 3.0 + 1.0).numpy()  # a read-back: refused for this thread alone
        seen["trace"] = tracer.finish([])

    with Tracer(rt, [x.buf]) as tracer:
        y = x * 2.0
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
        z = y + 1.0
    trace = tracer.finish([z.buf])
    assert seen["trace"] is None
    np.testing.assert_array_equal(seen["y"], other.numpy() * np.float32(3.0) + np.float32(1.0))
    assert trace is not None and len(trace.dispatches) == 2
    (out,) = trace.replay([other.buf])
    assert hv.Tensor(out, rt).numpy().tobytes() == (other * 2.0 + 1.0).numpy().tobytes()
