"""Modules: parameters in named trees, PyTorch's defaults for initialisation, seeded.

Example::

    import hlx_vulkan as hv
    hv.manual_seed(0)
    model = hv.nn.Sequential(hv.nn.Linear(64, 128), hv.nn.ReLU(), hv.nn.Linear(128, 10))
    loss = hv.nn.CrossEntropyLoss()(model(hv.randn(8, 64)), hv.tensor([0, 1, 2, 3, 4, 5, 6, 7]))
    loss.backward()
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .. import errors
from ..autograd.graph import no_grad
from ..memory import dtype_of
from ..ops import elementwise as ew
from ..ops import shape as sh
from ..ops.creation import ones, zeros
from ..ops.linear import linear_relu
from ..ops.random import rand, randn
from ..ops.tensor import Tensor
from . import functional as F


class Parameter(Tensor):
    """A tensor that a Module registers as one of its parameters; it requires grad."""

    __slots__ = ()

    def __init__(self, data: Tensor, requires_grad: bool = True):
        super().__init__(data.buf, data.runtime, requires_grad=False)
        self.requires_grad_(requires_grad)


class Module:
    """Base class: assign Parameters and Modules as attributes and they are found by
    ``parameters()``, ``named_parameters()`` and ``state_dict()``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())  # state that is not a parameter (running stats)
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise errors.HlxError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if name in self.__dict__.get("_buffers", ()):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"buffer {name!r} must be a Tensor or None, not {type(value).__name__}")
            self._buffers[name] = value
        elif isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- the tree --------------------------------------------------------------------
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = ""):
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        for name, m in self._modules.items():
            yield from m.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name: str, tensor: "Tensor | None") -> None:
        """Keep ``tensor`` as state of this module (in ``state_dict``, not in ``parameters()``), as torch."""
        self._buffers[name] = tensor
        object.__setattr__(self, name, tensor)

    def named_buffers(self, prefix: str = ""):
        for name, b in self.__dict__.get("_buffers", {}).items():
            if b is not None:
                yield (f"{prefix}.{name}" if prefix else name), b
        for name, m in self._modules.items():
            yield from m.named_buffers(f"{prefix}.{name}" if prefix else name)

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def _named_state(self, prefix: str = ""):
        """Parameters then buffers of each module, children after their parent: torch's state_dict order."""
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        for name, b in self.__dict__.get("_buffers", {}).items():
            if b is not None:
                yield (f"{prefix}.{name}" if prefix else name), b
        for name, m in self._modules.items():
            yield from m._named_state(f"{prefix}.{name}" if prefix else name)

    # --- state -----------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Name to tensor (the parameters' and buffers' memory, detached), in torch's order."""
        return OrderedDict((name, p.detach()) for name, p in self._named_state())

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy ``state`` (tensors or numpy arrays) into the parameters and buffers, checking names, shapes,
        dtypes (an integer buffer takes any integer dtype: torch's int64 counters on an int32 device)."""
        own = dict(self._named_state())
        buffers = {id(b) for b in self.buffers()}
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise errors.ShapeError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, p in own.items():
            if name not in state:
                continue
            value = state[name]
            shape = tuple(value.shape)
            if shape != p.shape:
                raise errors.ShapeError(f"{name}: shape {shape} in the state, {p.shape} in the model")
            vdtype = value.dtype if isinstance(value, Tensor) else dtype_of(np.asarray(value).dtype)
            if id(p) in buffers and vdtype.kind == p.dtype.kind == "int":
                continue
            if vdtype is not p.dtype:
                raise errors.DTypeError(f"{name}: dtype {vdtype.name} in the state, {p.dtype.name} in the model")
        with no_grad():
            for name, p in own.items():
                if name in state:
                    value = state[name]
                    if not isinstance(value, Tensor) and np.asarray(value).dtype != p.dtype.numpy:
                        value = np.asarray(value).astype(p.dtype.numpy)  # an integer buffer's counter
                    p.copy_(value)

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + (")" if not lines else "\n" + "\n".join(lines) + "\n)")


def _uniform(shape, bound: float, dtype) -> Parameter:
    return Parameter(rand(*shape, dtype=dtype, low=-bound, high=bound))


class Linear(Module):
    """``y = x @ weight.T + bias``; weight (out, in) and bias drawn from U(-1/sqrt(in), 1/sqrt(in)),
    PyTorch's default (kaiming_uniform with a = sqrt(5))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype="float32"):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.weight = _uniform((out_features, in_features), bound, dtype)
        self.bias = _uniform((out_features,), bound, dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Sequential(Module):
    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i: int | slice) -> Module:
        """The i-th module; a slice is a Sequential of those modules (shared, not copied), as torch."""
        if isinstance(i, slice):
            return Sequential(*list(self._modules.values())[i])
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def forward(self, x):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            m = modules[i]
            if i + 1 < len(modules) and is_plain(m, Linear) and is_plain(modules[i + 1], ReLU):
                # One launch for both where the product's kernel can apply relu, the same bits.
                x = linear_relu(x, m.weight, m.bias)
                i += 2
            else:
                x = m(x)
                i += 1
        return x


def is_plain(m: Module, cls: type) -> bool:
    """``m`` is a ``cls`` whose forward nobody replaced (subclass or instance attribute)."""
    return type(m) is cls and "forward" not in m.__dict__


class _Activation(Module):
    fn = None

    def forward(self, x: Tensor) -> Tensor:
        return type(self).fn(x)


class _InplaceActivation(_Activation):
    """torch's signature, ``inplace`` included: accepted, the result a new tensor all the same (as
    more_modules' activations)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_InplaceActivation):
    fn = staticmethod(ew.relu)


class Tanh(_Activation):
    fn = staticmethod(ew.tanh)


class Sigmoid(_Activation):
    fn = staticmethod(ew.sigmoid)


class SiLU(_InplaceActivation):
    fn = staticmethod(ew.silu)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, x: Tensor) -> Tensor:
        return ew.leaky_relu(x, self.negative_slope)


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self.dim)


