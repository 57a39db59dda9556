"""Aggregate functions for `group_by(...).agg(...)`: count, sum, avg, min, max,
approx_count_distinct (HyperLogLog), first, last and user-defined aggregators (`udaf`), with
Spark's null and type rules; the collections and distinct counts are in `collect`,
`percentile_approx` in `percentile`, `mode` in `mode`. `SQL_AGGREGATES` maps Spark SQL's
function names to all of them.

Every aggregate takes a column name or a `Column` expression, as PySpark's do
(`sum(col("amount") * 2)`, `count(when(col("kind") == "click", 1))`), and is named as Spark
names it ("sum((amount * 2))", "count(1)" for `count("*")`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from weir.tables.expressions.expr import Column
from weir.tables.ops.agg_base import AggInput, UnaryAggregate, non_null, numbers
from weir.tables.ops.agg_base import AggregateFunction as AggregateFunction
from weir.tables.ops.agg_base import keys_sort_key as keys_sort_key
from weir.tables.ops.agg_base import sort_key as sort_key
from weir.tables.ops.collect import collect_list as collect_list
from weir.tables.ops.collect import collect_set as collect_set
from weir.tables.ops.collect import count_distinct as count_distinct
from weir.tables.ops.collect import max_by as max_by
from weir.tables.ops.collect import min_by as min_by
from weir.tables.ops.collect import sum_distinct as sum_distinct
from weir.tables.ops.hll import HyperLogLog, precision_for
from weir.tables.ops.mode import mode as mode
from weir.tables.ops.percentile import percentile_approx as percentile_approx

_bsum = builtins.sum


class _Count(AggregateFunction):
    def __init__(self, column: AggInput | None) -> None:
        self._read(column)

    def default_name(self) -> str:
        return f"count({self.label or 1})"

    def init(self) -> int:
        return 0

    def update(self, state: int, values: list[Any]) -> int:
        if self.column is None and self.expr is None:
            return state + len(values)
        return state + len(values) - values.count(None)

    def merge(self, a: int, b: int) -> int:
        return a + b


class _Sum(UnaryAggregate):
    numeric = True
    fname = "sum"

    def init(self) -> None:
        return None

    def update(self, state: Any, values: list[Any]) -> Any:
        nums = numbers(values)
        if not nums:
            return state
        total = _bsum(nums)
        return total if state is None else state + total

    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        return a if b is None else a + b


class _Avg(UnaryAggregate):
    numeric = True
    fname = "avg"

    def init(self) -> list[Any]:
        return [0, 0]

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        nums = numbers(values)
        if not nums:
            return state
        return [state[0] + _bsum(nums), state[1] + len(nums)]

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, state: list[Any]) -> float | None:
        return state[0] / state[1] if state[1] else None


class _MinMax(UnaryAggregate):
    numeric = True

    def __init__(self, column: AggInput, pick: Callable[..., Any], fname: str) -> None:
        self._read(column)
        self._pick = pick
        self.fname = fname

    def init(self) -> None:
        return None

    def update(self, state: Any, values: list[Any]) -> Any:
        vals = non_null(values)
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


class _ApproxCountDistinct(UnaryAggregate):
    """HyperLogLog distinct count (weir.tables.ops.hll); the state is the sketch's JSON form."""

    fname = "approx_count_distinct"

    def __init__(self, column: AggInput, rsd: float) -> None:
        self._read(column)
        self.rsd = rsd
        self.precision = precision_for(rsd)

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


class _First(UnaryAggregate):
    """First value in arrival order; the state is [] (no row yet) or [value]."""

    fname = "first"

    def __init__(self, column: AggInput, ignore_nulls: bool) -> None:
        self._read(column)
        self.ignore_nulls = ignore_nulls

    def init(self) -> list[Any]:
        return []

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        if state:
            return state
        vals = non_null(values) if self.ignore_nulls else values
        return [vals[0]] if vals else state

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return a if a else b

    def result(self, state: list[Any]) -> Any:
        return state[0] if state else None


class _Last(_First):
    """Last value in arrival order; the state is [] (no row yet) or [value]."""

    fname = "last"

    def update(self, state: list[Any], values: list[Any]) -> list[Any]:
        vals = non_null(values) if self.ignore_nulls else values
        return [vals[-1]] if vals else state

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return b if b else a


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

    def __init__(self, aggregator: Aggregator, column: AggInput | None, name: str | None) -> None:
        for method in ("init", "add", "merge", "result"):
            if not callable(getattr(aggregator, method, None)):
                raise TypeError(f"{aggregator!r} is not an aggregator: it has no {method}()")
        self.aggregator = aggregator
        self._read(column)
        self._name = name or getattr(aggregator, "name", None) or type(aggregator).__name__

    def default_name(self) -> str:
        return f"{self._name}({self.label})" if self.label else self._name

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


