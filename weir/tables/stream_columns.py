"""`Stream`'s column methods: filter/where, with_column(s), select, select_expr, alias and
PySpark's `stream.col` / `stream["col"]`, over Columns, SQL text and Python functions.

Expressions are checked against the stream's known columns (weir.tables.columns), compiled in
its type scope and run as generated batch code (expressions.expr_codegen); an expression or
function that raises on a row dead-letters that row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

from weir.tables import columns as cols
from weir.tables.expressions.expr import Column, col, scope
from weir.tables.expressions.expr_codegen import filter_rows, set_columns
from weir.tables.expressions.expr_collections import (
    GeneratorColumn,
    generator_column,
    generator_select,
)
from weir.tables.operator import Operator, Row
from weir.tables.ops.basic import MapOperator
from weir.tables.plan import Node, input_names
from weir.tables.select import plan_select
from weir.tables.timeutil import to_millis


class ColumnMethods:
    """The column methods of `weir.tables.stream.Stream` (which provides `then`)."""

    node: Node
    alias_name: str | None

    def __init__(self, node: Node, alias: str | None = None) -> None:
        self.node = node
        self.alias_name = alias

    def then(self, op: Operator) -> Self:
        """Append an operator to the chain (Stream's)."""
        raise NotImplementedError

    def column_types(self) -> dict[str, str]:
        """The Spark types of this stream's columns known at definition ({name: "timestamp"}),
        the scope in which its expressions are compiled (weir.tables.columns)."""
        return {**cols.types(self.node), **dict.fromkeys(self.node.timestamp_columns, "timestamp")}

    def _same_columns(self, s: Self) -> Self:
        """`s` (one operator after this stream) with this stream's known columns."""
        return type(self)(dataclasses.replace(s.node, columns=self.node.columns))

    def filter(self, condition: str | Column | Callable[[Row], Any]) -> Self:
        """Keep rows for which `condition` holds: a Column (`col("amount") > 0`) or SQL text
        ("amount > 0", see expressions.expr_sql) keeps a row only where it is True (None drops
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

    def alias(self, name: str) -> Self:
        """Spark's `df.alias(name)`: SQL text may qualify this stream's columns as
        `name.column` (in a join condition, or in this stream's `filter`/`select_expr`).
        A stream read from one input is also known by the input's name; the alias holds for
        this Stream object (the next method call returns a stream without it)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"alias needs a name like 'orders', got {name!r}")
        return type(self)(self.node, name)

    def qualifiers(self) -> frozenset[str]:
        """The names qualifying this stream's columns in SQL text: its alias, and its input's
        name when it reads a single input."""
        names = input_names(self.node)
        own = {self.alias_name} if self.alias_name else set()
        return frozenset(own | (names if len(names) == 1 else set()))

    def select_expr(self, *texts: str) -> Self:
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
        return type(self)(dataclasses.replace(self.then(op).node, timestamp_columns=ts))

    def _sql(self, text: str) -> Column:
        from weir.tables.expressions.expr_sql import to_column

        return to_column(text, self.column_types(), self.qualifiers())

    def _scoped(self, c: Any) -> Any:
        """An `expr(...)` Column translated again with this stream's types and qualifiers."""
        in_scope = getattr(c, "in_scope", None)
        return c if in_scope is None else in_scope(self.column_types(), self.qualifiers())

    def with_column(
        self, name: str, fn: Column | Callable[[Row], Any], *, timestamp: bool = False
    ) -> Self:
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
            return type(self)(dataclasses.replace(s.node, timestamp_columns=ts))
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
        return type(self)(cols.with_columns(dataclasses.replace(s.node, timestamp_columns=ts), out))

    def with_columns(self, columns: Mapping[str, Column | Callable[[Row], Any]]) -> Self:
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
        return type(self)(cols.with_columns(dataclasses.replace(s.node, timestamp_columns=ts), out))

    def select(self, *columns: str | Column | Sequence[str | Column]) -> Self:
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
            return type(self)(dataclasses.replace(s.node, timestamp_columns=ts))
        chosen = plan_select(self.node, flat, self.column_types())
        op = MapOperator(chosen.run, "map", batch=chosen.batch)
        op.name = f"select({chosen.label})"
        s = self.then(op)
        node = dataclasses.replace(s.node, timestamp_columns=chosen.timestamps)
        return type(self)(cols.with_columns(node, chosen.columns))

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
    selectExpr = select_expr


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
