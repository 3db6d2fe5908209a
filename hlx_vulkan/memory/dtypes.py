"""Element types a tensor can hold, named as numpy and PyTorch name them.

Example::

    dtype_of("bfloat16").numpy   # ml_dtypes.bfloat16
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from ..errors import DTypeError


@dataclass(frozen=True)
class DType:
    name: str
    numpy: np.dtype
    glsl: str            # the GLSL storage type
    is_float: bool

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    def __hash__(self) -> int:  # dtypes are singletons: hash the name, not the numpy dtype
        return hash(self.name)

    def __repr__(self) -> str:
        return f"hlx.{self.name}"

    def __str__(self) -> str:
        return self.name


float32 = DType("float32", np.dtype(np.float32), "float", True)
float16 = DType("float16", np.dtype(np.float16), "float16_t", True)
bfloat16 = DType("bfloat16", np.dtype(ml_dtypes.bfloat16), "uint16_t", True)
int32 = DType("int32", np.dtype(np.int32), "int", False)
uint32 = DType("uint32", np.dtype(np.uint32), "uint", False)
int8 = DType("int8", np.dtype(np.int8), "int8_t", False)
uint8 = DType("uint8", np.dtype(np.uint8), "uint8_t", False)

ALL = (float32, float16, bfloat16, int32, uint32, int8, uint8)
_BY_NAME = {d.name: d for d in ALL}
_BY_NUMPY = {d.numpy: d for d in ALL}


def dtype_of(value) -> DType:
    """A :class:`DType` from a DType, its name, a numpy dtype, or a torch dtype's name."""
    if isinstance(value, DType):
        return value
    if isinstance(value, str):
        name = value.removeprefix("torch.").removeprefix("hlx.")
        if name in _BY_NAME:
            return _BY_NAME[name]
        raise DTypeError(f"unsupported dtype {value!r}; supported: {', '.join(_BY_NAME)}")
    try:
        np_dtype = np.dtype(value)
    except TypeError:
        name = str(value)
        if name.startswith("torch."):
            return dtype_of(name)
        raise DTypeError(f"unsupported dtype {value!r}; supported: {', '.join(_BY_NAME)}") from None
    if np_dtype.byteorder == ">":
        np_dtype = np_dtype.newbyteorder("<")
    found = _BY_NUMPY.get(np_dtype)
    if found is None:
        raise DTypeError(f"unsupported dtype {np_dtype}; supported: {', '.join(_BY_NAME)}")
    return found
