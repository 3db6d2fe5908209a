"""Tensor ops: one op family per module, each beside its GLSL kernels.

:class:`Tensor` declares its operators and methods itself (``ops/tensor.py``).
"""

from .tensor import Tensor, empty, from_numpy, normalize_axis, tensor

__all__ = ["Tensor", "empty", "from_numpy", "normalize_axis", "tensor"]
