"""Build the library's common kernels into the on-disk shader cache ahead of their first use, so
a fresh process pays pipeline creation only (``hlx warmup``; ``make setup`` runs it).

Kernels are specialised per expression and dtype, so this runs what users run first: the
elementwise, reduction, softmax, matmul and random kernels on the usual dtypes, and whole
training steps (an MLP with dropout, AdamW and a schedule, eager and captured).
"""

from __future__ import annotations

import numpy as np

from . import nn, optim
from .autograd.graph import no_grad
from .nn import functional as F
from .ops import elementwise as ew
from .ops import reduce as red
from .ops.random import rand, randn
from .ops.tensor import tensor
from .runtime import capture, default_runtime


def _ops(dtype: str) -> None:
    rng = np.random.default_rng(0)
    for shape in ((7,), (5, 6)):  # contiguous (flat) and broadcast (strided) kernel variants
        x = tensor(rng.random(shape) + 0.5, dtype=dtype)
        y = tensor(rng.random(shape[-1:]) + 0.5, dtype=dtype)
        for op in (ew.add, ew.sub, ew.mul, ew.div, ew.maximum, ew.minimum):
            op(x, y), op(x, 2.0)
        for op in (ew.exp, ew.log, ew.sqrt, ew.rsqrt, ew.tanh, ew.sigmoid, ew.relu, ew.gelu, ew.neg, ew.abs):
            op(x)
        x ** 2, x ** 0.5, x ** 3.0, ew.clamp(x, 0.6, 0.9)
        for cmp in (ew.eq, ew.ne, ew.lt, ew.le, ew.gt, ew.ge):
            cmp(x, y)
        for axis in (None, 0, -1):
            red.sum(x, axis), red.mean(x, axis), red.max(x, axis), red.min(x, axis), red.argmax(x, axis)
        F.softmax(x, -1), F.log_softmax(x, -1)
        F.layer_norm(x, shape[-1:], y, y)
        x.to("float32"), x.contiguous()
    a = tensor(rng.random((9, 8)), dtype=dtype)
    a @ tensor(rng.random((8, 5)), dtype=dtype)
    randn(6, dtype=dtype), rand(6, dtype=dtype)


def _training_step() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    sched = optim.CosineAnnealingLR(opt, T_max=10)
    x, y = tensor(np.random.default_rng(0).random((16, 64), np.float32)), tensor(np.arange(16) % 10)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        with no_grad():
            ew.launch("x + y", [loss.reshape(1), loss.reshape(1)])
    step()
    with capture() as graph:
        step()
    graph.destroy()
    model.eval()
    with no_grad():
        model(x).argmax(-1)


def warm() -> int:
    """Build the common kernels on the default device; returns how many kernels it has."""
    rt = default_runtime()
    for dtype in ("float32", "float16", "bfloat16", "int32", "int64"):
        if dtype == "int64" and not rt.kernels.int64:
            continue  # a device without shaderInt64
        if dtype in ("int32", "int64"):
            # Integer data (int64 by default, as torch), its comparisons (bool) and counts (int64 sums).
            x = tensor(np.arange(6).reshape(2, 3), dtype=dtype)
            x + x, x * 2, red.sum(x, 0), red.argmax(x, 1), x.to("float32"), x / 2
            mask = ew.eq(x, x)
            red.sum(mask), red.sum(mask, 0), ew.bitwise_not(mask), ew.cast(mask, "float32")
        else:
            _ops(dtype)
    _training_step()
    tensor(np.arange(6, dtype=np.float32)).digest("hlx-tree-sha256-v1")  # the device digest's SHA-256 kernel
    tensor(np.arange(300, dtype=np.float32)).digest()  # BLAKE3's chunk and parent kernels (two chunks)
    _cnn_step()
    rt.synchronize()
    return len(rt.kernels.kernels())


def _cnn_step() -> None:
    """A convolutional net's kernels (im2col, col2im, max pooling, batch norm), forward and backward."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
    x = tensor(np.random.default_rng(0).random((2, 1, 6, 6), np.float32))
    net(x).sum().backward()


__all__ = ["warm"]
