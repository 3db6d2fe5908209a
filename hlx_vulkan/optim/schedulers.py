"""Learning-rate schedules that run on the device (``kernels/schedule.comp``): ``step()``
records one tiny kernel that advances the schedule's count and writes the new rate into the
optimizer's device state, so a schedule inside a captured step replays correctly.

Example::

    opt = hv.optim.SGD(model.parameters(), lr=0.1)
    sched = hv.optim.CosineAnnealingLR(opt, T_max=100)
    for step in range(100):
        ...; opt.step(); sched.step()
"""

from __future__ import annotations

from importlib import resources

from ..autograd.graph import no_grad
from ..runtime import KernelSpec
from .optimizers import LR, Optimizer

SCHEDULE = KernelSpec(resources.files(__package__) / "kernels" / "schedule.comp", [("H", "readwrite")],
                      [("off_h", "I"), ("base", "f"), ("period", "f"), ("factor", "f")])
STEP_DECAY, COSINE = 0, 1


class _Schedule:
    kind = STEP_DECAY

    def __init__(self, optimizer: Optimizer, period: float, factor: float):
        if period <= 0:
            raise ValueError(f"the schedule's period must be positive, got {period}")
        self.optimizer = optimizer
        self.base_lr = optimizer.defaults["lr"]
        self.period, self.factor = float(period), float(factor)

    def step(self) -> None:
        hyper = self.optimizer.hyper
        rt = hyper.runtime
        with no_grad():
            kernel = rt.kernels.get(SCHEDULE, {"KIND": self.kind}, workgroup=(1, 1, 1))
            rt.run(kernel, {"H": hyper.buf}, {"base": self.base_lr, "period": self.period, "factor": self.factor})

    def get_last_lr(self) -> list[float]:
        """The rate the optimizer will use next (a read from the device: a sync point)."""
        return [float(self.optimizer.hyper.numpy()[LR])]


class StepLR(_Schedule):
    """``lr = base * gamma ** (count // step_size)``, as torch.optim.lr_scheduler.StepLR."""

    kind = STEP_DECAY

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer, step_size, gamma)


class CosineAnnealingLR(_Schedule):
    """``lr = eta_min + (base - eta_min) * (1 + cos(pi * count / T_max)) / 2``: torch's
    CosineAnnealingLR, which rises again past T_max."""

    kind = COSINE

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):  # noqa: N803 - torch's name
        super().__init__(optimizer, T_max, eta_min)


__all__ = ["CosineAnnealingLR", "StepLR"]
