"""training.parallel and distributed.sampler in one process: micro-batch gradient accumulation
(the mean over the whole batch, added in piece order), the batch split, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import nn
from hlx_vulkan.distributed import DistributedSampler, split_batch
from hlx_vulkan.training.digits import train_digits
from hlx_vulkan.training.parallel import ParallelStep


def _setup(seed=11):
    hv.manual_seed(seed)
    model = nn.Sequential(nn.Linear(7, 11), nn.Tanh(), nn.Linear(11, 3))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((30, 7)).astype(np.float32)
    y = rng.standard_normal((30, 3)).astype(np.float32)
    return model, x, y


def _torch_grads(model, x, y):
    ps = [torch.tensor(p.numpy().astype(np.float64), requires_grad=True) for p in model.parameters()]
    h = torch.tanh(torch.from_numpy(x.astype(np.float64)) @ ps[0].T + ps[1]) @ ps[2].T + ps[3]
    torch.nn.functional.mse_loss(h, torch.from_numpy(y.astype(np.float64))).backward()
    return [p.grad.numpy() for p in ps]


@pytest.mark.parametrize("micro", [1, 2, 3, 5])
def test_micro_batches_give_the_whole_batch_mean_gradient(micro):
    model, x, y = _setup()
    par = ParallelStep(model, micro_batches=micro)
    xd, yd = hv.from_numpy(x), hv.from_numpy(y)
    for p in model.parameters():  # stale gradients must not leak into the step
        p.grad = hv.full(p.shape, 1e3)
    loss = par.backward(np.arange(30), lambda i: nn.MSELoss()(model(xd[int(i[0]):int(i[-1]) + 1]),
                                                              yd[int(i[0]):int(i[-1]) + 1]))
    for p, want in zip(model.parameters(), _torch_grads(model, x, y)):
        np.testing.assert_allclose(p.grad.numpy(), want, rtol=2e-5, atol=1e-6)
    pieces = np.split(np.arange(30), micro)
    want_loss = np.mean([np.mean((torch.tanh(torch.from_numpy(x[i].astype(np.float64)) @ torch.from_numpy(
        model[0].weight.numpy().astype(np.float64)).T + torch.from_numpy(model[0].bias.numpy().astype(np.float64)))
        .numpy() @ model[2].weight.numpy().T.astype(np.float64) + model[2].bias.numpy() - y[i]) ** 2) for i in pieces])
    assert abs(loss.item() - want_loss) < 1e-5 * max(1.0, abs(want_loss))


def test_one_micro_batch_is_plain_backward_bit_for_bit():
    model, x, y = _setup()
    xd, yd = hv.from_numpy(x), hv.from_numpy(y)
    nn.MSELoss()(model(xd), yd).backward()
    plain = [p.grad.numpy() for p in model.parameters()]
    ParallelStep(model).backward(np.arange(30), lambda i: nn.MSELoss()(model(xd), yd))
    for p, want in zip(model.parameters(), plain):
        np.testing.assert_array_equal(p.grad.numpy(), want)


def test_accumulation_order_is_piece_order():
    """Two pieces: the gradient is (g0 + g1) * 0.5 with g0, g1 each piece's own backward."""
    model, x, y = _setup()
    xd, yd = hv.from_numpy(x), hv.from_numpy(y)
    grads = []
    for a, b in ((0, 15), (15, 30)):
        model.zero_grad()
        nn.MSELoss()(model(xd[a:b]), yd[a:b]).backward()
        grads.append([p.grad.numpy() for p in model.parameters()])
    ParallelStep(model, micro_batches=2).backward(
        np.arange(30), lambda i: nn.MSELoss()(model(xd[int(i[0]):int(i[-1]) + 1]), yd[int(i[0]):int(i[-1]) + 1]))
    for p, g0, g1 in zip(model.parameters(), *grads):
        np.testing.assert_array_equal(p.grad.numpy(), (g0 + g1) * np.float32(0.5))


def test_split_and_sampler():
    assert [list(p) for p in split_batch(np.arange(6), 3)] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="does not split into 4"):
        split_batch(np.arange(6), 4)
    with pytest.raises(ValueError, match="micro_batches must be at least 1"):
        ParallelStep(_setup()[0], micro_batches=0)
    shards = [DistributedSampler(50, 12, rank=r, world_size=3, seed=4) for r in range(3)]
    assert len(shards[0]) == 4
    for epoch in (0, 1):
        whole = shards[0].global_batches(epoch)
        for step, batch in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([s.batches(epoch)[step] for s in shards]), batch)
        assert len(np.unique(np.concatenate(whole))) == 48
    assert not np.array_equal(shards[0].global_batches(0)[0], shards[0].global_batches(1)[0])
    with pytest.raises(ValueError, match="rank 3"):
        DistributedSampler(50, 12, rank=3, world_size=3)
    with pytest.raises(ValueError, match="does not split"):
        DistributedSampler(50, 10, rank=0, world_size=3)


def test_digits_refuses_what_it_cannot_split_or_replay():
    with pytest.raises(ValueError, match="does not split into 3"):
        train_digits(epochs=1, hidden=8, batch_size=128, micro_batches=3, progress=False)
    with pytest.raises(ValueError, match="capture and jit record one whole-batch step"):
        train_digits(epochs=1, hidden=8, batch_size=128, micro_batches=2, capture=True, progress=False)


def test_digits_micro_batches_train_as_well():
    one = train_digits(seed=1, epochs=2, hidden=32, batch_size=128, progress=False)
    two = train_digits(seed=1, epochs=2, hidden=32, batch_size=128, micro_batches=2, progress=False)
    assert two.manifest["micro_batches"] == 2 and two.manifest["world_size"] == 1
    assert two.weights_digest != one.weights_digest  # other roundings...
    assert abs(two.history[-1]["train_loss"] - one.history[-1]["train_loss"]) < 0.02  # ...the same training


def test_transformer_refuses_what_it_cannot_split_or_replay():
    from hlx_vulkan.training.transformer import train_sort
    with pytest.raises(ValueError, match="does not split into 3"):
        train_sort(epochs=1, steps=1, batch_size=8, micro_batches=3, progress=False)
    with pytest.raises(ValueError, match="capture records one whole-batch step"):
        train_sort(epochs=1, steps=1, batch_size=8, micro_batches=2, capture=True, progress=False)


def test_a_model_with_running_statistics_splits_into_micro_batches():
    # data-parallel keeps them too (tests/distributed: the CNN's bits over two ranks)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    assert ParallelStep(model, micro_batches=2).has_buffers
    assert not ParallelStep(nn.Sequential(nn.Linear(2, 3)), micro_batches=2).has_buffers
