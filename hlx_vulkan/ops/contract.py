"""Contractions built on matmul: ``mm``, ``bmm`` (with torch's shape checks) and ``einsum`` for
one or two operands, each lowered to sums, permutes, reshapes and one batched matmul, so
their gradients come from those ops."""

from __future__ import annotations

import math

from .. import errors
from . import reduce
from . import shape as sh
from .matmul import matmul
from .tensor import Tensor


def mm(a: Tensor, b: Tensor) -> Tensor:
    """The product of two matrices (2-D only, as torch.mm)."""
    if a.ndim != 2 or b.ndim != 2:
        raise errors.ShapeError(f"mm needs two 2-D tensors, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


def bmm(a: Tensor, b: Tensor) -> Tensor:
    """Batched matrix product of (B, n, m) and (B, m, p) tensors (3-D only, no broadcasting, as torch.bmm)."""
    if a.ndim != 3 or b.ndim != 3:
        raise errors.ShapeError(f"bmm needs two 3-D tensors, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise errors.ShapeError(f"bmm: shapes {a.shape} and {b.shape} do not fit (B, n, m) @ (B, m, p)")
    return matmul(a, b)


def _parse(equation: str, operands):
    eq = equation.replace(" ", "")
    if "..." in eq:
        raise errors.ShapeError("einsum with '...' is not supported; write the dims out")
    lhs, arrow, rhs = eq.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(operands):
        raise errors.ShapeError(f"einsum {equation!r} names {len(inputs)} operands, {len(operands)} were given")
    if not 1 <= len(inputs) <= 2:
        raise errors.ShapeError(f"einsum is supported for one or two operands, not {len(inputs)}; "
                                "contract them two at a time")
    for term, t in zip(inputs, operands):
        if not term.isalpha() or len(set(term)) != len(term):
            raise errors.ShapeError(f"einsum term {term!r}: letters only, each once per operand (no diagonals)")
        if len(term) != t.ndim:
            raise errors.ShapeError(f"einsum term {term!r} has {len(term)} letters for a tensor of shape {t.shape}")
    if not arrow:  # implicit output: the letters used once, in alphabetical order
        letters = "".join(inputs)
        rhs = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if not (rhs.isalpha() or rhs == "") or len(set(rhs)) != len(rhs) or set(rhs) - set("".join(inputs)):
        raise errors.ShapeError(f"einsum output {rhs!r} must name each input letter at most once")
    sizes = {}
    for term, t in zip(inputs, operands):
        for c, n in zip(term, t.shape):
            if sizes.setdefault(c, n) != n:
                raise errors.ShapeError(f"einsum {equation!r}: letter {c!r} has sizes {sizes[c]} and {n}")
    return inputs, rhs, sizes


def _sum_out(t: Tensor, term: str, keep: set) -> tuple[Tensor, str]:
    """Sum ``t`` over the letters of ``term`` not in ``keep``."""
    drop = tuple(i for i, c in enumerate(term) if c not in keep)
    if not drop:
        return t, term
    return reduce.sum(t, drop), "".join(c for c in term if c in keep)


def _arrange(t: Tensor, term: str, order: str) -> Tensor:
    return sh.permute(t, tuple(term.index(c) for c in order)) if term != order else t


def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation for one or two operands, e.g. ``"ij,jk->ik"``, ``"bij,bjk->bik"``,
    ``"bhqd,bhkd->bhqk"``, ``"i,i->"``, ``"i,j->ij"``, ``"ij->ji"``, ``"ij->"``. Refused clearly:
    three or more operands, ``...``, a letter repeated within one operand (diagonals)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    inputs, out, sizes = _parse(equation, operands)
    if len(inputs) == 1:
        t, term = _sum_out(operands[0], inputs[0], set(out))
        return _arrange(t, term, out)
    (ta, tb), (sa, sb) = operands, inputs
    # Letters only one operand has and the output lacks are summed away first.
    a, sa = _sum_out(ta, sa, set(sb) | set(out))
    b, sb = _sum_out(tb, sb, set(sa) | set(out))
    batch = "".join(c for c in out if c in sa and c in sb)
    contract = "".join(c for c in sa if c in sb and c not in out)
    left = "".join(c for c in sa if c not in sb)
    right = "".join(c for c in sb if c not in sa)
    nb, m, k, n = (math.prod(sizes[c] for c in s) for s in (batch, left, contract, right))
    a3 = sh.reshape(_arrange(a, sa, batch + left + contract), (nb, m, k))
    b3 = sh.reshape(_arrange(b, sb, batch + contract + right), (nb, k, n))
    r = sh.reshape(matmul(a3, b3), tuple(sizes[c] for c in batch + left + right))
    return _arrange(r, batch + left + right, out)


__all__ = ["bmm", "einsum", "mm"]
