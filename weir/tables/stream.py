"""The builder: a Spark-like streaming DataFrame (`read(...).with_watermark(...).group_by(...)`)
that builds a query plan. The only module that imports the operators (`weir.tables.ops`)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from weir.tables.expr import Column
from weir.tables.operator import Operator, OutputMode, Row
from weir.tables.ops.aggregate import WINDOW_END, WINDOW_START, AggregateOperator
from weir.tables.ops.arbitrary import GroupFunc, GroupState, TimeoutKind, group_state_operator
from weir.tables.ops.basic import MapOperator, UnionOperator, WatermarkOperator
from weir.tables.ops.dedup import DedupOperator
from weir.tables.ops.functions import SQL_AGGREGATES, aggregates_from_dict, as_aggregate, count
from weir.tables.ops.join_condition import join_node
from weir.tables.ops.sessions import SessionAggregateOperator
from weir.tables.ops.static import StaticTable, static_join
from weir.tables.plan import Node, input_names
from weir.tables.query import Query
from weir.tables.timeutil import Duration, parse_duration, to_millis
from weir.tables.window import SessionWindowSpec, group_keys


class Stream:
    """A streaming DataFrame: what the course's `spark.readStream ... ` chains build.

    Immutable: every method returns a new Stream. Nothing runs until a `Query` is built and a
    `QueryTask` fed with batches.
    """

    def __init__(self, node: Node) -> None:
        self.node = node

    def column_types(self) -> dict[str, str]:
        """The Spark types of this stream's columns known at definition ({name: "timestamp"}),
        the scope in which its expressions are compiled."""
        return dict.fromkeys(self.node.timestamp_columns, "timestamp")

    # -- stateless -----------------------------------------------------------------------
    def then(self, op: Operator) -> Stream:
        """Append an operator to the chain."""
        n = self.node
        ts = n.timestamp_columns | frozenset(op.timestamp_columns())
        return Stream(Node((n,), op, None, ts, op.output_watermarks(n.watermarks)))

    def map(self, fn: Callable[[Row], Row]) -> Stream:
        """Transform each row (a function that raises dead-letters that row)."""
        return self.then(MapOperator(fn, "map"))

    def filter(self, condition: Column | Callable[[Row], Any]) -> Stream:
        """Keep rows for which `condition` holds: a Column (`col("amount") > 0`) keeps a row
        only where it is True (None drops it, as in Spark); a function, where it is truthy.
        An expression or function that raises dead-letters the row. SQL text ("amount > 0")
        is refused here, not yet supported."""
        if isinstance(condition, str):
            raise ValueError(f"filter: SQL expression strings are not supported yet: {condition!r}")
        if isinstance(condition, Column):
            pred = condition.compile(self.column_types())
            op = MapOperator(lambda r: pred(r) is True, "filter")
            op.name = f"filter({condition.name})"
            return self.then(op)
        if not callable(condition):
            raise TypeError(f"filter takes a Column or a function, not {condition!r}")
        return self.then(MapOperator(condition, "filter"))

    where = filter

    def flat_map(self, fn: Callable[[Row], Iterable[Row]]) -> Stream:
        """Replace each row by zero or more rows (Spark's `explode`)."""
        return self.then(MapOperator(fn, "flat_map"))

    def with_column(
        self, name: str, fn: Column | Callable[[Row], Any], *, timestamp: bool = False
    ) -> Stream:
        """Spark's `withColumn(name, expr)`: each row with column `name` set to `fn(row)`
        (added, or replaced), as a new row; `fn` is a Column (`col("a") * 2`) or a function;
        one that raises dead-letters that row.

        `timestamp=True` makes it a timestamp column, as Spark's `to_timestamp(...)` does:
        the value (ISO-8601 text, a datetime or epoch ms; see `timeutil.to_millis`) is held
        as epoch ms and written as ISO-8601 UTC at the edges; None stays None, and a value
        that is not a time dead-letters the row with the reason (Spark would make it null).
        """

        value_of = _row_function("with_column", fn, self.column_types())

        def parsed(row: Row) -> Any:
            value = value_of(row)
            return None if value is None else to_millis(value)

        typed = isinstance(fn, Column) and fn.dtype == "timestamp"  # already epoch ms
        compute = parsed if timestamp and not typed else value_of
        op = MapOperator(
            lambda r: {**r, name: compute(r)}, "map", (name,) if timestamp or typed else ()
        )
        op.name = f"with_column({name})"
        s = self.then(op)
        ts = (self.node.timestamp_columns - {name}) | op.timestamps  # a replaced column
        return Stream(dataclasses.replace(s.node, timestamp_columns=ts))

    def with_columns(self, columns: Mapping[str, Column | Callable[[Row], Any]]) -> Stream:
        """Spark's `withColumns({name: expr})`: every expression sees the input row, then
        the columns are set (added or replaced) in the mapping's order."""
        types = self.column_types()
        fns = [(name, _row_function("with_columns", fn, types)) for name, fn in columns.items()]
        if not fns:
            return self

        def add(r: Row) -> Row:
            return {**r, **{name: f(r) for name, f in fns}}

        op = MapOperator(add, "map")
        op.name = f"with_columns({', '.join(columns)})"
        s = self.then(op)
        typed = {n for n, c in columns.items() if isinstance(c, Column) and c.dtype == "timestamp"}
        ts = (self.node.timestamp_columns - set(columns)) | typed  # a replaced column
        return Stream(dataclasses.replace(s.node, timestamp_columns=ts))

    def select(self, *columns: str | Column | Sequence[str | Column]) -> Stream:
        """Keep only `columns`, in order: names (a missing field is None) or Columns, each
        output under its name (`alias`, or Spark's derived name such as "(amount * 2)").
        With a Column, two outputs with the same name are refused (a row is a dict)."""
        flat: list[str | Column] = []
        for c in columns:  # select(["a", "b"]) works like select("a", "b"), as in Spark
            if isinstance(c, str | Column):
                flat.append(c)
            else:
                flat.extend(c)
        if all(isinstance(c, str) for c in flat):
            names = tuple(str(c) for c in flat)
            return self.map(lambda r: {c: r.get(c) for c in names})
        outputs: list[tuple[str, Callable[[Row], Any]]] = []
        for c in flat:
            if isinstance(c, str):
                outputs.append((c, _getter(c)))
            elif isinstance(c, Column):
                outputs.append((c.name, c.compile(self.column_types())))
            else:
                raise TypeError(f"select takes column names or Columns, not {c!r}")
        _no_duplicates([n for n, _ in outputs])
        op = MapOperator(lambda r: {n: f(r) for n, f in outputs}, "map")
        op.name = f"select({', '.join(n for n, _ in outputs)})"
        s = self.then(op)
        # a time column stays one when selected by name or computed from itself alone
        ts = self.node.timestamp_columns
        kept = {c if isinstance(c, str) else c.name for c in flat if _same_column(c, ts)}
        kept |= {c.name for c in flat if isinstance(c, Column) and c.dtype == "timestamp"}
        return Stream(dataclasses.replace(s.node, timestamp_columns=(ts | kept) & kept))

    def with_watermark(self, column: str, delay: Duration) -> Stream:
        """Declare `column` as event time with a watermark `delay` ("10 minutes", timedelta)."""
        name = self._single_input("with_watermark")
        delay_ms = parse_duration(delay)
        s = self.then(WatermarkOperator(name, column, delay_ms))
        wms = (*self.node.watermarks, (name, column, delay_ms))
        return Stream(Node(s.node.parents, s.node.op, None, s.node.timestamp_columns, wms))

    def union(self, *others: Stream) -> Stream:
        """Rows of this stream and of `others`, in input order (Spark's `union`)."""
        nodes = (self.node, *(o.node for o in others))
        ts = frozenset().union(*(n.timestamp_columns for n in nodes))
        wms = tuple(w for n in nodes for w in n.watermarks)
        return Stream(Node(nodes, UnionOperator(), None, ts, wms))

    # -- stateful (implemented in their own modules) -------------------------------------
    def group_by(self, *keys: Any) -> Any:
        """Group by columns and/or a `window(...)`; follow with `.agg(...)` (ops.aggregate)."""
        return GroupedStream(self, keys)

    def drop_duplicates(self, columns: Iterable[str] | None = None) -> Stream:
        """Spark's `dropDuplicates`: see weir.tables.ops.dedup for the watermark semantics."""
        cols = list(columns) if columns else None
        return self.then(DedupOperator(self.node.watermarks, cols, within=False))

    def drop_duplicates_within_watermark(self, columns: Iterable[str] | None = None) -> Stream:
        """Spark's `dropDuplicatesWithinWatermark` (weir.tables.ops.dedup)."""
        cols = list(columns) if columns else None
        return self.then(DedupOperator(self.node.watermarks, cols, within=True))

    def join(
        self,
        other: Stream | StaticTable,
        *,
        on: str | Sequence[str | tuple[str, str]] | None = None,
        how: str = "inner",
        between: tuple[str, str, str] | None = None,
        time_range: tuple[str, str, Duration, Duration] | None = None,
        left_columns: Sequence[str] | None = None,
        right_columns: Sequence[str] | None = None,
    ) -> Stream:
        """Stream-stream join with another Stream (weir.tables.ops.join), or stream-static
        join with a static table (weir.tables.ops.static)."""
        if isinstance(other, StaticTable):
            if between is not None or time_range is not None:
                raise ValueError("a stream-static join takes no time range: the table has no time")
            op = static_join(
                self.node.timestamp_columns, other, on=on, how=how, left_columns=left_columns
            )
            return self.then(op)
        if not isinstance(other, Stream):
            raise TypeError(f"cannot join a stream with {type(other).__name__}")
        node = join_node(
            self.node,
            other.node,
            on=on,
            how=how,
            between=between,
            time_range=time_range,
            left_columns=left_columns,
            right_columns=right_columns,
        )
        return Stream(node)

    def name(self, state_name: str) -> Stream:
        """Name the state of the stateful operator just before (an aggregation, dedup, join
        or arbitrary state), e.g. `.agg(...).name("orders_by_user")`. Without a name it is
        derived from the operator's kind and columns; either way it never depends on the
        operator's place in the plan (see weir.tables.state_names)."""
        op = self.node.op
        if op is None or not op.stateful:
            raise ValueError("name(...) must follow a stateful operator (agg, dedup, join...)")
        if not state_name.strip():
            raise ValueError(f"a state name must not be blank, got {state_name!r}")
        named = copy.copy(op)
        named.state_name = state_name
        return Stream(dataclasses.replace(self.node, op=named))

    # -- terminal ------------------------------------------------------------------------
    def query(self, output_mode: OutputMode = "append") -> Query:
        """Build the query; refuses, with the reason, the combinations Spark refuses."""
        return Query(self.node, output_mode)

    # PySpark's camelCase names
    withColumn = with_column
    withColumns = with_columns
    withWatermark = with_watermark
    groupBy = group_by
    dropDuplicates = drop_duplicates
    dropDuplicatesWithinWatermark = drop_duplicates_within_watermark

    def _single_input(self, what: str) -> str:
        names = input_names(self.node)
        if len(names) != 1:
            raise ValueError(f"{what} applies to a single input stream, not to {sorted(names)}")
        return next(iter(names))


class GroupedStream:
    """`stream.group_by(*keys)`: keys are column names, Columns and at most one window spec.

    A key is a name, a `col(name)` (the column itself), or a computed Column
    (`upper(col("page")).alias("page_upper")`), computed before grouping into a column named
    by its alias or Spark's derived name ("upper(page)"); likewise a window over a computed
    time column. Finish with `.agg(*aggregates)` (or Spark's dict form), `.count()`,
    `.sum(*cols)` ...; they return a Stream whose rows are the key columns, then
    `window_start`/`window_end` (epoch ms; rendered as ISO-8601) when grouped by a window,
    then the aggregate columns in declaration order.
    """

    def __init__(self, stream: Stream, keys: tuple[Any, ...]) -> None:
        self.stream = stream
        cols, win, self._computed = group_keys(keys)
        if win is not None and (WINDOW_START in cols or WINDOW_END in cols):
            raise ValueError(f"a key column may not be named {WINDOW_START} or {WINDOW_END}")
        self.key_columns = tuple(cols)
        self.window = win

    def _source(self) -> Stream:
        """The stream with the computed keys (and window time column) added as columns."""
        return self.stream.with_columns(self._computed) if self._computed else self.stream

    def flat_map_groups_with_state(self, func: Any, timeout: Any = "none", **kwargs: Any) -> Stream:
        """Spark's `groupByKey(...).flatMapGroupsWithState`: see weir.tables.ops.arbitrary."""
        if self.window is not None:
            raise ValueError("flat_map_groups_with_state groups by columns, not by a window")
        return flat_map_groups_with_state(
            self._source(), list(self.key_columns), func, timeout, **kwargs
        )

    def map_groups_with_state(self, func: Any, timeout: Any = "none", **kwargs: Any) -> Stream:
        """Spark's `groupByKey(...).mapGroupsWithState`: see weir.tables.ops.arbitrary."""
        if self.window is not None:
            raise ValueError("map_groups_with_state groups by columns, not by a window")
        return map_groups_with_state(
            self._source(), list(self.key_columns), func, timeout, **kwargs
        )

    def agg(self, *aggregates: Any) -> Stream:
        """Aggregate each group; see `AggregateOperator` for the streaming semantics.

        Takes aggregates (`count("*")`, `sum(col("amount") * 2)`, ...) or, as Spark, one dict
        of column name -> function name (`{"amount": "sum", "*": "count"}`). Raises
        ValueError when a computed key's name is a column an aggregate reads (the aggregate
        would read the key instead): alias the key apart."""
        if len(aggregates) == 1 and isinstance(aggregates[0], Mapping):
            aggregates = tuple(aggregates_from_dict(aggregates[0]))
        if not aggregates:
            raise ValueError("agg() needs at least one aggregate function")
        aggs = [as_aggregate(a) for a in aggregates]
        for a in aggs:
            hidden = sorted(a.references() & self._computed.keys())
            if hidden:
                raise ValueError(
                    f"group_by computes column {hidden[0]!r}, which {a.name} reads from the "
                    "input: alias the key apart"
                )
        src = self._source()
        kind = SessionAggregateOperator if isinstance(self.window, SessionWindowSpec) else None
        op = (kind or AggregateOperator)(
            src.node, self.key_columns, self.window, aggs, src.column_types()
        )
        return src.then(op)

    def count(self) -> Stream:
        """Spark's `groupBy(...).count()`: one "count" column of rows per group."""
        return self.agg(count().alias("count"))

    def sum(self, *cols: str) -> Stream:
        """Spark's `groupBy(...).sum("a", ...)`: a "sum(a)" column per named column."""
        return self._each("sum", cols)

    def avg(self, *cols: str) -> Stream:
        """Spark's `groupBy(...).avg("a", ...)` (also `mean`): "avg(a)" per column."""
        return self._each("avg", cols)

    def min(self, *cols: str) -> Stream:
        """Spark's `groupBy(...).min("a", ...)`: "min(a)" per column."""
        return self._each("min", cols)

    def max(self, *cols: str) -> Stream:
        """Spark's `groupBy(...).max("a", ...)`: "max(a)" per column."""
        return self._each("max", cols)

    def _each(self, fn: str, cols: tuple[str, ...]) -> Stream:
        if not cols:  # Spark would take every numeric column: rows here have no schema
            raise ValueError(f"{fn}() needs the column names to aggregate (rows have no schema)")
        return self.agg(*(SQL_AGGREGATES[fn](c) for c in cols))

    mean = avg
    flatMapGroupsWithState = flat_map_groups_with_state
    mapGroupsWithState = map_groups_with_state


def _row_function(
    what: str, fn: Column | Callable[[Row], Any], types: Mapping[str, str]
) -> Callable[[Row], Any]:
    if isinstance(fn, str):
        raise ValueError(f"{what}: SQL expression strings are not supported yet: {fn!r}")
    if isinstance(fn, Column):
        return fn.compile(types)
    if not callable(fn):
        raise TypeError(f"{what} takes a Column or a function, not {fn!r}")
    return fn


def _same_column(c: str | Column, timestamps: frozenset[str]) -> bool:
    if isinstance(c, str):
        return c in timestamps
    return c.name in timestamps and c.references() == {c.name}


def _getter(name: str) -> Callable[[Row], Any]:
    return lambda r: r.get(name)


def _no_duplicates(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"select: column {n!r} is selected twice; use alias(...)")
        seen.add(n)


def read(name: str, timestamp_columns: Iterable[str] = ()) -> Stream:
    """A stream of the rows of input `name` (a Kafka topic, or a replay file's "topic" value);
    `timestamp_columns` hold epoch-ms times from the start (a schema's timestamp fields)."""
    return Stream(Node(input_name=name, timestamp_columns=frozenset(timestamp_columns)))


def flat_map_groups_with_state(
    stream: Stream,
    keys: str | Sequence[str],
    func: GroupFunc,
    timeout: TimeoutKind = "none",
    *,
    output_mode: Literal["append", "update"] = "append",
    timestamp_columns: Iterable[str] = (),
) -> Stream:
    """Spark's `groupByKey(...).flatMapGroupsWithState(outputMode, timeoutConf)(func)`.

    `timestamp_columns` names the output columns that hold epoch-ms times. Raises ValueError
    for an event-time timeout on a stream without a watermark (as Spark does).
    """
    op = group_state_operator(
        stream.node.watermarks, keys, func, timeout, output_mode, timestamp_columns
    )
    return stream.then(op)


def map_groups_with_state(
    stream: Stream,
    keys: str | Sequence[str],
    func: Callable[[tuple[Any, ...], list[Row], GroupState], Row],
    timeout: TimeoutKind = "none",
    *,
    timestamp_columns: Iterable[str] = (),
) -> Stream:
    """Spark's `mapGroupsWithState`: like `flat_map_groups_with_state`, one row per call.

    Spark allows it only in update output mode, so queries using it must use "update".
    """

    def wrapped(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
        return [func(key, values, state)]

    wrapped.__name__ = getattr(func, "__name__", "func")
    out = flat_map_groups_with_state(
        stream,
        keys,
        wrapped,
        timeout,
        output_mode="update",
        timestamp_columns=timestamp_columns,
    )
    op = copy.copy(out.node.op)
    op.single = True  # type: ignore[union-attr]
    return Stream(dataclasses.replace(out.node, op=op))
