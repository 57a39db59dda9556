"""`Stream.select`'s outputs: names, Columns and stars ("*", "data.*"), resolved once at
definition against the stream's known columns (weir.tables.columns).

A star expands at definition when the columns are known: "*" to every column, "data.*" to
the fields of struct column `data` (a `from_json` column, a schema's struct). When they are
not known, it expands per row: "*" to the row's columns, "data.*" to the keys of the row's
`data` dict (nothing when it is null or not a dict), and the output columns are unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from weir.tables import columns as cols
from weir.tables.expressions.expr import Column, col, scope
from weir.tables.expressions.expr_codegen import RowsFn, select_rows
from weir.tables.operator import Row
from weir.tables.plan import Node
from weir.tables.types import TimestampType

Part = tuple[str | None, Callable[[Row], Any]]
"""(output name, value function), or (None, function giving several columns as a dict)."""


@dataclass
class Selection:
    """What a select outputs: the row function, its name for the plan, known columns and the
    timestamp columns."""

    run: Callable[[Row], Row]
    batch: RowsFn | None
    """`run` over a whole batch as generated code (None with a star expanded per row)."""
    label: str
    columns: cols.Columns | None
    timestamps: frozenset[str]


def plan_select(
    node: Node, items: Sequence[str | Column], scope_types: Mapping[str, str]
) -> Selection:
    """Resolve `items` against `node`; raises ValueError (one line) for an unknown column, a
    star of a column that is not a struct, or an output name given twice."""
    known = cols.known(node)
    ts_in = node.timestamp_columns
    parts: list[Part] = []
    exprs: list[tuple[str, Column]] = []  # the same outputs as expressions, for codegen
    out: cols.Columns = {}
    ts: set[str] = set()
    dynamic = False
    for item in items:
        if isinstance(item, Column):
            cols.check("select", node, item.references())
            parts.append((item.name, item.compile(scope_types)))
            exprs.append((item.name, item))
            out[_fresh(item.name, out)] = cols.result_type(item, scope_types)
            if cols.result_type(item, scope_types) == "timestamp" or _same_column(item, ts_in):
                ts.add(item.name)
        elif isinstance(item, str) and (item == "*" or item.endswith(".*")):
            expanded = _star(node, item, known, scope_types)
            if expanded is None:
                dynamic = True
                parts.append((None, _dynamic_star(item[:-2] if item != "*" else None)))
                if item == "*":
                    ts |= ts_in
                continue
            for name, getter, kind, is_ts in expanded:
                parts.append((name, getter))
                exprs.append((name, _closure(getter, name)))
                out[_fresh(name, out)] = kind
                if is_ts:
                    ts.add(name)
        elif isinstance(item, str):
            cols.check("select", node, [item])
            parts.append((item, _getter(item)))
            exprs.append((item, _key(item)))
            out[item] = scope_types.get(item)
            if item in ts_in:
                ts.add(item)
        else:
            raise TypeError(f"select takes column names or Columns, not {item!r}")
    label = ", ".join(n if n is not None else "*" for n, _ in parts)
    batch = None
    if not dynamic:
        with scope(scope_types):
            batch = select_rows(list(dict(exprs).items()))  # a name given twice is one column
    return Selection(_runner(parts, dynamic), batch, label, None if dynamic else out, frozenset(ts))


def _star(
    node: Node, item: str, known: cols.Columns | None, scope: Mapping[str, str]
) -> list[tuple[str, Callable[[Row], Any], str | None, bool]] | None:
    if item == "*":
        if known is None:
            return None
        return [(c, _getter(c), t, c in node.timestamp_columns) for c, t in known.items()]
    parent = item[:-2]
    cols.check("select", node, [parent])
    type_name = scope.get(parent)
    struct = cols.struct_fields(type_name)
    if struct is None:
        if type_name is not None:
            raise ValueError(f"select: {item!r}: column {parent!r} is {type_name}, not a struct")
        return None
    return [
        (
            f.name,
            _field(parent, f.name),
            f.dataType.simpleString(),
            isinstance(f.dataType, TimestampType),
        )
        for f in struct
    ]


def _fresh(name: str, seen: Mapping[str, Any]) -> str:
    if name in seen:
        raise ValueError(f"select: column {name!r} is selected twice; use alias(...)")
    return name


def _same_column(c: Column, timestamps: frozenset[str]) -> bool:
    return c.name in timestamps and c.references() == {c.name}


def _closure(getter: Callable[[Row], Any], name: str) -> Column:
    return Column(lambda: getter, name)


def _key(name: str) -> Column:
    """The row field named exactly `name`, dots and all."""
    if "`" in name:
        return Column(lambda: _getter(name), name, (name,))
    return col(f"`{name}`")


def _getter(name: str) -> Callable[[Row], Any]:
    return lambda r: r.get(name)


def _field(parent: str, name: str) -> Callable[[Row], Any]:
    def get(r: Row) -> Any:
        v = r.get(parent)
        return v.get(name) if isinstance(v, dict) else None

    return get


def _dynamic_star(parent: str | None) -> Callable[[Row], Any]:
    if parent is None:
        return dict

    def fields(r: Row) -> Any:
        v = r.get(parent)
        return dict(v) if isinstance(v, dict) else {}

    return fields


def _runner(parts: list[Part], dynamic: bool) -> Callable[[Row], Row]:
    if not dynamic:
        fixed = [(n, f) for n, f in parts if n is not None]
        return lambda r: {n: f(r) for n, f in fixed}

    def run(r: Row) -> Row:
        row: Row = {}
        for n, f in parts:
            if n is None:
                row.update(f(r))
            else:
                row[n] = f(r)
        return row

    return run
