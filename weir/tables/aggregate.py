"""Streaming aggregations: `stream.group_by(keys..., window(...)).agg(count(), sum("x"), ...)`.

Semantics (Spark Structured Streaming, micro-batch, Spark 3.4+): with W = `ctx.watermark` and
L = `ctx.late_watermark` (the previous batch's W), for a grouping whose time column carries
the query's watermark (a `window`/`session_window` on it, or the column itself as a key):

* a row whose window ends at or before L is dropped for that window and reported once in
  `ctx.late_rows` as (operator name, row); it never recreates evicted state;
* append: after applying the batch, every group whose window ends at or before W is emitted
  once, with its final value, and its state dropped (a no-data batch still does this);
* update: the groups changed by the batch are emitted, then groups ending at or before W are
  dropped;
* complete: the whole result table is emitted every batch; nothing is evicted or dropped as
  late (Spark keeps all state in complete mode).

Without such a watermark nothing is ever dropped or evicted (state grows with the keys) and
append mode is refused at build time, as Spark refuses it.

State layout (keys under the operator's prefix; values are JSON lists of aggregate states):

* ``b"w" + be64(end) + be64(start) + json(keys)``: a time window (or time-key group); the
  big-endian end first makes watermark eviction a range scan that stops at the first end > W;
* ``b"g" + json(keys)``: a group without event time, kept forever;
* ``b"s" + be64(end) + be64(start) + json(keys)``: a session, plus an index
  ``b"i" + json(keys)`` -> ``[[start, end], ...]`` of the group's open sessions.
"""

from __future__ import annotations

import builtins
import copy
import operator as _operator
from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from weir.tables.hll import HyperLogLog, precision_for
from weir.tables.layout import decode_time, encode_time
from weir.tables.operator import BatchContext, Operator, OutputMode, Row
from weir.tables.store import StateView
from weir.tables.timeutil import to_millis
from weir.tables.window import AnyWindow, SessionWindowSpec, WindowSpec

if TYPE_CHECKING:
    from weir.tables.query import Node, Stream

WINDOW_START = "window_start"
WINDOW_END = "window_end"

_bsum = builtins.sum
_TIMED = b"w"
_PLAIN = b"g"
_SESSION = b"s"
_SESSION_INDEX = b"i"
_APPEND_REFUSED = (
    "Append output mode not supported when there are streaming aggregations on streaming "
    "DataFrames without watermark"
)


def _sort_key(value: Any) -> tuple[int, Any]:
    """A total order over JSON-ish values: None < numbers < strings < anything else."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def _keys_sort_key(keys: Iterable[Any]) -> tuple[tuple[int, Any], ...]:
    return tuple(map(_sort_key, keys))


# ------------------------------------------------------------------------------------------
# Aggregate functions
# ------------------------------------------------------------------------------------------


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
            return self._pick(vals, key=_sort_key)

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
        return sorted(seen, key=_sort_key)

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return self.update(a, b)

    def result(self, state: list[Any]) -> int:
        return len(state)


class _ApproxCountDistinct(AggregateFunction):
    """HyperLogLog distinct count (weir.tables.hll); the state is the sketch's JSON form."""

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

    `rsd` bounds the relative error (see `weir.tables.hll.precision_for`); nulls are ignored.
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


def _as_aggregate(obj: Any) -> AggregateFunction:
    if isinstance(obj, AggregateFunction):
        return obj
    if isinstance(obj, Aggregator):
        return UserDefinedAggregate(obj, getattr(obj, "column", None), None)
    raise TypeError(f"not an aggregate function: {obj!r} (use count(), sum(col), udaf(...))")


# ------------------------------------------------------------------------------------------
# Grouping
# ------------------------------------------------------------------------------------------


