"""Aggregate functions for `group_by(...).agg(...)`: count, sum, avg, min, max,
count_distinct, approx_count_distinct (HyperLogLog), first, last, collect_list and
user-defined aggregators (`udaf`), with Spark's null and type rules."""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import orjson

from weir.tables.ops.hll import HyperLogLog, precision_for

_bsum = builtins.sum


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
    """One aggregate column: a fold over the values of `column` in a group.

    Contract: the state is JSON-able (it lives in the state store); `update(state, values)`
    folds a batch of values into it - `values` is the list of the group's rows when `column`
    is None, else the column's values in arrival order, None for a missing or null value - and
    returns the new state (it may mutate and return `state`); `merge` combines two states of
    disjoint row sets (used when session windows merge); `result` is the output value.
    Nulls are ignored as in Spark unless a function says otherwise.
    """

    column: str | None = None
    _alias: str | None = None

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


def _non_null(values: list[Any]) -> list[Any]:
    return values if None not in values else [v for v in values if v is not None]


def _numbers(values: list[Any]) -> list[Any]:
    """Non-null numeric values (a non-numeric value counts as null, like a failed cast)."""
    vals = _non_null(values)
    for v in vals:
        if type(v) is not float and type(v) is not int:
            return [v for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
    return vals


class _Count(AggregateFunction):
    def __init__(self, column: str | None) -> None:
        self.column = column

    def default_name(self) -> str:
        return "count(1)" if self.column is None else f"count({self.column})"

    def init(self) -> int:
        return 0

    def update(self, state: int, values: list[Any]) -> int:
        if self.column is None:
            return state + len(values)
        return state + len(values) - values.count(None)

    def merge(self, a: int, b: int) -> int:
        return a + b


class _Sum(AggregateFunction):
    def __init__(self, column: str) -> None:
        self.column = column

    def default_name(self) -> str:
        return f"sum({self.column})"

    def init(self) -> None:
        return None

    def update(self, state: Any, values: list[Any]) -> Any:
        nums = _numbers(values)
        if not nums:
            return state
        total = _bsum(nums)
        return total if state is None else state + total

    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        return a if b is None else a + b


class _Avg(AggregateFunction):
    def __init__(self, column: str) -> None:
        self.column = column

    def default_name(self) -> str:
        return f"avg({self.column})"

    def init(self) -> list[Any]:
        return [0, 0]

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        nums = _numbers(values)
        if not nums:
            return state
        return [state[0] + _bsum(nums), state[1] + len(nums)]

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, state: list[Any]) -> float | None:
        return state[0] / state[1] if state[1] else None


class _MinMax(AggregateFunction):
    def __init__(self, column: str, pick: Callable[..., Any], label: str) -> None:
        self.column = column
        self._pick = pick
        self._label = label

    def default_name(self) -> str:
        return f"{self._label}({self.column})"

    def init(self) -> None:
        return None

    def update(self, state: Any, values: list[Any]) -> Any:
        vals = _non_null(values)
        if not vals:
            return state
        if state is not None:
            vals = [*vals, state]
        try:
            return self._pick(vals)
        except TypeError:  # mixed types: fall back to a total order
            return self._pick(vals, key=sort_key)

    def merge(self, a: Any, b: Any) -> Any:
        return self.update(a, [b])


class _CountDistinct(AggregateFunction):
    """Exact distinct count; the state is the sorted list of distinct values."""

    def __init__(self, column: str) -> None:
        self.column = column

    def default_name(self) -> str:
        return f"count(DISTINCT {self.column})"

    def init(self) -> list[Any]:
        return []

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        seen = set(state)
        before = len(seen)
        for v in values:
            if v is None:
                continue
            try:
                seen.add(v)
            except TypeError:  # a list or dict: count it by its canonical JSON text
                seen.add(orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode())
        if len(seen) == before:
            return state
        return sorted(seen, key=sort_key)

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return self.update(a, b)

    def result(self, state: list[Any]) -> int:
        return len(state)


class _ApproxCountDistinct(AggregateFunction):
    """HyperLogLog distinct count (weir.tables.ops.hll); the state is the sketch's JSON form."""

    def __init__(self, column: str, rsd: float) -> None:
        self.column = column
        self.rsd = rsd
        self.precision = precision_for(rsd)

    def default_name(self) -> str:
        return f"approx_count_distinct({self.column})"

    def init(self) -> dict[str, Any]:
        return HyperLogLog(self.precision).to_state()

    def update(self, state: dict[str, Any], values: list[Any]) -> dict[str, Any]:
        hll = HyperLogLog.from_state(state)
        hll.update(values)
        return hll.to_state()

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        hll = HyperLogLog.from_state(a)
        hll.merge(HyperLogLog.from_state(b))
        return hll.to_state()

    def result(self, state: dict[str, Any]) -> int:
        return HyperLogLog.from_state(state).cardinality()


class _First(AggregateFunction):
    """First value in arrival order; the state is [] (no row yet) or [value]."""

    def __init__(self, column: str, ignore_nulls: bool) -> None:
        self.column = column
        self.ignore_nulls = ignore_nulls

    def default_name(self) -> str:
        return f"first({self.column})"

    def init(self) -> list[Any]:
        return []

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        if state:
            return state
        vals = _non_null(values) if self.ignore_nulls else values
        return [vals[0]] if vals else state

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return a if a else b

    def result(self, state: list[Any]) -> Any:
        return state[0] if state else None