class Flatten(Module):
    """Merge dims ``start_dim`` to ``end_dim`` (1 to the last by default, keeping the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return sh.flatten(x, self.start_dim, self.end_dim)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return ew.gelu(x, self.approximate)


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape``; weight ones and bias zeros, as PyTorch."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, dtype="float32"):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = Parameter(ones(self.normalized_shape, dtype=dtype)) if elementwise_affine else None
        self.bias = Parameter(zeros(self.normalized_shape, dtype=dtype)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class Embedding(Module):
    """A lookup table (num_embeddings, embedding_dim) drawn from N(0, 1), as PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype="float32"):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(randn(num_embeddings, embedding_dim, dtype=dtype))

    def forward(self, index) -> Tensor:
        """Rows of the table; each index in ``[0, num_embeddings)`` (checked before launch for host
        indices, on the device for a device tensor's: DeviceIndexError at the next sync point)."""
        return sh.gather(self.weight, 0, index, "embedding")


class Dropout(Module):
    """Zero each element with probability ``p`` in training mode (scaling the rest by 1/(1-p));
    the mask comes from the seeded device generator."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)


class CrossEntropyLoss(Module):
    """:func:`~hlx_vulkan.nn.functional.cross_entropy` with torch's options (``weight``,
    ``ignore_index``, ``reduction``, ``label_smoothing``)."""

    def __init__(self, weight: Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__()
        F.check_legacy(size_average, reduce)
        self.register_buffer("weight", weight)   # in state_dict when given, as torch
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing

    def forward(self, logits: Tensor, target) -> Tensor:
        return F.cross_entropy(logits, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class MSELoss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002 - torch's name
        return F.mse_loss(input, target, self.reduction)


__all__ = ["CrossEntropyLoss", "Dropout", "Embedding", "Flatten", "GELU", "LayerNorm", "LeakyReLU", "Linear",
           "MSELoss", "Module", "Parameter", "ReLU", "Sequential", "SiLU", "Sigmoid", "Softmax", "Tanh"]