class GroupedStream:
    """`stream.group_by(*keys)`: keys are column names and at most one window spec.

    Finish with `.agg(*aggregates)` or `.count()`; both return a Stream whose rows are the
    key columns, then `window_start`/`window_end` (epoch ms; rendered as ISO-8601) when
    grouped by a window, then the aggregate columns in declaration order.
    """

    def __init__(self, stream: Stream, keys: tuple[Any, ...]) -> None:
        self.stream = stream
        cols: list[str] = []
        win: AnyWindow | None = None
        flat: list[Any] = []
        for k in keys:  # group_by(["a", "b"]) works like group_by("a", "b"), as in Spark
            if isinstance(k, list | tuple):
                flat.extend(k)
            else:
                flat.append(k)
        for k in flat:
            if isinstance(k, WindowSpec | SessionWindowSpec):
                if win is not None:
                    raise ValueError("group_by accepts at most one window or session_window")
                win = k
            elif isinstance(k, str) and k:
                if k in cols:
                    raise ValueError(f"group_by key {k!r} is listed twice")
                cols.append(k)
            else:
                raise ValueError(f"group_by keys are column names or a window(...), not {k!r}")
        if win is not None and (WINDOW_START in cols or WINDOW_END in cols):
            raise ValueError(f"a key column may not be named {WINDOW_START} or {WINDOW_END}")
        self.key_columns = tuple(cols)
        self.window = win

    def flat_map_groups_with_state(self, func: Any, timeout: Any = "none", **kwargs: Any) -> Stream:
        """Spark's `groupByKey(...).flatMapGroupsWithState`: see weir.tables.arbitrary."""
        from weir.tables.arbitrary import flat_map_groups_with_state

        if self.window is not None:
            raise ValueError("flat_map_groups_with_state groups by columns, not by a window")
        return flat_map_groups_with_state(
            self.stream, list(self.key_columns), func, timeout, **kwargs
        )

    def map_groups_with_state(self, func: Any, timeout: Any = "none", **kwargs: Any) -> Stream:
        """Spark's `groupByKey(...).mapGroupsWithState`: see weir.tables.arbitrary."""
        from weir.tables.arbitrary import map_groups_with_state

        if self.window is not None:
            raise ValueError("map_groups_with_state groups by columns, not by a window")
        return map_groups_with_state(self.stream, list(self.key_columns), func, timeout, **kwargs)

    def agg(self, *aggregates: Any) -> Stream:
        """Aggregate each group; see `AggregateOperator` for the streaming semantics."""
        if not aggregates:
            raise ValueError("agg() needs at least one aggregate function")
        aggs = [_as_aggregate(a) for a in aggregates]
        op = AggregateOperator(self.stream.node, self.key_columns, self.window, aggs)
        return self.stream.then(op)

    def count(self) -> Stream:
        """Spark's `groupBy(...).count()`: one "count" column of rows per group."""
        return self.agg(count().alias("count"))


def _has_aggregate(node: Node) -> bool:
    if isinstance(node.op, AggregateOperator):
        return True
    return any(_has_aggregate(p) for p in node.parents)


