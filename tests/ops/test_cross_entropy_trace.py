"""The mean cross-entropy replayed from traces (ops/cross_entropy_trace.py): the loss and the
logits' gradient are torch's in float64 and, bit for bit, the composed ops' (TRACED off), call
after call, over poisoned memory, with ignored rows, in and out of grad mode; a device target out
of range is still reported at the next sync point."""

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import cross_entropy as ce


def _data(rng, n, c, ignore):
    logits = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    target = rng.integers(0, c, n)
    target[::5] = ignore
    return logits, target


def _step(logits_np, target, dtype):
    x = hv.tensor(logits_np, requires_grad=True)
    loss = F.cross_entropy(x, hv.tensor(target.astype(dtype)), ignore_index=-7)
    loss.backward()
    return loss, x.grad.numpy()


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("n,c", [(37, 11), (64, 10), (3, 1030)])
def test_replays_give_torch_values_and_the_composed_bits(dtype, n, c, monkeypatch, rng):
    rt = hv.default_runtime()
    # An earlier test may have traced this layout already: the first call here must trace it.
    for key in [k for k in rt.plans if k and k[0] == "cross_entropy trace"]:
        del rt.plans[key]
    results = []
    for i in range(3):
        data = _data(rng, n, c, -7)
        hv.full((n, c), float("nan")).numpy()  # poison: outputs of this size reuse the range
        d0 = rt.stream.dispatches
        loss, grad = _step(*data, dtype)
        dispatches = rt.stream.dispatches - d0
        assert (loss.grad_fn.name == "cross_entropy") == (i > 0)  # one node once traced
        monkeypatch.setattr(ce, "TRACED", False)
        d0 = rt.stream.dispatches
        ref_loss, ref_grad = _step(*data, dtype)
        ref_dispatches = rt.stream.dispatches - d0
        monkeypatch.setattr(ce, "TRACED", True)
        assert loss.numpy().tobytes() == ref_loss.numpy().tobytes() and grad.tobytes() == ref_grad.tobytes()
        assert dispatches == ref_dispatches  # a replay records what the composed ops record, no more
        results.append(dispatches)
        tx = torch.tensor(data[0], dtype=torch.float64, requires_grad=True)
        tl = torch.nn.functional.cross_entropy(tx, torch.tensor(data[1]), ignore_index=-7)
        tl.backward()
        np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-5)
        np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert results[0] == results[1] == results[2]  # the same dispatches, traced or not


def test_inference_first_then_training(rng):
    logits, target = _data(rng, 21, 9, -7)
    y = hv.tensor(target)
    with hv.no_grad():
        for _ in range(2):
            plain = F.cross_entropy(hv.tensor(logits), y, ignore_index=-7)
            assert not plain.requires_grad
    x = hv.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, y, ignore_index=-7)
    loss.backward()
    assert loss.numpy().tobytes() == plain.numpy().tobytes()
    tx = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.cross_entropy(tx, torch.tensor(target), ignore_index=-7).backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_a_device_target_out_of_range_is_reported_by_a_replay(rng):
    logits, target = _data(rng, 13, 6, -100)
    for _ in range(2):
        F.cross_entropy(hv.tensor(logits, requires_grad=True), hv.tensor(target)).backward()
    hv.default_runtime().synchronize()
    bad = target.copy()
    bad[4] = 6
    loss = F.cross_entropy(hv.tensor(logits, requires_grad=True), hv.tensor(bad))
    assert loss.grad_fn.name == "cross_entropy"
    with pytest.raises(errors.DeviceIndexError, match="cross_entropy"):
        hv.default_runtime().synchronize()


def test_retain_graph_and_a_second_backward(rng):
    logits, target = _data(rng, 10, 4, -100)
    grads = []
    for _ in range(2):
        x = hv.tensor(logits, requires_grad=True)
        loss = F.cross_entropy(x, hv.tensor(target)) * 2.0
        loss.backward(retain_graph=True)
        loss.backward()
        grads.append(x.grad.numpy())
    tx = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    (torch.nn.functional.cross_entropy(tx, torch.tensor(target)) * 4.0).backward()
    for g in grads:
        np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert grads[0].tobytes() == grads[1].tobytes()


def test_calls_that_cannot_be_traced_fall_back_to_the_composed_ops(rng):
    """Inside another trace a call gets no trace of its own: after MAX_ATTEMPTS such calls the key
    keeps to the composed ops, with their results."""
    from hlx_vulkan.ops import cross_entropy_trace as ct
    from hlx_vulkan.runtime.trace import Tracer
    rt = hv.default_runtime()
    logits, target = _data(rng, 17, 5, -100)
    y = hv.tensor(target.astype(np.int32))
    with Tracer(rt, []):
        losses = [F.cross_entropy(hv.tensor(logits, requires_grad=True), y) for _ in range(ct.MAX_ATTEMPTS + 1)]
    key = [k for k in rt.plans if k[0] == "cross_entropy trace" and k[1][1] == (17, 5) and k[2][0] == "int32"]
    assert len(key) == 1 and rt.plans[key[0]] == ct.MAX_ATTEMPTS
    ref = F.cross_entropy(hv.tensor(logits), y)
    assert all(loss.grad_fn.name != "cross_entropy" for loss in losses)
    assert all(loss.numpy().tobytes() == ref.numpy().tobytes() for loss in losses)
