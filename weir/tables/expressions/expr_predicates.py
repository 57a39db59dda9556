"""Spark SQL operators that have no PySpark operator: `<=>` (null-safe equality), `LIKE`,
`RLIKE` and `div`. Used by `expressions.expr_sql`; each returns a Column named as Spark names
it."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from weir.tables.expressions.expr import Column, Compiled, _binary, as_column
from weir.tables.expressions.expr_cast import CASTS
from weir.tables.operator import Row

_to_string = CASTS["string"]


def eq_null_safe(left: Any, right: Any) -> Column:
    """Spark's `<=>`: like `=` but never None (None <=> None is True, None <=> 1 False)."""
    lc, rc = as_column(left), as_column(right)
    lf, rf = lc._build, rc._build

    def build() -> Compiled:
        a, b = lf(), rf()

        def run(r: Row) -> Any:
            x, y = a(r), b(r)
            if x is None or y is None:
                return x is None and y is None
            return x == y

        return run

    return Column(build, f"({lc.name} <=> {rc.name})", lc._refs | rc._refs, "boolean")


def _matcher(name: str, pattern: Column, value: Column, to_regex: Callable[[str], str]) -> Column:
    pf, vf = pattern._build, value._build

    def build() -> Compiled:
        p, v = pf(), vf()
        compiled = lru_cache(maxsize=64)(lambda text: re.compile(to_regex(text), re.DOTALL))

        def run(r: Row) -> Any:
            x = v(r)
            if x is None:
                return None
            y = p(r)
            if y is None:
                return None
            return compiled(_to_string(y)).search(_to_string(x)) is not None

        return run

    return Column(build, name, value._refs | pattern._refs, "boolean")


def _like_regex(pattern: str) -> str:
    out, chars = ["^"], iter(pattern)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, None)
            if nxt is None:
                raise ValueError(f"the LIKE pattern {pattern!r} ends with an escape character")
            out.append(re.escape(nxt))
        else:
            out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return "".join(out) + "$"


def like(value: Column, pattern: Column) -> Column:
    """Spark's `value LIKE pattern`: `%` any text, `_` one character, `\\` escapes; None if
    either is None."""
    return _matcher(f"{value.name} LIKE {pattern.name}", pattern, value, _like_regex)


def rlike(value: Column, pattern: Column) -> Column:
    """Spark's `value RLIKE pattern`: True if the regular expression matches part of it."""
    return _matcher(f"RLIKE({value.name}, {pattern.name})", pattern, value, lambda p: p)


def _div(x: Any, y: Any) -> Any:
    if y == 0:
        return None
    q = abs(int(x)) // abs(int(y))
    return q if (x >= 0) == (y >= 0) else -q


def int_divide(left: Any, right: Any) -> Column:
    """Spark's `a div b`: the integral quotient, truncated toward zero; None on a zero
    divisor (non-ANSI) or a None operand."""
    c = _binary(left, right, "div", _div)
    c.dtype = "bigint"
    return c