class AggregateOperator(Operator):
    """The stateful operator behind `group_by(...).agg(...)`; see the module docstring.

    Output rows of a batch are sorted by (window_start, window_end, keys). Rows with a
    missing or unparsable time column, or unhashable key values, go to `ctx.errors`.
    """

    stateful = True

    def __init__(
        self,
        parent: Node,
        key_columns: tuple[str, ...],
        window: AnyWindow | None,
        aggregates: list[AggregateFunction],
    ) -> None:
        names = [a.name for a in aggregates]
        out_cols = [*key_columns, *((WINDOW_START, WINDOW_END) if window else ()), *names]
        dupes = sorted({c for c in out_cols if out_cols.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate output columns {dupes}: alias the aggregates apart")
        self.key_columns = key_columns
        self.window = window
        self.aggregates = list(aggregates)
        self.output_columns = out_cols
        self.chained = _has_aggregate(parent)
        self._user_defined = any(isinstance(a, UserDefinedAggregate) for a in aggregates)
        wm_cols = {col for _name, col, _delay in parent.watermarks}
        self.time_key: int | None = None
        """Index in the keys of a watermarked key column (grouping by event time itself)."""
        if window is not None:
            self.evicts = window.column in wm_cols
        else:
            for i, c in enumerate(key_columns):
                if c in wm_cols:
                    self.time_key = i
                    break
            self.evicts = self.time_key is not None
        what = [*key_columns]
        if isinstance(window, WindowSpec):
            what.insert(0, f"window({window.column})")
        elif isinstance(window, SessionWindowSpec):
            what.insert(0, f"session_window({window.column})")
        self.name = f"aggregate({', '.join(what)})"
        if len(key_columns) == 0:
            self._key: Callable[[Row], Any] = lambda _r: ()
        else:
            self._key = _operator.itemgetter(*key_columns)
        self._single = len(key_columns) == 1

    # -- build-time checks ----------------------------------------------------------------
    def check_output_mode(self, mode: OutputMode, has_watermark: bool) -> None:
        """Raise ValueError, saying why, for the output modes Spark refuses here.

        Append needs a watermark on the grouping's event time (the window's column, or a key
        column) so a group can be known final; update is refused for session windows (a
        session's rows change identity as sessions merge); chained aggregations are refused.
        """
        if self.chained:
            raise ValueError(
                "Multiple streaming aggregations are not supported with streaming "
                "DataFrames/Datasets: aggregate once, or post-process the output"
            )
        if mode == "append" and not self.evicts:
            if self.window is not None:
                why = (
                    f"the window's time column {self.window.column!r} has no watermark, so "
                    "no window can ever be known final"
                    if has_watermark
                    else "declare with_watermark(...) on the window's time column"
                )
            else:
                why = (
                    "group by a window(...) on the watermarked column (or by that column) so "
                    "groups can be known final, or use update/complete mode"
                )
            raise ValueError(f"{_APPEND_REFUSED}: {why}")
        if mode == "update" and isinstance(self.window, SessionWindowSpec):
            raise ValueError(
                "Update output mode not supported for session window on streaming "
                "DataFrames/Datasets: use append (with a watermark) or complete"
            )

    def timestamp_columns(self) -> set[str]:
        return {WINDOW_START, WINDOW_END} if self.window is not None else set()

    def fingerprint(self) -> dict[str, Any]:
        """Keys, window and aggregate functions: what the stored groups mean."""
        win = self.window
        window: dict[str, Any] | None = None
        if isinstance(win, WindowSpec):
            window = {"column": win.column, "size_ms": win.size_ms, "slide_ms": win.slide_ms}
            window["offset_ms"] = win.offset_ms
        elif isinstance(win, SessionWindowSpec):
            window = {"column": win.column, "gap_ms": win.gap_ms}
        return {
            "kind": "aggregate",
            "keys": list(self.key_columns),
            "window": window,
            "aggregates": [a.default_name() for a in self.aggregates],
        }

    # -- the batch ------------------------------------------------------------------------
    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        mode = ctx.output_mode
        active = self.evicts and mode != "complete"
        late_wm = ctx.late_watermark if active else None
        evict_wm = ctx.watermark if active else None
        if isinstance(self.window, SessionWindowSpec):
            return self._process_sessions(rows, state, ctx, late_wm, evict_wm)
        groups = self._group(rows, ctx)
        if late_wm is not None and groups:
            late_ids: set[int] = set()
            for gk in [gk for gk in groups if gk[1] is not None and gk[1] <= late_wm]:
                late_ids.update(map(id, groups.pop(gk)))
            if late_ids:
                ctx.late_rows.extend((self.name, r) for r in rows if id(r) in late_ids)
        changed: list[tuple[Any, Any, tuple[Any, ...], list[Any]]] = []
        want_changed = mode == "update"
        for (start, end, keys), grows in groups.items():
            skey = self._state_key(start, end, keys)
            st = state.get(skey)
            new = self._fold(st, grows, ctx)
            if new is None:
                continue
            state.put(skey, new)
            if want_changed:
                changed.append((start, end, keys, new))
        ctx.state_rows_updated += len(groups)
        out: list[Row] = []
        if want_changed:
            out = [self._row(s, e, k, st) for s, e, k, st in changed]
        if mode == "complete":
            out = [self._row(*self._decode(k), v) for k, v in state.items(_TIMED)]
            out.extend(self._row(*self._decode(k), v) for k, v in state.items(_PLAIN))
        elif evict_wm is not None:
            bound = encode_time(evict_wm)
            closed = []
            for key, value in state.items(_TIMED):
                if key[1:9] > bound:
                    break
                closed.append((key, value))
            for key, _value in closed:
                state.delete(key)
            if mode == "append":
                out = [self._row(*self._decode(k), v) for k, v in closed]
        return self._sorted(out)

    def _group(
        self, rows: list[Row], ctx: BatchContext
    ) -> dict[tuple[Any, Any, tuple[Any, ...]], list[Row]]:
        """Group the batch's rows by (start, end, keys); start/end None without event time.

        The hot path: a handful of operations per row. Rows that fail it (missing column,
        unparsable time, unhashable key) take `_slow_fields`, which dead-letters or repairs.
        """
        keyf = self._key
        raw: defaultdict[Any, list[Row]] = defaultdict(list)
        win = self.window
        single = self._single
        if isinstance(win, WindowSpec):
            tcol = win.column
            size, slide, off = win.size_ms, win.slide_ms, win.offset_ms
            if win.tumbling:
                for r in rows:
                    try:
                        t = r[tcol]
                        if type(t) is not int:
                            t = to_millis(t)
                        raw[(t - (t - off) % size, keyf(r))].append(r)
                    except (KeyError, TypeError, ValueError):
                        fields = self._slow_fields(r, ctx)
                        if fields is not None:
                            t, k = fields
                            raw[(t - (t - off) % size, k)].append(r)
            else:
                for r in rows:
                    try:
                        t = r[tcol]
                        if type(t) is not int:
                            t = to_millis(t)
                        k = keyf(r)
                        start = t - (t - off) % slide
                        raw[(start, k)].append(r)
                    except (KeyError, TypeError, ValueError):
                        fields = self._slow_fields(r, ctx)
                        if fields is None:
                            continue
                        t, k = fields
                        start = t - (t - off) % slide
                        raw[(start, k)].append(r)
                    start -= slide
                    while start + size > t:
                        raw[(start, k)].append(r)
                        start -= slide
            return {(s, s + size, (k,) if single else k): g for (s, k), g in raw.items()}
        for r in rows:
            try:
                raw[keyf(r)].append(r)
            except (KeyError, TypeError):
                fields = self._slow_fields(r, ctx)
                if fields is not None:
                    raw[fields[1]].append(r)
        out: dict[tuple[Any, Any, tuple[Any, ...]], list[Row]] = {}
        tk = self.time_key
        for k, g in raw.items():
            keys = (k,) if single else k
            if tk is None:
                out[(None, None, keys)] = g
                continue
            t = keys[tk]
            if type(t) is not int:
                reason = f"{self.name}: {self.key_columns[tk]} is not epoch ms: {t!r}"
                ctx.errors.extend((r, reason, "event_time") for r in g)
                continue
            out[(t, t, keys)] = g
        return out

    def _slow_fields(self, row: Row, ctx: BatchContext) -> tuple[Any, Any] | None:
        """Return (time or None, key) for a row the fast path refused, or dead-letter it.

        A missing key column groups under a null key, as Spark does; a missing or unparsable
        time column and an unhashable key value are errors.
        """
        t: Any = None
        if self.window is not None:
            col = self.window.column
            raw_t = row.get(col)
            if raw_t is None:
                ctx.errors.append((row, f"{self.name}: missing time column {col!r}", "schema"))
                return None
            try:
                t = raw_t if type(raw_t) is int else to_millis(raw_t)
            except ValueError as exc:
                ctx.errors.append((row, f"{self.name}: {col}: {exc}", "event_time"))
                return None
        if self._single:
            k: Any = row.get(self.key_columns[0])
        else:
            k = tuple(row.get(c) for c in self.key_columns)
        try:
            hash(k)
        except TypeError as exc:
            ctx.errors.append((row, f"{self.name}: key value cannot be grouped: {exc}", "schema"))
            return None
        return t, k

    def _process_sessions(
        self,
        rows: list[Row],
        state: StateView,
        ctx: BatchContext,
        late_wm: int | None,
        evict_wm: int | None,
    ) -> list[Row]:
        """Session windows: merge the batch's rows into each key's open sessions."""
        win = self.window
        assert isinstance(win, SessionWindowSpec)
        gap = win.gap_ms
        tcol = win.column
        keyf = self._key
        single = self._single
        mode = ctx.output_mode
        by_key: defaultdict[Any, list[tuple[int, int, Row]]] = defaultdict(list)
        for i, r in enumerate(rows):
            try:
                t = r[tcol]
                if type(t) is not int:
                    t = to_millis(t)
                by_key[keyf(r)].append((t, i, r))
            except (KeyError, TypeError, ValueError):
                fields = self._slow_fields(r, ctx)
                if fields is not None:
                    by_key[fields[1]].append((fields[0], i, r))
        late_ids: set[int] = set()
        changed: list[tuple[int, int, tuple[Any, ...], list[Any]]] = []
        puts: list[tuple[bytes, list[Any]]] = []
        for k, items in by_key.items():
            if late_wm is not None:
                keep = []
                for item in items:
                    if item[0] + gap <= late_wm:
                        late_ids.add(id(item[2]))
                    else:
                        keep.append(item)
                if not keep:
                    continue
                items = keep
            keys = (k,) if single else k
            kj = orjson.dumps(keys)
            index_key = _SESSION_INDEX + kj
            existing: list[list[int]] = state.get(index_key) or []
            # Every open session and every new row as an interval, merged by a sweep over
            # starts: intervals that overlap or touch (start <= current end) are one session.
            intervals: list[tuple[int, int, int, Row | None]] = [
                (s, e, -1, None) for s, e in existing
            ]
            intervals.extend((t, t + gap, i, r) for t, i, r in items)
            intervals.sort(key=lambda iv: (iv[0], iv[2]))
            clusters: list[list[Any]] = []
            cur: list[Any] | None = None
            for s, e, i, maybe_row in intervals:
                if cur is not None and s <= cur[1]:
                    if e > cur[1]:
                        cur[1] = e
                else:
                    cur = [s, e, [], []]
                    clusters.append(cur)
                if maybe_row is None:
                    cur[2].append((s, e))
                else:
                    cur[3].append((i, maybe_row))
            for s, e, olds, news in clusters:
                if not news:
                    continue
                st: list[Any] | None = None
                for old_start, old_end in olds:
                    old_key = _SESSION + encode_time(old_end) + encode_time(old_start) + kj
                    old_st = state.get(old_key)
                    state.delete(old_key)
                    if old_st is not None:
                        st = old_st if st is None else self._merge(st, old_st)
                news.sort(key=lambda n: n[0])
                st = self._fold(st, [r for _i, r in news], ctx)
                if st is None:  # every row of a new session failed: an empty session
                    st = [a.init() for a in self.aggregates]
                puts.append((_SESSION + encode_time(e) + encode_time(s) + kj, st))
                changed.append((s, e, keys, st))
            state.put(index_key, [[c[0], c[1]] for c in clusters])
        for key, value in puts:
            state.put(key, value)
        ctx.state_rows_updated += len(puts)
        if late_ids:
            ctx.late_rows.extend((self.name, r) for r in rows if id(r) in late_ids)
        out: list[Row] = []
        if mode == "update":
            out = [self._row(s, e, k, st) for s, e, k, st in changed]
        if mode == "complete":
            out = [self._row(*self._decode(k), v) for k, v in state.items(_SESSION)]
        elif evict_wm is not None:
            bound = encode_time(evict_wm)
            closed = []
            for key, value in state.items(_SESSION):
                if key[1:9] > bound:
                    break
                closed.append((key, value))
            gone: defaultdict[bytes, list[list[int]]] = defaultdict(list)
            for key, _value in closed:
                state.delete(key)
                gone[key[17:]].append([decode_time(key[9:17]), decode_time(key[1:9])])
            for kj, sessions in gone.items():
                index_key = _SESSION_INDEX + kj
                left = [iv for iv in state.get(index_key) or [] if iv not in sessions]
                if left:
                    state.put(index_key, left)
                else:
                    state.delete(index_key)
            if mode == "append":
                out = [self._row(*self._decode(k), v) for k, v in closed]
        return self._sorted(out)

    def _merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [f.merge(x, y) for f, x, y in zip(self.aggregates, a, b, strict=True)]

    def state_rows(self, state: StateView) -> int:
        """Return the number of groups and sessions held (the session index not counted)."""
        return _bsum(1 for k, _v in state.items() if not k.startswith(_SESSION_INDEX))

    # -- state encoding -------------------------------------------------------------------
    def _state_key(self, start: Any, end: Any, keys: tuple[Any, ...]) -> bytes:
        if end is None:
            return _PLAIN + orjson.dumps(keys)
        return _TIMED + encode_time(end) + encode_time(start) + orjson.dumps(keys)

    @staticmethod
    def _decode(key: bytes) -> tuple[Any, Any, tuple[Any, ...]]:
        if key[:1] == _PLAIN:
            return None, None, tuple(orjson.loads(key[1:]))
        return decode_time(key[9:17]), decode_time(key[1:9]), tuple(orjson.loads(key[17:]))

    def _fold(self, st: list[Any] | None, grows: list[Row], ctx: BatchContext) -> list[Any] | None:
        """Fold a group's batch rows into its aggregate states; None when the group had no
        state and every row failed.

        With a user-defined aggregate, a row that makes it raise is dead-lettered and the
        others are folded (the accumulators are copied first, so a half-done `add` leaves no
        trace); built-in aggregates accept any value."""
        if not self._user_defined:
            return self._fold_rows(st, grows)
        dumps, loads = orjson.dumps, orjson.loads
        before = dumps(st)
        try:
            return self._fold_rows(st, grows)
        except Exception:
            st = loads(before)
        for r in grows:
            before = dumps(st)
            try:
                st = self._fold_rows(st, [r])
            except Exception as exc:
                st = loads(before)
                ctx.errors.append(
                    (r, f"{self.name} failed: {type(exc).__name__}: {exc}", "user_function")
                )
        return st

    def _fold_rows(self, st: list[Any] | None, grows: list[Row]) -> list[Any]:
        """Fold rows into the states (one list comprehension per distinct input column, one
        call per aggregate)."""
        aggs = self.aggregates
        if st is None:
            st = [a.init() for a in aggs]
        cache: dict[str, list[Any]] = {}
        new: list[Any] = []
        for a, s in zip(aggs, st, strict=True):
            c = a.column
            if c is None:
                vals: list[Any] = grows
            else:
                cached = cache.get(c)
                if cached is None:
                    cached = cache[c] = list(map(dict.get, grows, repeat(c)))
                vals = cached
            new.append(a.update(s, vals))
        return new

    def _row(self, start: Any, end: Any, keys: tuple[Any, ...], st: list[Any]) -> Row:
        row: Row = dict(zip(self.key_columns, keys, strict=True))
        if self.window is not None:
            row[WINDOW_START] = start
            row[WINDOW_END] = end
        for a, s in zip(self.aggregates, st, strict=True):
            row[a.name] = a.result(s)
        return row

    def _sorted(self, out: list[Row]) -> list[Row]:
        if len(out) < 2:
            return out
        cols = self.key_columns
        if self.window is not None:
            return sorted(
                out,
                key=lambda r: (r[WINDOW_START], r[WINDOW_END], _keys_sort_key(r[c] for c in cols)),
            )
        return sorted(out, key=lambda r: _keys_sort_key(r[c] for c in cols))
