"""Record once, replay: bit-identical to eager, no per-op recording on replay, and every
uncapturable action refused while capturing."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors, nn, optim
from hlx_vulkan.nn import functional as F


def _setup(seed=0):
    hv.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    sched = optim.CosineAnnealingLR(opt, T_max=20)
    x, y = hv.zeros(8, 12), hv.zeros(8, dtype="int32")
    return model, opt, sched, x, y


def _step(model, opt, sched, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    sched.step()


def _batches(n=6):
    rng = np.random.default_rng(7)
    return [(rng.standard_normal((8, 12)).astype(np.float32), rng.integers(0, 4, 8)) for _ in range(n)]


def _weights(model):
    return [p.numpy().tobytes() for p in model.parameters()]


def _eager_and_replayed(build, step, batches):
    """One copy of a training set-up run eagerly, one captured on the first batch and replayed on
    the rest; ``build()`` returns (model, ..., x, y) and ``step(*built)`` runs one step."""
    stream = hv.default_runtime().stream

    def feed(built, bx, by):
        with hv.no_grad():
            built[-2].copy_(bx)
            built[-1].copy_(by)

    eager = build()
    for bx, by in batches:
        feed(eager, bx, by)
        step(*eager)
    replayed, graph = build(), None
    for bx, by in batches:
        feed(replayed, bx, by)
        if graph is None:
            with hv.capture() as graph:
                step(*replayed)
        else:
            dispatches = stream.dispatches
            graph.replay()
            assert stream.dispatches == dispatches  # nothing recorded per op
    return eager, replayed, graph


def test_replayed_training_steps_are_bit_identical_to_eager_ones():
    batches = _batches()
    eager, (model, opt, *_), graph = _eager_and_replayed(_setup, _step, batches)
    assert graph.replays == len(batches) and graph.dispatches > 20
    assert _weights(model) == _weights(eager[0])
    assert opt.step_count == len(batches)
    graph.destroy()


def test_random_draws_inside_a_capture_are_fresh_on_every_replay_and_match_eager():
    hv.manual_seed(5)
    eager = [hv.rand(1000).numpy() for _ in range(3)] + [hv.randn(7).numpy()]
    hv.manual_seed(5)
    out = hv.zeros(1000)
    with hv.capture() as graph:
        out.copy_(hv.rand(1000))
    captured = [out.numpy()]
    for _ in range(2):
        graph.replay()
        captured.append(out.numpy())
    after = hv.randn(7).numpy()  # eager draws continue past what the replays used
    for a, b in zip(eager, captured + [after]):
        np.testing.assert_array_equal(a, b)
    hv.manual_seed(5)  # the same seed again: the replay draws what the first eager draw did
    graph.replay()
    np.testing.assert_array_equal(out.numpy(), eager[0])
    hv.manual_seed(6)  # the seed is baked into the graph
    with pytest.raises(errors.CaptureError, match="reseeded"):
        graph.replay()
    graph.destroy()


def test_a_graph_longer_than_one_batch_replays_every_segment(rng):
    """More ops than one command buffer holds: the graph keeps several, and a replay runs them all."""
    stream = hv.default_runtime().stream
    x = hv.zeros(257)

    def chain():
        y = x
        for _ in range(stream.batch_ops // 2 + 20):  # two dispatches each
            y = y * 1.001 + 0.5
        return y

    inputs = [rng.standard_normal(257).astype(np.float32) for _ in range(3)]
    eager = []
    for data in inputs:
        with hv.no_grad():
            x.copy_(data)
        eager.append(chain().numpy())
    with hv.no_grad():
        x.copy_(inputs[0])
    with hv.capture() as graph:
        out = chain()
    assert graph.segments > 1
    np.testing.assert_array_equal(out.numpy(), eager[0])
    for data, want in zip(inputs[1:], eager[1:]):
        with hv.no_grad():
            x.copy_(data)
        graph.replay()
        np.testing.assert_array_equal(out.numpy(), want)
    graph.destroy()


def test_replays_run_ahead_of_the_device_without_waiting_for_their_own_submission(monkeypatch):
    """A replay waits for the one RING - 1 before it at most, never for the fence it has just
    submitted (the ring once reused a fence the stream still tracked, making every replay a sync)."""
    import importlib
    cap = importlib.import_module("hlx_vulkan.runtime.capture")  # the module (the package exports the function)
    x = hv.tensor(np.arange(300, dtype=np.float32))
    with hv.capture() as graph:
        y = x * 2.0 + 1.0
    submitted, bad = [], []
    real_submit = graph._prepared.submit

    def submit(fence):
        submitted.append(fence)
        real_submit(fence)
    monkeypatch.setattr(graph._prepared, "submit", submit)
    real_wait = cap._FenceWait.wait

    def wait(self, timeout=None):
        if submitted and self.fence is submitted[-1] and checking:
            bad.append(len(submitted))
        real_wait(self, timeout)
    monkeypatch.setattr(cap._FenceWait, "wait", wait)
    checking = True
    for _ in range(4 * cap.RING):
        graph.replay()
    checking = False
    assert len(submitted) == 4 * cap.RING and bad == []
    np.testing.assert_array_equal(y.numpy(), np.arange(300, dtype=np.float32) * 2 + 1)
    graph.destroy()


def test_a_host_write_into_a_graphs_input_waits_for_the_replay_in_flight():
    """Memory a live graph reads is written in stream order even where the host could write it in
    place (host-visible memory, its last eager use finished): the replay in flight, which reads
    it only at its end, sees the old values; the next replay the new ones."""
    n = 1 << 22
    z = hv.tensor(np.ones(n, np.float32))
    x = hv.tensor(np.full(n, 3.0, np.float32))
    with hv.capture() as graph:
        y = z
        for _ in range(30):
            y = y * 1.0 + 0.0
        out = y + x                                    # x is read last, long after the replay starts
    (z + 1.0).numpy()                                  # a later eager batch, finished
    graph.replay()
    with hv.no_grad():
        x.copy_(np.full(n, 5.0, np.float32))
    np.testing.assert_array_equal(out.numpy()[::4099], np.full(-(-n // 4099), 4.0, np.float32))
    graph.replay()
    np.testing.assert_array_equal(out.numpy()[::4099], np.full(-(-n // 4099), 6.0, np.float32))
    graph.destroy()


def test_an_eager_draw_between_replays_is_not_repeated_by_the_next_replay():
    hv.manual_seed(9)
    ref = [hv.rand(64).numpy() for _ in range(4)]
    hv.manual_seed(9)
    out = hv.zeros(64)
    with hv.capture() as graph:
        out.copy_(hv.rand(64))
    first = out.numpy()
    between = hv.rand(64).numpy()
    graph.replay()
    third = out.numpy()
    graph.replay()
    for a, b in zip(ref, [first, between, third, out.numpy()]):
        np.testing.assert_array_equal(a, b)
    graph.destroy()


def test_a_dropout_training_step_replays_bit_identically_to_eager():
    def build():
        hv.manual_seed(1)
        model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
        return model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), hv.zeros(8, 12), hv.zeros(8, dtype="int32")

    def step(model, opt, x, y):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    eager, replayed, graph = _eager_and_replayed(build, step, _batches(5))
    assert _weights(replayed[0]) == _weights(eager[0])
    graph.destroy()


def test_outputs_made_inside_are_read_after_replay():
    x = hv.zeros(256)
    with hv.capture() as graph:
        y = (x * 2.0 + 1.0).exp()
    np.testing.assert_allclose(y.numpy(), np.full(256, np.e, np.float32), rtol=1e-6)
    x.copy_(np.ones(256, np.float32))
    graph.replay()
    np.testing.assert_allclose(y.numpy(), np.full(256, np.exp(3.0), np.float32), rtol=1e-6)
    graph.destroy()


@pytest.mark.parametrize("action, match", [
    (lambda x: x.sum().item(), "host sync"),
    (lambda x: x.numpy(), "host sync"),
    (lambda x: hv.synchronize(), "host sync"),
    (lambda x: x.copy_(np.zeros(16, np.float32)), "before graph.replay"),
])
def test_uncapturable_actions_raise_at_capture_time(action, match):
    x = hv.ones(16)
    with pytest.raises(errors.CaptureError, match=match):
        with hv.capture():
            y = x * 2.0
            action(y)
    # The stream is usable again and nothing half-recorded runs.
    np.testing.assert_array_equal((x + 1.0).numpy(), np.full(16, 2.0, np.float32))
    assert not hv.default_runtime().stream.capturing


def test_memory_used_by_a_live_graph_cannot_be_freed_and_is_released_on_destroy():
    x = hv.ones(64)
    with hv.capture() as graph:
        y = x + 1.0
    with pytest.raises(errors.CaptureError, match="live captured graph"):
        x.buf.free()
    assert x.buf._allocation.pins == 1
    graph.destroy()
    assert x.buf._allocation.pins == 0
    x.buf.free()
    assert not x.buf.alive
    with pytest.raises(errors.DestroyedError):
        graph.replay()
    del y


def test_replay_inside_a_capture_and_nested_captures_are_refused():
    x = hv.ones(8)
    with hv.capture() as graph:
        x * 2.0
    with pytest.raises(errors.CaptureError):
        with hv.capture():
            graph.replay()
    with pytest.raises(errors.CaptureError, match="already"):
        with hv.capture():
            with hv.capture():
                pass
    graph.destroy()


def test_graphs_free_their_vulkan_objects():
    from hlx_vulkan.vk.handles import live_objects

    def one_graph():
        with hv.capture() as graph:
            x * 2.0
        graph.replay()
        graph.destroy()
    x = hv.ones(8)
    one_graph()  # the kernel is built and cached here (it stays, as every kernel does), not below
    hv.synchronize()
    gc.collect()
    before = live_objects()
    for _ in range(20):
        one_graph()
    hv.synchronize()
    gc.collect()
    assert live_objects() == before


def test_feeding_a_batch_of_another_shape_is_refused():
    x = hv.zeros(8, 12)
    with hv.capture() as graph:
        y = x.sum(axis=1)
    with pytest.raises(errors.ShapeError):
        with hv.no_grad():
            x.copy_(np.ones((4, 12), np.float32))
    graph.replay()
    np.testing.assert_array_equal(y.numpy(), np.zeros(8, np.float32))
    graph.destroy()


def test_a_process_that_exits_with_a_live_graph_exits_cleanly(tmp_path):
    from conftest import assert_clean_exit, run_python
    script = tmp_path / "live_graph.py"
    script.write_text(
        "import hlx_vulkan as hv\n"
        "x = hv.ones(1000)\n"
        "with hv.capture() as graph:\n"
        "    y = (x * 3.0).sum()\n"
        "graph.replay()\n"
        "print(y.item())\n")
    out = run_python([str(script)], timeout=120)
    assert_clean_exit(out)  # with validation on, an error at exit makes the status 1
    assert out.stdout.strip() == "3000.0"


def test_a_graph_dropped_without_destroy_frees_everything_after_its_replays():
    from hlx_vulkan.vk.handles import live_objects
    x = hv.ones(4096)
    (x * 2.0).exp().sum().numpy()  # the kernels' pipelines are cached from here on
    gc.collect()
    before = live_objects()
    with hv.capture() as graph:
        (x * 2.0).exp().sum()
    for _ in range(3):
        graph.replay()
    assert x.buf._allocation.pins == 1
    del graph
    gc.collect()
    assert x.buf._allocation.pins == 0
    hv.synchronize()
    assert live_objects() == before


def test_a_constant_made_inside_a_capture_may_reuse_memory_freed_before_it_or_inside_it():
    idx = hv.tensor(np.array([1, 2, 3], np.int32))
    freed = hv.tensor(np.arange(10, dtype=np.int32))
    (freed + 1).numpy()  # nothing is being recorded from here on
    del freed  # its range is cached, stamped with the last submitted batch, not the next one
    held = [hv.tensor(np.arange(10, dtype=np.int32)) + 1]  # used by eager work, freed inside the capture
    with hv.capture() as graph:
        a = hv.one_hot(idx, 10)  # each makes its class-index constant from host data
        held.clear()
        b = hv.one_hot(idx, 10) * 2.0
        with pytest.raises(errors.CaptureError, match="live captured graph"):
            b.buf.free()  # memory the capture uses is pinned from its first use
    graph.replay()
    np.testing.assert_array_equal(a.numpy().argmax(1), [1, 2, 3])
    np.testing.assert_array_equal(b.numpy().max(1), [2.0, 2.0, 2.0])
    graph.destroy()
