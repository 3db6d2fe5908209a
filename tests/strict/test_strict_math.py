"""Strict mode's software functions (glsl/strict.glsl) against float64, over float32's whole
range with zeros, infinities, NaN and denormals, each within the ULP bound that strict.glsl and
the README state. Inputs are read as strict mode reads them (denormals as zeros of their sign);
true results below 2^-126 must come out as zeros (or +-2^-126). Each op runs right after a NaN
tensor of its output's size is freed, so an unwritten element of a reused range shows as NaN
(test_strict_mode.py writes into explicitly poisoned outputs)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F
from strictcheck import flush, ulp_errors, wide

N = 6000


def _inputs(rng):
    with np.errstate(all="ignore"):
        return {
            "w": wide(rng, N), "w2": wide(rng, N),
            "e": np.concatenate([rng.uniform(-104, 90, N).astype(np.float32), wide(rng, 300, -20, 8)]),
            "t": np.concatenate([rng.uniform(-12, 12, N).astype(np.float32), wide(rng, 300)]),
            "s": np.concatenate([rng.uniform(-65535, 65535, N // 2).astype(np.float32),
                                 rng.uniform(-4, 4, N // 2).astype(np.float32), wide(rng, 300, -126, 17)]),
        }


def _ref64(x):
    return flush(x).astype(np.float64)


def _sin_ref(f):
    def ref(x):
        out = f(_ref64(x))
        out[~(np.abs(x) < 65536)] = np.nan  # strict sin/cos are defined for |x| < 65536
        return out
    return ref


# name -> (input key, strict op, float64 reference, bound in ULPs)
UNARY = {
    "sqrt": ("w", hv.sqrt, lambda x: np.sqrt(_ref64(x)), 1.0),
    "rsqrt": ("w", hv.rsqrt, lambda x: 1 / np.sqrt(_ref64(x)), 2.0),
    "reciprocal": ("w", hv.reciprocal, lambda x: 1 / _ref64(x), 1.0),
    "log": ("w", hv.log, lambda x: np.log(_ref64(x)), 2.0),
    "exp": ("e", hv.exp, lambda x: np.exp(_ref64(x)), 2.0),
    "tanh": ("t", hv.tanh, lambda x: np.tanh(_ref64(x)), 3.0),
    "sigmoid": ("t", hv.sigmoid, lambda x: 1 / (1 + np.exp(-_ref64(x))), 3.0),
    "sin": ("s", hv.sin, _sin_ref(np.sin), 3.0),
    "cos": ("s", hv.cos, _sin_ref(np.cos), 3.0),
}


def _run(fn, *arrays):
    with hv.strict():
        ins = [hv.tensor(a) for a in arrays]
        hv.tensor(np.full(max(a.size for a in arrays), np.nan, np.float32))  # freed at once: the output's range
        out = fn(*ins)
        return out.numpy().astype(np.float64)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_function_within_its_ulp_bound(name):
    key, op, ref, bound = UNARY[name]
    x = _inputs(np.random.default_rng(zlib.crc32(name.encode())))[key]
    with np.errstate(all="ignore"):
        want = ref(x)
    got = _run(op, x)
    err = ulp_errors(got, want)
    worst = int(np.argmax(err))
    assert err.max() <= bound, f"{name}({x[worst]!r}) = {got[worst]!r}, float64 says {want[worst]!r}: {err[worst]} ULP"


def test_division_within_one_ulp_with_every_special_case():
    ins = _inputs(np.random.default_rng(11))
    a, b = ins["w"], ins["w2"][::-1].copy()
    a = np.concatenate([a, np.repeat(np.array([0, -0.0, np.inf, -np.inf, np.nan, 1.0, 1e-40], np.float32), 7)])
    b = np.concatenate([b, np.tile(np.array([0, -0.0, np.inf, -np.inf, np.nan, -2.0, 1e-40], np.float32), 7)])
    with np.errstate(all="ignore"):
        want = _ref64(a) / _ref64(b)
    got = _run(lambda x, y: x / y, a, b)
    err = ulp_errors(got, want)
    worst = int(np.argmax(err))
    assert err.max() <= 1.0, f"{a[worst]!r} / {b[worst]!r} = {got[worst]!r}, float64 says {want[worst]!r}"
    # signs of zeros and infinities follow IEEE division
    special = slice(len(a) - 49, None)
    both = np.isfinite(want[special]) | np.isinf(want[special])
    assert np.array_equal(np.signbit(got[special])[both], np.signbit(want[special])[both])


def test_pow_within_its_bound_that_grows_with_y_ln_x():
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.uniform(0, 10, N), np.exp(rng.uniform(-80, 80, N))]).astype(np.float32)
    y = np.concatenate([rng.uniform(-30, 30, N), rng.uniform(-1, 1, N)]).astype(np.float32)
    with np.errstate(all="ignore"):
        want = _ref64(x) ** _ref64(y)
        bound = 2 + 1.5 * np.abs(_ref64(y) * np.log(_ref64(x)))
    got = _run(lambda a, b: a ** b, x, y)
    err = ulp_errors(got, want)
    worst = int(np.argmax(err / np.maximum(bound, 1)))
    assert np.all(err <= bound), f"{x[worst]!r} ** {y[worst]!r} = {got[worst]!r}, float64 says {want[worst]!r}"


def test_gelu_erf_within_its_absolute_bound():
    x = np.random.default_rng(13).uniform(-9, 9, N).astype(np.float32)
    from math import erf
    want = np.array([0.5 * v * (1 + erf(v / np.sqrt(2))) for v in x.astype(np.float64)])
    got = _run(F.gelu, x)
    ulp = 2.0 ** (np.floor(np.log2(np.abs(want) + 1e-300)) - 23)
    assert np.all(np.abs(got - want) <= 4 * ulp + 2e-7 * np.abs(x)), np.max(np.abs(got - want))


def test_denormal_inputs_read_as_zeros_and_denormal_results_flush_to_signed_zeros():
    x = np.array([1e-40, -1e-40, 1.5 * 2.0 ** -126, -1.5 * 2.0 ** -126, 2.0 ** -126], np.float32)
    y = np.array([2.0 ** 100, 2.0 ** 100, 0.5, 0.5, 1.0], np.float32)
    got = _run(lambda a, b: a * b, x, y)
    # 1e-40 is read as +0; 1.5 * 2^-127 is denormal and flushes, keeping its sign
    assert got.tolist() == [0.0, -0.0, 0.0, -0.0, 2.0 ** -126]
    assert np.signbit(got).tolist() == [False, True, False, True, False]
    assert _run(lambda a, b: a + b, x[:2], np.zeros(2, np.float32)).tolist() == [0.0, 0.0]
    # sums, products and exp of tiny values: the same flush inside a reduction and a function
    assert _run(lambda a: a.sum(), np.full(1000, 1e-40, np.float32)).item() == 0.0
    assert _run(hv.exp, np.array([-87.5, -100.0], np.float32)).tolist() == [0.0, 0.0]
