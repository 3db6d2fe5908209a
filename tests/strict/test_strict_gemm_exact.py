"""The strict GEMM's unflushed path (strict.glsl's hlx_exact_mul / hlx_exact_add) gives the bits of
strict mode's definition: acc = flush(acc + flush(a * b)) over k ascending, chunk sums added in
order, every input flushed. The reference is that definition in numpy float32 (correctly rounded,
denormals kept, then flushed by hand), on inputs that take the unflushed path, the flushed one, and
a switch from one to the other partway along K, for both tiles of the tiled kernel (which has the
unflushed path) and the CPU kernel (which has not: lavapipe runs both sides of a branch), with one
chunk and with split-K."""

from __future__ import annotations

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan.errors import StrictModeError
from hlx_vulkan.ops import matmul as mm
from hlx_vulkan.strict_spirv import EXACT_SET, harden

TINY = np.float32(2.0 ** -126)


def _flush(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=True)
    small = (x != 0) & (np.abs(x) < TINY)
    x[small] = np.copysign(np.float32(0), x[small])
    return x


def strict_matmul_reference(a: np.ndarray, b: np.ndarray, kc: int) -> np.ndarray:
    """Strict mode's bits of a @ b (float32 (M, K) and (K, N)) with chunks of ``kc`` values of k."""
    a, b = _flush(a), _flush(b)
    M, K = a.shape
    total = None
    with np.errstate(all="ignore"):
        for c0 in range(0, K, kc):
            acc = np.zeros((M, b.shape[1]), np.float32)
            for k in range(c0, min(K, c0 + kc)):
                acc = _flush(acc + _flush(a[:, k:k + 1] * b[k:k + 1, :]))
            total = acc if total is None else _flush(total + acc)
    return total


def _wide(rng, shape, lo, hi):
    """Random signs and mantissas, exponents uniform in [lo, hi] (2^lo .. 2^hi)."""
    e = rng.integers(lo + 127, hi + 128, shape).astype(np.uint32)
    bits = (rng.integers(0, 2, shape).astype(np.uint32) << 31) | (e << 23) | rng.integers(0, 1 << 23, shape,
                                                                                             dtype=np.uint32)
    return bits.view(np.float32)


