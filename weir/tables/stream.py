"""The builder: a Spark-like streaming DataFrame (`read(...).with_watermark(...).group_by(...)`)
that builds a query plan. With weir.tables.stream_columns (its column methods), the only
modules that import the operators (`weir.tables.ops`)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from weir.tables import columns as cols
from weir.tables.expressions.expr import Column
from weir.tables.operator import Operator, OutputMode, Row
from weir.tables.ops.aggregate import WINDOW_END, WINDOW_START, AggregateOperator
from weir.tables.ops.arbitrary import GroupFunc, GroupState, TimeoutKind, group_state_operator
from weir.tables.ops.basic import MapOperator, UnionOperator, WatermarkOperator
from weir.tables.ops.combine import normalize_on
from weir.tables.ops.dedup import DedupOperator
from weir.tables.ops.functions import SQL_AGGREGATES, aggregates_from_dict, as_aggregate, count
from weir.tables.ops.join_condition import join_node
from weir.tables.ops.sessions import SessionAggregateOperator
from weir.tables.ops.sql_aggregates import sql_aggregate
from weir.tables.ops.static import StaticTable, static_join
from weir.tables.plan import Node, input_names
from weir.tables.query import Query
from weir.tables.stream_columns import ColumnMethods
from weir.tables.timeutil import Duration, parse_duration
from weir.tables.window import SessionWindowSpec, group_keys
from weir.tables.writer import StreamWriter


class Stream(ColumnMethods):
    """A streaming DataFrame: what the course's `spark.readStream ... ` chains build.

    Immutable: every method returns a new Stream. Nothing runs until a `Query` is built and a
    `QueryTask` fed with batches. Where its columns are known (weir.tables.columns), an
    expression naming a column it does not have is refused at definition, in one line.
    """

    # -- stateless -----------------------------------------------------------------------
    def then(self, op: Operator) -> Stream:
        """Append an operator to the chain."""
        n = self.node
        ts = n.timestamp_columns | frozenset(op.timestamp_columns())
        return Stream(Node((n,), op, None, ts, op.output_watermarks(n.watermarks)))

    def map(self, fn: Callable[[Row], Row]) -> Stream:
        """Transform each row (a function that raises dead-letters that row)."""
        return self.then(MapOperator(fn, "map"))

    def flat_map(self, fn: Callable[[Row], Iterable[Row]]) -> Stream:
        """Replace each row by zero or more rows (Spark's `explode`)."""
        return self.then(MapOperator(fn, "flat_map"))

    def with_watermark(self, column: str, delay: Duration) -> Stream:
        """Declare `column` as event time with a watermark `delay` ("10 minutes", timedelta)."""
        name = self._single_input("with_watermark")
        delay_ms = parse_duration(delay)
        cols.check("with_watermark", self.node, [column])
        s = self.then(WatermarkOperator(name, column, delay_ms))
        wms = (*self.node.watermarks, (name, column, delay_ms))
        return Stream(dataclasses.replace(s.node, watermarks=wms, columns=self.node.columns))

    def union(self, *others: Stream) -> Stream:
        """Rows of this stream and of `others`, in input order (Spark's `union`)."""
        nodes = (self.node, *(o.node for o in others))
        ts = frozenset().union(*(n.timestamp_columns for n in nodes))
        wms = tuple(w for n in nodes for w in n.watermarks)
        node = Node(nodes, UnionOperator(), None, ts, wms)
        return Stream(cols.with_columns(node, cols.union_columns(nodes)))

    # -- stateful (implemented in their own modules) -------------------------------------
    def group_by(self, *keys: Any) -> Any:
        """Group by columns and/or a `window(...)`; follow with `.agg(...)` (ops.aggregate)."""
        return GroupedStream(self, keys)

    def drop_duplicates(self, columns: Iterable[str] | None = None) -> Stream:
        """Spark's `dropDuplicates`: see weir.tables.ops.dedup for the watermark semantics."""
        names = list(columns) if columns else None
        cols.check("drop_duplicates", self.node, names or ())
        return self._same_columns(
            self.then(DedupOperator(self.node.watermarks, names, within=False))
        )

    def drop_duplicates_within_watermark(self, columns: Iterable[str] | None = None) -> Stream:
        """Spark's `dropDuplicatesWithinWatermark` (weir.tables.ops.dedup)."""
        names = list(columns) if columns else None
        cols.check("drop_duplicates_within_watermark", self.node, names or ())
        return self._same_columns(
            self.then(DedupOperator(self.node.watermarks, names, within=True))
        )

    def join(
        self,
        other: Stream | StaticTable,
        on: str | Column | Sequence[str | tuple[str, str]] | None = None,
        how: str | None = None,
        *,
        between: tuple[str, str, str] | None = None,
        time_range: tuple[str, str, Duration, Duration] | None = None,
        left_columns: Sequence[str] | None = None,
        right_columns: Sequence[str] | None = None,
    ) -> Stream:
        """Stream-stream join with another Stream (weir.tables.ops.join), or stream-static
        join with a static table (weir.tables.ops.static). `on` and `how` may be positional,
        as in PySpark; `on` may be a condition from `expr(...)` (weir.tables.ops.join_expr)."""
        how = "inner" if how is None else how
        if isinstance(on, Column):
            if not isinstance(other, Stream) or between is not None or time_range is not None:
                raise ValueError(
                    "join: an expr(...) condition joins two streams and holds the whole "
                    "condition (no between=/time_range=)"
                )
            from weir.tables.ops.join_expr import condition_join  # loads sqlglot: on use

            sides = (self.qualifiers(), other.qualifiers())
            node, rest = condition_join(
                self.node, other.node, on, how, sides, left_columns, right_columns
            )
            return Stream(node) if rest is None else Stream(node).filter(rest)
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
        out = cols.join_columns(self.node, other.node, normalize_on(on))
        return Stream(cols.with_columns(node, out))

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

    @property
    def writeStream(self) -> StreamWriter:  # PySpark's name
        """Spark's `writeStream` (weir.tables.writer): an agent may return it."""
        return StreamWriter(self.node)

    # PySpark's camelCase names
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
        types = self.stream.column_types()
        aggs = [sql_aggregate(a, types) or as_aggregate(a) for a in aggregates]
        for a in aggs:
            hidden = sorted(a.references() & self._computed.keys())
            if hidden:
                raise ValueError(
                    f"group_by computes column {hidden[0]!r}, which {a.name} reads from the "
                    "input: alias the key apart"
                )
        src = self._source()
        kind = SessionAggregateOperator if isinstance(self.window, SessionWindowSpec) else None
        node = src.node
        inputs = sorted(set().union(*(a.references() for a in aggs)))
        out = cols.aggregate_columns(
            node, self.key_columns, self.window, [a.name for a in aggs], inputs
        )
        op = (kind or AggregateOperator)(
            node, self.key_columns, self.window, aggs, src.column_types()
        )
        return Stream(cols.with_columns(src.then(op).node, out))

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


def read(
    name: str,
    timestamp_columns: Iterable[str] = (),
    columns: Mapping[str, str | None] | None = None,
) -> Stream:
    """A stream of the rows of input `name` (a Kafka topic, or a replay file's "topic" value);
    `timestamp_columns` hold epoch-ms times from the start (a schema's timestamp fields);
    `columns` {name: Spark type} are its known columns (a schema's; weir.tables.columns)."""
    ts = frozenset(timestamp_columns)
    return Stream(cols.with_columns(Node(input_name=name, timestamp_columns=ts), columns))


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
