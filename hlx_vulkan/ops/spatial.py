"""Padding and resampling as PyTorch has them: ``pad`` (constant, reflect, replicate, circular)
and ``interpolate`` (nearest, linear/bilinear with or without ``align_corners``).

No kernels of their own: constant padding is a concat with filled blocks, the other modes pick
rows with ``index_select`` (whose backward adds in index order: deterministic), and linear
resampling is a product with a small interpolation matrix per axis, so every gradient comes
from those ops. Index and weight tables are built on the host once per shape and kept.
"""

from __future__ import annotations

import math

import numpy as np

from .. import errors
from . import shape as sh
from .creation import full
from .matmul import matmul
from .tensor import Tensor, default_int_dtype, from_numpy

PAD_MODES = ("constant", "reflect", "replicate", "circular")


def host_table(rt, key, build, dtype=None) -> Tensor:
    """A small constant tensor from ``build()`` (a numpy array), built once per runtime and key."""
    key = ("spatial_table", key, None if dtype is None else dtype.name)
    t = rt.plans.get(key)
    if t is None:
        t = rt.plans[key] = from_numpy(build(), dtype if dtype is not None else None, rt)
    return t


def _index(rt, key, values) -> Tensor:
    return host_table(rt, key, lambda: np.asarray(values, np.int64 if default_int_dtype(rt).name == "int64"
                                                   else np.int32), None)


