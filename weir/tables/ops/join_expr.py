"""Stream-stream join conditions written as SQL, as the course writes them::

    orders_wm.join(shipments_wm, expr(\"\"\"orders.order_id = shipments.order_id AND
        ship_time >= order_time AND ship_time <= order_time + interval 24 hours\"\"\"), "inner")

The condition is split into its AND-ed parts and analysed into what `join_node` takes, so the
join runs, and evicts state, exactly as with `on=` / `time_range=`:

* `l.a = r.b` between a column of each side is an equality key (`on=[("a", "b")]`; one
  shared output column "a" when both are named alike, as `on="a"`);
* a comparison (`>=`, `<=`, `>`, `<`, or BETWEEN) between a time column of each side (a
  timestamp or watermarked column), each plus or minus constant intervals, is a time bound.
  One lower and one upper bound on the same two columns make the time range
  `left_time + lower <= right_time <= left_time + upper`. Times are epoch ms, so a strict
  bound is the inclusive bound 1 ms inside (`r > l` is `r >= l + 1 ms`): the state
  watermark is then Spark's (StreamingJoinHelper: W - upper for `<`, W - upper - 1 for `<=`).
* any other part (a second bound, a comparison of other columns, a function...) is applied
  to the joined rows of an inner join, where a qualified column `orders.amount` reads the
  left row's value (`left_amount` when both sides have `amount`). An outer join refuses it
  (Spark would emit the rows it rejects with nulls; Weir does not implement that).

Columns are attributed to a side by their qualifier (`Stream.alias(name)`, or the input's
name for a stream reading one input), else by the side's known columns (timestamp and
watermarked columns, `left_columns` / `right_columns`); an unqualified key column of unknown
side is taken from the side opposite the other operand. Refusals are one-line ValueErrors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlglot import exp

from weir.tables.expressions.expr import Column, Compiled, col
from weir.tables.expressions.expr_sql import translate
from weir.tables.expressions.sql_parse import quote, snippet
from weir.tables.ops.combine import normalize_how
from weir.tables.ops.join_condition import join_node
from weir.tables.plan import Node
from weir.tables.watermark import event_time_columns

_MIRROR: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
}


@dataclass
class JoinCondition:
    """A condition analysed into `join_node` arguments and the remaining parts."""

    on: list[str | tuple[str, str]] = field(default_factory=list)
    time_columns: tuple[str, str] | None = None  # (left, right)
    lower: int | None = None
    upper: int | None = None
    bounds: list[exp.Expression] = field(default_factory=list)
    residual: list[exp.Expression] = field(default_factory=list)

    def time_range(self) -> tuple[str, str, int, int] | None:
        """`join_node`'s time_range=(right_col, left_col, lower, upper), when bounded."""
        if self.time_columns is None or self.lower is None or self.upper is None:
            return None
        return self.time_columns[1], self.time_columns[0], self.lower, self.upper


class _Sides:
    def __init__(
        self,
        nodes: tuple[Node, Node],
        qualifiers: tuple[frozenset[str], frozenset[str]],
        declared: tuple[Sequence[str] | None, Sequence[str] | None],
        text: str,
    ) -> None:
        self.qualifiers = qualifiers
        self.text = text
        self.times = tuple(
            frozenset(n.timestamp_columns) | frozenset(event_time_columns(n.watermarks))
            for n in nodes
        )
        pairs = zip(self.times, declared, strict=True)
        self.known = tuple(t | frozenset(d or ()) for t, d in pairs)

    def side(self, node: exp.Column) -> tuple[int | None, str] | None:
        """(0 left / 1 right / None unknown, column name), or None for a struct path."""
        parts = [p.name for p in node.parts]
        if len(parts) == 2:
            hits = [i for i in (0, 1) if parts[0] in self.qualifiers[i]]
            if len(hits) == 1:
                return hits[0], parts[1]
            return None
        if len(parts) != 1:
            return None
        hits = [i for i in (0, 1) if parts[0] in self.known[i]]
        if len(hits) == 2:
            raise ValueError(
                f"join: column {parts[0]!r} is on both sides: qualify it "
                f"(e.g. {_name(self.qualifiers[0])}.{parts[0]}) in {quote(self.text)}"
            )
        return (hits[0] if hits else None), parts[0]


def _name(qualifiers: frozenset[str]) -> str:
    return min(qualifiers) if qualifiers else "<alias>"


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren | exp.Alias):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    if isinstance(node, exp.Between):
        low, high = node.args["low"], node.args["high"]
        return [exp.GTE(this=node.this, expression=low), exp.LTE(this=node.this, expression=high)]
    return [node]


