"""Optimizers whose update runs on the device (``kernels/update.comp``): one dispatch per
parameter, no host round trip per step.

The learning rate and the step count live in a small device tensor (``hyper``) that the
update kernels read, so a step recorded once (``hv.capture``) replays with the current
values, and a schedule (``optim.schedulers``) advances them on the device too.

Example::

    opt = hv.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    for x, y in batches:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from .. import errors
from ..autograd.graph import no_grad
from ..ops import elementwise as ew
from ..ops.creation import zeros_like
from ..ops.tensor import Tensor, from_numpy
from ..runtime import KernelSpec

_SOURCE = resources.files(__package__) / "kernels" / "update.comp"
_PUSH = [("n", "I"), ("off_p", "I"), ("off_m", "I"), ("off_v", "I"), ("off_g", "I"), ("off_h", "I"), ("beta1", "f"),
         ("beta2", "f"), ("eps", "f"), ("weight_decay", "f"), ("flags", "I")]
_BASE = [("P", "readwrite"), ("G", "read"), ("H", "read")]
# By the number of state slots: plain SGD, SGD with momentum (M), Adam (M and V).
UPDATE = {0: KernelSpec(_SOURCE, _BASE, _PUSH), 1: KernelSpec(_SOURCE, _BASE + [("M", "readwrite")], _PUSH),
          2: KernelSpec(_SOURCE, _BASE + [("M", "readwrite"), ("V", "readwrite")], _PUSH)}
WORKGROUP = 256
LR, STEP, SCHEDULE_COUNT = 0, 1, 2
# Tests: False turns the four-element (16-byte) update off.
VECTOR = True


class Optimizer:
    """The parameter list, the device-side state and the per-parameter update loop."""

    rule = 0
    slots: tuple[str, ...] = ()

    def __init__(self, params, lr: float, **defaults):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise errors.HlxError(f"parameter {i} is not a tensor that requires grad")
            if p.dtype.name != "float32" or not p.is_contiguous():
                raise errors.DTypeError(f"parameter {i}: the optimizers update contiguous float32 tensors, "
                                        f"not {p.dtype.name} of strides {p.strides}")
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.defaults = dict(lr=lr, **defaults)
        rt = self.params[0].runtime
        self.hyper = from_numpy(np.array([lr, 0, 0, 0], np.float32), "float32", rt)
        self.state = [{name: zeros_like(p) for name in self.slots} for p in self.params]
        self._plans: dict[int, tuple] = {}  # parameter index -> (layouts and settings, push constants, grid)

    # --- the learning rate -----------------------------------------------------------
    @property
    def lr(self) -> float:
        """The current learning rate (a read from the device: a sync point)."""
        return float(self.hyper.numpy()[LR])

    @lr.setter
    def lr(self, value: float) -> None:
        with no_grad():
            ew.launch("alpha", [self.hyper[LR:LR + 1]], out=self.hyper[LR:LR + 1], alpha=float(value))

    @property
    def step_count(self) -> int:
        return int(self.hyper.numpy()[STEP])

    # --- steps -----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                with no_grad():
                    ew.launch("CT(0)", [p.grad], out=p.grad)

    def _push(self, n: int, offsets) -> bytes:
        raise NotImplementedError

    def step(self) -> None:
        """Advance the step count, then update every parameter that has a gradient."""
        rt = self.hyper.runtime
        with no_grad():
            count = self.hyper[STEP:STEP + 1]
            ew.launch("x + CT(1)", [count], out=count)
            fields = self._push()
            fields_key = (VECTOR, tuple(fields.items()))
            hyper, slots = self.hyper.buf, self.slots
            for i, (p, state) in enumerate(zip(self.params, self.state)):
                g = p.grad
                if g is None:
                    continue
                pb, gb = p.buf, g.buf
                if gb.shape != pb.shape or gb.dtype is not pb.dtype:
                    raise errors.ShapeError(f"gradient of shape {g.shape} ({g.dtype.name}) for a parameter of "
                                            f"shape {p.shape} ({p.dtype.name})")
                if not gb.is_contiguous:
                    g = p.grad = ew.copy(g)
                    gb = g.buf
                n = pb.numel
                if n == 0:
                    continue
                bufs = [pb, gb, hyper]  # P, G, H, then M, V (loops, not comprehensions: no frames of their own)
                for s in slots:
                    bufs.append(state[s].buf)
                geometries = []
                for b in bufs:
                    geometries.append(b.geometry)
                # The kernel and push constants depend on the layouts and the settings only: planned once.
                key = (fields_key, tuple(geometries))
                plan = self._plans.get(i)
                if plan is None or plan[0] != key:
                    vec = VECTOR and n % 4 == 0 and all((b.byte_offset // 4) % 4 == 0 for b in bufs if b is not bufs[2])
                    kernel = self._kernel(rt, vec)
                    plan = self._plans[i] = (key, kernel, kernel.spec.pack(bufs, {"n": n, **fields}),
                                             rt.fold(n // 4 if vec else n, WORKGROUP))
                rt.run(plan[1], bufs, plan[2], plan[3])

    def _kernel(self, rt, vec: bool = False):
        return rt.kernels.get(UPDATE[len(self.slots)], {"RULE": self.rule, "VEC": int(vec),
                                                        "MOMENTUM": int(self.rule == 0 and bool(self.slots))},
                              workgroup=(WORKGROUP,))

    # --- state -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Host copies of the device state: the hyper tensor (lr, step, schedule count) and each
        parameter's slots, plus the constructor's settings."""
        return {"defaults": dict(self.defaults), "hyper": self.hyper.numpy(),
                "state": [{name: t.numpy() for name, t in s.items()} for s in self.state]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["state"]) != len(self.params):
            raise errors.ShapeError(f"optimizer state for {len(state['state'])} parameters, this one has "
                                    f"{len(self.params)}")
        for i, (mine, theirs) in enumerate(zip(self.state, state["state"])):
            if set(mine) != set(theirs):
                raise errors.ShapeError(f"parameter {i}: state slots {sorted(theirs)}, expected {sorted(mine)}")
            for name, t in mine.items():
                if tuple(np.shape(theirs[name])) != t.shape:
                    raise errors.ShapeError(f"parameter {i} {name}: shape {np.shape(theirs[name])}, "
                                            f"expected {t.shape}")
        with no_grad():
            self.hyper.copy_(np.asarray(state["hyper"], np.float32))
            for mine, theirs in zip(self.state, state["state"]):
                for name, t in mine.items():
                    t.copy_(np.asarray(theirs[name], np.float32))
        self.defaults.update(state.get("defaults", {}))


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's momentum, dampening, nesterov and weight decay."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and no dampening")
        self.slots = ("momentum_buffer",) if momentum else ()
        super().__init__(params, lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov)

    def _push(self) -> dict:
        d = self.defaults
        return {"beta1": d["momentum"], "beta2": d["dampening"], "weight_decay": d["weight_decay"],
                "flags": int(d["nesterov"])}


class Adam(Optimizer):
    """Adam (Kingma and Ba), bias-corrected as PyTorch computes it; ``weight_decay`` is L2 added
    to the gradient."""

    rule = 1
    slots = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        super().__init__(params, lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _push(self) -> dict:
        d = self.defaults
        return {"beta1": d["betas"][0], "beta2": d["betas"][1], "eps": d["eps"], "weight_decay": d["weight_decay"],
                "flags": int(self.decoupled)}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): ``p *= 1 - lr * weight_decay``."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


__all__ = ["Adam", "AdamW", "Optimizer", "SGD"]
