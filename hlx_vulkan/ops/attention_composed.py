"""Attention in strict mode: ``softmax(q @ k^T * scale + mask) @ v`` composed of matmul, softmax
and pointwise ops, each strict-ready.

The fused kernel (``attention/attention.comp``) is not used in strict mode: its online softmax
rescales the running sums once per key tile, and the tile follows the device's shared memory, so
its bits would follow the device. The composed form stores the (..., L, S) scores; every
reduction in it (matmul's K loop, softmax's rows) has the fixed order of its op.

Dropout draws a uniform per weight from the seeded generator (``rand``), as ``nn.functional.dropout``.
A row whose keys are all masked out gives zeros, as the fused kernel.
"""

from __future__ import annotations

import math

from . import elementwise as ew
from . import matmul as mm
from . import reduce as red
from . import shape as sh
from .creation import full
from .random import rand
from .softmax import softmax
from .tensor import Tensor


def composed_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, scale: float,
                       dropout_p: float, generator=None) -> Tensor:
    """The attention of validated operands; ``mask`` float32 (added to the scores) or None."""
    L, S = q.shape[-2], k.shape[-2]
    scores = mm.matmul(q * scale, sh.transpose(k, -2, -1))
    if causal:  # keys j <= i (top-left aligned)
        mask = sh.triu(full((L, S), -math.inf, runtime=q.runtime), 1)
    if mask is not None:
        scores = scores + mask
    if mask is not None and not causal:  # causal rows keep key 0; other masks may leave a row empty
        live = red.amax(scores, -1, keepdim=True) > -math.inf
        # An empty row's scores are made finite first, so that neither softmax nor its gradient gives NaN.
        w = ew.where(live, softmax(ew.where(live, scores, 0.0), -1), 0.0)
    else:
        w = softmax(scores, -1)
    if dropout_p > 0:
        u = rand(*w.shape, dtype=w.dtype, generator=generator, runtime=w.runtime)
        w = w * ew.launch("x >= alpha ? beta : CT(0)", [u], alpha=dropout_p, beta=1.0 / (1.0 - dropout_p))
    return mm.matmul(w, v)
