"""SQL text in the Stream builder: `filter("amount > 0")`, `select_expr(...)` and
`join(other, expr(...), how)`; the Stream methods delegate here (weir.tables.stream)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from weir.tables.expr import Column, col
from weir.tables.expr_sql import parse, to_column
from weir.tables.operator import Row
from weir.tables.ops.basic import MapOperator
from weir.tables.ops.join_expr import condition_join

if TYPE_CHECKING:
    from weir.tables.stream import Stream


def sql_column(stream: Stream, text: str) -> Column:
    """`text` as a Column over `stream`'s rows: its column types and qualifiers known."""
    return to_column(text, stream.column_types(), stream.qualifiers())


def _whole(r: Row) -> Row:
    return r


def _star(stream: Stream, text: str) -> Callable[[Row], Row] | None:
    """For "*", "alias.*" or "struct.*": a function giving the columns it stands for."""
    if text.strip() == "*":
        return _whole
    tree = parse(text)
    if not isinstance(tree, exp.Column) or not isinstance(tree.this, exp.Star):
        return None
    parts = [p.name for p in tree.parts[:-1]]
    if len(parts) == 1 and parts[0] in stream.qualifiers():
        return _whole
    struct = col(".".join(parts)).compile()

    def fields(r: Row) -> Row:
        v = struct(r)
        return v if isinstance(v, dict) else {}

    return fields


def select_expr(stream: Stream, texts: Sequence[str]) -> Stream:
    """Spark's `selectExpr`: see `Stream.select_expr`. "*" (or "alias.*") puts every input
    column there, "s.*" every field of struct column s (none when s is not a dict); a later
    expression of the same name replaces it, as a row holds one value per name."""
    stars = [_star(stream, t) for t in texts]
    if not any(stars):
        return stream.select(*(sql_column(stream, t) for t in texts))
    cols = [sql_column(stream, t) if f is None else None for t, f in zip(texts, stars, strict=True)]
    types = stream.column_types()
    names = [c.name for c in cols if c is not None]
    if len(set(names)) != len(names):
        raise ValueError(f"select_expr: a column is selected twice in {list(texts)}; use AS")
    outputs = [
        (c.name, c.compile(types), None) if c is not None else ("", None, f)
        for c, f in zip(cols, stars, strict=True)
    ]

    def project(r: Row) -> Row:
        out: Row = {}
        for name, value, spread in outputs:
            if spread is not None:
                out.update(spread(r))
            elif value is not None:
                out[name] = value(r)
        return out

    op = MapOperator(project, "map")
    op.name = f"select_expr({', '.join(texts)})"
    s = stream.then(op)
    typed = {c.name for c in cols if c is not None and c.dtype == "timestamp"}
    kept = stream.node.timestamp_columns if _whole in stars else frozenset()
    return type(stream)(dataclasses.replace(s.node, timestamp_columns=(kept - set(names)) | typed))


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
