"""The stream-stream join's definition: its keys, time-range condition and watermarks, checked
and turned into the plan node that runs `weir.tables.ops.join.StreamJoinOperator`.

Arguments of a stream-stream join:

* `on`: the equality keys: a column name, or a list of names and/or (left, right) pairs.
  A name is one output column (the joined rows agree on it; an outer row takes it from the
  side that is present); a pair keeps both columns. A null key never matches.
* `how`: "inner", "left_outer" ("left", "leftouter") or "right_outer" ("right", "rightouter").
* `between=(col, lower, upper)`: the time-range condition `lower <= col <= upper`, where the
  bounds are expressions over one column of the other side: "order_ts",
  "order_ts + 4 hours", "order_ts - interval 30 minutes". `col` is normally a right-side
  column and the bounds left-side ones; the reverse is recognised from the watermarked
  columns. Or `time_range=(right_col, left_col, lower_offset, upper_offset)`, meaning
  `left_col + lower_offset <= right_col <= left_col + upper_offset` (offsets are durations;
  "-10 minutes" is allowed as text, or a negative int of ms).
* `left_columns` / `right_columns`: optional lists of each side's columns. They name the
  null columns of an outer join's unmatched rows (besides the other side's key and time
  columns, which are always there) and fix the set of clashing names.

Output rows are the union of both rows' columns. A column that is not a shared key and
exists on both sides is renamed `left_<name>` and `right_<name>` (in every output row when
both sides declared it, otherwise in the rows where both sides carry it).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

from weir.tables.ops.combine import RowCombiner, normalize_how, normalize_on
from weir.tables.ops.join import StreamJoinOperator
from weir.tables.plan import Node, input_names
from weir.tables.state.layout import bucket_width_for
from weir.tables.timeutil import Duration, parse_duration
from weir.tables.watermark import event_time_columns

_EXPR = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:([+-])\s*(.+?))?\s*$")


def parse_bound(expr: str) -> tuple[str, int]:
    """Parse "col", "col + 4 hours" or "col - interval 30 minutes" into (col, offset ms)."""
    m = _EXPR.match(expr)
    if m is None:
        raise ValueError(f"cannot parse time bound {expr!r}: expected 'col' or 'col + 4 hours'")
    col, sign, dur = m.group(1), m.group(2), m.group(3)
    if sign is None:
        return col, 0
    ms = parse_duration(dur)
    return col, -ms if sign == "-" else ms


def _offset(value: Duration) -> int:
    if isinstance(value, str) and value.strip().startswith("-"):
        return -parse_duration(value.strip()[1:])
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return parse_duration(value)


def _side_wm_column(node: Node, side: str) -> tuple[str | None, int]:
    cols = event_time_columns(node.watermarks)
    if len(cols) > 1:
        raise ValueError(
            f"the {side} side of a stream-stream join has several watermarked columns "
            f"{sorted(cols)}: watermark each side on one event-time column"
        )
    if not cols:
        return None, 0
    col = next(iter(cols))
    return col, cols[col]


def join_node(
    left: Node,
    right: Node,
    *,
    on: str | Sequence[str | tuple[str, str]] | None = None,
    how: str = "inner",
    between: tuple[str, str, str] | None = None,
    time_range: tuple[str, str, Duration, Duration] | None = None,
    left_columns: Sequence[str] | None = None,
    right_columns: Sequence[str] | None = None,
) -> Node:
    """The plan node joining two streams; see the module docstring.

    Raises ValueError at definition, with the reason, for what Spark refuses: an outer
    stream-stream join without watermarks on both sides and a time range on the
    watermarked columns, a join of an input with itself, an unknown join type.
    """
    keys = normalize_on(on)
    kind = normalize_how(how, ("inner", "left_outer", "right_outer"))
    common = input_names(left) & input_names(right)
    if common:
        raise ValueError(
            f"both sides of a stream-stream join read input(s) {sorted(common)}: the two "
            "sides must come from different inputs"
        )
    lwm, ldelay = _side_wm_column(left, "left")
    rwm, rdelay = _side_wm_column(right, "right")
    left_time: str | None = None
    right_time: str | None = None
    lower = upper = 0
    if between is not None and time_range is not None:
        raise ValueError("pass either between=... or time_range=..., not both")
    if between is not None:
        col, lo_expr, hi_expr = between
        lo_col, lower = parse_bound(lo_expr)
        hi_col, upper = parse_bound(hi_expr)
        if lo_col != hi_col:
            raise ValueError(
                f"time range bounds use two columns ({lo_col!r}, {hi_col!r}): both bounds "
                "must be offsets from the same column of the other side"
            )
        if col == lwm and lo_col == rwm and col != rwm:
            # left_ts in [right_ts + lower, right_ts + upper]
            # <=> right_ts in [left_ts - upper, left_ts - lower]
            left_time, right_time = col, lo_col
            lower, upper = -upper, -lower
        else:
            left_time, right_time = lo_col, col
    elif time_range is not None:
        right_time, left_time, lo_off, hi_off = time_range
        lower, upper = _offset(lo_off), _offset(hi_off)
    if left_time is not None and lower > upper:
        raise ValueError(f"empty time range: lower offset {lower} ms > upper offset {upper} ms")
    # A left row can be evicted once no future right row can match: future right rows have
    # event times above W only when the right side is watermarked on its time-range column.
    left_horizon = upper if right_time is not None and right_time == rwm else None
    right_horizon = -lower if left_time is not None and left_time == lwm else None
    if kind != "inner":
        kept = "left" if kind == "left_outer" else "right"
        if left_horizon is None or right_horizon is None:
            raise ValueError(
                f"Stream-stream {kind.replace('_', ' ')} join between two streaming "
                "DataFrames/Datasets is not supported without a watermark on both sides and "
                "a time-range condition on the watermarked columns (between=... or "
                f"time_range=...): otherwise the engine cannot know when an unmatched {kept} "
                "row will never match, so it could neither emit it with nulls nor drop it "
                f"(left watermark: {lwm}, right watermark: {rwm}, "
                f"time range: {left_time} / {right_time})"
            )
    elif left_horizon is None or right_horizon is None:
        warnings.warn(
            "stream-stream inner join without watermarks on both sides and a time range on "
            "the watermarked columns: the state of the unbounded side grows forever",
            stacklevel=3,
        )
    left_fb = [lc for lc, _ in keys] + ([left_time] if left_time else [])
    right_fb = [rc for _, rc in keys] + ([right_time] if right_time else [])
    combiner = RowCombiner(keys, left_columns, right_columns, left_fb, right_fb)
    span = max(ldelay, rdelay, abs(upper), abs(lower), 60_000)
    op = StreamJoinOperator(
        keys,
        kind,
        left_time,
        right_time,
        lower,
        upper,
        lwm,
        rwm,
        left_horizon,
        right_horizon,
        combiner,
        bucket_width_for(span),
    )
    lts, rts = left.timestamp_columns, right.timestamp_columns
    clash_ts = (lts & rts) - combiner.shared
    if combiner.static_clash:
        clash_ts |= (lts | rts) & combiner.static_clash
    op.extra_ts = {f"left_{c}" for c in clash_ts} | {f"right_{c}" for c in clash_ts}
    nodes = (left, right)
    ts = lts | rts | frozenset(op.extra_ts)
    wms = tuple(w for n in nodes for w in n.watermarks)
    return Node(nodes, op, None, ts, wms)
