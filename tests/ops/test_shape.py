import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors
from opcheck import randn


def x34(rng):
    return randn(rng, (3, 4, 5), "float32")


def test_views_share_memory_and_read_like_numpy(rng):
    x = x34(rng)
    t = hv.tensor(x)
    for got, ref in [(t.reshape(12, 5), x.reshape(12, 5)), (t.reshape(-1), x.reshape(-1)),
                     (t.permute(2, 0, 1), x.transpose(2, 0, 1)), (t.transpose(0, 2), x.swapaxes(0, 2)),
                     (t.T, x.T), (t[1], x[1]), (t[:, 1:3], x[:, 1:3]), (t[..., ::2], x[..., ::2]),
                     (t[None, 2, :, -1], x[None, 2, :, -1]), (t.unsqueeze(1), x[:, None]),
                     (t[:, :1].squeeze(1), x[:, 0]), (t.flatten(1), x.reshape(3, 20)),
                     (t[:, :1].expand(3, 4, 5), np.broadcast_to(x[:, :1], (3, 4, 5)))]:
        np.testing.assert_array_equal(got.numpy(), ref)
    assert t.permute(2, 0, 1).buf._allocation is t.buf._allocation


def test_reshape_of_a_non_contiguous_view_copies(rng):
    x = x34(rng)
    t = hv.tensor(x).transpose(0, 1)
    np.testing.assert_array_equal(t.reshape(4, 15).numpy(), x.swapaxes(0, 1).reshape(4, 15))
    with pytest.raises(errors.ShapeError, match="contiguous"):
        t.view(60)
    with pytest.raises(errors.ShapeError, match="into"):
        hv.tensor(x).reshape(7, -1)


def test_setitem_and_copy_into_views(rng):
    x = x34(rng)
    t = hv.tensor(x)
    t[1, :, 2] = np.arange(4, dtype=np.float32)
    x[1, :, 2] = np.arange(4)
    t[0] = 7.0
    x[0] = 7.0
    np.testing.assert_array_equal(t.numpy(), x)


def test_concat_stack(rng):
    a, b = randn(rng, (2, 3), "float32"), randn(rng, (2, 5), "float32")
    np.testing.assert_array_equal(hv.concat([hv.tensor(a), hv.tensor(b)], axis=1).numpy(),
                                  np.concatenate([a, b], axis=1))
    np.testing.assert_array_equal(hv.stack([hv.tensor(a), hv.tensor(a)], axis=1).numpy(), np.stack([a, a], 1))
    with pytest.raises(errors.ShapeError, match=r"\(2, 3\) and \(2, 5\)"):
        hv.concat([hv.tensor(a), hv.tensor(b)], axis=0)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32"])
def test_index_select_and_embedding_lookup(dtype, rng):
    table = randn(rng, (10, 6), dtype) if dtype != "int32" else rng.integers(0, 9, (10, 6)).astype(np.int32)
    idx = rng.integers(0, 10, (4, 3))
    t = hv.tensor(table)
    np.testing.assert_array_equal(t.index_select(0, idx).numpy(), table[idx])
    np.testing.assert_array_equal(t[hv.tensor(idx.astype(np.int32))].numpy(), table[idx])
    np.testing.assert_array_equal(t.index_select(1, [5, 0]).numpy(), table[:, [5, 0]])
    np.testing.assert_array_equal(t.T.index_select(0, [1, 1]).numpy(), table.T[[1, 1]])
    with pytest.raises(errors.ShapeError, match="index 10 is out of range"):
        t.index_select(0, [0, 10])
    with pytest.raises(errors.DTypeError):
        t.index_select(0, [0.5])


def test_one_hot():
    idx = np.array([[0, 3], [2, 1]])
    got = hv.one_hot(hv.tensor(idx), 4)
    np.testing.assert_array_equal(got.numpy(), np.eye(4, dtype=np.float32)[idx])
