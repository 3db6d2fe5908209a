"""hv.jit: eager on the first call, captured on the second, replayed after; bit-identical to
eager; arguments fed in, signatures guarded, graphs freed."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors, nn, optim
from hlx_vulkan.nn import functional as F
from hlx_vulkan.vk import live_objects


def _setup(dropout=0.0, seed=0):
    hv.manual_seed(seed)
    layers = [nn.Linear(12, 32), nn.GELU()] + ([nn.Dropout(dropout)] if dropout else []) + [nn.Linear(32, 4)]
    model = nn.Sequential(*layers)
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    sched = optim.CosineAnnealingLR(opt, T_max=20)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        return loss

    return model, step


def _batches(n=6, rows=8, seed=7):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((rows, 12)).astype(np.float32), rng.integers(0, 4, rows)) for _ in range(n)]


def _weights(model):
    return [p.numpy() for p in model.parameters()]


def _tensors(batch):
    return hv.tensor(batch[0]), hv.tensor(batch[1], dtype="int32")


def _run(step, batches, feed=_tensors):
    """Each step's loss, read after the call (a result is rewritten by the next replay)."""
    return [float(step(*feed(b)).item()) for b in batches]


def _assert_same(model_a, model_b):
    for a, b in zip(_weights(model_a), _weights(model_b)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("feed", ["numpy", "tensor"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_jitted_training_steps_are_bit_identical_to_eager_ones(feed, dropout):
    to_args = (lambda b: b) if feed == "numpy" else _tensors
    batches = _batches()
    eager_model, eager_step = _setup(dropout)
    eager_losses = _run(eager_step, batches)
    model, step = _setup(dropout)
    jitted = hv.jit(step)
    stream = hv.default_runtime().stream
    losses = [float(jitted(*to_args(b)).item()) for b in batches[:2]]
    assert len(jitted.graphs) == 1
    for b in batches[2:]:
        args = to_args(b)
        dispatches = stream.dispatches
        losses.append(float(jitted(*args).item()))
        assert stream.dispatches - dispatches == sum(isinstance(a, hv.Tensor) for a in args)  # the copies in
    assert losses == eager_losses
    _assert_same(model, eager_model)
    graph = jitted.graphs[0]
    assert graph.replays == len(batches) - 1  # capture runs the graph once
    jitted.reset()
    assert not graph.alive and jitted.graphs == []


def test_results_are_the_same_objects_each_replay_detached_and_rewritten():
    _, step = _setup()
    jitted = hv.jit(step)
    batches = _batches(4)
    first = jitted(*batches[0])
    assert not first.requires_grad  # detached even on the eager call
    second = jitted(*batches[1])
    third = jitted(*batches[2])
    assert third is second and not third.requires_grad
    before = third.item()
    assert jitted(*batches[3]) is second and second.item() != before
    jitted.reset()


def test_the_callers_tensors_are_not_overwritten_and_in_place_writes_come_back():
    @hv.jit
    def accumulate(total, x):
        with hv.no_grad():
            total.copy_(total + x.sum())
        return x * 2.0

    totals, xs = [], []
    for i in range(4):
        totals.append(hv.zeros(1))
        xs.append(hv.full((5,), float(i + 1)))
        out = accumulate(totals[-1], xs[-1])
        np.testing.assert_array_equal(out.numpy(), np.full(5, 2.0 * (i + 1), np.float32))
    for i in range(4):  # each call wrote its own accumulator, and no input was overwritten by a later call
        np.testing.assert_array_equal(totals[i].numpy(), [5.0 * (i + 1)])
        np.testing.assert_array_equal(xs[i].numpy(), np.full(5, i + 1.0, np.float32))
    accumulate(totals[0], xs[3])  # a replay with the accumulator of call 1 adds to it
    np.testing.assert_array_equal(totals[0].numpy(), [25.0])
    accumulate.reset()


def test_a_new_batch_shape_gets_its_own_graph_and_stays_bit_identical():
    batches = _batches(4, rows=8) + _batches(4, rows=5, seed=3) + _batches(2, rows=8, seed=4)
    eager_model, eager_step = _setup()
    eager_losses = _run(eager_step, batches)
    model, step = _setup()
    jitted = hv.jit(step)
    assert _run(jitted, batches, feed=lambda b: b) == eager_losses
    _assert_same(model, eager_model)
    assert len(jitted.graphs) == 2
    jitted.reset()


def test_strict_mode_refuses_another_shape_and_names_the_argument():
    _, step = _setup()
    jitted = hv.jit(strict=True)(step)
    for b in _batches(3):
        jitted(*b)
    x, y = _batches(1, rows=5)[0]
    with pytest.raises(errors.JitError, match=r"x: shape \(8, 12\) float32 -> shape \(5, 12\) float32") as info:
        jitted(x, y)
    assert isinstance(info.value, errors.CaptureError)
    assert "y: shape (8,) int64 -> shape (5,) int64" in str(info.value)  # numpy int64 labels stay int64, as torch
    jitted(*_batches(1)[0])  # the captured signature still replays
    assert len(jitted.graphs) == 1 and jitted.graphs[0].replays == 3
    jitted.reset()


def test_a_changed_python_argument_is_baked_in_and_recaptures():
    @hv.jit
    def scaled(x, factor, mode="add"):
        return x * factor + 1.0 if mode == "add" else x * factor

    x = np.arange(6, dtype=np.float32)
    calls = [(2.0, "add"), (2.0, "add"), (3.0, "add"), (3.0, "add"), (3.0, "mul"), (2.0, "add"), (3.0, "mul"),
             (3.0, "mul"), (3.0, "add")]
    for factor, mode in calls:
        expect = x * factor + 1.0 if mode == "add" else x * factor
        np.testing.assert_array_equal(scaled(x, factor, mode=mode).numpy(), expect)
    assert [g.replays for g in scaled.graphs] == [2, 2, 2]  # the capture's own run, then one replay each
    with pytest.raises(errors.JitError, match=r"factor: 2.0 -> 3.0; mode: 'add' -> 'mul'"):
        strict = hv.jit(scaled.fn, strict=True)
        strict(x, 2.0, mode="add")
        strict(x, 3.0, mode="mul")
    scaled.reset()


def test_past_max_graphs_new_signatures_run_eagerly_with_one_warning():
    @hv.jit(max_graphs=2)
    def shift(x, by):
        return x + by

    x = np.zeros(4, np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for by in [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 1.0]:
            np.testing.assert_array_equal(shift(x, by).numpy(), np.full(4, by, np.float32))
    assert len(caught) == 1 and "by: 2.0 -> 3.0" in str(caught[0].message)
    assert len(shift.graphs) == 2
    shift.reset()


def test_nested_and_keyword_arguments_are_fed():
    @hv.jit
    def combine(pair, scale=None, **named):
        a, b = pair
        return {"sum": a + b * scale["w"], "n": named["n"] * 2.0}

    rng = np.random.default_rng(1)
    for _ in range(4):
        a, b, w, n = (rng.standard_normal(3).astype(np.float32) for _ in range(4))
        out = combine((a, hv.tensor(b)), scale={"w": hv.tensor(w)}, n=n)
        np.testing.assert_array_equal(out["sum"].numpy(), a + b * w)
        np.testing.assert_array_equal(out["n"].numpy(), n * 2.0)
    assert len(combine.graphs) == 1 and combine.graphs[0].replays == 3
    combine.reset()


def test_a_parameter_argument_is_used_in_place_and_a_differentiable_input_is_refused():
    w = hv.ones(3, requires_grad=True)

    @hv.jit
    def grad_of(w, x):
        w.grad = None
        (w * x).sum().backward()
        return w.grad

    for i in range(4):
        x = np.full(3, float(i), np.float32)
        np.testing.assert_array_equal(grad_of(w, x).numpy(), x)
    assert len(grad_of.graphs) == 1
    with pytest.raises(errors.JitError, match="carries gradients"):
        grad_of(w, w * 2.0)
    grad_of.reset()


def test_inside_an_outer_capture_the_function_is_recorded_inline():
    double = hv.jit(lambda x: x * 2.0)
    x = hv.ones(4)
    with hv.capture() as graph:
        y = double(x) + 1.0
    x.copy_(np.full(4, 5.0, np.float32))
    graph.replay()
    np.testing.assert_array_equal(y.numpy(), np.full(4, 11.0, np.float32))
    assert double.graphs == []
    graph.destroy()


def test_a_jitted_method_binds_its_instance():
    class Scaler:
        def __init__(self, k):
            self.k = k

        @hv.jit
        def __call__(self, x):
            return x * self.k

    a, b = Scaler(2.0), Scaler(3.0)
    x = np.ones(3, np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(a(x).numpy(), np.full(3, 2.0, np.float32))
        np.testing.assert_array_equal(b(x).numpy(), np.full(3, 3.0, np.float32))
    assert len(Scaler.__call__.graphs) == 2
    Scaler.__call__.reset()


def test_reset_frees_every_graph_and_the_next_call_is_eager_again():
    _, step = _setup(dropout=0.2)
    jitted = hv.jit(step)
    calls = _batches(4) + _batches(3, rows=5)

    def run_and_reset():
        for b in calls:
            jitted(*b)
        assert len(jitted.graphs) == 2
        jitted.reset()
        hv.synchronize()
        gc.collect()
        return live_objects()

    before = run_and_reset()  # kernels, optimizer state and descriptor sets exist from here on
    assert run_and_reset() == before
    jitted(*calls[0])
    assert jitted.graphs == []


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="max_graphs"):
        hv.jit(lambda x: x, max_graphs=0)


def test_a_module_can_be_jitted_directly_and_a_different_parameter_is_named():
    hv.manual_seed(2)
    model = nn.Linear(4, 3)
    jitted = hv.jit(model)
    x = np.ones((2, 4), np.float32)
    with hv.no_grad():
        expect = model(hv.tensor(x)).numpy()
        for _ in range(3):
            np.testing.assert_array_equal(jitted(x).numpy(), expect)
    assert len(jitted.graphs) == 1
    jitted.reset()

    @hv.jit(strict=True)
    def scale(w, x):
        with hv.no_grad():
            return w * x

    scale(model.weight, hv.ones(3, 4))
    with pytest.raises(errors.JitError, match=r"w: a tensor that requires grad -> a tensor that requires grad "
                                              r"\(another object\)"):
        scale(hv.ones(3, 4, requires_grad=True), hv.ones(3, 4))
