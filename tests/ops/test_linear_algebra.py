import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.ops import matmul as mm
from opcheck import check, f64, randn

TOL = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-2}
SHAPES = [((1, 1), (1, 1)), ((37, 29), (29, 53)), ((65, 1), (1, 130)), ((64, 64), (64, 64)),
          ((2, 1, 5, 7), (3, 7, 4)), ((4, 3, 9), (9, 2)), ((7,), (7, 3)), ((4, 7), (7,)), ((5,), (5,)),
          ((3, 70, 20), (3, 20, 17)), ((48, 32), (32, 80)), ((2, 64, 128), (128, 96)),
          ((1, 1023), (1023, 17)), ((17, 129), (129, 1)), ((130, 17), (17, 131))]
COOP = [name for name in mm.COOP_TILES]


def _coop(dtype="float16") -> bool:
    return mm.coopmat_available(hv.default_runtime(), dtype)


# The cooperative-matrix tiles (1 and 2) run where the device has them; elsewhere
# test_matmul_kernels.py and test_matmul_cm2.py compile and validate them.
CM2 = [name for name in mm.CM2_TILES] if mm.cm2_available(hv.default_runtime(), "float16") else []
KERNELS = [None, *mm.TILES, *(COOP if _coop() else []), *CM2]


@pytest.fixture(autouse=True, params=KERNELS, ids=["device's choice", *(f"{t} tile" for t in KERNELS[1:])])
def matmul_kernel(request, monkeypatch):
    """Run every test with the device's own choice and with each tile, which a CPU device (or a
    small problem) would otherwise never run."""
    monkeypatch.setattr(mm, "FORCE_TILE", request.param)
    return request.param


