"""Code generation for column expressions: a query's expressions become one Python function
per batch, built once when the query is defined (like Spark's whole-stage codegen).

A `Column` may carry a code template (`Column._code`): given a `Gen`, it returns a Python
expression over the row variable `r` that evaluates exactly as the Column's closure does
(the same values, None rules and exceptions). A Column without one (a function built only as
a closure) is called from the generated code. Constants and helper functions are bound into
the generated function's namespace, never pasted as text, so no value is ever parsed.

`filter_rows`, `select_rows` and `set_columns` build the batch functions `Stream` uses: a
list comprehension over the batch, so no Python call is made per row for the expression.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from weir.tables.operator import Row


class Column(Protocol):
    """What code generation needs of `expressions.expr.Column` (which imports this module)."""

    _code: Callable[[Gen], str] | None
    _build: Callable[[], Callable[[Row], Any]]


RowsFn = Callable[[list[Row]], list[Row]]

_INLINE = (bool, int, str, type(None))


class Gen:
    """The namespace and temporaries of one generated function. With `strict`, a field is
    read as `r[name]` (a missing field raises KeyError), else as `r.get(name)` (None)."""

    def __init__(self, strict: bool = False) -> None:
        self.namespace: dict[str, Any] = {}
        self.strict = strict
        self._n = 0

    def bind(self, value: Any) -> str:
        """A name for `value` in the generated code (literals of simple types inline)."""
        if type(value) in _INLINE:
            return repr(value)
        name = f"_k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def tmp(self) -> str:
        """A fresh temporary variable name (assigned with `:=` in the generated code)."""
        self._n += 1
        return f"_t{self._n}"

    def code(self, c: Column) -> str:
        """The Python expression computing `c` for row `r`."""
        template = c._code
        if template is not None:
            return template(self)
        return f"{self.bind(c._build())}(r)"

    def make(self, source: str) -> Any:
        """Evaluate `source` (a lambda) in this namespace."""
        with warnings.catch_warnings():  # `5 is None` from an inlined literal is meant
            warnings.simplefilter("ignore", SyntaxWarning)
            return eval(source, self.namespace)  # our own generated code, no input


def row_function(c: Column) -> Callable[[Row], Any]:
    """The row -> value function of `c` (generated when `c` has a code template)."""
    if c._code is None:
        return c._build()
    gen = Gen()
    return gen.make(f"lambda r: {gen.code(c)}")


def filter_rows(condition: Column) -> RowsFn:
    """Rows where `condition` is True (None and False drop the row), in order."""
    return _batch(lambda g: f"[r for r in rows if ({g.code(condition)}) is True]")


def select_rows(outputs: Sequence[tuple[str, Column]]) -> RowsFn:
    """Each row as a new dict of exactly `outputs` (name, expression), in order."""
    return _batch(
        lambda g: (
            "[{" + ", ".join(f"{g.bind(n)}: {g.code(c)}" for n, c in outputs) + "} for r in rows]"
        )
    )


def set_columns(columns: Mapping[str, Column]) -> RowsFn:
    """Each row as a new dict with `columns` set (added or replaced); every expression sees
    the input row."""
    return _batch(
        lambda g: (
            "[{**r, "
            + ", ".join(f"{g.bind(n)}: {g.code(c)}" for n, c in columns.items())
            + "} for r in rows]"
        )
    )


def _batch(source: Callable[[Gen], str]) -> RowsFn:
    """A batch function from `source` (a list comprehension over `rows`): it reads fields with
    `r[name]` (faster), and runs the `r.get(name)` version for a batch where a field is
    missing from a row, so a missing field reads None as in the per-row function."""
    fast_gen, safe_gen = Gen(strict=True), Gen()
    fast: RowsFn = fast_gen.make(f"lambda rows: {source(fast_gen)}")
    safe: RowsFn = safe_gen.make(f"lambda rows: {source(safe_gen)}")

    def run(rows: list[Row]) -> list[Row]:
        try:
            return fast(rows)
        except KeyError:  # a missing field (or a KeyError the safe version raises again)
            return safe(rows)

    return run