def count(column: AggInput | None = None) -> AggregateFunction:
    """`count()`, `count("*")` or `count(lit(1))` counts rows ("count(1)"); `count(col)` counts
    the non-null values of a name or Column ("count(CASE WHEN ... END)")."""
    if isinstance(column, Column):
        return _Count(None if column.field == "*" else column)
    return _Count(None if column in (None, "*", "1") else column)


def sum(column: AggInput) -> AggregateFunction:
    """Sum of the non-null numeric values ("sum(col)"); null when there is none."""
    return _Sum(column)


def avg(column: AggInput) -> AggregateFunction:
    """Mean of the non-null numeric values ("avg(col)"); null when there is none."""
    return _Avg(column)


mean = avg


def min(column: AggInput) -> AggregateFunction:
    """Smallest non-null value ("min(col)")."""
    return _MinMax(column, builtins.min, "min")


def max(column: AggInput) -> AggregateFunction:
    """Largest non-null value ("max(col)")."""
    return _MinMax(column, builtins.max, "max")


countDistinct = count_distinct
sumDistinct = sum_distinct


def approx_count_distinct(column: AggInput, rsd: float = 0.05) -> AggregateFunction:
    """Approximate distinct count by HyperLogLog ("approx_count_distinct(col)").

    `rsd` bounds the relative error (see `weir.tables.ops.hll.precision_for`); nulls are ignored.
    """
    return _ApproxCountDistinct(column, rsd)


def first(
    column: AggInput, ignore_nulls: bool = False, *, ignorenulls: bool | None = None
) -> AggregateFunction:
    """First value in arrival order ("first(col)"); nulls count unless `ignore_nulls`
    (PySpark's keyword `ignorenulls` works too)."""
    return _First(column, ignore_nulls if ignorenulls is None else ignorenulls)


def last(
    column: AggInput, ignore_nulls: bool = False, *, ignorenulls: bool | None = None
) -> AggregateFunction:
    """Last value in arrival order ("last(col)"); nulls count unless `ignore_nulls`
    (PySpark's keyword `ignorenulls` works too)."""
    return _Last(column, ignore_nulls if ignorenulls is None else ignorenulls)


def udaf(
    aggregator: Aggregator, column: AggInput | None = None, name: str | None = None
) -> AggregateFunction:
    """Wrap a user-defined `Aggregator` over `column` (a name or Column), or over whole rows
    when None."""
    return UserDefinedAggregate(aggregator, column, name)


def as_aggregate(obj: Any) -> AggregateFunction:
    if isinstance(obj, AggregateFunction):
        return obj
    if isinstance(obj, Aggregator):
        return UserDefinedAggregate(obj, getattr(obj, "column", None), None)
    raise TypeError(f"not an aggregate function: {obj!r} (use count(), sum(col), udaf(...))")


SQL_AGGREGATES: dict[str, Callable[..., AggregateFunction]] = {
    "count": count,
    "sum": sum,
    "avg": avg,
    "mean": avg,
    "min": min,
    "max": max,
    "first": first,
    "first_value": first,
    "last": last,
    "last_value": last,
    "any_value": first,
    "approx_count_distinct": approx_count_distinct,
    "count_distinct": count_distinct,
    "sum_distinct": sum_distinct,
    "collect_list": collect_list,
    "array_agg": collect_list,
    "collect_set": collect_set,
    "max_by": max_by,
    "min_by": min_by,
    "percentile_approx": percentile_approx,
    "approx_percentile": percentile_approx,
    "mode": mode,
}
"""Spark SQL's aggregate function names (lower case) -> the function building the aggregate;
`count_distinct`/`sum_distinct` stand for `count(DISTINCT ...)`/`sum(DISTINCT ...)`."""


def aggregates_from_dict(spec: Mapping[str, str]) -> list[AggregateFunction]:
    """Spark's `agg({"amount": "sum", "*": "count"})`: one aggregate per (column, function
    name), named as Spark names them ("sum(amount)", "count(1)"); "avg"/"average"/"mean" are
    avg, "count"/"size" count. Raises ValueError for an unknown function, or "*" with another
    function than count."""
    out: list[AggregateFunction] = []
    for column, fn in spec.items():
        if not isinstance(column, str) or not isinstance(fn, str):
            raise TypeError(f"agg takes a dict of column name -> function name, not {spec!r}")
        name = fn.lower().strip()
        name = {"average": "avg", "mean": "avg", "size": "count"}.get(name, name)
        make = SQL_AGGREGATES.get(name)
        if make is None or name in ("max_by", "min_by", "percentile_approx", "approx_percentile"):
            raise ValueError(f"agg: {fn!r} is not an aggregate function of one column")
        if column == "*" and name != "count":
            raise ValueError(f"agg: {fn}(*) is not supported, only count(*)")
        out.append(make(column))
    return out
