"""Neural-network building blocks: modules (``Linear``, ``Sequential``, ...), losses, and
``hlx_vulkan.nn.functional``."""

from . import functional
from .modules import (GELU, CrossEntropyLoss, Dropout, Embedding, LayerNorm, Linear, Module, MSELoss, Parameter,
                      ReLU, Sequential, Sigmoid, Tanh)
from .transformer import (ModuleDict, ModuleList, MultiheadAttention, TransformerEncoder, TransformerEncoderLayer,
                          generate_square_subsequent_mask)

__all__ = ["CrossEntropyLoss", "Dropout", "Embedding", "GELU", "LayerNorm", "Linear", "MSELoss", "Module",
           "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh", "functional",
           "ModuleDict", "ModuleList", "MultiheadAttention", "TransformerEncoder", "TransformerEncoderLayer",
           "generate_square_subsequent_mask"]
