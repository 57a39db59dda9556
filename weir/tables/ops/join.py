"""Stream-stream joins (Spark's symmetric hash join, micro-batch).

`left.join(right, on=..., how=..., between=...)` with `right` a stream builds `join_node`;
with a static table, see `weir.tables.ops.static`.

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

Semantics (W(k) the join's input eviction watermark in batch k, L(k) its input watermark of
batch k-1; see weir.tables.watermark):

* A row of either side whose watermarked event time is at or before L(k) is late: it goes
  to `ctx.late_rows` and joins nothing.
* In each batch the left rows are joined with the right rows held in state and stored;
  then the right rows are joined with the left rows held (this batch's included) and
  stored. Every pair of non-late rows that satisfies the condition is emitted exactly once,
  in the batch in which the later of the two arrives.
* With the time range `R + lo <= ... <= R + hi` expressed as
  `left_ts + lo <= right_ts <= left_ts + hi`, and future rows of a watermarked side having
  event times above W(k), a left row is kept while `left_ts + hi >= W(k)` and a right row
  while `right_ts - lo >= W(k)` (Spark's state watermarks W - hi - 1 and W + lo - 1; only
  when the other side is watermarked on the time-range column; otherwise that side is kept
  forever, which is allowed only for inner joins).
* An outer join emits a row of the preserved side with nulls for the other side exactly
  once, when it leaves the state without ever having matched, that is in the first batch
  whose W(k) passes its horizon (the batch of its arrival if W is already past it).

Stream-stream joins support only the append output mode, as in Spark.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from weir.tables.operator import BatchContext, MultiInputOperator, Row
from weir.tables.ops.combine import JoinType, RowCombiner, normalize_how, normalize_on
from weir.tables.plan import Node, input_names
from weir.tables.state.layout import TimeIndex, bucket_width_for, encode_time
from weir.tables.state.store import StateView
from weir.tables.timeutil import Duration, parse_duration
from weir.tables.watermark import event_time, event_time_columns

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


class StreamJoinOperator(MultiInputOperator):
    """The stream-stream join operator; see the module docstring for the semantics.

    State layout per side (namespace b"L" or b"R"):

    * `ns + b"k" + JSON(key values)` -> list of [event time, matched 0/1, row] in arrival
      order: one `get` per key per batch, one write per touched key per batch;
    * a `TimeIndex` under `ns + b"x"` of (expiry, JSON key) -> 1 for eviction, where expiry
      is the event time plus the side's horizon (only for sides that can be evicted).
    """

    stateful = True

    def __init__(
        self,
        keys: list[tuple[str, str]],
        how: JoinType,
        left_time: str | None,
        right_time: str | None,
        lower: int,
        upper: int,
        left_late_col: str | None,
        right_late_col: str | None,
        left_horizon: int | None,
        right_horizon: int | None,
        combiner: RowCombiner,
        width_ms: int,
    ) -> None:
        self.keys = keys
        self.how: JoinType = how
        self.left_time = left_time
        self.right_time = right_time
        self.lower = lower
        self.upper = upper
        self.left_late_col = left_late_col
        self.right_late_col = right_late_col
        self.left_horizon = left_horizon
        self.right_horizon = right_horizon
        self.combiner = combiner
        self.width = width_ms
        self.name = f"join({how})"
        self.extra_ts: set[str] = set()

    def partition_columns(self, parent: int) -> tuple[str, ...] | None:
        return tuple(pair[parent] for pair in self.keys)

    def default_state_name(self) -> str:
        on = ", ".join(left if left == right else f"{left}={right}" for left, right in self.keys)
        return f"join({self.how}, {on})"

    def fingerprint(self) -> dict[str, Any]:
        """Join type, keys, time columns and range, and the time index's bucket width."""
        return {
            "kind": "join",
            "how": self.how,
            "keys": [list(k) for k in self.keys],
            "time_columns": [self.left_time, self.right_time],
            "range_ms": [self.lower, self.upper],
            "time_bucket_ms": self.width,
        }

    def check_output_mode(self, mode: str, has_watermark: bool) -> None:
        """Spark: stream-stream joins support only the append output mode."""
        if mode != "append":
            raise ValueError(
                "Join between two streaming DataFrames/Datasets is not supported in "
                f"{mode.capitalize()} output mode, only in Append output mode"
            )

    def timestamp_columns(self) -> set[str]:
        return set(self.extra_ts)

    def output_watermark(self, input_watermark: int) -> int | None:
        """Spark's rule: the minimum of the input watermark and each side's state watermark,
        so that a joined row is never late downstream while either of its rows may still
        join."""
        held = [w for w in self.state_watermarks(input_watermark) if w is not None]
        return min([*held, input_watermark])

    def state_watermarks(self, wm: int) -> tuple[int | None, int | None]:
        """(left, right): at or below it, a side's rows can match no future row of the other
        side (Spark's state watermarks; None: kept, as far as the condition tells)."""
        lwm, rwm = self.left_late_col, self.right_late_col
        if any(lc == lwm or rc == rwm for lc, rc in self.keys):
            return wm, wm
        if self.right_time is None or self.left_time is None:
            return None, None
        # Future rows of a side are above W: left_ts >= right_ts - upper gives left rows
        # W - upper, right_ts >= left_ts + lower gives right rows W + lower ("-1": inclusive).
        left = wm - self.upper - 1 if lwm is not None and self.right_time == rwm else None
        right = wm + self.lower - 1 if rwm is not None and self.left_time == lwm else None
        return left, right

    def process_multi(
        self, inputs: list[list[Row]], state: StateView, ctx: BatchContext
    ) -> list[Row]:
        """Join one batch of left rows and right rows; see the module docstring."""
        left_rows, right_rows = inputs[0], inputs[1] if len(inputs) > 1 else []
        cache: dict[bytes, list[list[Any]]] = {}
        dirty: set[bytes] = set()
        out: list[Row] = []
        lidx = TimeIndex(state, b"Lx", self.width)
        ridx = TimeIndex(state, b"Rx", self.width)
        self._side(left_rows, True, state, ctx, cache, dirty, out, lidx)
        self._side(right_rows, False, state, ctx, cache, dirty, out, ridx)
        wm = ctx.watermark
        if wm is not None:
            self._evict(True, wm, state, cache, dirty, out, lidx)
            self._evict(False, wm, state, cache, dirty, out, ridx)
        lidx.flush()
        ridx.flush()
        for key in dirty:
            entries = cache[key]
            if entries:
                state.put(key, entries)
            else:
                state.delete(key)
        return out

    def _side(
        self,
        rows: list[Row],
        is_left: bool,
        state: StateView,
        ctx: BatchContext,
        cache: dict[bytes, list[list[Any]]],
        dirty: set[bytes],
        out: list[Row],
        idx: TimeIndex,
    ) -> None:
        if not rows:
            return
        late = ctx.late_watermark
        if is_left:
            own, other = b"Lk", b"Rk"
            key_cols = [lc for lc, _ in self.keys]
            late_col, time_col = self.left_late_col, self.left_time
            horizon = self.left_horizon
            # a stored right row at rt matches this left row at lt iff lt+lo <= rt <= lt+hi
            lo, hi = self.lower, self.upper
            mark_other = self.how == "right_outer"
            track_self = self.how == "left_outer"
            pair: Callable[[Row, Row], Row] = self.combiner.pair
        else:
            own, other = b"Rk", b"Lk"
            key_cols = [rc for _, rc in self.keys]
            late_col, time_col = self.right_late_col, self.right_time
            horizon = self.right_horizon
            # a stored left row at lt matches this right row at rt iff rt-hi <= lt <= rt-lo
            lo, hi = -self.upper, -self.lower
            mark_other = self.how == "left_outer"
            track_self = self.how == "right_outer"
            pair = _swap(self.combiner.pair)
        has_range = time_col is not None
        dumps = orjson.dumps
        get, put = state.get, state.put
        ientry, width, added = idx.entry_prefix, idx.width, idx.note_bucket
        errors = ctx.errors
        name = self.name
        for row in rows:
            try:
                if late_col is not None:
                    lts = row.get(late_col)
                    if type(lts) is not int:
                        lts = event_time(row, late_col)
                    if late is not None and lts <= late:
                        ctx.late_rows.append((name, row))
                        continue
                ts: int = 0
                if time_col is not None:
                    raw = row.get(time_col)
                    ts = raw if type(raw) is int else event_time(row, time_col)
            except ValueError as exc:
                errors.append((row, f"{name}: {exc}", "event_time"))
                continue
            kv = [row.get(c) for c in key_cols]
            kb = dumps(kv)
            matched = 0
            if None not in kv:
                okey = other + kb
                entries = cache.get(okey)
                if entries is None:
                    entries = get(okey) or []
                    cache[okey] = entries
                if entries:
                    if has_range:
                        low, high = ts + lo, ts + hi
                    for e in entries:
                        if has_range and not (low <= e[0] <= high):
                            continue
                        out.append(pair(row, e[2]))
                        matched = 1
                        if mark_other and not e[1]:
                            e[1] = 1
                            dirty.add(okey)
            mkey = own + kb
            mine = cache.get(mkey)
            if mine is None:
                mine = get(mkey) or []
                cache[mkey] = mine
            mine.append([ts, matched if track_self else 0, row])
            dirty.add(mkey)
            if horizon is not None:  # idx.put(ts + horizon, kb, 1), inlined (hot path)
                expiry = ts + horizon
                bucket = expiry // width
                put(ientry + encode_time(bucket) + encode_time(expiry) + kb, 1)
                added(bucket)

    def _evict(
        self,
        is_left: bool,
        wm: int,
        state: StateView,
        cache: dict[bytes, list[list[Any]]],
        dirty: set[bytes],
        out: list[Row],
        idx: TimeIndex,
    ) -> None:
        horizon = self.left_horizon if is_left else self.right_horizon
        if horizon is None:
            return
        own = b"Lk" if is_left else b"Rk"
        emit_unmatched = self.how == ("left_outer" if is_left else "right_outer")
        only = self.combiner.left_only if is_left else self.combiner.right_only
        limit = wm - horizon - 1  # Spark's state watermark: inclusive bound minus 1 ms
        for _expiry, kb, _v in idx.pop_through(wm - 1):
            key = own + kb
            entries = cache.get(key)
            if entries is None:
                entries = state.get(key) or []
            keep: list[list[Any]] = []
            for e in entries:
                if e[0] <= limit:
                    if emit_unmatched and not e[1]:
                        out.append(only(e[2]))
                else:
                    keep.append(e)
            if len(keep) != len(entries):
                cache[key] = keep
                dirty.add(key)

    def state_rows(self, state: StateView) -> int:
        """Number of rows held on both sides."""
        return sum(len(v) for _k, v in state.items(b"Lk")) + sum(
            len(v) for _k, v in state.items(b"Rk")
        )


def _swap(fn: Callable[[Row, Row], Row]) -> Callable[[Row, Row], Row]:
    def swapped(right: Row, left: Row) -> Row:
        return fn(left, right)

    return swapped


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
