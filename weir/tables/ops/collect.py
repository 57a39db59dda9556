"""Aggregates over the values of a group as a whole: `collect_list`, `collect_set`, exact
distinct counts and sums (`count_distinct`, `sum_distinct`), and `max_by`/`min_by`.

Their states are JSON lists. The distinct ones keep the group's distinct non-null values
sorted by `sort_key`, so the same rows give the same state in any batch split and after a
restore, and the state grows with the number of distinct values (as Spark's does). Values are
told apart by Python equality (1 and 1.0 are one value, as in a Spark numeric column); a list
or dict value by its canonical JSON text.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import orjson

from weir.tables.ops.agg_base import (
    AggInput,
    AggregateFunction,
    UnaryAggregate,
    non_null,
    numbers,
    sort_key,
    tuple_column,
)

_SCALARS = (str, int, float, bool)


def _identity(value: Any) -> Any:
    """A hashable stand-in for `value`: itself when a scalar, else its canonical JSON text
    (a tuple and a list with the same items are one value: a tuple comes back as a list)."""
    if isinstance(value, _SCALARS):
        return value
    return ("\x00json", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def add_distinct(state: list[Any], values: list[Any]) -> list[Any]:
    """`state` (sorted distinct values) with the non-null `values` added: `state` itself when
    nothing is new, else a new sorted list."""
    seen = {_identity(v): v for v in state}
    before = len(seen)
    for v in values:
        if v is not None:
            seen.setdefault(_identity(v), v)
    if len(seen) == before:
        return state
    return sorted(seen.values(), key=sort_key)


class _Distinct(AggregateFunction):
    """The distinct non-null values of the input; `result` says what is made of them."""

    def __init__(self, fname: str, inputs: tuple[AggInput, ...], keep: Callable[[Any], bool]):
        if not inputs:
            raise ValueError(f"{fname} needs at least one column")
        self.fname = fname
        self._keep = keep
        self._read(inputs[0] if len(inputs) == 1 else tuple_column(inputs))
        self._several = len(inputs) > 1

    def init(self) -> list[Any]:
        return []

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        if self._several:  # a row counts only when every column is non-null, as in Spark
            values = [v for v in values if None not in v]
        keep = self._keep
        return add_distinct(state, [v for v in values if v is not None and keep(v)])

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return add_distinct(a, b)


class _CountDistinct(_Distinct):
    def default_name(self) -> str:
        return f"count(DISTINCT {self.label})"

    def result(self, state: list[Any]) -> int:
        return len(state)


class _SumDistinct(_Distinct):
    numeric = True

    def default_name(self) -> str:
        return f"sum(DISTINCT {self.label})"

    def result(self, state: list[Any]) -> Any:
        return builtins.sum(state) if state else None


class _CollectSet(_Distinct):
    def default_name(self) -> str:
        return f"collect_set({self.label})"

    def result(self, state: list[Any]) -> list[Any]:
        return list(state)  # a copy: the output row must not alias the stored state


class _CollectList(UnaryAggregate):
    fname = "collect_list"

    def init(self) -> list[Any]:
        return []

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        state.extend(non_null(values))
        return state

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [*a, *b]

    def result(self, state: list[Any]) -> list[Any]:
        return list(state)  # a copy: the output row must not alias the stored state


def _is_number(v: Any) -> bool:
    return bool(numbers([v]))


def _anything(_v: Any) -> bool:
    return True


class _ExtremumBy(AggregateFunction):
    """`max_by`/`min_by`: the value of the row with the largest/smallest ordering value; the
    state is [] (no row with a non-null ordering yet) or [value, ordering]."""

    def __init__(self, fname: str, value: AggInput, ordering: AggInput, sign: int) -> None:
        self.fname = fname
        self._sign = sign
        self._read(tuple_column((value, ordering)))

    def default_name(self) -> str:
        return f"{self.fname}({self.label})"

    def init(self) -> list[Any]:
        return []

    def _beats(self, o: Any, best: Any) -> bool:
        try:
            return bool(o > best) if self._sign > 0 else bool(o < best)
        except TypeError:  # mixed types: a total order
            a, b = sort_key(o), sort_key(best)
            return a > b if self._sign > 0 else a < b

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        best = state
        for v, o in values:
            if o is not None and (not best or self._beats(o, best[1])):
                best = [v, o]  # strictly better: on a tie the earlier row stays
        return best

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return self.update(a, [tuple(b)]) if b else a

    def result(self, state: list[Any]) -> Any:
        return state[0] if state else None


def count_distinct(column: AggInput, *columns: AggInput) -> AggregateFunction:
    """Exact number of distinct non-null values ("count(DISTINCT col)"); with several columns
    (Spark's `countDistinct("a", "b")`, "count(DISTINCT a, b)") the number of distinct
    tuples among the rows where none is null. The state grows with the distinct values."""
    return _CountDistinct("count", (column, *columns), _anything)


def sum_distinct(column: AggInput) -> AggregateFunction:
    """Sum of the distinct non-null numeric values ("sum(DISTINCT col)"); null when none."""
    return _SumDistinct("sum", (column,), _is_number)


def collect_set(column: AggInput) -> AggregateFunction:
    """The distinct non-null values ("collect_set(col)"), in `sort_key` order (Spark leaves
    the order unspecified; Weir's is the same in every batch split and restart)."""
    return _CollectSet("collect_set", (column,), _anything)


def collect_list(column: AggInput) -> AggregateFunction:
    """The non-null values in arrival order ("collect_list(col)"); the state keeps them all."""
    return _CollectList(column)


def max_by(column: AggInput, ordering: AggInput) -> AggregateFunction:
    """The value of `column` at the row with the largest non-null `ordering` ("max_by(x, y)");
    rows with a null ordering are ignored, the value may be null; on a tie, the earliest row
    in arrival order (Spark leaves ties unspecified). Null for a group with no ordering."""
    return _ExtremumBy("max_by", column, ordering, 1)


def min_by(column: AggInput, ordering: AggInput) -> AggregateFunction:
    """Like `max_by`, at the smallest `ordering` ("min_by(x, y)")."""
    return _ExtremumBy("min_by", column, ordering, -1)
