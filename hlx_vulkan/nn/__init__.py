"""Neural-network building blocks: modules (``Linear``, ``Sequential``, ...), losses, and
``hlx_vulkan.nn.functional``."""

from . import functional
from .modules import (GELU, CrossEntropyLoss, Dropout, Embedding, LayerNorm, Linear, Module, MSELoss, Parameter,
                      ReLU, Sequential, Sigmoid, Tanh)
from .modules import Flatten, LeakyReLU, SiLU, Softmax
from .more_modules import (CELU, ELU, SELU, BCELoss, BCEWithLogitsLoss, Hardsigmoid, Hardswish, Hardtanh, HuberLoss,
                           Identity, KLDivLoss, L1Loss, LogSigmoid, Mish, NLLLoss, ReLU6, SmoothL1Loss, Softplus,
                           Softsign)

__all__ = ["CrossEntropyLoss", "Dropout", "Embedding", "GELU", "LayerNorm", "Linear", "MSELoss", "Module",
           "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh", "functional"]
__all__ += ["BCELoss", "BCEWithLogitsLoss", "CELU", "ELU", "Flatten", "Hardsigmoid", "Hardswish", "Hardtanh",
            "HuberLoss", "Identity", "KLDivLoss", "L1Loss", "LeakyReLU", "LogSigmoid", "Mish", "NLLLoss", "ReLU6",
            "SELU", "SiLU", "SmoothL1Loss", "Softmax", "Softplus", "Softsign"]
from .conv_modules import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d,  # noqa: E402
                           ConvTranspose2d, Dropout2d, GroupNorm, MaxPool2d)

__all__ += ["AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv1d", "Conv2d", "ConvTranspose2d",
            "Dropout2d", "GroupNorm", "MaxPool2d"]
from .transformer import (ModuleDict, ModuleList, MultiheadAttention, TransformerEncoder,  # noqa: E402
                          TransformerEncoderLayer, generate_square_subsequent_mask)

__all__ += ["ModuleDict", "ModuleList", "MultiheadAttention", "TransformerEncoder", "TransformerEncoderLayer",
            "generate_square_subsequent_mask"]
