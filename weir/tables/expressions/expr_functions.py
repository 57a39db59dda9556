"""Spark SQL functions over `Column`s (pyspark.sql.functions): `when`, `coalesce` and string
functions. As in PySpark, a string argument naming a column is that column (`upper("name")`),
while `when`'s values and `substring`'s positions are literals.

String functions return None for a None input; given a non-string they raise TypeError, which
dead-letters the row (Spark would cast implicitly), except `concat`, which casts numbers and
booleans to text as Spark does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from weir.tables.expressions.expr import (
    NESTED,
    Column,
    Compiled,
    as_column,
    name_or_column,
    type_of,
)
from weir.tables.expressions.expr_cast import CASTS
from weir.tables.expressions.expr_codegen import Gen
from weir.tables.expressions.java_regex import java_regex
from weir.tables.operator import Row

_to_string = CASTS["string"]


class WhenColumn(Column):
    """`when(cond, value).when(...).otherwise(value)`: Spark's CASE WHEN. A condition counts
    only when it is True (None and False fall through); with no `otherwise`, None."""

    __slots__ = ("_branches", "_default")

    def __init__(self, branches: tuple[tuple[Column, Column], ...], default: Column | None):
        self._branches = branches
        self._default = default
        parts = " ".join(f"WHEN {c.name} THEN {v.name}" for c, v in branches)
        tail = f" ELSE {default.name}" if default is not None else ""
        refs = frozenset().union(*(c._refs | v._refs for c, v in branches))
        if default is not None:
            refs |= default._refs

        def build() -> Compiled:
            compiled = [(c.compile(), v.compile()) for c, v in branches]
            other = default.compile() if default is not None else None

            def run(r: Row) -> Any:
                for cond, value in compiled:
                    if cond(r) is True:
                        return value(r)
                return None if other is None else other(r)

            return run

        def code(g: Gen) -> str:
            out = "None" if default is None else g.code(default)
            for c, v in reversed(branches):
                out = f"({g.code(v)} if ({g.code(c)}) is True else {out})"
            return out

        super().__init__(build, f"CASE {parts}{tail} END", refs, code=code)

    def when(self, condition: Column, value: Any) -> WhenColumn:
        """Another branch, tried after the ones before."""
        if self._default is not None:
            raise ValueError("when() cannot follow otherwise()")
        return WhenColumn((*self._branches, _branch(condition, value)), None)

    def otherwise(self, value: Any) -> WhenColumn:
        """The value when no condition is True."""
        if self._default is not None:
            raise ValueError("otherwise() can be given only once")
        return WhenColumn(self._branches, as_column(value))


def _branch(condition: Column, value: Any) -> tuple[Column, Column]:
    if not isinstance(condition, Column):
        raise TypeError(f"when: the condition must be a Column, got {condition!r}")
    return condition, as_column(value)


def when(condition: Column, value: Any) -> WhenColumn:
    """`value` (a Column or a literal) where `condition` is True; chain `.when`/`.otherwise`."""
    return WhenColumn((_branch(condition, value),), None)


def coalesce(*cols: str | Column) -> Column:
    """The first non-None value of `cols` (names or Columns), else None."""
    if not cols:
        raise ValueError("coalesce needs at least one column")
    cs = [name_or_column(c) for c in cols]

    def build() -> Compiled:
        fs = [c.compile() for c in cs]

        def run(r: Row) -> Any:
            for f in fs:
                v = f(r)
                if v is not None:
                    return v
            return None

        return run

    return _function("coalesce", cs, build)


def _function(name: str, cs: list[Column], build: Any, extra: str = "") -> Column:
    args = ", ".join(c.name for c in cs) + extra
    return Column(build, f"{name}({args})", frozenset().union(*(c._refs for c in cs)))


def column_of(
    name: str,
    args: list[Column],
    make: Callable[[], Callable[..., Any]],
    dtype: str | None,
    extra: str = "",
) -> Column:
    """A Column applying `make()` (called once, while compiling, so it may read `type_of`) to
    the argument values; None if any argument is None."""

    def build() -> Compiled:
        fn = make()
        fs = [a.compile() for a in args]
        if len(fs) == 1:
            (f,) = fs
            return lambda r: None if (v := f(r)) is None else fn(v)

        def run(r: Row) -> Any:
            values = []
            for f in fs:
                v = f(r)
                if v is None:
                    return None
                values.append(v)
            return fn(*values)

        return run

    shown = ", ".join([*(a.name for a in args), *([extra] if extra else [])])
    refs = frozenset().union(*(a.references() for a in args))
    return Column(build, f"{name}({shown})", refs, dtype)


def _text(fn_name: str, v: Any) -> str:
    """`v` as text: numbers and booleans are cast as Spark casts them implicitly; a list or
    a dict (an array or struct, which Spark refuses at analysis) raises."""
    if isinstance(v, str):
        return v
    if isinstance(v, list | dict):
        raise TypeError(f"{fn_name} expects a string, got {type(v).__name__} {v!r}")
    return str(_to_string(v))


def _string_fn(name: str, c: str | Column, fn: Any, extra: str = "") -> Column:
    column = name_or_column(c)

    def build() -> Compiled:
        t = type_of(column)
        if t is not None and t.startswith(NESTED):
            raise ValueError(f"data type mismatch in {name}({column.name}): it is {t}, not text")
        a = column.compile()
        return lambda r: None if (v := a(r)) is None else fn(_text(name, v))

    return _function(name, [column], build, extra)


def upper(c: str | Column) -> Column:
    """The text in upper case."""
    return _string_fn("upper", c, str.upper)


def lower(c: str | Column) -> Column:
    """The text in lower case."""
    return _string_fn("lower", c, str.lower)


def length(c: str | Column) -> Column:
    """The number of characters."""
    return _string_fn("length", c, len)


def concat(*cols: str | Column) -> Column:
    """The texts joined; None if any is None (numbers and booleans are cast to text)."""
    cs = [name_or_column(c) for c in cols]

    def build() -> Compiled:
        fs = [c.compile() for c in cs]

        def run(r: Row) -> Any:
            parts = []
            for f in fs:
                v = f(r)
                if v is None:
                    return None
                if not isinstance(v, str | int | float | bool):
                    raise TypeError(f"concat expects strings, got {type(v).__name__} {v!r}")
                parts.append(_to_string(v))
            return "".join(parts)

        return run

    return _function("concat", cs, build)


def spark_substring(s: str, pos: int, length: int) -> str:
    """Spark's `substring(s, pos, len)`: `pos` is 1-based, 0 acts as 1, negative counts from
    the end; characters before the start of the text count towards `len`."""
    n = len(s)
    start = pos - 1 if pos > 0 else n + pos if pos < 0 else 0
    end = start + length
    start = max(start, 0)
    return "" if start >= end else s[start:end]


def substring(c: str | Column, pos: int, len: int) -> Column:
    """Spark's substring (see `spark_substring`); `pos` and `len` are integers."""
    if not isinstance(pos, int) or not isinstance(len, int):
        raise TypeError("substring: pos and len must be integers")
    return _string_fn("substring", c, lambda s: spark_substring(s, pos, len), f", {pos}, {len}")


