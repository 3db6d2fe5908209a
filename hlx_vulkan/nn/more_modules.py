"""More modules in torch.nn's names: the activations of :mod:`hlx_vulkan.ops.activations`,
``Identity``, and the losses of :mod:`hlx_vulkan.nn.losses` with torch's constructor options.

Example::

    head = hv.nn.Sequential(hv.nn.Linear(16, 16), hv.nn.Mish(), hv.nn.Linear(16, 1))
    loss = hv.nn.BCEWithLogitsLoss(pos_weight=hv.tensor([3.0]))(head(x), y)
"""

from __future__ import annotations

from ..ops.tensor import Tensor
from . import functional as F
from .modules import Module


class Identity(Module):
    """Returns its input; any constructor arguments are ignored, as torch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class _Elementwise(Module):
    """An activation module: ``fn(x, *args)`` with the constructor's arguments by name."""

    fn = staticmethod(lambda x: x)
    names: tuple = ()

    def forward(self, x: Tensor) -> Tensor:
        return type(self).fn(x, *(getattr(self, n) for n in self.names))

    def extra_repr(self) -> str:
        return ", ".join(f"{n}={getattr(self, n)}" for n in self.names)


def _activation(name: str, fn, **defaults):
    """A module class ``name`` calling ``fn`` with the arguments ``defaults`` names (``inplace``
    is accepted and ignored, as the result is always a new tensor)."""
    names = tuple(defaults)

    def __init__(self, *args, inplace: bool = False, **kwargs):
        Module.__init__(self)
        if len(args) > len(names) or set(kwargs) - set(names):
            raise TypeError(f"{name}() takes the arguments {list(names)} (and inplace)")
        values = {**defaults, **dict(zip(names, args)), **kwargs}
        for n in names:
            setattr(self, n, values[n])

    return type(name, (_Elementwise,), {"fn": staticmethod(fn), "names": names, "__init__": __init__,
                                        "__doc__": f"torch.nn.{name}: elementwise ``{fn.__name__}``."})


ELU = _activation("ELU", F.elu, alpha=1.0)
CELU = _activation("CELU", F.celu, alpha=1.0)
SELU = _activation("SELU", F.selu)
Softplus = _activation("Softplus", F.softplus, beta=1.0, threshold=20.0)
Mish = _activation("Mish", F.mish)
Hardswish = _activation("Hardswish", F.hardswish)
Hardsigmoid = _activation("Hardsigmoid", F.hardsigmoid)
Hardtanh = _activation("Hardtanh", F.hardtanh, min_val=-1.0, max_val=1.0)
ReLU6 = _activation("ReLU6", F.relu6)
LogSigmoid = _activation("LogSigmoid", F.logsigmoid)
Softsign = _activation("Softsign", F.softsign)


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        F.check_legacy(size_average, reduce)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class NLLLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002 - torch's names
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class BCELoss(_Loss):
    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight: Tensor | None = None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)      # buffers, in state_dict when given, as torch
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class L1Loss(_Loss):
    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(_Loss):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


__all__ = ["BCELoss", "BCEWithLogitsLoss", "CELU", "ELU", "Hardsigmoid", "Hardswish", "Hardtanh", "HuberLoss",
           "Identity", "KLDivLoss", "L1Loss", "LogSigmoid", "Mish", "NLLLoss", "ReLU6", "SELU", "SmoothL1Loss",
           "Softplus", "Softsign"]
