"""Strict mode's form of an elementwise expression: every ``a / b`` becomes ``HLX_DIV(a, b)``.

GLSL's division operator may round differently on each device; strict mode
(:mod:`hlx_vulkan.strict_mode`) computes it in software (glsl/strict.glsl). The expression
strings of ops/pointwise.py are parsed (C precedence) and written back fully parenthesized.

Example::

    strict_expr("y * CT(0.5) / x")   # '(HLX_DIV((y * CT(0.5)), x))'
"""

from __future__ import annotations

import functools
import re

_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?[uUfFlL]*|\.\d+(?:[eE][-+]?\d+)?[fF]?|0[xX][0-9a-fA-F]+[uU]?)"
                    r"|([A-Za-z_]\w*)|(\|\||&&|==|!=|<=|>=|<<|>>|[-+*/%<>?:!~&|^(),.\[\]]))")
# Binary operators by precedence, loosest first (C's table; ?: handled apart).
_BINARY = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", ">", "<=", ">="), ("<<", ">>"),
           ("+", "-"), ("*", "/", "%")]
_PREC = {op: i for i, ops in enumerate(_BINARY) for op in ops}


def _tokens(expr: str) -> list[str]:
    out, pos = [], 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot parse the expression {expr!r} at {expr[pos:]!r}")
        out.append(m.group(m.lastindex))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens):
        self.t, self.i = tokens, 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want=None):
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise ValueError(f"expected {want!r}, found {tok!r} in {' '.join(self.t)!r}")
        self.i += 1
        return tok

    def expression(self) -> str:
        cond = self.binary(0)
        if self.peek() == "?":
            self.take("?")
            a = self.expression()
            self.take(":")
            b = self.expression()
            return f"({cond} ? {a} : {b})"
        return cond

    def binary(self, level: int) -> str:
        if level == len(_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in _BINARY[level]:
            op = self.take()
            right = self.binary(level + 1)
            left = f"HLX_DIV({left}, {right})" if op == "/" else f"({left} {op} {right})"
        return left

    def unary(self) -> str:
        if self.peek() in ("-", "+", "!", "~"):
            op = self.take()
            return f"({op}{self.unary()})"
        return self.postfix()

    def postfix(self) -> str:
        tok = self.take()
        if tok == "(":
            node = self.expression()
            self.take(")")
            node = f"({node})"
        else:
            node = tok
        while self.peek() in ("(", "[", "."):
            tok = self.take()
            if tok == "(":
                args = []
                if self.peek() != ")":
                    args.append(self.expression())
                    while self.peek() == ",":
                        self.take(",")
                        args.append(self.expression())
                self.take(")")
                node = f"{node}({', '.join(args)})"
            elif tok == "[":
                index = self.expression()
                self.take("]")
                node = f"{node}[{index}]"
            else:
                node = f"{node}.{self.take()}"
        return node


@functools.lru_cache(maxsize=1024)
def strict_expr(expr: str) -> str:
    """``expr`` with each division written ``HLX_DIV(a, b)`` (unchanged if it has none)."""
    if "/" not in expr:
        return expr
    p = _Parser(_tokens(expr))
    out = p.expression()
    if p.peek() is not None:
        raise ValueError(f"unexpected {p.peek()!r} in the expression {expr!r}")
    return out
