"""Helpers of the strict-mode tests: inputs over float32's whole range, strict mode's reference
semantics in float64, and errors in ULPs."""

from __future__ import annotations

import numpy as np

TINY = np.float32(2.0 ** -126)
SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -3e-39, 1.4e-45, 2.0 ** -126, -(2.0 ** -126),
                     3.4028235e38, -3.4028235e38, 1.0, -1.0, 0.5, 2.0, 1e-30, 1e30], dtype=np.float32)


def wide(rng, n: int, lo: int = -126, hi: int = 127) -> np.ndarray:
    """``n`` float32 values: random sign, exponent uniform in [lo, hi], random mantissa bits, then
    the special values (zeros of both signs, infinities, NaN, denormals, the extremes)."""
    exp = rng.integers(lo + 127, hi + 128, n).astype(np.uint32)
    bits = (rng.integers(0, 2, n).astype(np.uint32) << 31) | (exp << 23) | rng.integers(0, 1 << 23, n).astype(np.uint32)
    return np.concatenate([bits.view(np.float32), SPECIALS])


def flush(x: np.ndarray) -> np.ndarray:
    """Strict mode's view of an input: a denormal reads as a zero of its sign."""
    x = np.array(x, dtype=np.float32)
    tiny = (x != 0) & (np.abs(x) < TINY)
    x[tiny] = np.copysign(np.float32(0), x[tiny])
    return x


def ulp_errors(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in ULPs of float32 at ``want`` (float64); 0 where both are the same special,
    inf where one is NaN and the other not, or the infinities differ. A true result below 2^-126
    in magnitude must come out as a zero or +-2^-126 (strict mode flushes denormals); one past
    float32's largest value as an infinity of its sign."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    err = np.zeros(want.shape)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    err[nan_g != nan_w] = np.inf
    ok = ~nan_g & ~nan_w
    big = ok & (np.abs(want) > 3.4028235677973366e38)
    err[big & (got != want) & ~(np.isinf(got) & (np.sign(got) == np.sign(want)))] = np.inf
    small = ok & ~big & (np.abs(want) < 2.0 ** -126)
    err[small & ~((got == 0) | (np.abs(got) == 2.0 ** -126))] = np.inf
    normal = ok & ~big & ~small
    w = want[normal]
    ulp = 2.0 ** (np.floor(np.log2(np.abs(w))) - 23)
    err[normal] = np.abs(got[normal] - w) / ulp
    return err
