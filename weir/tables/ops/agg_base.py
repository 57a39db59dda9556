"""The aggregate-function contract (`AggregateFunction`) and what every aggregate shares: its
input (a column name, or a `Column` expression compiled by the operator), Spark's output
name, and a total order over JSON values (`sort_key`) for deterministic states and output."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from weir.tables.expressions.expr import Column, Compiled
from weir.tables.operator import Row

AggInput = str | Column
"""What an aggregate reads: a column name ("amount", "*" for count) or a Column expression."""


def sort_key(value: Any) -> tuple[int, Any]:
    """A total order over JSON-ish values: None < numbers < strings < anything else."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def keys_sort_key(keys: Iterable[Any]) -> tuple[tuple[int, Any], ...]:
    return tuple(map(sort_key, keys))


class AggregateFunction:
    """One aggregate column: a fold over the input values of a group.

    The input is `column` (a field read by name, the fast path), or `expr` (a Column the
    operator compiles once in the stream's type scope and calls per row), or neither (the
    group's rows themselves, for `count("*")` and row-level user aggregators); `label` is the
    input's text in Spark's output name ("amount", "(amount * 2)").

    Contract: the state is JSON-able (it lives in the state store); `update(state, values)`
    folds a batch of values into it - the input's values in arrival order (None for a missing
    or null value), or the rows when there is no input - and returns the new state (it may
    mutate and return `state`); `merge` combines two states of disjoint row sets (used when
    session windows merge); `result` is the output value. Nulls are ignored as in Spark
    unless a function says otherwise. `update` of a built-in aggregate never raises.
    """

    numeric = False
    """Whether it computes with numbers (sum, avg, min, max...): a decimal column's exact
    text is then read as a double."""

    column: str | None = None
    expr: Column | None = None
    label: str = ""
    _alias: str | None = None

    def _read(self, value: AggInput | None) -> None:
        """Set the input: a name or a plain `col(name)` read by name; another Column computed."""
        if value is None:
            self.column, self.expr, self.label = None, None, ""
        elif isinstance(value, str):
            if not value:
                raise ValueError("an aggregate needs a non-empty column name")
            self.column, self.expr, self.label = value, None, value
        elif isinstance(value, Column):
            if value.field is not None:  # col("x"), even aliased: the field x, by name
                self.column, self.expr, self.label = value.field, None, value.name
            else:
                self.column, self.expr, self.label = None, value, value.name
        else:
            raise TypeError(f"an aggregate takes a column name or a Column, not {value!r}")

    def default_name(self) -> str:
        """The output column name Spark would give, e.g. "sum(amount)"."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The output column name: the alias, else `default_name()`."""
        return self._alias if self._alias is not None else self.default_name()

    def alias(self, name: str) -> AggregateFunction:
        """Return a copy of this aggregate whose output column is `name`."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"alias needs a non-empty column name, not {name!r}")
        clone = copy.copy(self)
        clone._alias = name
        return clone

    def references(self) -> set[str]:
        """The input fields this aggregate reads (empty for whole rows)."""
        if self.expr is not None:
            return self.expr.references()
        return {self.column} if self.column is not None else set()

    def init(self) -> Any:
        """Return the state of an empty group."""
        raise NotImplementedError

    def update(self, state: Any, values: list[Any]) -> Any:
        """Fold `values` (see the class contract) into `state`; return the new state."""
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        """Return the state of the union of the row sets of states `a` and `b` (a first)."""
        raise NotImplementedError

    def result(self, state: Any) -> Any:
        """Return the output value of `state`."""
        return state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def tuple_column(inputs: Sequence[AggInput]) -> Column:
    """A Column whose value is the tuple of `inputs`' values (names or Columns), for the
    aggregates of several arguments (`max_by`, `count_distinct(a, b)`); named by the inputs
    joined with ", "."""
    cols = [c if isinstance(c, Column) else _field(c) for c in inputs]
    if not cols:
        raise ValueError("an aggregate needs at least one column")

    def build() -> Compiled:
        fns = [c.compile() for c in cols]  # in the enclosing compile's type scope
        if len(fns) == 2:
            f, g = fns
            return lambda r: (f(r), g(r))
        return lambda r: tuple(f(r) for f in fns)

    refs = frozenset().union(*(c.references() for c in cols))
    return Column(build, ", ".join(c.name for c in cols), refs)


def _field(name: str) -> Column:
    """The field `name` read as is (an aggregate's string argument: no nested-path split)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"an aggregate takes a column name or a Column, not {name!r}")

    def build() -> Compiled:
        def get(r: Row) -> Any:
            return r.get(name)

        return get

    c = Column(build, name, (name,))
    c.field = name
    return c


def non_null(values: list[Any]) -> list[Any]:
    return values if None not in values else [v for v in values if v is not None]


def numbers(values: list[Any]) -> list[Any]:
    """Non-null numeric values (a non-numeric value counts as null, like a failed cast)."""
    vals = non_null(values)
    for v in vals:
        if type(v) is not float and type(v) is not int:
            return [v for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
    return vals


class UnaryAggregate(AggregateFunction):
    """An aggregate of one input named "`fname`(input)", as Spark names it."""

    fname = ""

    def __init__(self, column: AggInput) -> None:
        self._read(column)

    def default_name(self) -> str:
        return f"{self.fname}({self.label})"