def spark_split(s: str, pattern: re.Pattern[str], limit: int = -1) -> list[str]:
    """Java's `String.split(regex, limit)` as Spark uses it: a limit > 0 caps the number of
    parts (the last holds the rest); otherwise trailing empty strings are kept. An empty
    match at the start makes no leading empty part; an empty pattern splits into characters."""
    if pattern.pattern == "":
        chars = list(s) or [""]
        if limit > 0 and len(chars) > limit:
            return [*chars[: limit - 1], "".join(chars[limit - 1 :])]
        return chars
    parts: list[str] = []
    index = 0
    for m in pattern.finditer(s):
        if limit > 0 and len(parts) >= limit - 1:
            break
        if m.end() == 0:  # zero-width match at the beginning
            continue
        parts.append(s[index : m.start()])
        index = m.end()
    if index == 0 and not parts:
        return [s]
    parts.append(s[index:])
    return parts


def split(c: str | Column, pattern: str, limit: int = -1) -> Column:
    """Spark's `split(str, regex, limit=-1)`: a list of texts (see `spark_split`); `regex` is
    a Java regular expression (weir.tables.expressions.java_regex)."""
    compiled = java_regex(pattern)
    return _string_fn(
        "split", c, lambda s: spark_split(s, compiled, limit), f", {pattern}, {limit}"
    )


__all__ = [
    "WhenColumn",
    "coalesce",
    "column_of",
    "concat",
    "length",
    "lower",
    "spark_split",
    "spark_substring",
    "split",
    "substring",
    "upper",
    "when",
]
