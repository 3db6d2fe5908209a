"""Random tensors from a counter-based generator (Philox4x32-10) on the device.

The same seed gives the same bits on every device: the generator uses integer
arithmetic only, and normals are made with log, sqrt and sin/cos written from
correctly rounded additions and multiplications (``glsl/repro_math.glsl``).

Example::

    hv.manual_seed(0)
    x = hv.randn(3, 4)
"""

from __future__ import annotations

import struct
import threading
from importlib import resources

from .. import errors
from ..memory import dtype_of
from ..runtime import Runtime, default_runtime
from .elementwise import _slot_defines
from .tensor import Tensor, contiguous_like

KERNEL = resources.files(__package__) / "random" / "random.comp"
BINDING_OUT = 0
PUSH_FORMAT = struct.Struct("<6Iff")
UNIFORM, NORMAL = 0, 1


class Generator:
    """A seed and a counter offset; each draw advances the offset past the numbers it used."""

    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> "Generator":
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        with self._lock:
            self.seed = int(seed)
            self.offset = 0
        return self

    def take(self, n: int) -> int:
        """Reserve counters for ``n`` numbers; returns the first counter."""
        with self._lock:
            start = self.offset
            self.offset += -(-n // 4)
            return start

    def get_state(self) -> tuple[int, int]:
        return self.seed, self.offset

    def set_state(self, state) -> None:
        with self._lock:
            self.seed, self.offset = int(state[0]), int(state[1])


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (and restart its counter)."""
    return default_generator.manual_seed(seed)


def _draw(shape, dist: int, alpha: float, beta: float, dtype, generator, runtime) -> Tensor:
    dt = dtype_of(dtype)
    if not dt.is_float:
        raise errors.DTypeError(f"random floats need a floating-point dtype, not {dt.name}")
    rt: Runtime = runtime or default_runtime()
    gen = generator or default_generator
    if rt.stream.capturing:
        raise errors.CaptureError("a random draw inside hv.capture() would give the same numbers on every replay; "
                                  "draw outside the capture and copy_ the numbers into a captured tensor")
    out = contiguous_like(shape, dt, rt)
    n = out.numel()
    if n == 0:
        return out
    if n >= 2**32 - 4:
        raise errors.LimitExceededError(f"{n} random numbers in one draw is more than this kernel counts")
    start = gen.take(n)
    defines = {"DIST": dist, "CT": "float", "OCT": "float", **_slot_defines("O", dt),
               **_slot_defines("A", dt), **_slot_defines("B", dt), **_slot_defines("C", dt)}
    kernel = rt.kernels.get(KERNEL, defines, (64,))
    push = PUSH_FORMAT.pack(n, rt.elem_offset(out.buf), gen.seed & 0xFFFFFFFF, gen.seed >> 32,
                            start & 0xFFFFFFFF, (start >> 32) & 0xFFFFFFFF, alpha, beta)
    rt.launch(kernel, [out.buf], push, -(-n // 4))
    return out


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def rand(*shape, dtype="float32", low: float = 0.0, high: float = 1.0, generator: Generator | None = None,
         runtime: Runtime | None = None) -> Tensor:
    """Uniform numbers in [low, high)."""
    return _draw(_shape(shape), UNIFORM, low, high - low, dtype, generator, runtime)


def randn(*shape, dtype="float32", mean: float = 0.0, std: float = 1.0, generator: Generator | None = None,
          runtime: Runtime | None = None) -> Tensor:
    """Normal numbers (Box-Muller over Philox)."""
    return _draw(_shape(shape), NORMAL, mean, std, dtype, generator, runtime)
