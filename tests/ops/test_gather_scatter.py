"""gather, scatter, scatter_add (and flip, roll, repeat_interleave built on index selection)
against PyTorch in float64: odd shapes, every dim, non-contiguous views, empty and size-1 dims,
repeated indices, int32 and int64 indices, 16-bit floats and integers; outputs written over
poisoned memory; scatter_add's fixed order (bit-identical across runs and batch sizes); clear
errors for bad shapes, dtypes and indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors


def _poison(n: int) -> None:
    """Free a NaN-filled range of ``n`` floats, which the next allocation of that size reuses."""
    t = hv.full((max(n, 1),), float("nan"))
    del t


def _index(rng, shape, size, dim):
    return rng.integers(0, size, shape).astype(np.int64)


def _ref_src(a):
    return torch.tensor(np.asarray(a, np.float64))


CASES = [((5, 7), (3, 7), 0), ((5, 7), (5, 9), 1), ((3, 4, 5), (3, 2, 5), 1), ((3, 4, 5), (2, 4, 6), 2),
         ((2, 3, 4, 5), (2, 3, 4, 5), -1), ((7,), (11,), 0), ((1, 6), (1, 3), 1), ((4, 1), (4, 5), 1)]


@pytest.mark.parametrize("xshape,ishape,dim", CASES)
@pytest.mark.parametrize("idtype", ["int64", "int32"])
def test_gather_matches_torch(rng, xshape, ishape, dim, idtype):
    ishape = tuple(min(s, x) if d != dim % len(xshape) else s for d, (s, x) in enumerate(zip(ishape, xshape)))
    x = rng.standard_normal(xshape).astype(np.float32)
    idx = _index(rng, ishape, xshape[dim], dim)
    _poison(int(np.prod(ishape)))
    out = hv.gather(hv.tensor(x), dim, hv.tensor(idx, dtype=idtype))
    ref = torch.gather(_ref_src(x), dim, torch.tensor(idx))
    assert out.shape == tuple(ref.shape) and out.dtype is hv.float32
    np.testing.assert_array_equal(out.numpy(), ref.numpy().astype(np.float32))
    np.testing.assert_array_equal(hv.tensor(x).gather(dim, idx).numpy(), out.numpy())  # method, host index


def test_gather_non_contiguous_views_and_dtypes(rng):
    x = rng.standard_normal((6, 9)).astype(np.float32)
    idx = rng.integers(0, 6, (9, 4))
    for dt in ("float32", "float16", "bfloat16", "int32", "int64"):
        xt = hv.tensor(x * 10).to(dt).T          # (9, 6) strided view
        it = hv.tensor(idx).T                   # (4, 9) strided index
        got = hv.gather(xt, 1, it[:, :6])
        ref = torch.gather(torch.tensor(x * 10).to(getattr(torch, dt)).T, 1, torch.tensor(idx).T[:, :6])
        assert got.dtype.name == dt
        np.testing.assert_array_equal(got.to(hv.float32).numpy(), ref.float().numpy())


def test_gather_empty_and_zero_dim(rng):
    x = hv.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    assert hv.gather(x, 1, hv.zeros(3, 0, dtype=hv.int64)).shape == (3, 0)
    assert hv.gather(x, 0, hv.zeros(0, 4, dtype=hv.int64)).shape == (0, 4)
    s = hv.tensor(2.5)
    assert float(hv.gather(s, 0, hv.tensor(0)).item()) == 2.5


def test_gather_gradient_sums_repeats(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    idx = np.array([[0, 0, 3], [1, 1, 1], [4, 2, 0], [2, 2, 2]])
    w = rng.standard_normal((4, 3))
    xt = hv.tensor(x, requires_grad=True)
    (hv.gather(xt, 1, idx) * hv.tensor(w)).sum().backward()
    xr = torch.tensor(x.astype(np.float64), requires_grad=True)
    (torch.gather(xr, 1, torch.tensor(idx)) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("xshape,ishape,dim", CASES)
def test_scatter_add_matches_torch(rng, xshape, ishape, dim):
    d = dim % len(xshape)
    ishape = tuple(min(s, x) if k != d else s for k, (s, x) in enumerate(zip(ishape, xshape)))
    sshape = tuple(s + (1 if k == 0 else 0) for k, s in enumerate(ishape))  # src may be larger than the index
    x = rng.standard_normal(xshape).astype(np.float32)
    src = rng.standard_normal(sshape).astype(np.float32)
    idx = _index(rng, ishape, xshape[d], d)
    _poison(int(np.prod(xshape)))
    out = hv.scatter_add(hv.tensor(x), dim, hv.tensor(idx), hv.tensor(src))
    ref = torch.scatter_add(_ref_src(x), dim, torch.tensor(idx), _ref_src(src))
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_scatter_add_sums_in_index_order_bit_for_bit(rng):
    """self, then the sources in index order, in float32: the result of a sequential loop, and
    the same bits whatever else is in the batch."""
    n = 300
    vals = (rng.standard_normal(n) * 10.0 ** rng.integers(-4, 5, n)).astype(np.float32)
    idx = rng.integers(0, 3, n)
    base = rng.standard_normal(3).astype(np.float32)
    expected = base.copy()
    for v, i in zip(vals, idx):
        expected[i] = np.float32(expected[i] + v)
    got = hv.scatter_add(hv.tensor(base), 0, hv.tensor(idx), hv.tensor(vals)).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    # The same row inside a larger batch gives the same bits.
    big = np.tile(vals, (5, 1))
    out = hv.scatter_add(hv.tensor(np.tile(base, (5, 1))), 1, hv.tensor(np.tile(idx, (5, 1))), hv.tensor(big))
    np.testing.assert_array_equal(out.numpy()[3].view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_both_scatter_add_paths_give_the_same_bits(rng, monkeypatch, dtype):
    """Short index rows are walked per output element; long ones are sorted first: the two
    paths add in the same order."""
    from hlx_vulkan.ops import indexing
    x = rng.standard_normal((5, 70, 3)).astype(np.float32)
    src = (rng.standard_normal((5, 90, 3)) * 10.0 ** rng.integers(-3, 4, (5, 90, 3))).astype(np.float32)
    idx = rng.integers(0, 70, (4, 90, 3))
    args = (hv.tensor(x).to(dtype), 1, hv.tensor(idx), hv.tensor(src).to(dtype))
    sorted_path = hv.scatter_add(*args).to(hv.float32).numpy()
    monkeypatch.setattr(indexing, "SORTED_MIN", 1 << 30)
    walked = hv.scatter_add(*args).to(hv.float32).numpy()
    np.testing.assert_array_equal(sorted_path.view(np.uint32), walked.view(np.uint32))
    ref = torch.scatter_add(torch.tensor(x, dtype=torch.float64), 1, torch.tensor(idx),
                            torch.tensor(src, dtype=torch.float64))
    if dtype == "float32":
        np.testing.assert_allclose(walked, ref.numpy(), rtol=1e-4, atol=1e-3)


def test_long_scatter_add_rows_report_bad_device_indices(rng):
    idx = hv.tensor(np.concatenate([rng.integers(0, 4, 99), [7]]))
    with pytest.raises(errors.DeviceIndexError, match="scatter_add"):
        hv.scatter_add(hv.zeros(4), 0, idx, hv.ones(100)).numpy()


def test_scatter_matches_torch_with_unique_indices_and_last_wins_on_repeats(rng):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    src = rng.standard_normal((4, 6)).astype(np.float32)
    idx = np.stack([rng.permutation(5)[:4] for _ in range(6)], 1)
    out = hv.scatter(hv.tensor(x), 0, hv.tensor(idx), hv.tensor(src))
    ref = torch.scatter(torch.tensor(x), 0, torch.tensor(idx), torch.tensor(src))
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    rep = hv.scatter(hv.zeros(3), 0, hv.tensor([1, 1, 2, 1]), hv.tensor([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(rep.numpy(), [0.0, 4.0, 3.0])
    val = hv.tensor(x).scatter(1, hv.tensor(idx[:, :3].T.copy() % 6), value=-7.5)
    vref = torch.tensor(x).scatter(1, torch.tensor(idx[:, :3].T.copy() % 6), -7.5)
    np.testing.assert_array_equal(val.numpy(), vref.numpy())


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int32", "int64"])
def test_scatter_add_other_dtypes(rng, dtype):
    x = rng.integers(-5, 5, (4, 7)).astype(np.float32)
    src = rng.integers(-5, 5, (6, 7)).astype(np.float32)
    idx = rng.integers(0, 4, (6, 7))
    tt = getattr(torch, dtype)
    out = hv.scatter_add(hv.tensor(x).to(dtype), 0, idx, hv.tensor(src).to(dtype))
    ref = torch.scatter_add(torch.tensor(x).to(tt), 0, torch.tensor(idx), torch.tensor(src).to(tt))
    assert out.dtype.name == dtype
    np.testing.assert_array_equal(out.to(hv.float32).numpy(), ref.float().numpy())


def test_scatter_gradients_match_torch(rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    src = rng.standard_normal((3, 4)).astype(np.float32)
    idx = np.stack([rng.permutation(5)[:3] for _ in range(4)], 1)
    w = rng.standard_normal((5, 4))
    for name in ("scatter", "scatter_add"):
        xt, st = hv.tensor(x, requires_grad=True), hv.tensor(src, requires_grad=True)
        (getattr(hv, name)(xt, 0, idx, st) * hv.tensor(w)).sum().backward()
        xr = torch.tensor(x.astype(np.float64), requires_grad=True)
        sr = torch.tensor(src.astype(np.float64), requires_grad=True)
        (getattr(torch, name)(xr, 0, torch.tensor(idx), sr) * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-6, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(st.grad.numpy(), sr.grad.numpy(), rtol=1e-6, atol=1e-7, err_msg=name)


def test_scatter_add_empty_and_size1(rng):
    x = hv.tensor(rng.standard_normal((3, 1)).astype(np.float32))
    out = hv.scatter_add(x, 1, hv.zeros(3, 0, dtype=hv.int64), hv.zeros(3, 0))
    np.testing.assert_array_equal(out.numpy(), x.numpy())
    out = hv.scatter_add(x, 1, hv.zeros(3, 2, dtype=hv.int64), hv.ones(3, 2))
    np.testing.assert_allclose(out.numpy(), x.numpy() + 2.0, rtol=1e-6)
    assert hv.scatter_add(hv.zeros(0, 3), 0, hv.zeros(0, 3, dtype=hv.int64), hv.zeros(0, 3)).shape == (0, 3)


def test_bad_inputs_raise_typed_errors(rng):
    x = hv.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    with pytest.raises(errors.IndexOutOfRangeError):
        hv.gather(x, 1, [[0, 4], [0, 0], [1, 1]])
    with pytest.raises(errors.IndexOutOfRangeError):
        hv.gather(x, 1, [[0, -1], [0, 0], [1, 1]])
    with pytest.raises(errors.ShapeError):
        hv.gather(x, 1, [0, 1])                            # fewer dims than the input
    with pytest.raises(errors.ShapeError):
        hv.gather(x, 1, np.zeros((4, 2), np.int64))        # larger than the input off dim
    with pytest.raises(errors.DTypeError):
        hv.gather(x, 1, hv.zeros(3, 2))                    # float index
    with pytest.raises(errors.DTypeError):
        hv.scatter_add(x, 0, [[0, 1, 2, 0]], hv.ones(1, 4, dtype=hv.int32))
    with pytest.raises(errors.ShapeError):
        hv.scatter_add(x, 0, np.zeros((2, 4), np.int64), hv.ones(1, 4))   # src smaller than the index
    with pytest.raises(errors.ShapeError):
        hv.gather(x, 2, [[0]])
    with pytest.raises(IndexError):                        # torch's exception type too
        hv.scatter(x, 0, [[3, 0, 0, 0]], hv.ones(1, 4))


def test_device_index_out_of_range_is_reported_at_sync(rng):
    x = hv.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    bad = hv.tensor([[0, 9], [1, 1], [2, 2]])
    with pytest.raises(errors.DeviceIndexError, match="gather"):
        hv.gather(x, 1, bad).numpy()
    with pytest.raises(errors.DeviceIndexError, match="scatter_add"):
        hv.scatter_add(x, 1, bad, hv.ones(3, 2)).numpy()


@pytest.mark.parametrize("shape,dims", [((3, 5), (0,)), ((3, 5), (1,)), ((2, 3, 4), (0, 2)), ((4,), (0,)),
                                        ((3, 1), (0, 1)), ((0, 3), (0,))])
def test_flip_matches_torch(rng, shape, dims):
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(hv.flip(hv.tensor(x), dims).numpy(), torch.flip(torch.tensor(x), dims).numpy())
    np.testing.assert_array_equal(hv.tensor(x).flip(*dims).numpy(), torch.tensor(x).flip(*dims).numpy())


@pytest.mark.parametrize("shifts,dims", [(2, 1), (-3, 0), ((1, -2), (0, 2)), (7, None), (0, 1), (5, 1)])
def test_roll_matches_torch(rng, shifts, dims):
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(hv.roll(hv.tensor(x), shifts, dims).numpy(),
                                  torch.roll(torch.tensor(x), shifts, dims).numpy())


def test_repeat_interleave_matches_torch(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    t, r = hv.tensor(x), torch.tensor(x)
    np.testing.assert_array_equal(hv.repeat_interleave(t, 2).numpy(), torch.repeat_interleave(r, 2).numpy())
    np.testing.assert_array_equal(t.repeat_interleave(3, dim=1).numpy(), r.repeat_interleave(3, dim=1).numpy())
    np.testing.assert_array_equal(t.repeat_interleave(hv.tensor([2, 0, 1]), dim=0).numpy(),
                                  r.repeat_interleave(torch.tensor([2, 0, 1]), dim=0).numpy())
    with pytest.raises(errors.ShapeError):
        t.repeat_interleave([1, 2], dim=0)
    with pytest.raises(ValueError):
        t.repeat_interleave(-1, dim=0)


def test_reorderings_differentiate(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    w = rng.standard_normal((6, 4))
    xt = hv.tensor(x, requires_grad=True)
    (hv.roll(hv.flip(xt, 1), 1, 0).repeat_interleave(2, dim=0) * hv.tensor(w)).sum().backward()
    xr = torch.tensor(x.astype(np.float64), requires_grad=True)
    (torch.roll(torch.flip(xr, (1,)), 1, 0).repeat_interleave(2, dim=0) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-6, atol=1e-6)
