"""SQL text in the Stream builder's `select_expr`: which texts stand for several columns
("*", "alias.*", "struct.*") and the row function of the projection; `weir.tables.stream`
makes the operator."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp

from weir.tables.expressions.expr import Column, col
from weir.tables.expressions.expr_sql import to_column
from weir.tables.expressions.sql_parse import parse
from weir.tables.operator import Row


@dataclass(frozen=True)
class Projection:
    """`select_expr` with a star: the row function, the named outputs, those typed
    "timestamp", and whether the whole input row is kept (its time columns stay)."""

    project: Callable[[Row], Row]
    names: frozenset[str]
    typed: frozenset[str]
    whole: bool


def _whole(r: Row) -> Row:
    return r


def _star(text: str, qualifiers: frozenset[str]) -> Callable[[Row], Row] | None:
    """For "*", "alias.*" or "struct.*": a function giving the columns it stands for."""
    if text.strip() == "*":
        return _whole
    tree = parse(text)
    if not isinstance(tree, exp.Column) or not isinstance(tree.this, exp.Star):
        return None
    parts = [p.name for p in tree.parts[:-1]]
    if len(parts) == 1 and parts[0] in qualifiers:
        return _whole
    struct = col(".".join(parts)).compile()

    def fields(r: Row) -> Row:
        v = struct(r)
        return v if isinstance(v, dict) else {}

    return fields


def select_expr(
    texts: Sequence[str], types: Mapping[str, str], qualifiers: frozenset[str]
) -> list[Column] | Projection:
    """The Columns of `texts` (for `Stream.select`), or, with a star among them, the
    projection: "*" puts every input column there, "s.*" every field of struct column s
    (none when s is not a dict); a later expression of the same name replaces it, as a row
    holds one value per name. ValueError (one line) for what Weir cannot run."""
    stars = [_star(t, qualifiers) for t in texts]
    pairs = zip(texts, stars, strict=True)
    cols = [to_column(t, types, qualifiers) if f is None else None for t, f in pairs]
    if not any(stars):
        return [c for c in cols if c is not None]
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

    typed = frozenset(c.name for c in cols if c is not None and c.dtype == "timestamp")
    return Projection(project, frozenset(names), typed, _whole in stars)
