"""Neural-network building blocks: modules (``Linear``, ``Sequential``, ...), losses, and
``hlx_vulkan.nn.functional``."""

from . import functional
from .modules import (GELU, CrossEntropyLoss, Dropout, Embedding, LayerNorm, Linear, Module, MSELoss, Parameter,
                      ReLU, Sequential, Sigmoid, Tanh)

__all__ = ["CrossEntropyLoss", "Dropout", "Embedding", "GELU", "LayerNorm", "Linear", "MSELoss", "Module",
           "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh", "functional"]
from .conv_modules import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d,  # noqa: E402
                           ConvTranspose2d, Dropout2d, GroupNorm, MaxPool2d)
from .modules import Flatten  # noqa: E402

__all__ += ["Flatten", "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv1d", "Conv2d", "ConvTranspose2d",
            "Dropout2d", "GroupNorm", "MaxPool2d"]
