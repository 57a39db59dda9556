"""SQL text in the Stream builder: `filter("amount > 0")`, `select_expr(...)` and
`join(other, expr(...), how)`; the Stream methods delegate here (weir.tables.stream)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from weir.tables.expr import Column
from weir.tables.expr_sql import to_column
from weir.tables.operator import Row
from weir.tables.ops.basic import MapOperator
from weir.tables.ops.join_expr import condition_join

if TYPE_CHECKING:
    from weir.tables.stream import Stream


def sql_column(stream: Stream, text: str) -> Column:
    """`text` as a Column over `stream`'s rows: its column types and qualifiers known."""
    return to_column(text, stream.column_types(), stream.qualifiers())


def select_expr(stream: Stream, texts: Sequence[str]) -> Stream:
    """Spark's `selectExpr`: see `Stream.select_expr`. "*" puts every input column there
    (a later expression of the same name replaces it: a row holds one value per name)."""
    if "*" not in texts:
        return stream.select(*(sql_column(stream, t) for t in texts))
    cols = [None if t == "*" else sql_column(stream, t) for t in texts]
    types = stream.column_types()
    outputs = [(c.name, c.compile(types)) if c is not None else None for c in cols]
    names = [o[0] for o in outputs if o is not None]
    if len(set(names)) != len(names):
        raise ValueError(f"select_expr: a column is selected twice in {list(texts)}; use AS")

    def project(r: Row) -> Row:
        out: Row = {}
        for o in outputs:
            if o is None:
                out.update(r)
            else:
                out[o[0]] = o[1](r)
        return out

    op = MapOperator(project, "map")
    op.name = f"select_expr({', '.join(texts)})"
    s = stream.then(op)
    typed = {c.name for c in cols if c is not None and c.dtype == "timestamp"}
    ts = (stream.node.timestamp_columns - set(names)) | typed
    return type(stream)(dataclasses.replace(s.node, timestamp_columns=ts))


def join_on_condition(
    left: Stream,
    right: Any,
    condition: Column,
    how: str,
    between: Any,
    time_range: Any,
    left_columns: Sequence[str] | None,
    right_columns: Sequence[str] | None,
) -> Stream:
    """`left.join(right, expr(...), how)`: the join node of weir.tables.ops.join_expr, then
    (inner joins) the filter of the condition's other parts."""
    if not isinstance(right, type(left)) or between is not None or time_range is not None:
        raise ValueError(
            "join: an expr(...) condition joins two streams and holds the whole condition "
            "(no between=/time_range=)"
        )
    sides = (left.qualifiers(), right.qualifiers())
    node, rest = condition_join(
        left.node, right.node, condition, how, sides, left_columns, right_columns
    )
    joined = type(left)(node)
    return joined if rest is None else joined.filter(rest)
