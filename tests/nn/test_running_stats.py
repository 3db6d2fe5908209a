"""Deferred running-statistics updates (hlx_vulkan.nn.running_stats): recorded, not applied, inside
``deferred()``; replayed later they give the bits of the updates applied at once."""

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import nn
from hlx_vulkan.nn import running_stats


def _pieces(seed=7):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((3, 5, 4, 3)).astype(np.float32) * (k + 1) + k for k in range(3)]


def _buffers(bn):
    return {k: v.numpy().copy() for k, v in bn.state_dict().items() if k.startswith(("running", "num_"))}


def test_replay_gives_the_bits_of_immediate_updates():
    pieces = _pieces()
    now = nn.BatchNorm2d(5, momentum=0.3)
    for x in pieces:
        now(hv.from_numpy(x))
    later = nn.BatchNorm2d(5, momentum=0.3)
    before = _buffers(later)
    with running_stats.deferred() as records:
        for x in pieces:
            later(hv.from_numpy(x))
    for k, v in _buffers(later).items():  # untouched while deferred
        np.testing.assert_array_equal(v, before[k])
    assert [r[0] for r in records] == ["count", "blend", "blend"] * 3
    running_stats.replay(records)
    got, want = _buffers(later), _buffers(now)
    assert int(got["num_batches_tracked"]) == 3
    for k in want:
        assert got[k].tobytes() == want[k].tobytes(), k
    # and the running mean is torch's (float64 reference)
    mean = np.zeros(5)
    for x in pieces:
        mean = 0.7 * mean + 0.3 * x.astype(np.float64).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(got["running_mean"], mean, rtol=1e-5, atol=1e-6)


def test_replay_with_other_statistics():
    a, b = _pieces(1)[:2]
    bn = nn.BatchNorm2d(5)
    with running_stats.deferred() as records:
        bn(hv.from_numpy(a))
    other = nn.BatchNorm2d(5)
    with running_stats.deferred() as theirs:
        other(hv.from_numpy(b))
    running_stats.replay(records, [None if s is None else s for _, _, s, _, _ in theirs])
    ref = nn.BatchNorm2d(5)
    ref(hv.from_numpy(b))
    assert bn.running_var.numpy().tobytes() == ref.running_var.numpy().tobytes()
    assert bn.running_mean.numpy().tobytes() == ref.running_mean.numpy().tobytes()


def test_cumulative_momentum_cannot_be_deferred():
    bn = nn.BatchNorm2d(5, momentum=None)
    with pytest.raises(ValueError, match="momentum=None"), running_stats.deferred():
        bn(hv.from_numpy(_pieces()[0]))
    assert not running_stats.deferring()
    with pytest.raises(RuntimeError, match="already"), running_stats.deferred(), running_stats.deferred():
        pass
