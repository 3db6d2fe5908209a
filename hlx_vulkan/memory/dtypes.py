"""Element types a tensor can hold, named as numpy and PyTorch name them, and PyTorch's
type promotion between them.

``bool`` is stored as one byte (0 or 1) and behaves as a boolean: sums count, ``~`` negates,
arithmetic promotes it to the other operand's type. ``int64`` needs the device's
``shaderInt64`` feature (most GPUs and lavapipe have it); on a device without it, int64
tensors are refused and integer data defaults to int32 (see ``hlx_vulkan.ops.tensor``).
There is no float64: Vulkan devices compute in float32 here.

Example::

    dtype_of("bfloat16").numpy         # ml_dtypes.bfloat16
    promote_types(int32, float16)      # hlx.float16, as torch.promote_types
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
    kind: str            # "bool", "int" (signed), "uint" or "float": what promotion and kernels go by

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"

    def __hash__(self) -> int:  # dtypes are singletons: hash the name, not the numpy dtype
        return hash(self.name)

    def __repr__(self) -> str:
        return f"hlx.{self.name}"

    def __str__(self) -> str:
        return self.name


float32 = DType("float32", np.dtype(np.float32), "float", True, "float")
float16 = DType("float16", np.dtype(np.float16), "float16_t", True, "float")
bfloat16 = DType("bfloat16", np.dtype(ml_dtypes.bfloat16), "uint16_t", True, "float")
int64 = DType("int64", np.dtype(np.int64), "int64_t", False, "int")
int32 = DType("int32", np.dtype(np.int32), "int", False, "int")
uint32 = DType("uint32", np.dtype(np.uint32), "uint", False, "uint")
int8 = DType("int8", np.dtype(np.int8), "int8_t", False, "int")
uint8 = DType("uint8", np.dtype(np.uint8), "uint8_t", False, "uint")
bool_ = DType("bool", np.dtype(np.bool_), "uint8_t", False, "bool")

ALL = (float32, float16, bfloat16, int64, int32, uint32, int8, uint8, bool_)
_BY_NAME = {d.name: d for d in ALL}
# PyTorch's other names for the same types.
_ALIASES = {"float": float32, "half": float16, "long": int64, "int": int32}
_BY_NUMPY = {d.numpy: d for d in ALL}
_NO_FLOAT64 = "float64 is not supported: Vulkan devices compute in float32 here; use float32"


def dtype_of(value) -> DType:
    """A :class:`DType` from a DType, its name (or torch's: ``"long"``, ``"torch.int64"``), a numpy
    dtype, or a torch dtype."""
    if isinstance(value, DType):
        return value
    if isinstance(value, str):
        name = value.removeprefix("torch.").removeprefix("hlx.")
        found = _BY_NAME.get(name) or _ALIASES.get(name)
        if found is not None:
            return found
        if name in ("float64", "double"):
            raise DTypeError(_NO_FLOAT64)
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
        if np_dtype == np.float64:
            raise DTypeError(_NO_FLOAT64)
        raise DTypeError(f"unsupported dtype {np_dtype}; supported: {', '.join(_BY_NAME)}")
    return found


_CATEGORY = {"bool": 0, "int": 1, "uint": 1, "float": 2}


def category(dt: DType) -> int:
    """0 for bool, 1 for integers, 2 for floats: a higher category wins in promotion."""
    return _CATEGORY[dt.kind]


def promote_types(a: DType, b: DType) -> DType:
    """The dtype both ``a`` and ``b`` convert to, as ``torch.promote_types``.

    One difference: int8 with uint8 gives int32 here (torch: int16, a type this library lacks).
    uint32 mixes only with itself and floats (torch refuses the rest too).
    """
    if a is b:
        return a
    if uint32 in (a, b) and not (a.is_float or b.is_float):
        raise DTypeError(f"no common type for {a.name} and {b.name} (as in torch, uint32 mixes only with uint32 "
                         "and floats); convert one with .to()")
    ca, cb = _CATEGORY[a.kind], _CATEGORY[b.kind]
    if ca != cb:
        return a if ca > cb else b
    if ca == 2:  # float16 with bfloat16 meets in float32; float32 wins over either
        return float32
    if int64 in (a, b):
        return int64
    if int32 in (a, b):
        return int32
    return int32  # int8 with uint8: torch gives int16, which is not here


def can_cast(src: DType, dst: DType) -> bool:
    """Whether an in-place op may write a ``src`` result into a ``dst`` tensor (torch's rule:
    not to a lower category: a float result into an int tensor is refused)."""
    return _CATEGORY[src.kind] <= _CATEGORY[dst.kind]