class _Last(AggregateFunction):
    """Last value in arrival order; the state is [] (no row yet) or [value]."""

    def __init__(self, column: str, ignore_nulls: bool) -> None:
        self.column = column
        self.ignore_nulls = ignore_nulls

    def default_name(self) -> str:
        return f"last({self.column})"

    def init(self) -> list[Any]:
        return []

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        vals = _non_null(values) if self.ignore_nulls else values
        return [vals[-1]] if vals else state

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return b if b else a

    def result(self, state: list[Any]) -> Any:
        return state[0] if state else None


class _CollectList(AggregateFunction):
    def __init__(self, column: str) -> None:
        self.column = column

    def default_name(self) -> str:
        return f"collect_list({self.column})"

    def init(self) -> list[Any]:
        return []

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        state.extend(_non_null(values))
        return state

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [*a, *b]

    def result(self, state: list[Any]) -> list[Any]:
        return list(state)  # a copy: the output row must not alias the stored state


@runtime_checkable
class Aggregator(Protocol):
    """A user-defined aggregator (Spark's `Aggregator`: zero/reduce/merge/finish).

    `init()` returns an empty JSON-able accumulator, `add(acc, value)` folds one value (the
    column value, or the whole row when no column is given) and returns the accumulator,
    `merge(a, b)` combines two accumulators, `result(acc)` gives the output value.
    """

    def init(self) -> Any: ...

    def add(self, acc: Any, value: Any) -> Any: ...

    def merge(self, a: Any, b: Any) -> Any: ...

    def result(self, acc: Any) -> Any: ...


class UserDefinedAggregate(AggregateFunction):
    """Adapts an `Aggregator` to an aggregate column (nulls are passed to `add` as None)."""

    def __init__(self, aggregator: Aggregator, column: str | None, name: str | None) -> None:
        for method in ("init", "add", "merge", "result"):
            if not callable(getattr(aggregator, method, None)):
                raise TypeError(f"{aggregator!r} is not an aggregator: it has no {method}()")
        self.aggregator = aggregator
        self.column = column
        self._name = name or getattr(aggregator, "name", None) or type(aggregator).__name__

    def default_name(self) -> str:
        return self._name if self.column is None else f"{self._name}({self.column})"

    def init(self) -> Any:
        return self.aggregator.init()

    def update(self, state: Any, values: list[Any]) -> Any:
        add = self.aggregator.add
        for v in values:
            state = add(state, v)
        return state

    def merge(self, a: Any, b: Any) -> Any:
        return self.aggregator.merge(a, b)

    def result(self, state: Any) -> Any:
        return self.aggregator.result(state)


def count(column: str | None = None) -> AggregateFunction:
    """`count()` / `count("*")` counts rows ("count(1)"); `count(col)` counts non-null values."""
    return _Count(None if column in (None, "*", "1") else column)


def sum(column: str) -> AggregateFunction:
    """Sum of the non-null numeric values ("sum(col)"); null when there is none."""
    return _Sum(column)


def avg(column: str) -> AggregateFunction:
    """Mean of the non-null numeric values ("avg(col)"); null when there is none."""
    return _Avg(column)


mean = avg


def min(column: str) -> AggregateFunction:
    """Smallest non-null value ("min(col)")."""
    return _MinMax(column, builtins.min, "min")


def max(column: str) -> AggregateFunction:
    """Largest non-null value ("max(col)")."""
    return _MinMax(column, builtins.max, "max")


def count_distinct(column: str) -> AggregateFunction:
    """Exact number of distinct non-null values ("count(DISTINCT col)"); state grows with it."""
    return _CountDistinct(column)


countDistinct = count_distinct


def approx_count_distinct(column: str, rsd: float = 0.05) -> AggregateFunction:
    """Approximate distinct count by HyperLogLog ("approx_count_distinct(col)").

    `rsd` bounds the relative error (see `weir.tables.ops.hll.precision_for`); nulls are ignored.
    """
    return _ApproxCountDistinct(column, rsd)


def first(column: str, ignore_nulls: bool = False) -> AggregateFunction:
    """First value in arrival order ("first(col)"); nulls count unless `ignore_nulls`."""
    return _First(column, ignore_nulls)


def last(column: str, ignore_nulls: bool = False) -> AggregateFunction:
    """Last value in arrival order ("last(col)"); nulls count unless `ignore_nulls`."""
    return _Last(column, ignore_nulls)


def collect_list(column: str) -> AggregateFunction:
    """The non-null values in arrival order ("collect_list(col)")."""
    return _CollectList(column)


def udaf(
    aggregator: Aggregator, column: str | None = None, name: str | None = None
) -> AggregateFunction:
    """Wrap a user-defined `Aggregator` over `column` (or over whole rows when None)."""
    return UserDefinedAggregate(aggregator, column, name)


def as_aggregate(obj: Any) -> AggregateFunction:
    if isinstance(obj, AggregateFunction):
        return obj
    if isinstance(obj, Aggregator):
        return UserDefinedAggregate(obj, getattr(obj, "column", None), None)
    raise TypeError(f"not an aggregate function: {obj!r} (use count(), sum(col), udaf(...))")