def pad(x: Tensor, pad, mode: str = "constant", value: float = 0.0) -> Tensor:  # noqa: A002 - torch's name
    """Pad ``x`` by ``pad`` = (left, right) of the last dim, then of the one before, ... as torch.
    ``constant`` pads with ``value`` (a negative amount crops); ``reflect`` mirrors without
    repeating the edge, ``replicate`` repeats it, ``circular`` wraps around."""
    if not isinstance(x, Tensor):
        raise TypeError(f"pad takes a tensor, got {type(x).__name__}")
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim or not all(isinstance(p, int) for p in pad):
        raise errors.ShapeError(f"pad {pad}: an even number of ints, at most two per dimension of {x.shape}")
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {PAD_MODES}, not {mode!r}")
    if mode != "constant" and value != 0.0:
        raise ValueError(f"pad: value is only for mode 'constant', not {mode!r}")
    for i in range(len(pad) // 2):
        d = x.ndim - 1 - i
        lo, hi = pad[2 * i], pad[2 * i + 1]
        if lo == hi == 0:
            continue
        n = x.shape[d]
        if mode == "constant":
            x = _pad_constant(x, d, lo, hi, value)
            continue
        if mode != "circular" and x.ndim < 2:
            raise errors.ShapeError(f"pad mode {mode!r} needs a batched input of 2 or more dims, got {x.shape}")
        if lo < 0 or hi < 0:
            raise ValueError(f"pad mode {mode!r} takes no negative padding, got {pad}")
        if mode == "reflect" and (lo >= n or hi >= n):
            raise errors.ShapeError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the dim's size {n}")
        if mode == "circular" and (lo > n or hi > n):
            raise errors.ShapeError(f"pad: circular padding ({lo}, {hi}) must be at most the dim's size {n}")
        if n == 0:
            raise errors.ShapeError(f"pad mode {mode!r} cannot pad an empty dim of {x.shape}")
        pos = np.arange(-lo, n + hi)
        if mode == "reflect":
            pos = np.abs(pos)
            pos = np.where(pos >= n, 2 * (n - 1) - pos, pos)
        elif mode == "replicate":
            pos = np.clip(pos, 0, n - 1)
        else:
            pos = pos % n
        x = sh.index_select(x, d, _index(x.runtime, ("pad", mode, n, lo, hi), pos))
    return x


def _pad_constant(x: Tensor, d: int, lo: int, hi: int, value) -> Tensor:
    n = x.shape[d]
    if lo < 0 or hi < 0:
        start, stop = max(-lo, 0), n - max(-hi, 0)
        if stop < start:
            raise errors.ShapeError(f"pad: cropping ({lo}, {hi}) is more than dim {d} of size {n}")
        key = tuple(slice(None) if k != d else slice(start, stop) for k in range(x.ndim))
        x = x[key]
        lo, hi = max(lo, 0), max(hi, 0)
    parts = []
    for amount in (lo, None, hi):
        if amount is None:
            parts.append(x)
        elif amount:
            shape = tuple(amount if k == d else s for k, s in enumerate(x.shape))
            parts.append(full(shape, value, dtype=x.dtype, runtime=x.runtime))
    return parts[0] if len(parts) == 1 else sh.concat(parts, d)


INTERP_MODES = ("nearest", "linear", "bilinear")


def _sizes(x: Tensor, size, scale_factor, nd: int):
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    spatial = x.shape[2:]
    if size is not None:
        out = (size,) * nd if isinstance(size, int) else tuple(size)
        if len(out) != nd or not all(isinstance(s, int) and s > 0 for s in out):
            raise errors.ShapeError(f"interpolate: size {size!r} must be {nd} positive int(s)")
        return out, [None] * nd
    scales = (float(scale_factor),) * nd if isinstance(scale_factor, (int, float)) else tuple(map(float, scale_factor))
    if len(scales) != nd or not all(s > 0 for s in scales):
        raise ValueError(f"interpolate: scale_factor {scale_factor!r} must be {nd} positive number(s)")
    return tuple(int(math.floor(n * s)) for n, s in zip(spatial, scales)), list(scales)


def _nearest_index(n_in: int, n_out: int, scale) -> np.ndarray:
    """torch's nearest: src = min(floor(dst * s), n_in - 1), s = 1/scale_factor or n_in/n_out, in float32."""
    s = np.float32(1.0 / scale) if scale is not None else np.float32(n_in) / np.float32(n_out)
    src = np.floor(np.arange(n_out, dtype=np.float32) * s).astype(np.int64)
    return np.minimum(src, n_in - 1)


def _linear_matrix(n_in: int, n_out: int, scale, align_corners: bool) -> np.ndarray:
    """(n_out, n_in) weights of torch's linear interpolation along one axis."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        s = 1.0 / scale if scale is not None else n_in / n_out
        src = np.maximum((dst + 0.5) * s - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = src - i0
    m = np.zeros((n_out, n_in), np.float64)
    np.add.at(m, (np.arange(n_out), i0), 1.0 - l1)
    np.add.at(m, (np.arange(n_out), i1), l1)
    return m.astype(np.float32)


def interpolate(x: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None) -> Tensor:
    """Resize the spatial dims of ``x`` (N, C, L) or (N, C, H, W) to ``size`` or by ``scale_factor``,
    as torch.nn.functional.interpolate: ``nearest``, ``linear`` (3-D) or ``bilinear`` (4-D), the
    latter two with ``align_corners`` (default False)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"interpolate takes a tensor, got {type(x).__name__}")
    if mode not in INTERP_MODES:
        raise ValueError(f"interpolate mode must be one of {INTERP_MODES}, not {mode!r}")
    if x.ndim not in (3, 4):
        raise errors.ShapeError(f"interpolate takes an (N, C, L) or (N, C, H, W) input, got {x.shape}")
    nd = x.ndim - 2
    if mode != "nearest" and nd != {"linear": 1, "bilinear": 2}[mode]:
        raise errors.ShapeError(f"interpolate mode {mode!r} does not apply to a {x.ndim}-D input")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners applies to linear modes only")
    if mode != "nearest" and not x.dtype.is_float:
        raise errors.DTypeError(f"interpolate {mode!r} needs a floating-point tensor, not {x.dtype.name}")
    out, scales = _sizes(x, size, scale_factor, nd)
    rt = x.runtime
    for k in range(nd):
        d = 2 + k
        n_in, n_out = x.shape[d], out[k]
        if n_in == n_out and scales[k] in (None, 1.0):
            continue
        if mode == "nearest":
            idx = _nearest_index(n_in, n_out, scales[k])
            x = sh.index_select(x, d, _index(rt, ("nearest", n_in, n_out, scales[k]), idx))
        else:
            ac = bool(align_corners)
            m = host_table(rt, ("linear", n_in, n_out, scales[k], ac),
                           lambda: _linear_matrix(n_in, n_out, scales[k], ac), x.dtype)
            if d == x.ndim - 1:
                x = matmul(x, sh.transpose(m, 0, 1))
            else:
                x = matmul(m, x)  # (n_out, n_in) @ (..., n_in, W)
    return x


__all__ = ["INTERP_MODES", "PAD_MODES", "host_table", "interpolate", "pad"]