def _operands(rng, M, N, K, dtype, ta=False, tb=False, batch=()):
    """Random A (M x K) and B (K x N) as hlx tensors, stored transposed where asked, with numpy copies."""
    a = randn(rng, (*batch, K, M) if ta else (*batch, M, K), dtype)
    b = randn(rng, (*batch, N, K) if tb else (*batch, K, N), dtype)
    ha, hb = hv.tensor(a), hv.tensor(b)
    if ta:
        ha, a = ha.transpose(-1, -2), np.swapaxes(a, -1, -2)
    if tb:
        hb, b = hb.transpose(-1, -2), np.swapaxes(b, -1, -2)
    return ha, hb, a, b


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("sa,sb", SHAPES, ids=str)
def test_matmul_matches_numpy(dtype, sa, sb, rng):
    a, b = randn(rng, sa, dtype), randn(rng, sb, dtype)
    got = hv.tensor(a) @ hv.tensor(b)
    ref = f64(a) @ f64(b)
    assert got.shape == ref.shape and got.dtype.name == dtype
    check(got.numpy(), ref, dtype, TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("ta,tb", [(True, False), (False, True), (True, True)], ids=["At@B", "A@Bt", "At@Bt"])
@pytest.mark.parametrize("M,N,K", [(40, 64, 32), (17, 33, 65), (128, 8, 24)], ids=str)
def test_transposed_operands(dtype, ta, tb, M, N, K, rng):
    """The MLP's backward products read transposed views (loaded along their contiguous dimension,
    as vectors where aligned)."""
    ha, hb, a, b = _operands(rng, M, N, K, dtype, ta, tb)
    check((ha @ hb).numpy(), f64(a) @ f64(b), dtype, TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_strided_and_offset_operands(dtype, rng):
    """Views that start off a vector boundary or skip rows take the scalar loads."""
    a, b = randn(rng, (50, 41), dtype), randn(rng, (39, 72), dtype)
    ha, hb = hv.tensor(a), hv.tensor(b)
    cases = [(ha[1:33, 3:35], hb[5:37, 1:70]),       # offsets by one element, odd row strides
             (ha[::2, 8:40], hb[:32, ::2]),            # every other row / column
             (ha[1:41, 2:10].transpose(0, 1)[:, :33], hb[3:36, 9:49])]
    refs = [(f64(a)[1:33, 3:35], f64(b)[5:37, 1:70]), (f64(a)[::2, 8:40], f64(b)[:32, ::2]),
            (f64(a)[1:41, 2:10].T[:, :33], f64(b)[3:36, 9:49])]
    for (x, y), (rx, ry) in zip(cases, refs):
        check((x @ y).numpy(), rx @ ry, dtype, TOL[dtype])


def test_transposed_operands_need_no_copy(rng):
    a, b = randn(rng, (40, 30), "float32"), randn(rng, (50, 40), "float32")
    ta, tb = hv.tensor(a).T, hv.tensor(b).T
    dispatched = ta.runtime.stream.dispatches
    got = ta @ tb
    assert ta.runtime.stream.dispatches == dispatched + 1
    check(got.numpy(), f64(a).T @ f64(b).T, "float32", 1e-4)


def test_every_output_written_over_poison_and_k_zero(rng):
    a, b = randn(rng, (33, 17), "float32"), randn(rng, (17, 65), "float32")
    out = hv.full((33, 65), np.nan)
    hv.matmul(hv.tensor(a), hv.tensor(b), out=out)
    assert not np.isnan(out.numpy()).any()
    check(out.numpy(), f64(a) @ f64(b), "float32", 1e-4)
    z = hv.matmul(hv.zeros(3, 0), hv.zeros(0, 4))
    np.testing.assert_array_equal(z.numpy(), np.zeros((3, 4)))
    assert hv.matmul(hv.zeros(0, 5), hv.zeros(5, 2)).shape == (0, 2)


def _short_chunks(monkeypatch, length=64, one_dispatch=True):
    """Chunks of ``length`` (and as many as K needs), so that small products split; in one dispatch
    or, with ``one_dispatch`` False, two."""
    monkeypatch.setattr(mm, "CHUNK_K", {name: length for name in mm.CHUNK_K})
    monkeypatch.setattr(mm, "MAX_CHUNKS", 1 << 20)
    monkeypatch.setattr(mm, "SPLIT_ONE_DISPATCH", one_dispatch)


# Split-K in one dispatch, in two, and no split (one chunk): what ``chunk`` takes in the tests below.
SPLITS = [pytest.param(64, id="split"), pytest.param(-64, id="split in two dispatches"),
          pytest.param(None, id="one chunk")]


def _splits(monkeypatch, chunk):
    if chunk:
        _short_chunks(monkeypatch, abs(chunk), chunk > 0)


def _bits(t):
    return t.to(hv.float32).numpy().view(np.uint32)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("chunk", [64, None], ids=["split", "one chunk"])
def test_matmul_is_deterministic(dtype, chunk, monkeypatch, rng):
    if chunk:
        _short_chunks(monkeypatch, chunk)
    a, b = hv.tensor(randn(rng, (130, 257), dtype)), hv.tensor(randn(rng, (257, 70), dtype))
    assert (a @ b).digest() == (a @ b).digest()


def test_chunk_length_depends_on_k_alone():
    for dtype, least in mm.CHUNK_K.items():
        assert mm.chunk_length(least, dtype) == least
        for K in (least + 1, 3 * least, 100 * least + 17):
            kc = mm.chunk_length(K, dtype)
            assert kc % 64 == 0 and kc >= least and -(-K // kc) <= mm.MAX_CHUNKS
    assert all(mm.CHUNK_K["float32"] % t[2] == 0 for t in mm.TILES.values())
    assert all(mm.CHUNK_K[d] % t[4] == 0 for t in mm.COOP_TILES.values() for d in ("float16", "bfloat16"))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K,ta,tb", [(37, 45, 200, False, False), (33, 17, 64, True, False),
                                         (20, 70, 130, False, True), (9, 12, 1000, True, True)], ids=str)
@pytest.mark.parametrize("one_dispatch", [True, False], ids=["one dispatch", "two dispatches"])
def test_split_k(dtype, M, N, K, ta, tb, one_dispatch, matmul_kernel, monkeypatch, rng):
    """Split-K (float32 chunk sums added in chunk order, by the last of a tile's workgroups to
    finish or by a second pass) is right, and on a CPU device gives the bits of the one-pass
    kernel, which sums the same chunks in the same order."""
    _short_chunks(monkeypatch, one_dispatch=one_dispatch)
    ha, hb, a, b = _operands(rng, M, N, K, dtype, ta, tb)
    rt = hv.default_runtime()
    dispatched = rt.stream.dispatches
    got = ha @ hb
    check(got.numpy(), f64(a) @ f64(b), dtype, TOL[dtype])
    if matmul_kernel is not None and K > 64 and matmul_kernel not in mm.CM2_TILES:
        assert rt.stream.dispatches == dispatched + (1 if one_dispatch else 2)  # the chunks (then their sum)
    if matmul_kernel is not None and rt.device.physical.type == "cpu" and not _coop(dtype):
        monkeypatch.setattr(mm, "FORCE_TILE", None)  # matmul_direct.comp: every chunk in one pass
        np.testing.assert_array_equal(_bits(ha @ hb), _bits(got))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("chunk", [64, None], ids=["split", "one chunk"])
def test_rows_do_not_depend_on_batch_size(dtype, chunk, monkeypatch, rng):
    """A row of A @ B has the same bits whether A has 1, 17 or 300 rows, or sits in a batch: the
    tile (chosen from the size) never changes the reduction order."""
    if chunk:
        _short_chunks(monkeypatch, chunk)
    K, N = 300, 70
    a = hv.tensor(randn(rng, (300, K), dtype))
    w = hv.tensor(randn(rng, (N, K), dtype)).T  # as nn.Linear reads its weight
    full = _bits(a @ w)
    for m in (1, 17, 299):
        np.testing.assert_array_equal(_bits(a[:m] @ w), full[:m], err_msg=f"rows of a {m}-row product")
    np.testing.assert_array_equal(_bits(a[150:151] @ w), full[150:151])
    batched = _bits(a.reshape(3, 100, K) @ w)
    np.testing.assert_array_equal(batched.reshape(300, N), full)


def test_matmul_errors():
    with pytest.raises(errors.ShapeError, match=r"\(3, 4\) and \(5, 2\)"):
        hv.randn(3, 4) @ hv.randn(5, 2)
    with pytest.raises(errors.DTypeError, match="float32 and float16"):
        hv.randn(3, 4) @ hv.randn(4, 2, dtype=hv.float16)
    with pytest.raises(errors.DTypeError):
        hv.tensor([[1, 2]]) @ hv.tensor([[1], [2]])


