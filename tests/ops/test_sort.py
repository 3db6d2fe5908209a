"""sort, argsort, topk, msort, kthvalue against PyTorch: every dim, both directions, ties
(stable: equal values keep their order), NaN (sorted as the largest, as torch), rows long
enough to need the global merge stages and of lengths that are not powers of two,
non-contiguous views, empty and size-1 dims, 16-bit floats and integers, int64 indices;
gradients against torch and finite differences; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.ops import sort as so


def _ties_and_nans(rng, shape, nan=True):
    x = rng.integers(-4, 5, shape).astype(np.float32) * 0.5
    if nan and x.size:
        x.flat[rng.choice(x.size, max(1, x.size // 10), replace=False)] = np.nan
    return x


def _same(ours, ref):
    v, i = ours
    rv, ri = ref
    assert i.dtype is hv.int64
    np.testing.assert_array_equal(v.to(hv.float32).numpy(), rv.float().numpy())
    np.testing.assert_array_equal(i.numpy(), ri.numpy())


@pytest.mark.parametrize("shape,dim", [((7,), 0), ((5, 13), 1), ((5, 13), 0), ((3, 4, 6), 1), ((2, 1000), -1),
                                       ((2, 1500, 3), 1), ((3, 1), 1), ((1, 5), 0), ((4, 0), 1), ((0, 4), 1)])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_is_torchs_stable_sort(rng, shape, dim, descending):
    x = _ties_and_nans(rng, shape)
    _same(hv.sort(hv.tensor(x), dim, descending), torch.sort(torch.tensor(x), stable=True, dim=dim,
                                                             descending=descending))
    np.testing.assert_array_equal(hv.argsort(hv.tensor(x), dim, descending).numpy(),
                                  torch.argsort(torch.tensor(x), dim=dim, descending=descending, stable=True).numpy())


def test_sort_longer_than_one_block_distinct_values(rng):
    """4100 elements: padded to 8192, global merge stages of several sizes."""
    x = rng.permutation(4100).astype(np.float32) - 2000.0
    v, i = hv.tensor(x).sort(descending=True)
    np.testing.assert_array_equal(v.numpy(), np.sort(x)[::-1])
    np.testing.assert_array_equal(x[i.numpy()], v.numpy())


def test_sort_of_views_and_method_forms(rng):
    x = _ties_and_nans(rng, (6, 9))
    t = hv.tensor(x)
    _same(t.T.sort(dim=1), torch.tensor(x).T.sort(stable=True, dim=1))
    _same(t[::2, 1:].sort(0, True), torch.tensor(x)[::2, 1:].sort(stable=True, dim=0, descending=True))
    np.testing.assert_array_equal(t.msort().numpy(), torch.msort(torch.tensor(x)).numpy())
    s = hv.tensor(3.0).sort()
    assert s.values.shape == () and int(s.indices.item()) == 0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int32", "int64", "uint8", "int8"])
def test_sort_other_dtypes(rng, dtype):
    x = rng.integers(0 if dtype == "uint8" else -50, 50, (4, 37))
    tt = getattr(torch, dtype)
    for desc in (False, True):
        v, i = hv.tensor(x).to(dtype).sort(descending=desc)
        assert v.dtype.name == dtype
        _same((v, i), torch.tensor(x).to(tt).sort(stable=True, descending=desc))


def test_infinities_and_signed_zeros(rng):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -0.0, np.nan, -np.inf], np.float32)
    for desc in (False, True):
        _same(hv.tensor(x).sort(descending=desc), torch.tensor(x).sort(stable=True, descending=desc))


@pytest.mark.parametrize("k,dim,largest", [(3, 1, True), (1, 1, False), (5, 0, True), (13, 1, False), (0, 1, True)])
def test_topk_matches_torch(rng, k, dim, largest):
    x = rng.permutation(5 * 13).reshape(5, 13).astype(np.float32)
    x[1, 4] = np.nan
    v, i = hv.topk(hv.tensor(x), k, dim, largest)
    rv, ri = torch.topk(torch.tensor(x), k, dim, largest)
    _same((v, i), (rv, ri))


def test_topk_takes_the_first_of_equal_values():
    x = hv.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    v, i = x.topk(2)
    np.testing.assert_array_equal(i.numpy(), [[1, 2]])
    v, i = x.topk(2, largest=False)
    np.testing.assert_array_equal(i.numpy(), [[0, 3]])


def test_kthvalue_matches_torch(rng):
    x = rng.permutation(4 * 7).reshape(4, 7).astype(np.float32)
    for k, keep in ((1, False), (4, True), (7, False)):
        _same(hv.kthvalue(hv.tensor(x), k, 1, keep), torch.kthvalue(torch.tensor(x), k, 1, keep))


def test_gradients_match_torch_and_finite_differences(rng):
    x = (rng.permutation(4 * 9).reshape(4, 9) * 0.37 - 5.0).astype(np.float32)   # distinct: differentiable
    w1, w2 = rng.standard_normal((4, 9)), rng.standard_normal((4, 3))

    def ours(t):
        return (t.sort(1, True).values * hv.tensor(w1)).sum() + (t.T.topk(3, 0).values.T * hv.tensor(w2)).sum()

    def ref(t):
        return (t.sort(1, True).values * torch.tensor(w1)).sum() + (t.T.topk(3, 0).values.T * torch.tensor(w2)).sum()

    xt = hv.tensor(x, requires_grad=True)
    ours(xt).backward()
    xr = torch.tensor(x.astype(np.float64), requires_grad=True)
    ref(xr).backward()
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-6, atol=1e-6)
    h = 1e-2  # the values are 0.37 apart: a step this size keeps the order
    fd = np.zeros_like(x, np.float64)
    with hv.no_grad():
        for j in range(x.size):
            p, m = x.copy(), x.copy()
            p.flat[j] += h
            m.flat[j] -= h
            fd.flat[j] = (float(ours(hv.tensor(p)).item()) - float(ours(hv.tensor(m)).item())) / (2 * h)
    np.testing.assert_allclose(xt.grad.numpy(), fd, rtol=1e-3, atol=1e-3)


def test_argsort_is_not_differentiable_but_takes_grad_inputs(rng):
    x = hv.tensor(rng.standard_normal(5).astype(np.float32), requires_grad=True)
    idx = x.argsort()
    assert not idx.requires_grad and idx.dtype is hv.int64


def test_sort_is_deterministic_and_batch_independent(rng):
    x = _ties_and_nans(rng, (1, 777))
    one = hv.tensor(x).sort(descending=True).indices.numpy()
    many = hv.tensor(np.tile(x, (9, 1))).sort(descending=True).indices.numpy()
    for row in many:
        np.testing.assert_array_equal(row, one[0])


def test_bad_arguments_raise_typed_errors(rng):
    x = hv.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    with pytest.raises(errors.ShapeError):
        x.topk(5)
    with pytest.raises(errors.ShapeError):
        x.topk(-1)
    with pytest.raises(errors.ShapeError):
        x.sort(dim=2)
    with pytest.raises(errors.ShapeError):
        hv.kthvalue(x, 0)
    with pytest.raises(TypeError):
        so.sort(x, True)


def test_work_buffer_size_is_padded_to_a_power_of_two_once():
    """A row of 513 needs a 1024-element network: global merge stage plus block tail."""
    x = np.arange(513, dtype=np.float32)[::-1].copy()
    v, i = hv.tensor(x).sort()
    np.testing.assert_array_equal(v.numpy(), np.arange(513, dtype=np.float32))
    np.testing.assert_array_equal(i.numpy(), np.arange(512, -1, -1))
