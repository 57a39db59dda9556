"""Aggregates written as SQL text, as `agg(expr("sum(amount) AS total"))` or
`agg(expr("count(DISTINCT user_id)"))` in PySpark: the call is an aggregate function of
`weir.tables.ops.functions.SQL_AGGREGATES`, its arguments SQL expressions (expressions.expr_sql).

Contract: `sql_aggregate(c, types)` returns the aggregate an aggregate `expr(...)` denotes, or
None when `c` is not one; it raises ValueError (one line) for an aggregate Weir cannot run
(an unknown name, DISTINCT on another function than count or sum, an aggregate nested in an
expression). The aggregate is the one the Python call builds (`sum(col("amount"))`), so its
values, nulls and Spark name are the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlglot import exp

from weir.tables.expressions.expr import Column
from weir.tables.expressions.expr_sql import SqlColumn, is_aggregate_call, translate
from weir.tables.expressions.sql_parse import SqlError, literal, quote, snippet
from weir.tables.ops.functions import SQL_AGGREGATES, AggregateFunction

_DISTINCT = {"count": "count_distinct", "sum": "sum_distinct"}


def sql_aggregate(c: Any, types: Mapping[str, str]) -> AggregateFunction | None:
    """The aggregate of `expr("sum(amount) AS total")` in a stream with column `types`."""
    if not isinstance(c, SqlColumn) or not is_aggregate_call(c.tree):
        return None
    tree, text = c.tree, c.text
    node = tree.this if isinstance(tree, exp.Alias) else tree
    assert isinstance(node, exp.Anonymous)
    name, args = node.name.lower(), list(node.expressions)

    def refuse(what: str) -> SqlError:
        return SqlError(f"expr: unsupported {what} '{snippet(node)}' in {quote(text)}")

    if args and isinstance(args[0], exp.Distinct):
        if name not in _DISTINCT or len(args) != 1:
            raise refuse("DISTINCT aggregate")
        name, args = _DISTINCT[name], list(args[0].expressions)
    make = SQL_AGGREGATES.get(name)
    if make is None:
        raise refuse("aggregate function")
    for a in args:
        if any(is_aggregate_call(n) for n in a.walk() if isinstance(n, exp.Expression)):
            raise refuse("aggregate inside an aggregate")
    values: list[Any] = []
    for i, a in enumerate(args):
        if isinstance(a, exp.Star):
            values.append("*")
        elif i > 0 and isinstance(a, exp.Literal | exp.Boolean | exp.Null):
            values.append(literal(a))  # percentile_approx(x, 0.5), as PySpark passes it
        else:
            values.append(_column(a, text, types))
    try:
        out = make(*values)
    except (TypeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SqlError(f"expr: cannot apply {name}(...): {reason} in {quote(text)}") from None
    return out.alias(tree.alias) if isinstance(tree, exp.Alias) else out


def _column(node: exp.Expression, text: str, types: Mapping[str, str]) -> Column:
    c = translate(node, text, types)
    if isinstance(node, exp.Column) and c.field is not None:
        c.name = c.field  # sum(amount) is named "sum(amount)", as the Python call names it
    return c