def _linear(node: exp.Expression, text: str) -> tuple[exp.Column | None, int] | None:
    """`column ± intervals` as (column, offset ms), or a constant interval as (None, ms)."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Column):
        return node, 0
    if isinstance(node, exp.Add | exp.Sub):
        a, b = _linear(node.this, text), _linear(node.expression, text)
        if a is None or b is None or (a[0] is not None and b[0] is not None):
            return None
        if isinstance(node, exp.Sub):
            return (a[0], a[1] - b[1]) if b[0] is None else None
        return a[0] if a[0] is not None else b[0], a[1] + b[1]
    if isinstance(node, exp.Interval):
        c = translate(node, text, {})
        return None, c.compile()({})
    return None


def analyse(
    condition: exp.Expression,
    text: str,
    nodes: tuple[Node, Node],
    qualifiers: tuple[frozenset[str], frozenset[str]],
    declared: tuple[Sequence[str] | None, Sequence[str] | None] = (None, None),
) -> JoinCondition:
    """Split `condition` into equality keys, a time range and the remaining parts."""
    sides = _Sides(nodes, qualifiers, declared, text)
    out = JoinCondition()
    for part in _conjuncts(condition):
        if not (_key(part, sides, out) or _bound(part, sides, out)):
            out.residual.append(part)
    return out


def _key(part: exp.Expression, sides: _Sides, out: JoinCondition) -> bool:
    if not isinstance(part, exp.EQ):
        return False
    a, b = part.this, part.expression
    if not isinstance(a, exp.Column) or not isinstance(b, exp.Column):
        return False
    sa, sb = sides.side(a), sides.side(b)
    if sa is None or sb is None:
        return False
    if sa[0] is None and sb[0] is None:
        raise ValueError(
            f"join: cannot tell which side '{snippet(part)}' compares: qualify the columns "
            f"({_name(sides.qualifiers[0])}.{sa[1]}) in {quote(sides.text)}"
        )
    ia = sa[0] if sa[0] is not None else 1 - (sb[0] or 0)
    ib = sb[0] if sb[0] is not None else 1 - ia
    if ia == ib:
        return False
    left, right = (sa[1], sb[1]) if ia == 0 else (sb[1], sa[1])
    out.on.append(left if left == right else (left, right))
    return True


def _bound(part: exp.Expression, sides: _Sides, out: JoinCondition) -> bool:
    kind = type(part)
    if kind not in _MIRROR:
        return False
    a, b = _linear(part.this, sides.text), _linear(part.expression, sides.text)
    if a is None or b is None or a[0] is None or b[0] is None:
        return False
    sa, sb = sides.side(a[0]), sides.side(b[0])
    if sa is None or sb is None or sa[0] is None or sb[0] is None or sa[0] == sb[0]:
        return False
    if sa[1] not in sides.times[sa[0]] or sb[1] not in sides.times[sb[0]]:
        return False
    if sa[0] == 1:  # right + ca OP left + cb  <=>  right OP left + (cb - ca)
        columns, offset = (sb[1], sa[1]), b[1] - a[1]
    else:  # left + ca OP right + cb  <=>  right MIRROR(OP) left + (ca - cb)
        columns, offset, kind = (sa[1], sb[1]), a[1] - b[1], _MIRROR[kind]
    if out.time_columns not in (None, columns):
        return False
    if kind in (exp.GT, exp.GTE):
        if out.lower is not None:
            return False
        out.lower = offset + (1 if kind is exp.GT else 0)
    else:
        if out.upper is not None:
            return False
        out.upper = offset - (1 if kind is exp.LT else 0)
    out.time_columns = columns
    out.bounds.append(part)
    return True


def condition_join(
    left: Node,
    right: Node,
    condition: Column,
    how: str,
    qualifiers: tuple[frozenset[str], frozenset[str]],
    left_columns: Sequence[str] | None = None,
    right_columns: Sequence[str] | None = None,
) -> tuple[Node, Column | None]:
    """The join node for an `expr(...)` condition, and the filter of its remaining parts
    (None when there are none); see the module docstring. ValueError (one line) for what
    Weir cannot run, including what `join_node` refuses."""
    tree, text = getattr(condition, "tree", None), getattr(condition, "text", "")
    if tree is None:
        raise ValueError(
            f"join: the condition {condition.name!r} must be SQL text, expr('...'), or use "
            "on=[...] with between=(...)"
        )
    cond = analyse(tree, text, (left, right), qualifiers, (left_columns, right_columns))
    if not cond.on:
        raise ValueError(
            "join: a streaming join needs an equality key between the two sides "
            f"(orders.id = shipments.id) in {quote(text)}"
        )
    kind = normalize_how(how, ("inner", "left_outer", "right_outer"))
    if cond.time_range() is None and cond.bounds:  # one-sided: bounds no state, a filter
        if kind != "inner":
            missing = "upper" if cond.upper is None else "lower"
            raise ValueError(
                f"join: the time bound '{snippet(cond.bounds[0])}' has no {missing} bound on "
                f"the same columns; a {kind} join needs both (a time range) in {quote(text)}"
            )
        cond.residual.extend(cond.bounds)
    if cond.residual and kind != "inner":
        raise ValueError(
            f"join: '{snippet(cond.residual[0])}' is neither an equality key nor a time "
            f"bound; a {kind} join applies only those (an inner join applies any condition) "
            f"in {quote(text)}"
        )
    node = join_node(
        left,
        right,
        on=cond.on,
        how=how,
        time_range=cond.time_range(),
        left_columns=left_columns,
        right_columns=right_columns,
    )
    if not cond.residual:
        return node, None
    sides = _Sides((left, right), qualifiers, (left_columns, right_columns), text)
    types = dict.fromkeys(node.timestamp_columns, "timestamp")
    residual = cast(exp.Expression, exp.and_(*cond.residual))
    return node, translate(residual, text, types, resolve=lambda p: _joined(p, sides))


def _joined(parts: list[str], sides: _Sides) -> Column | None:
    """A qualified column in a joined row (`orders.amount`, `orders.data.id`): the side's
    column, `left_<c>` / `right_<c>` when both sides had c; then the struct path, if any."""
    hits = [i for i in (0, 1) if len(parts) > 1 and parts[0] in sides.qualifiers[i]]
    if len(hits) != 1:
        return None
    name, path = parts[1], parts[2:]
    renamed = ("left_", "right_")[hits[0]] + name

    walk = col(".".join(["v", *path])).compile()  # the struct path, as col("a.b") reads it

    def build() -> Compiled:
        return lambda r: walk({"v": r[renamed] if renamed in r else r.get(name)})

    c = Column(build, parts[-1], (name, renamed))
    c.field = None if path else name
    return c
