"""Tensor ops: one op family per module, each beside its GLSL kernels.

This module binds the ops to :class:`Tensor` as methods and operators.
"""

from .. import errors
from . import elementwise as ew
from . import matmul as mm
from . import reduce as red
from . import shape as sh
from .tensor import Tensor, empty, from_numpy, normalize_axis, tensor


def _bind() -> None:
    T = Tensor
    T.__add__ = lambda a, b: ew.add(a, b)
    T.__radd__ = lambda a, b: ew.add(b, a)
    T.__sub__ = lambda a, b: ew.sub(a, b)
    T.__rsub__ = lambda a, b: ew.sub(b, a)
    T.__mul__ = lambda a, b: ew.mul(a, b)
    T.__rmul__ = lambda a, b: ew.mul(b, a)
    T.__truediv__ = lambda a, b: ew.div(a, b)
    T.__rtruediv__ = lambda a, b: ew.div(b, a)
    T.__neg__ = ew.neg
    T.__pow__ = ew.pow
    T.__abs__ = ew.abs
    T.__eq__ = lambda a, b: ew.eq(a, b)
    T.__ne__ = lambda a, b: ew.ne(a, b)
    T.__lt__ = lambda a, b: ew.lt(a, b)
    T.__le__ = lambda a, b: ew.le(a, b)
    T.__gt__ = lambda a, b: ew.gt(a, b)
    T.__ge__ = lambda a, b: ew.ge(a, b)
    T.__hash__ = object.__hash__
    T.__matmul__ = lambda a, b: mm.matmul(a, b)
    T.matmul = mm.matmul
    for name in ("exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "sin", "cos", "relu", "gelu", "neg", "abs",
                 "clamp", "maximum", "minimum", "pow"):
        setattr(T, name, getattr(ew, name))
    for name in ("sum", "mean", "max", "min", "argmax", "argmin", "var"):
        setattr(T, name, getattr(red, name))
    for name in ("reshape", "view", "permute", "transpose", "unsqueeze", "squeeze", "flatten", "expand",
                 "index_select"):
        setattr(T, name, getattr(sh, name))
    T.T = property(lambda t: sh.permute(t, tuple(reversed(range(t.ndim)))))
    T.__getitem__ = sh.getitem
    T.__setitem__ = sh.setitem
    T.to = ew.cast
    T.contiguous = lambda t: t if t.is_contiguous() else ew.copy(t)

    def copy_(self, other):
        """Copy ``other`` (a tensor, broadcast, or array-like) into this tensor in place."""
        sh.refuse_inplace_grad(self, other)
        if not isinstance(other, Tensor) and self.runtime.stream.capturing:
            raise errors.CaptureError("copy_ from host data inside hv.capture() would copy the same data on every "
                                      "replay; feed inputs with x.copy_(batch) before graph.replay()")
        src = other if isinstance(other, Tensor) else from_numpy(other, self.dtype, self.runtime)
        if src.dtype is not self.dtype:
            src = ew.cast(src, self.dtype)
        ew.copy(src, out=self)
        return self
    T.copy_ = copy_


_bind()

__all__ = ["Tensor", "empty", "from_numpy", "normalize_axis", "tensor"]
