"""Random tensors from a counter-based generator (Philox4x32-10) on the device.

The same seed gives the same bits on every device: the generator uses integer
arithmetic only, and normals are made with log, sqrt and sin/cos written from
correctly rounded additions and multiplications (``glsl/repro_math.glsl``).

Draws inside ``hv.capture()`` read their counter from a per-generator device counter
that the graph advances itself, so every replay draws fresh numbers, and a replayed step
draws exactly what the same step run eagerly would have.

Example::

    hv.manual_seed(0)
    x = hv.randn(3, 4)
"""

from __future__ import annotations

import threading
import weakref
from importlib import resources

from .. import errors
from ..memory import dtype_of
from ..runtime import KernelSpec, Runtime, default_runtime
from .tensor import Tensor, contiguous_like

_PUSH = [("n", "I"), ("off_o", "I"), ("seed_lo", "I"), ("seed_hi", "I"), ("offset_lo", "I"), ("offset_hi", "I"),
         ("alpha", "f"), ("beta", "f")]
_SOURCE = resources.files(__package__) / "random" / "random.comp"
DRAW = KernelSpec(_SOURCE, [("O", "write", "O")], _PUSH)
# Inside a capture the counter comes from device memory, which the graph advances.
DRAW_DEVICE_COUNTER = KernelSpec(_SOURCE, [("O", "write", "O"), ("Ctr", "read")], _PUSH)
COUNTER = KernelSpec(resources.files(__package__) / "random" / "counter.comp", [("Ctr", "readwrite")],
                     [("off_ctr", "I"), ("lo", "I"), ("hi", "I")])
SET_COUNTER, ADD_COUNTER = 0, 1
UNIFORM, NORMAL = 0, 1


class Generator:
    """A seed and a counter offset; each draw advances the offset past the numbers it used."""

    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self._device_counters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
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


class _DeviceCounter:
    """A generator's counter in device memory on one runtime, for draws inside captured graphs."""

    def __init__(self, rt: Runtime):
        self.tensor = Tensor(rt.memory.empty((2,), "uint32"), rt)
        self.synced: int | None = None  # the host offset the device counter holds, once set

    def dispatch(self, mode: int, value: int) -> None:
        rt = self.tensor.runtime
        kernel = rt.kernels.get(COUNTER, {"MODE": mode}, workgroup=(1, 1, 1))
        rt.run(kernel, {"Ctr": self.tensor.buf}, {"lo": value & 0xFFFFFFFF, "hi": (value >> 32) & 0xFFFFFFFF})


class _CapturedDraws:
    """A graph's draws from one generator: before each run the device counter is brought to the
    generator's offset; after it, the offset moves past what the run drew."""

    def __init__(self, gen: Generator, counter: _DeviceCounter):
        self.gen, self.counter, self.seed, self.count = gen, counter, gen.seed, 0

    def before_run(self) -> None:
        if self.gen.seed != self.seed:
            raise errors.CaptureError("the generator was reseeded since this graph was captured; capture again")
        if self.counter.synced != self.gen.offset:
            self.counter.dispatch(SET_COUNTER, self.gen.offset)

    def after_run(self) -> None:
        with self.gen._lock:
            self.gen.offset += self.count
        self.counter.synced = self.gen.offset


def _draw(shape, dist: int, alpha: float, beta: float, dtype, generator, runtime) -> Tensor:
    dt = dtype_of(dtype)
    if not dt.is_float:
        raise errors.DTypeError(f"random floats need a floating-point dtype, not {dt.name}")
    rt: Runtime = runtime or default_runtime()
    gen = generator or default_generator
    out = contiguous_like(shape, dt, rt)
    n = out.numel()
    if n == 0:
        return out
    if n >= 2**32 - 4:
        raise errors.LimitExceededError(f"{n} random numbers in one draw is more than this kernel counts")
    defines = {"DIST": dist, "CT": "float", "OCT": "float"}
    graph = rt.stream.capture_graph
    if graph is None:
        start = gen.take(n)
        spec, tensors = DRAW, {"O": out.buf}
        counter_words = (start & 0xFFFFFFFF, (start >> 32) & 0xFFFFFFFF)
    else:
        counter = gen._device_counters.get(rt)
        if counter is None:
            counter = gen._device_counters[rt] = _DeviceCounter(rt)
        draws = graph.hooks.setdefault(("philox", id(gen)), _CapturedDraws(gen, counter))
        defines["DEVICE_COUNTER"] = 1
        spec, tensors = DRAW_DEVICE_COUNTER, {"O": out.buf, "Ctr": counter.tensor.buf}
        buf = counter.tensor.buf
        counter_words = (buf.byte_offset // buf.dtype.itemsize, 0)  # the counter's index in Ctr
    kernel = rt.kernels.get(spec, defines, {"O": dt}, (64,))
    used = -(-n // 4)
    rt.run(kernel, tensors, {"n": n, "seed_lo": gen.seed & 0xFFFFFFFF, "seed_hi": gen.seed >> 32,
                             "offset_lo": counter_words[0], "offset_hi": counter_words[1], "alpha": alpha,
                             "beta": beta}, used)
    if graph is not None:
        counter.dispatch(ADD_COUNTER, used)
        draws.count += used
    return out


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def rand(*shape, dtype="float32", low: float = 0.0, high: float = 1.0, generator: Generator | None = None,
         runtime: Runtime | None = None, requires_grad: bool = False) -> Tensor:
    """Uniform numbers in [low, high)."""
    out = _draw(_shape(shape), UNIFORM, low, high - low, dtype, generator, runtime)
    return out.requires_grad_() if requires_grad else out


def randn(*shape, dtype="float32", mean: float = 0.0, std: float = 1.0, generator: Generator | None = None,
          runtime: Runtime | None = None, requires_grad: bool = False) -> Tensor:
    """Normal numbers (Box-Muller over Philox)."""
    out = _draw(_shape(shape), NORMAL, mean, std, dtype, generator, runtime)
    return out.requires_grad_() if requires_grad else out


def randint(low, high=None, size=(), dtype=None, generator: Generator | None = None,
            runtime: Runtime | None = None) -> Tensor:
    """Integers drawn uniformly from [low, high) (int64 by default, as torch.randint); ranges up to
    2**24 wide (drawn through a float32 uniform)."""
    from .pointwise import launch
    from .tensor import default_int_dtype
    if high is None:
        low, high = 0, low
    if not low < high or high - low > 2**24:
        raise ValueError(f"randint needs low < high and a range of at most 2**24, got [{low}, {high})")
    rt = runtime or default_runtime()
    size = tuple(size) if isinstance(size, (tuple, list)) else (int(size),)
    u = rand(*size, generator=generator, runtime=rt)
    return launch("min(floor(x * alpha), alpha - CT(1)) + beta", [u], out_dtype=dtype or default_int_dtype(rt),
                  alpha=float(high - low), beta=float(low))


def rand_like(x: Tensor, dtype=None, generator: Generator | None = None) -> Tensor:
    """Uniform numbers in [0, 1) of ``x``'s shape (and dtype unless given)."""
    return rand(*x.shape, dtype=dtype or x.dtype, generator=generator, runtime=x.runtime)


def randn_like(x: Tensor, dtype=None, generator: Generator | None = None) -> Tensor:
    """Normal numbers of ``x``'s shape (and dtype unless given)."""
    return randn(*x.shape, dtype=dtype or x.dtype, generator=generator, runtime=x.runtime)
