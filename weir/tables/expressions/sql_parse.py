"""Parsing SQL expression text with sqlglot (dialect "spark", every function call kept as a
plain call so its name and arguments are the ones written), and the one-line messages about
it. Used by `weir.tables.expressions.expr_sql`."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import sqlglot
from sqlglot import exp
from sqlglot.dialects.spark import Spark
from sqlglot.errors import ParseError, TokenError

_SparkParser: Any = Spark.Parser


class _Dialect(Spark):
    class Parser(_SparkParser):
        FUNCTIONS: ClassVar[dict[str, Any]] = {}  # every call stays exp.Anonymous(name, args)
        FUNCTION_PARSERS: ClassVar[dict[str, Any]] = {
            k: v
            for k, v in _SparkParser.FUNCTION_PARSERS.items()
            if k in {"CAST", "TRY_CAST", "EXTRACT"}
        }


class SqlError(ValueError):
    """An expression Weir refuses; the message is one line."""


def parse(text: str) -> exp.Expression:
    """The sqlglot tree of one SQL expression; ValueError (one line) on a syntax error."""
    if not isinstance(text, str) or not text.strip():
        raise SqlError(f"expr: expected SQL expression text, got {text!r}")
    try:
        trees = sqlglot.parse(text, read=_Dialect)
    except (ParseError, TokenError) as e:
        errors = getattr(e, "errors", None) or [{}]
        first = errors[0]
        where = f" at column {first['col']}" if first.get("col") else ""
        reason = first.get("description") or str(e).splitlines()[0]
        if reason.startswith("Required keyword"):
            reason = "incomplete expression"
        raise SqlError(f"expr: syntax error{where}: {reason} in {quote(text)}") from None
    if len(trees) != 1 or trees[0] is None:
        raise SqlError(f"expr: expected one expression in {quote(text)}")
    tree = cast(exp.Expression, trees[0])
    if isinstance(tree, exp.Query | exp.DDL | exp.DML | exp.Command):
        raise SqlError(f"expr: expected an expression, not a statement, in {quote(text)}")
    return tree


def snippet(node: exp.Expression) -> str:
    """A sub-expression as one line of Spark SQL, shortened, for messages."""
    sql = " ".join(node.sql(dialect="spark").split())
    return sql if len(sql) <= 60 else sql[:57] + "..."


def quote(text: str) -> str:
    return '"' + " ".join(text.split()) + '"'


def literal(node: exp.Expression) -> Any:
    """The Python value of a SQL literal (string, number, boolean, NULL)."""
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    assert isinstance(node, exp.Literal)
    if node.is_string:
        return node.this
    text = str(node.this)
    try:
        return int(text)
    except ValueError:
        return float(text)
