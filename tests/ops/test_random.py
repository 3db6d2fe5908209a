import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85


def philox_np(ctr, key):
    """Philox4x32-10 in numpy (uint64 arithmetic), the reference for the GLSL one."""
    c = [np.asarray(v, np.uint64) for v in ctr]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    mask = np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = np.uint64(M0) * c[0], np.uint64(M1) * c[2]
        hi0, lo0, hi1, lo1 = p0 >> np.uint64(32), p0 & mask, p1 >> np.uint64(32), p1 & mask
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0, k1 = (k0 + np.uint64(W0)) & mask, (k1 + np.uint64(W1)) & mask
    return np.stack([x.astype(np.uint32) for x in c], axis=-1)


def test_philox_known_answers():
    # Random123's published test vectors for philox4x32_10.
    assert philox_np([0, 0, 0, 0], (0, 0)).tolist() == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    f = 0xFFFFFFFF
    assert philox_np([f, f, f, f], (f, f)).tolist() == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


def test_rand_is_philox_bit_for_bit():
    hv.manual_seed(0x1234_5678_9ABC)
    n = 1001
    got = hv.rand(n).numpy()
    seed = 0x1234_5678_9ABC
    groups = np.arange(-(-n // 4), dtype=np.uint64)
    bits = philox_np([groups, np.zeros_like(groups), np.zeros_like(groups), np.zeros_like(groups)],
                     (seed & 0xFFFFFFFF, seed >> 32)).reshape(-1)[:n]
    want = (bits >> 8).astype(np.float32) * np.float32(2.0 ** -24)
    assert got.tobytes() == want.tobytes()


def test_randn_matches_box_muller_in_float64():
    hv.manual_seed(7)
    n = 4000
    got = hv.randn(n).numpy().astype(np.float64)
    groups = np.arange(n // 4, dtype=np.uint64)
    z = np.zeros_like(groups)
    bits = philox_np([groups, z, z, z], (7, 0))
    u = (bits >> 8).astype(np.float64) * 2.0 ** -24
    u1, u2 = 1.0 - u[:, 0::2], u[:, 1::2]
    r = np.sqrt(-2 * np.log(u1))
    want = np.empty((n // 4, 4))
    want[:, 0::2], want[:, 1::2] = r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)
    assert np.max(np.abs(got - want.reshape(-1))) < 1e-5


def test_seed_determinism_and_stream_advance():
    hv.manual_seed(3)
    a, b = hv.randn(100).numpy(), hv.randn(100).numpy()
    hv.manual_seed(3)
    assert hv.randn(100).numpy().tobytes() == a.tobytes()
    assert hv.randn(100).numpy().tobytes() == b.tobytes()
    assert a.tobytes() != b.tobytes()
    g = hv.Generator(3)
    assert hv.randn(100, generator=g).numpy().tobytes() == a.tobytes()


def test_distribution_moments_and_dtypes():
    hv.manual_seed(11)
    u = hv.rand(200_000, low=-2.0, high=3.0).numpy()
    assert u.min() >= -2.0 and u.max() < 3.0 and abs(u.mean() - 0.5) < 0.02
    z = hv.randn(200_000, mean=1.0, std=2.0).numpy()
    assert abs(z.mean() - 1.0) < 0.02 and abs(z.std() - 2.0) < 0.02
    for dt in (hv.float16, hv.bfloat16):
        assert hv.randn(10, dtype=dt).dtype is dt
    with pytest.raises(errors.DTypeError):
        hv.rand(3, dtype=hv.int32)
