"""Columns known at definition: each plan node's output columns and their Spark types
(`Node.columns`), propagated by the builder from the input's schema, and the check that refuses
an expression reading a column the stream does not have, as Spark's analyzer does.

Known columns start at an input with a schema (plus its record columns) and become unknown
(None) after an operator whose output cannot be told without running it (a Python `map`,
`flat_map`, arbitrary state). Where they are unknown nothing is checked. Everything here runs
once, when the query is defined: no per-row cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from weir.tables.ddl import type_of_name
from weir.tables.plan import Node
from weir.tables.types import StructType

Columns = dict[str, str | None]
"""{column: Spark type name or None (type unknown)}, in output order."""


def known(node: Node) -> Columns | None:
    """The node's known columns, or None when they are unknown."""
    return None if node.columns is None else dict(node.columns)


def with_columns(node: Node, columns: Mapping[str, str | None] | None) -> Node:
    """`node` whose known columns are `columns` (None: unknown)."""
    cols = None if columns is None else tuple(columns.items())
    return dataclasses.replace(node, columns=cols)


def check(what: str, node: Node, names: Iterable[str]) -> None:
    """Raise ValueError (one line) if a name in `names` is not a column of `node` (when its
    columns are known): "filter: unknown column 'amout' (columns: amount, user_id)"."""
    if node.columns is None:
        return
    have = [c for c, _ in node.columns]
    for name in names:
        if name not in have:
            listed = ", ".join(have) if have else "none"
            raise ValueError(f"{what}: unknown column {name!r} (columns: {listed})")


def types(node: Node) -> dict[str, str]:
    """{column: Spark type name} of the columns whose type is known."""
    return {c: t for c, t in node.columns or () if t is not None}


def struct_fields(type_name: str | None) -> StructType | None:
    """The StructType a type name says ("struct<a:int,b:string>"), None if not a struct."""
    if type_name is None or not type_name.startswith("struct<"):
        return None
    found = type_of_name(type_name)
    return found if isinstance(found, StructType) else None


def input_columns(
    schema_types: Mapping[str, str] | None, record_types: Mapping[str, str]
) -> Columns | None:
    """The known columns of an input: its schema's fields then its record columns (a record
    column replaces a field of the same name); None without a schema."""
    if schema_types is None:
        return None
    out: Columns = dict(schema_types)
    out.update(record_types)
    return out


def aggregate_columns(
    node: Node, keys: Sequence[str], window: Any, names: Sequence[str], inputs: Iterable[str]
) -> Columns | None:
    """Check a group_by/agg's key, window and input columns; return its output columns:
    the keys, window_start/window_end with a window, then the aggregates."""
    time_column = getattr(window, "column", None)
    check("group_by", node, [*keys, *([time_column] if time_column else [])])
    check("agg", node, inputs)
    cols = known(node)
    if cols is None:
        return None
    out: Columns = {k: cols[k] for k in keys}
    if window is not None:
        out.update({"window_start": "timestamp", "window_end": "timestamp"})
    out.update(dict.fromkeys(names))
    return out


def join_columns(left: Node, right: Node, keys: Sequence[tuple[str, str]]) -> Columns | None:
    """Check a stream-stream join's (left, right) key columns against each side; its output
    columns when both sides' are known: the union, a shared key once, any other name on both
    sides renamed left_<name> / right_<name> (as weir.tables.ops.combine does)."""
    check("join (left side)", left, [lc for lc, _ in keys])
    check("join (right side)", right, [rc for _, rc in keys])
    lcols, rcols = known(left), known(right)
    if lcols is None or rcols is None:
        return None
    shared = {lc for lc, rc in keys if lc == rc}
    clash = (lcols.keys() & rcols.keys()) - shared
    out: Columns = {}
    for c, t in lcols.items():
        out[f"left_{c}" if c in clash else c] = t
    for c, t in rcols.items():
        if c not in shared:
            out[f"right_{c}" if c in clash else c] = t
    return out


def union_columns(nodes: Sequence[Node]) -> Columns | None:
    """A union's columns: the first input's, when every input's are known and the same names
    (rows are matched by column name)."""
    cols = [known(n) for n in nodes]
    first = cols[0]
    if first is None or any(c is None or c.keys() != first.keys() for c in cols):
        return None
    return first


def result_type(c: Any, scope: Mapping[str, str]) -> str | None:
    """The Spark type an output expression is known to give: a Column's `dtype`, or for a
    bare `col(name)` the type of that column in `scope`; None for a function or unknown."""
    dtype = getattr(c, "dtype", None)
    if dtype is not None:
        return str(dtype)
    field = getattr(c, "field", None)
    return scope.get(field) if isinstance(field, str) else None


def added(
    node: Node, new: Mapping[str, Any], scope: Mapping[str, str], timestamps: Iterable[str]
) -> Columns | None:
    """The known columns after with_column(s): each of `new` set (added at the end, or
    replaced in place) with its type (`timestamps`: made timestamp columns)."""
    out = known(node)
    if out is None:
        return None
    ts = set(timestamps)
    for name, c in new.items():
        out[name] = "timestamp" if name in ts else result_type(c, scope)
    return out