def _inputs(kind: str, M: int, K: int, N: int, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    if kind == "tiny":  # products and sums around 2^-126: every flush matters
        a, b = _wide(rng, (M, K), -70, -56), _wide(rng, (K, N), -70, -56)
        a[rng.random((M, K)) < 0.1] = 0.0
        b[rng.random((K, N)) < 0.1] = -0.0
        b.flat[::7] = np.float32(3e-39)  # denormal inputs read as zeros
    elif kind == "switch":  # unflushed for the first 40 values of k (their products cancel), flushed after
        a[:, 1:40:2] = a[:, 0:40:2]
        b[1:40:2] = -b[0:40:2]
        a[:, 40:] = _wide(rng, (M, K - 40), -70, -56)
        b[40:, :] = _wide(rng, (K - 40, N), -70, -56)
    elif kind == "cancel":  # the unflushed path's sums cancelling to a few ulps of 2^-102
        base = _wide(rng, (M, 1), -51, -50)
        a = np.repeat(base, K, 1)
        b = np.where(rng.random((K, N)) < 0.5, np.float32(2.0 ** -51), np.float32(-(2.0 ** -51)))
        a[:, ::5] = np.nextafter(a[:, ::5], np.float32(1))
    return a.astype(np.float32), b.astype(np.float32)


@pytest.mark.parametrize("tile", [None, "small", "large"])
@pytest.mark.parametrize("kind", ["normal", "tiny", "switch", "cancel"])
def test_strict_matmul_bits_match_the_definition(tile, kind, monkeypatch):
    monkeypatch.setattr(mm, "FORCE_TILE", tile)
    M, K, N = 37, 131, 45
    a, b = _inputs(kind, M, K, N, seed=len(kind) * 7 + len(tile or ""))
    with hv.strict():
        out = hv.empty(M, N)
        out.fill_(float("nan"))  # poisoned: every element must be written
        got = hv.matmul(hv.tensor(a), hv.tensor(b), out=out).numpy()
    want = strict_matmul_reference(a, b, mm.chunk_length(K))
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("tile", [None, "small"])
@pytest.mark.parametrize("kind", ["normal", "switch", "tiny"])
def test_strict_matmul_split_k_bits_match_the_definition(tile, kind, monkeypatch):
    monkeypatch.setattr(mm, "FORCE_TILE", tile)
    monkeypatch.setitem(mm.CHUNK_K, "float32", 64)  # K = 203: chunks of 64, the last 11 long
    M, K, N = 21, 203, 19
    a, b = _inputs(kind, M, K, N, seed=3)
    if kind == "switch":  # flushed in the second chunk only: the third starts unflushed again
        a[:, 128:] = np.random.default_rng(4).standard_normal((M, K - 128)).astype(np.float32)
        b[128:] = np.random.default_rng(5).standard_normal((K - 128, N)).astype(np.float32)
    with hv.strict():
        got = (hv.tensor(a) @ hv.tensor(b)).numpy()
    want = strict_matmul_reference(a, b, mm.chunk_length(K))
    assert mm.chunk_length(K) == 64
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_the_reference_flushes_what_an_unflushed_sum_would_keep():
    """The 'tiny' inputs take the flushed path for a reason: without the flushes the bits differ."""
    a, b = _inputs("tiny", 37, 131, 45, seed=1)
    with np.errstate(all="ignore"):
        plain = np.zeros((37, 45), np.float32)
        for k in range(131):
            plain = plain + _flush(a)[:, k:k + 1] * _flush(b)[k:k + 1, :]
    assert not np.array_equal(plain.view(np.uint32), strict_matmul_reference(a, b, 131).view(np.uint32))


def _module_with_exact(op: int, operands: int = 2) -> bytes:
    """A glslang-shaped fragment: OpExtension/OpExtInstImport of EXACT_SET and one OpExtInst."""
    from array import array
    name = EXACT_SET.encode() + b"\0" * (4 - len(EXACT_SET) % 4)
    words = list(array("I", name))
    insts = [[(2 << 16) | 17, 1],                                   # OpCapability Shader
             [((1 + len(words)) << 16) | 10, *words],               # OpExtension
             [((2 + len(words)) << 16) | 11, 1, *words],            # %1 = OpExtInstImport
             [(3 << 16) | 14, 0, 1],                                # OpMemoryModel
             [(3 << 16) | 22, 2, 32],                               # %2 = OpTypeFloat 32
             [(4 << 16) | 43, 2, 3, 0x3F800000],                    # %3 = OpConstant 1.0
             [(5 << 16) | 54, 2, 4, 0, 2],                          # OpFunction (type id unused here)
             [((5 + operands) << 16) | 12, 2, 5, 1, op, *([3] * operands)]]
    body = [w for i in insts for w in i]
    return array("I", [0x07230203, 0x10500, 0, 6, 0] + body).tobytes()


def test_the_pass_turns_exact_instructions_into_unflushed_arithmetic():
    from array import array
    words = list(array("I", harden(_module_with_exact(1))))
    ops = []
    pos = 5
    while pos < len(words):
        ops.append((words[pos] & 0xFFFF, words[pos + 1:pos + (words[pos] >> 16)]))
        pos += words[pos] >> 16
    assert (133, [2, 5, 3, 3]) in ops                            # OpFMul %2 %5 %3 %3
    assert (71, [5, 42]) in ops                                  # NoContraction on it
    assert not any(op in (10, 11, 12, 124, 169) for op, _ in ops)  # no set left, and no flush


@pytest.mark.parametrize("op, operands", [(3, 2), (1, 3)])
def test_the_pass_refuses_an_unknown_exact_instruction(op, operands):
    with pytest.raises(StrictModeError, match="hlx_exact_mul or hlx_exact_add"):
        harden(_module_with_exact(op, operands))
