"""The bandwidth kernels: softmax/log_softmax over contiguous rows (ops/softmax.py's row
kernel), the fused cross_entropy (ops/cross_entropy.py) and the four-element optimizer update,
against torch in float64 on odd sizes, each path forced (vector or scalar loads, the row in
registers or read again, the strided softmax), the same bits on every path and whatever the
batch size, poisoned outputs, 16-bit storage and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan import errors, optim
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import cross_entropy as ce
from hlx_vulkan.ops import softmax as sm
from hlx_vulkan.optim import optimizers

from opcheck import check, f64

TF = torch.nn.functional
SIZES = [1, 17, 1023, 4097]
SOFTMAX_PATHS = {"auto": {}, "scalar": {"FORCE_SCALAR": True}, "stream": {"FORCE_STREAM": True},
                 "strided": {"FORCE_STRIDED": True}}
CE_PATHS = {"auto": {}, "scalar": {"FORCE_SCALAR": True}, "stream": {"FORCE_STREAM": True}}


def _force(monkeypatch, module, table, path):
    for name, value in table[path].items():
        monkeypatch.setattr(module, name, value)


def _poison(nbytes: int) -> None:
    """Fill a block with NaN and free it: the next allocations of the stream reuse its range."""
    p = hv.full((max(1, nbytes // 4),), np.nan)
    del p


def _bits(t):
    return t.to(hv.float32).numpy().view(np.uint32).copy()


# --- softmax / log_softmax -------------------------------------------------------------
def _softmax_run(x, g, log, dtype="float32"):
    tx = hv.tensor(x, dtype=dtype, requires_grad=True)
    _poison(x.size * 4 * 3)
    y = (F.log_softmax if log else F.softmax)(tx, -1)
    y.backward(hv.tensor(g, dtype=dtype))
    return y, tx.grad


def _softmax_ref(x, g, log):
    tx = torch.tensor(f64(x), requires_grad=True)
    y = (torch.log_softmax if log else torch.softmax)(tx, -1)
    y.backward(torch.tensor(f64(g)))
    return y.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("path", list(SOFTMAX_PATHS))
@pytest.mark.parametrize("R", SIZES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_torch_float64(rng, monkeypatch, path, R, log):
    _force(monkeypatch, sm, SOFTMAX_PATHS, path)
    x = (rng.standard_normal((3, R)) * 4).astype(np.float32)
    g = rng.standard_normal((3, R)).astype(np.float32)
    y, dx = _softmax_run(x, g, log)
    ry, rdx = _softmax_ref(x, g, log)
    assert not np.isnan(y.numpy()).any() and not np.isnan(dx.numpy()).any()
    check(y.numpy(), ry, "float32", 2e-6)
    if np.abs(rdx).max() < 1e-9:    # rows of one element: the gradient is 0
        assert np.abs(dx.numpy()).max() < 1e-6
    else:
        check(dx.numpy(), rdx, "float32", 1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_softmax_16_bit_storage(rng, dtype):
    x = rng.standard_normal((5, 36)).astype(np.float32)
    g = rng.standard_normal((5, 36)).astype(np.float32)
    xs = hv.tensor(x, dtype=dtype).to(hv.float32).numpy()
    gs = hv.tensor(g, dtype=dtype).to(hv.float32).numpy()
    for log in (False, True):
        y, dx = _softmax_run(x, g, log, dtype)
        assert y.dtype.name == dtype and dx.dtype.name == dtype
        ry, rdx = _softmax_ref(xs, gs, log)
        check(y.to(hv.float32).numpy(), ry, dtype, 1e-2)
        check(dx.to(hv.float32).numpy(), rdx, dtype, 2e-2)


def test_softmax_long_row_and_extremes(rng):
    x = (rng.standard_normal((2, 300_001)) * 5).astype(np.float32)
    g = rng.standard_normal((2, 300_001)).astype(np.float32)
    for log in (False, True):
        y, dx = _softmax_run(x, g, log)
        ry, rdx = _softmax_ref(x, g, log)
        check(y.numpy(), ry, "float32", 1e-5)
        check(dx.numpy(), rdx, "float32", 1e-4)
    z = np.array([[-np.inf, 0.0, -np.inf, 1.0, 2.0], [np.nan, 1.0, 2.0, 3.0, 4.0], [1e30, -1e30, 0, 0, 0]], np.float32)
    for fn, ref in ((F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)):
        np.testing.assert_allclose(fn(hv.tensor(z), -1).numpy(), ref(torch.tensor(f64(z)), -1).numpy(), rtol=1e-6)


@pytest.mark.parametrize("R", [12, 1000, 1001, 9000])
def test_softmax_same_bits_on_every_row_path_and_batch(rng, monkeypatch, R):
    x = (rng.standard_normal((9, R)) * 3).astype(np.float32)
    g = rng.standard_normal((9, R)).astype(np.float32)
    for log in (False, True):
        want = [_bits(t) for t in _softmax_run(x, g, log)]
        alone = [_bits(t) for t in _softmax_run(x[4:5], g[4:5], log)]
        for a, b in zip(want, alone):
            np.testing.assert_array_equal(a[4:5], b)
        for path in ("scalar", "stream"):
            with monkeypatch.context() as m:
                _force(m, sm, SOFTMAX_PATHS, path)
                for a, b in zip(want, (_bits(t) for t in _softmax_run(x, g, log))):
                    np.testing.assert_array_equal(a, b)


def test_softmax_row_kernel_takes_views_at_any_offset(rng):
    base = rng.standard_normal((8, 40)).astype(np.float32)
    t = hv.tensor(base)
    for view, ref in ((t[1:], base[1:]), (t.reshape(-1)[3:283].reshape(7, 40), base.reshape(-1)[3:283].reshape(7, 40)),
                      (t.transpose(0, 1), base.T)):
        check(F.softmax(view, -1).numpy(), torch.softmax(torch.tensor(f64(ref)), -1).numpy(), "float32", 2e-6)


# --- cross_entropy ---------------------------------------------------------------------
def _ce_run(x, t, reduction, dtype="float32", ones=False):
    tx = hv.tensor(x, dtype=dtype, requires_grad=True)
    _poison(x.size * 4 * 2)
    loss = F.cross_entropy(tx, t, reduction=reduction)
    g = np.linspace(0.5, 1.5, loss.numel()).reshape(loss.shape).astype(np.float32)
    if ones:
        g = np.ones_like(g)
    loss.backward(hv.tensor(g, dtype=dtype))
    return loss, tx.grad, g


def _ce_ref(x, t, reduction, g, ignore_index=-100):
    tx = torch.tensor(f64(x), requires_grad=True)
    loss = TF.cross_entropy(tx, torch.tensor(np.asarray(t, np.int64)), reduction=reduction, ignore_index=ignore_index)
    loss.backward(torch.tensor(f64(g)))
    return loss.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("path", list(CE_PATHS))
@pytest.mark.parametrize("C", SIZES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch_float64(rng, monkeypatch, path, C, reduction):
    _force(monkeypatch, ce, CE_PATHS, path)
    x = (rng.standard_normal((7, C)) * 3).astype(np.float32)
    t = rng.integers(0, C, 7)
    t[[1, 5]] = -100
    loss, dx, g = _ce_run(x, t, reduction)
    rl, rdx = _ce_ref(x, t, reduction, g)
    assert not np.isnan(dx.numpy()).any()
    check(loss.numpy(), rl, "float32", 2e-6)
    if np.abs(rdx).max() < 1e-9:    # one class: the gradient is 0
        assert np.abs(dx.numpy()).max() < 1e-6
    else:
        check(dx.numpy(), rdx, "float32", 1e-5)
    np.testing.assert_array_equal(dx.numpy()[[1, 5]], 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cross_entropy_16_bit_logits(rng, dtype):
    x = rng.standard_normal((6, 20)).astype(np.float32)
    xs = hv.tensor(x, dtype=dtype).to(hv.float32).numpy()
    t = rng.integers(0, 20, 6)
    loss, dx, g = _ce_run(x, t, "mean", dtype)
    assert loss.dtype.name == dtype and dx.dtype.name == dtype
    rl, rdx = _ce_ref(xs, t, "mean", g)
    check(loss.to(hv.float32).numpy(), rl, dtype, 1e-2)
    check(dx.to(hv.float32).numpy(), rdx, dtype, 2e-2)


def test_cross_entropy_same_bits_on_every_path_and_batch(rng, monkeypatch):
    x = (rng.standard_normal((11, 1000)) * 3).astype(np.float32)
    t = rng.integers(0, 1000, 11)
    want = [_bits(a) for a in _ce_run(x, t, "none", ones=True)[:2]]
    alone = [_bits(a) for a in _ce_run(x[6:7], t[6:7], "none", ones=True)[:2]]
    for a, b in zip(want, alone):
        np.testing.assert_array_equal(a[6:7], b)
    for path in ("scalar", "stream"):
        with monkeypatch.context() as m:
            _force(m, ce, CE_PATHS, path)
            for a, b in zip(want, (_bits(v) for v in _ce_run(x, t, "none", ones=True)[:2])):
                np.testing.assert_array_equal(a, b)
    again = _bits(_ce_run(x, t, "mean")[0])
    np.testing.assert_array_equal(again, _bits(_ce_run(x, t, "mean")[0]))


def test_cross_entropy_custom_ignore_index_and_errors(rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    t = np.array([3, 7, 0, 7, 1])
    loss = F.cross_entropy(hv.tensor(x), hv.tensor(t.astype(np.int32)), ignore_index=7)
    ref = TF.cross_entropy(torch.tensor(f64(x)), torch.tensor(t), ignore_index=7)
    check(loss.numpy(), ref.numpy(), "float32", 1e-6)
    with pytest.raises(errors.IndexOutOfRangeError, match="target index 4"):
        F.cross_entropy(hv.tensor(x), [0, 1, 2, 3, 4])
    bad = F.cross_entropy(hv.tensor(x), hv.tensor(np.array([0, 1, 9, 3, 0], np.int32)))
    with pytest.raises(errors.DeviceIndexError, match="cross_entropy"):
        bad.numpy()
    with pytest.raises(errors.ShapeError, match="does not match"):
        F.cross_entropy(hv.tensor(x), [0, 1])
    with pytest.raises(errors.ShapeError, match=r"does not match input of shape \(4,\)"):
        F.cross_entropy(hv.tensor(x[0]), [0])  # a (C,) input takes a 0-d target, as torch
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(hv.tensor(x), [0, 1, 2, 3, 0], reduction="avg")


# --- the optimizer update -----------------------------------------------------------------
@pytest.mark.parametrize("n", [1024, 1023])
@pytest.mark.parametrize("name", ["AdamW", "SGD"])
def test_optimizer_vector_update_same_bits_and_torch(rng, monkeypatch, n, name):
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    kw = {"lr": 0.01, "weight_decay": 0.1} if name == "AdamW" else {"lr": 0.01, "momentum": 0.9}

    def run(vector):
        monkeypatch.setattr(optimizers, "VECTOR", vector)
        p = hv.tensor(p0, requires_grad=True)
        opt = getattr(optim, name)([p], **kw)
        for g in grads:
            p.grad = hv.tensor(g)
            opt.step()
        return p.numpy()

    vec, scalar = run(True), run(False)
    np.testing.assert_array_equal(vec.view(np.uint32), scalar.view(np.uint32))
    tp = torch.tensor(f64(p0), requires_grad=True)
    topt = getattr(torch.optim, name)([tp], **kw)
    for g in grads:
        tp.grad = torch.tensor(f64(g))
        topt.step()
    check(vec, tp.detach().numpy(), "float32", 1e-5)


# --- flat reductions ----------------------------------------------------------------------
from hlx_vulkan.ops import reduce_flat as rf  # noqa: E402


@pytest.mark.parametrize("n", [1, 17, 1023, 4097, 1_000_003])
def test_flat_reductions_match_numpy_float64(rng, n):
    x = (rng.standard_normal(n) + 0.25).astype(np.float32)
    t = hv.tensor(x)
    ref = f64(x)
    bound = 1e-6 * np.abs(ref).sum()   # float32 summation error, relative to the sum of magnitudes
    assert abs(float(t.sum().numpy()) - ref.sum()) <= bound
    assert abs(float(t.mean().numpy()) - ref.mean()) <= bound / n
    assert t.amax().item() == x.max() and t.amin().item() == x.min()
    assert hv.max(t).item() == x.max()
    assert t.sum().shape == () and hv.sum(t.reshape(1, n), keepdim=True).shape == (1, 1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_flat_reductions_16_bit(rng, dtype):
    x = rng.standard_normal(5000).astype(np.float32)
    t = hv.tensor(x, dtype=dtype)
    ref = f64(t.to(hv.float32).numpy())
    assert t.sum().dtype.name == dtype
    check(t.sum().to(hv.float32).numpy(), ref.sum(), dtype, 1e-2)
    check(t.mean().to(hv.float32).numpy(), ref.mean(), dtype, 1e-2)
    assert float(t.amax().to(hv.float32).item()) == ref.max()


def test_flat_reduction_same_bits_on_every_path(rng, monkeypatch):
    """Vector loads or scalar, aligned or at an odd offset: the same order, the same bits."""
    x = rng.standard_normal(300_001).astype(np.float32)
    whole = hv.tensor(x)
    aligned = whole[:300_000]
    shifted = hv.tensor(np.concatenate([x[:1], x[:300_000]]))[1:]   # offset 1: scalar loads
    a, b = _bits(aligned.sum()), _bits(shifted.sum())
    np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(rf, "FORCE_SCALAR", True)
    np.testing.assert_array_equal(_bits(aligned.sum()), a)
    monkeypatch.setattr(rf, "FORCE_SCALAR", False)
    monkeypatch.setattr(rf, "ENABLED", False)
    general = float(aligned.sum().numpy())   # the general kernel agrees within float32 rounding
    assert abs(general - f64(x[:300_000]).sum()) <= 1e-6 * np.abs(x).sum()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_flat_reduction_in_one_dispatch_gives_the_two_dispatch_bits(rng, monkeypatch, dtype):
    """The last workgroup folds the partials in the second pass's order: the same bits, for every
    op, size (one workgroup, several, a chunk boundary, odd) and offset; its counter is ready for
    the next dispatch, back to back with no sync between, and in a replayed graph."""
    sizes = [1, 7, 4096, 4097, 40_001, 1_000_003]
    xs = [hv.tensor((rng.standard_normal(n) * 3 + 0.5).astype(np.float32), dtype=dtype) for n in sizes]
    xs.append(hv.tensor(rng.standard_normal(9001).astype(np.float32), dtype=dtype)[3:])   # odd offset

    def all_of(x):
        return [x.sum(), x.mean(), x.amax(), x.amin()]

    def bits(ts):
        return [_bits(t.to(hv.float32)) for t in ts]

    def poisoned(x):
        """The ops' outputs and partials take ranges just filled with NaN: an output the elected
        workgroup never wrote (a counter left unreset) reads as NaN."""
        nan = [hv.full((1,), np.nan, dtype=dtype) for _ in range(8)]
        del nan
        return all_of(x)

    for x in xs:
        all_of(x)                                                  # the plans made
    dispatches = hv.default_runtime().stream.dispatches
    for x in xs:
        all_of(x)
    assert hv.default_runtime().stream.dispatches - dispatches == 4 * len(xs)   # one dispatch each
    one = [bits(poisoned(x)) for x in xs for _ in range(3)]       # back to back, no sync between
    monkeypatch.setattr(rf, "SINGLE_PASS", False)
    two = [bits(all_of(x)) for x in xs]
    for i, b in enumerate(one):
        for got, want in zip(b, two[i // 3]):
            np.testing.assert_array_equal(got, want)
    monkeypatch.setattr(rf, "SINGLE_PASS", True)
    x = xs[5]
    out = hv.zeros((), dtype=dtype)
    with hv.capture() as graph:
        out.copy_(x.sum() + x.amax())
    want = _bits((x.sum() + x.amax()).to(hv.float32))
    for _ in range(3):
        graph.replay()
        np.testing.assert_array_equal(_bits(out.to(hv.float32)), want)
    graph.destroy()


def test_flat_reductions_past_the_one_dispatch_size_take_two_dispatches_and_the_same_bits(rng, monkeypatch):
    x = hv.tensor(rng.standard_normal(9001).astype(np.float32))
    small = hv.tensor(rng.standard_normal(4000).astype(np.float32))
    one = [_bits(t) for t in (x.sum(), x.amax(), small.mean())]
    monkeypatch.setattr(rf, "SINGLE_PASS_MAX", 5000)
    stream = hv.default_runtime().stream
    for t, want_dispatches in ((x, 2), (small, 1)):
        t.sum()                                        # the plan made
        before = stream.dispatches
        t.sum()
        assert stream.dispatches - before == want_dispatches
    two = [_bits(t) for t in (x.sum(), x.amax(), small.mean())]
    for got, want in zip(two, one):
        np.testing.assert_array_equal(got, want)


def test_two_dispatch_reductions_back_to_back_share_a_ring_of_partials_correctly(rng, monkeypatch):
    """Two-dispatch reductions take the runtime's partial buffers in turn: one barrier a reduction
    (its second pass reads its first's partials), none between one's second pass and the next's
    first; a buffer reused while a reduction four back may still read it is ordered after it."""
    monkeypatch.setattr(rf, "SINGLE_PASS", False)
    stream = hv.default_runtime().stream
    data = [rng.standard_normal(70001 + 13 * i).astype(np.float32) for i in range(3 * rf.PARTIAL_SLOTS + 1)]
    xs = [hv.tensor(d) for d in data]
    want = [x.sum().item() for x in xs]                  # one at a time, a sync between
    hv.default_runtime().synchronize()
    before = stream.barriers
    got = [x.sum() for x in xs]                          # back to back
    assert stream.barriers - before == len(xs)
    assert [g.item() for g in got] == want
    np.testing.assert_allclose(want, [d.astype(np.float64).sum() for d in data], rtol=1e-5, atol=1e-3)


def test_flat_reduction_order_follows_the_count_alone():
    assert [rf.chunk_for(n) for n in (1, 4096, 4097, 1 << 24, 1 << 28)] == [4096, 4096, 4096, 8192, 131072]


def test_flat_reductions_nan_inf_and_gradient(rng):
    x = rng.standard_normal(4099).astype(np.float32)
    x[77] = np.nan
    t = hv.tensor(x)
    assert np.isnan(t.sum().item()) and np.isnan(t.amax().item()) and np.isnan(t.amin().item())
    y = np.full(4100, -np.inf, np.float32)
    y[5] = 3.0
    assert hv.tensor(y).amax().item() == 3.0 and hv.tensor(y).sum().item() == -np.inf
    g = hv.tensor(rng.standard_normal(999).astype(np.float32), requires_grad=True)
    (g.mean() * 3.0).backward()
    np.testing.assert_allclose(g.grad.numpy(), np.full(999, 3.0 / 999), rtol=1e-6)


# --- elementwise: four elements per thread ----------------------------------------------------
from hlx_vulkan.ops import pointwise as pw  # noqa: E402


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32", "int64"])
def test_elementwise_vector_path_same_bits_as_scalar(rng, monkeypatch, dtype):
    if dtype == "int64" and not hv.default_runtime().kernels.int64:
        pytest.skip("no shaderInt64 on this device")
    n = 4 * 1031
    npdt = hv.memory.dtype_of(dtype).numpy
    if dtype.startswith("int"):
        a, b = rng.integers(-1000, 1000, n).astype(npdt), rng.integers(1, 1000, n).astype(npdt)
    else:
        a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    ta, tb = hv.tensor(a, dtype=dtype), hv.tensor(b, dtype=dtype)
    one = hv.tensor(b[:1], dtype=dtype).reshape(())

    def ops():
        _poison(n * 8 * 4)
        return [ta + tb, ta * tb - ta, ta * 3, ta + one, pw.launch("x * y + z", [ta, tb, ta]), ta[4:] - tb[:-4]]

    vec = [_bits(t) if dtype.startswith("float") else t.numpy() for t in ops()]
    monkeypatch.setattr(pw, "VECTOR", False)
    scalar = [_bits(t) if dtype.startswith("float") else t.numpy() for t in ops()]
    for v, s in zip(vec, scalar):
        np.testing.assert_array_equal(v, s)
    if dtype == "float32":
        np.testing.assert_array_equal(vec[0].view(np.float32), a + b)


def test_elementwise_vector_path_views_and_out(rng):
    x = rng.standard_normal(4096 + 3).astype(np.float32)
    t = hv.tensor(x)
    check((t[1:4097] + t[3:4099]).numpy(), f64(x[1:4097]) + f64(x[3:4099]), "float32", 1e-7)   # unaligned
    check((t[4:4100 - 4] * 2).numpy(), f64(x[4:4096]) * 2, "float32", 1e-7)                     # aligned view
    out = hv.full((4100,), np.nan)
    pw.launch("x + CT(1)", [t[:4096]], out=out[4:])
    got = out.numpy()
    assert np.isnan(got[:4]).all()
    np.testing.assert_array_equal(got[4:], x[:4096] + np.float32(1))


def test_elementwise_vector_path_keeps_the_element_index(rng, monkeypatch):
    """Expressions that read the element index (tril, triu) see each element's own index."""
    x = rng.standard_normal((6, 8)).astype(np.float32)
    for vector in (True, False):
        monkeypatch.setattr(pw, "VECTOR", vector)
        np.testing.assert_array_equal(hv.tensor(x).tril().numpy(), np.tril(x))
        np.testing.assert_array_equal(hv.tensor(x).triu(1).numpy(), np.triu(x, 1))
