"""The default runtime used from several threads at once: independent ops, training steps and
replays of one graph give the results they give on one thread, with no validation error."""

from __future__ import annotations

import threading

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan import nn, optim
from hlx_vulkan.nn import functional as F

THREADS = 8


def _run_threads(fn, n=THREADS):
    results, failures = [None] * n, []

    def body(i):
        try:
            results[i] = fn(i)
        except BaseException as exc:  # reported below, with the thread's index
            failures.append((i, exc))

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not failures, f"threads failed: {failures}"
    return results


def _ops(i: int) -> np.ndarray:
    rng = np.random.default_rng(100 + i)
    a = rng.standard_normal((33, 17)).astype(np.float32)
    b = rng.standard_normal((17, 9)).astype(np.float32)
    ta, tb = hv.tensor(a), hv.tensor(b)
    y = None
    for _ in range(20):
        y = (ta @ tb + 1.0).relu().sum(axis=0) * 0.5
        ta = ta * 0.99 + 0.01
    return y.numpy()


def test_independent_ops_from_eight_threads_match_one_thread():
    alone = [_ops(i) for i in range(THREADS)]
    together = _run_threads(_ops)
    for i in range(THREADS):
        np.testing.assert_array_equal(together[i], alone[i])  # same kernels, same inputs: the same bits
    rng = np.random.default_rng(100)
    a = rng.standard_normal((33, 17))
    b = rng.standard_normal((17, 9))
    for _ in range(20):
        ref = np.maximum(a @ b + 1.0, 0).sum(axis=0) * 0.5
        a = a * 0.99 + 0.01
    np.testing.assert_allclose(together[0], ref, rtol=1e-4, atol=1e-4)


def _train(i: int) -> str:
    rng = np.random.default_rng(200 + i)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    with hv.no_grad():  # the default generator is shared: each thread sets its own weights
        for p in model.parameters():
            p.copy_(rng.standard_normal(p.shape).astype(np.float32) * 0.3)
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    x = rng.standard_normal((24, 12)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(hv.tensor(x)), hv.tensor(y)).backward()
        opt.step()
    return hv.checkpoint.state_digest({k: t.digest() for k, t in model.state_dict().items()})


def test_training_steps_from_eight_threads_match_one_thread():
    alone = [_train(i) for i in range(THREADS)]
    assert len(set(alone)) == THREADS  # each thread trains its own model
    assert _run_threads(_train) == alone


def test_one_graph_replayed_from_several_threads():
    x = hv.tensor(np.arange(1000, dtype=np.float32))
    total = hv.zeros(1000)
    with hv.no_grad():
        with hv.capture() as graph:
            total.copy_(total + x)
    replays = 25

    def replay(_):
        for _ in range(replays):
            graph.replay()

    _run_threads(replay, 4)
    # The capture ran once, then 4 x 25 replays, each adding x once, in some order: the sum is exact.
    np.testing.assert_array_equal(total.numpy(), np.arange(1000, dtype=np.float32) * (1 + 4 * replays))
    graph.destroy()


def test_a_capture_holds_other_threads_ops_out_of_the_graph():
    a = hv.tensor(np.ones(64, np.float32))
    out = hv.zeros(64)
    with hv.no_grad():
        with hv.capture() as alone:
            out.copy_(a + 1.0)
    alone.destroy()
    started, results = threading.Event(), []

    def other():
        started.wait()
        results.append((a * 3.0).numpy())  # waits for the capture to end; never recorded into it

    t = threading.Thread(target=other)
    t.start()
    with hv.no_grad():
        with hv.capture() as graph:
            started.set()
            out.copy_(a + 1.0)
    t.join(timeout=60)
    assert results and np.all(results[0] == 3.0)
    assert graph.dispatches == alone.dispatches
    graph.destroy()
