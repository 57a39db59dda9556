"""The builder: a Spark-like streaming DataFrame (`read(...).with_watermark(...).group_by(...)`)
that builds a query plan. The only module that imports the operators (`weir.tables.ops`)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from weir.tables import columns as cols
from weir.tables.expr import Column, col, scope
from weir.tables.expr_codegen import filter_rows, set_columns
from weir.tables.expr_collections import GeneratorColumn, generator_column, generator_select
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
from weir.tables.select import plan_select
from weir.tables.timeutil import Duration, parse_duration, to_millis
from weir.tables.window import SessionWindowSpec, group_keys


class Stream:
    """A streaming DataFrame: what the course's `spark.readStream ... ` chains build.

    Immutable: every method returns a new Stream. Nothing runs until a `Query` is built and a
    `QueryTask` fed with batches. Where its columns are known (weir.tables.columns), an
    expression naming a column it does not have is refused at definition, in one line.
    """

    def __init__(self, node: Node, alias: str | None = None) -> None:
        self.node = node
        self.alias_name = alias

    def column_types(self) -> dict[str, str]:
        """The Spark types of this stream's columns known at definition ({name: "timestamp"}),
        the scope in which its expressions are compiled (weir.tables.columns)."""
        return {**cols.types(self.node), **dict.fromkeys(self.node.timestamp_columns, "timestamp")}

    def _same_columns(self, s: Stream) -> Stream:
        """`s` (one operator after this stream) with this stream's known columns."""
        return Stream(dataclasses.replace(s.node, columns=self.node.columns))

    # -- stateless -----------------------------------------------------------------------
    def then(self, op: Operator) -> Stream:
        """Append an operator to the chain."""
        n = self.node
        ts = n.timestamp_columns | frozenset(op.timestamp_columns())
        return Stream(Node((n,), op, None, ts, op.output_watermarks(n.watermarks)))

    def map(self, fn: Callable[[Row], Row]) -> Stream:
        """Transform each row (a function that raises dead-letters that row)."""
        return self.then(MapOperator(fn, "map"))

    def filter(self, condition: str | Column | Callable[[Row], Any]) -> Stream:
        """Keep rows for which `condition` holds: a Column (`col("amount") > 0`) or SQL text
        ("amount > 0", see weir.tables.expr_sql) keeps a row only where it is True (None drops
        it, as in Spark); a function, where it is truthy. An expression or function that
        raises dead-letters the row; SQL text Weir cannot run is refused here (ValueError)."""
        condition = self._sql(condition) if isinstance(condition, str) else self._scoped(condition)
        if isinstance(condition, Column):
            cols.check("filter", self.node, condition.references())
            with scope(self.column_types()):
                pred, rows = condition.compile(), filter_rows(condition)
            op = MapOperator(lambda r: pred(r) is True, "filter", batch=rows)
            op.name = f"filter({condition.name})"
            return self._same_columns(self.then(op))
        if not callable(condition):
            raise TypeError(f"filter takes a Column or a function, not {condition!r}")
        return self._same_columns(self.then(MapOperator(condition, "filter")))

    where = filter

    def alias(self, name: str) -> Stream:
        """Spark's `df.alias(name)`: SQL text may qualify this stream's columns as
        `name.column` (in a join condition, or in this stream's `filter`/`select_expr`).
        A stream read from one input is also known by the input's name; the alias holds for
        this Stream object (the next method call returns a stream without it)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"alias needs a name like 'orders', got {name!r}")
        return Stream(self.node, name)

    def qualifiers(self) -> frozenset[str]:
        """The names qualifying this stream's columns in SQL text: its alias, and its input's
        name when it reads a single input."""
        names = input_names(self.node)
        own = {self.alias_name} if self.alias_name else set()
        return frozenset(own | (names if len(names) == 1 else set()))

    def select_expr(self, *texts: str) -> Stream:
        """Spark's `selectExpr`: each text is "*" (every input column; also "alias.*"),
        "s.*" (the fields of struct column s) or a SQL expression, optionally named
        (`"amount * 2 AS double_amount"`, `"upper(action) action_upper"`); see `select` for
        the output columns. Refuses (ValueError) what Weir cannot run."""
        from weir.tables.stream_sql import select_expr

        p = select_expr(texts, self.column_types(), self.qualifiers())
        if isinstance(p, list):
            return self.select(*p)
        op = MapOperator(p.project, "map")
        op.name = f"select_expr({', '.join(texts)})"
        kept = self.node.timestamp_columns if p.whole else frozenset()
        ts = (kept - p.names) | p.typed
        return Stream(dataclasses.replace(self.then(op).node, timestamp_columns=ts))

    def _sql(self, text: str) -> Column:
        from weir.tables.expr_sql import to_column

        return to_column(text, self.column_types(), self.qualifiers())

    def _scoped(self, c: Any) -> Any:
        """An `expr(...)` Column translated again with this stream's types and qualifiers."""
        in_scope = getattr(c, "in_scope", None)
        return c if in_scope is None else in_scope(self.column_types(), self.qualifiers())

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
        A generator (`explode(col("tags"))`) makes one row per element, the element in `name`.
        """
        fn = self._scoped(fn)
        if isinstance(fn, Column):
            cols.check("with_column", self.node, fn.references())
        if isinstance(fn, GeneratorColumn):
            op = MapOperator(generator_column(name, fn, self.column_types()), "flat_map")
            op.name = f"with_column({name})"
            s = self.then(op)
            ts = self.node.timestamp_columns - {name}
            return Stream(dataclasses.replace(s.node, timestamp_columns=ts))
        value_of = _row_function("with_column", fn, self.column_types())

        def parsed(row: Row) -> Any:
            value = value_of(row)
            return None if value is None else to_millis(value)

        typed = cols.result_type(fn, self.column_types()) == "timestamp"  # already epoch ms
        compute = parsed if timestamp and not typed else value_of
        batch = None
        if isinstance(fn, Column) and compute is value_of:
            with scope(self.column_types()):
                batch = set_columns({name: fn})
        op = MapOperator(
            lambda r: {**r, name: compute(r)},
            "map",
            (name,) if timestamp or typed else (),
            batch=batch,
        )
        op.name = f"with_column({name})"
        s = self.then(op)
        ts = (self.node.timestamp_columns - {name}) | op.timestamps  # a replaced column
        out = cols.added(self.node, {name: fn}, self.column_types(), op.timestamps)
        return Stream(cols.with_columns(dataclasses.replace(s.node, timestamp_columns=ts), out))

    def with_columns(self, columns: Mapping[str, Column | Callable[[Row], Any]]) -> Stream:
        """Spark's `withColumns({name: expr})`: every expression sees the input row, then
        the columns are set (added or replaced) in the mapping's order."""
        types = self.column_types()
        columns = {name: self._scoped(fn) for name, fn in columns.items()}
        refs = [r for c in columns.values() if isinstance(c, Column) for r in c.references()]
        cols.check("with_columns", self.node, refs)
        fns = [(name, _row_function("with_columns", fn, types)) for name, fn in columns.items()]
        if not fns:
            return self

        def add(r: Row) -> Row:
            return {**r, **{name: f(r) for name, f in fns}}

        batch = None
        if all(isinstance(c, Column) for c in columns.values()):
            with scope(types):
                batch = set_columns(columns)  # type: ignore[arg-type]
        op = MapOperator(add, "map", batch=batch)
        op.name = f"with_columns({', '.join(columns)})"
        s = self.then(op)
        typed = {n for n, c in columns.items() if cols.result_type(c, types) == "timestamp"}
        ts = (self.node.timestamp_columns - set(columns)) | typed  # a replaced column
        out = cols.added(self.node, columns, types, typed)
        return Stream(cols.with_columns(dataclasses.replace(s.node, timestamp_columns=ts), out))

    def select(self, *columns: str | Column | Sequence[str | Column]) -> Stream:
        """Keep only `columns`, in order: names, Columns (output under their `name`) and stars,
        "*" and "data.*" (the fields of struct column `data`), as weir.tables.select says;
        two outputs with the same name are refused (a row is a dict). One generator
        (`explode(split(lines.value, " ")).alias("word")`) may be among them: each row then
        gives a row per element, with the other columns repeated."""
        flat: list[str | Column] = []
        for c in columns:  # select(["a", "b"]) works like select("a", "b"), as in Spark
            if isinstance(c, str | Column):
                flat.append(c)
            else:
                flat.extend(c)
        flat = [self._scoped(c) for c in flat]
        exploding = generator_select(flat, self.column_types())
        if exploding is not None:
            for c in flat:
                refs = [c] if isinstance(c, str) else c.references()
                cols.check("select", self.node, refs)
            op = MapOperator(exploding[0], "flat_map")
            op.name = f"select({', '.join(exploding[1])})"
            s = self.then(op)
            ts = _selected_timestamps(flat, self.node.timestamp_columns)
            return Stream(dataclasses.replace(s.node, timestamp_columns=ts))
        chosen = plan_select(self.node, flat, self.column_types())
        op = MapOperator(chosen.run, "map", batch=chosen.batch)
        op.name = f"select({chosen.label})"
        s = self.then(op)
        node = dataclasses.replace(s.node, timestamp_columns=chosen.timestamps)
        return Stream(cols.with_columns(node, chosen.columns))

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

    def __getattr__(self, name: str) -> Column:
        """PySpark's `lines.value`: the column `name` (Stream's own attributes come first, so
        a column named like a method, e.g. "count", is `stream["count"]`)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return col(name)

    def __getitem__(self, name: str) -> Column:
        """PySpark's `lines["value"]`: the column `name`."""
        if not isinstance(name, str):
            raise TypeError(f"stream[...] takes a column name, not {name!r}")
        return col(name)

    # PySpark's camelCase names
    withColumn = with_column
    withColumns = with_columns
    withWatermark = with_watermark
    groupBy = group_by
    dropDuplicates = drop_duplicates
    dropDuplicatesWithinWatermark = drop_duplicates_within_watermark
    selectExpr = select_expr

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


def _row_function(
    what: str, fn: Column | Callable[[Row], Any], types: Mapping[str, str]
) -> Callable[[Row], Any]:
    if isinstance(fn, str):
        raise ValueError(
            f"{what}: SQL text {fn!r} is not a column (as in PySpark): pass expr({fn!r})"
        )
    if isinstance(fn, Column):
        return fn.compile(types)
    if not callable(fn):
        raise TypeError(f"{what} takes a Column or a function, not {fn!r}")
    return fn


def _selected_timestamps(flat: list[str | Column], ts: frozenset[str]) -> frozenset[str]:
    """A time column stays one when selected by name or computed from itself alone."""
    kept = {c if isinstance(c, str) else c.name for c in flat if _same_column(c, ts)}
    kept |= {c.name for c in flat if isinstance(c, Column) and c.dtype == "timestamp"}
    return frozenset(kept)


def _same_column(c: str | Column, timestamps: frozenset[str]) -> bool:
    if isinstance(c, str):
        return c in timestamps
    return c.name in timestamps and c.references() == {c.name}


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
