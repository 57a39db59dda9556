"""Stream-stream joins (Spark's symmetric hash join, micro-batch).

`left.join(right, on=..., how=..., between=...)` with `right` a stream builds the plan node in
`weir.tables.ops.join_condition` (its arguments are described there); with a static table, see
`weir.tables.ops.static`.

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

from collections.abc import Callable
from typing import Any

import orjson

from weir.tables.operator import BatchContext, MultiInputOperator, Row
from weir.tables.ops.combine import JoinType, RowCombiner
from weir.tables.state.layout import TimeIndex
from weir.tables.state.store import StateView
from weir.tables.watermark import event_time


class StreamJoinOperator(MultiInputOperator):
    """The stream-stream join operator; see the module docstring for the semantics.

    State layout per side (namespace b"L" or b"R"):

    * `ns + b"k" + JSON(key values)` -> list of [event time, matched 0/1, row] in arrival
      order: one `get` per key per batch, one write per touched key per batch;
    * local state (not in the changelog, rebuilt from the rows after a restore): a
      `TimeIndex` under `ns + b"x"` with one entry per key, (its earliest expiry, JSON key)
      -> its number of rows, where a row's expiry is its event time plus the side's horizon
      (only for sides that can be evicted). A key whose entry expires with one row is
      deleted without being read.
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

    def upstream_columns(self, parent: int, columns: tuple[str, ...]) -> tuple[str, ...]:
        """Only key columns pass a join unchanged: a pair's output columns are both names."""
        return tuple(pair[parent] for pair in self.keys if pair[0] in columns or pair[1] in columns)

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
            "index": "local, earliest expiry per key",
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
        # own keys appended to in this batch -> their index entry before (None: none)
        before: dict[bytes, tuple[int, int] | None] = {}
        out: list[Row] = []
        local = state.local()
        lidx = TimeIndex(local, b"Lx", self.width)
        ridx = TimeIndex(local, b"Rx", self.width)
        self._side(left_rows, True, state, ctx, cache, dirty, out, before)
        self._side(right_rows, False, state, ctx, cache, dirty, out, before)
        if before:
            _reindex(lidx, ridx, before, cache, self.left_horizon, self.right_horizon)
        wm = ctx.watermark
        if wm is not None:
            self._evict(True, wm, state, ctx, cache, dirty, out, lidx)
            self._evict(False, wm, state, ctx, cache, dirty, out, ridx)
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
        before: dict[bytes, tuple[int, int] | None],
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
        get = state.get
        errors = ctx.errors
        name = self.name
        stored = 0
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
            if horizon is not None and mkey not in before:
                before[mkey] = _entry(mine, horizon) if mine else None
            mine.append([ts, matched if track_self else 0, row])
            stored += 1
            dirty.add(mkey)
        ctx.rows_added += stored
        ctx.rows_updated += stored

    def _evict(
        self,
        is_left: bool,
        wm: int,
        state: StateView,
        ctx: BatchContext,
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
        removed = 0
        gone: list[bytes] = []  # keys whose only row expired: deleted without a read
        for kb, count in idx.pop_items_through(wm - 1):
            key = own + kb
            entries = cache.get(key)
            if entries is None:
                if count == 1 and not emit_unmatched:
                    # the entry is the key's earliest expiry: its only row has expired
                    gone.append(key)
                    continue
                entries = state.get(key) or []
            keep: list[list[Any]] = []
            for e in entries:
                if e[0] <= limit:
                    if emit_unmatched and not e[1]:
                        out.append(only(e[2]))
                else:
                    keep.append(e)
            removed += len(entries) - len(keep)
            cache[key] = keep
            dirty.add(key)
            if keep:
                expiry, count = _entry(keep, horizon)
                idx.put(expiry, kb, count)
        state.delete_all(gone)
        ctx.rows_removed += removed + len(gone)

    def rebuild_local(self, state: StateView) -> None:
        """The eviction index of each side that has one, from the rows held."""
        local = state.local()
        for ns, horizon in ((b"L", self.left_horizon), (b"R", self.right_horizon)):
            if horizon is None:
                continue
            state.delete_all(state.keys(ns + b"x"))  # where an older Weir kept the index
            idx = TimeIndex(local, ns + b"x", self.width)
            own = ns + b"k"
            for key, entries in state.items(own):
                if entries:
                    expiry, count = _entry(entries, horizon)
                    idx.put(expiry, key[len(own) :], count)
            idx.flush()

    def state_rows(self, state: StateView) -> int:
        """Number of rows held on both sides."""
        return sum(len(v) for _k, v in state.items(b"Lk")) + sum(
            len(v) for _k, v in state.items(b"Rk")
        )


def _entry(entries: list[list[Any]], horizon: int) -> tuple[int, int]:
    """The index entry (earliest expiry, number of rows) of a key's non-empty row list."""
    if len(entries) == 1:  # the common case: a key's first row
        return entries[0][0] + horizon, 1
    return min(e[0] for e in entries) + horizon, len(entries)


def _reindex(
    lidx: TimeIndex,
    ridx: TimeIndex,
    before: dict[bytes, tuple[int, int] | None],
    cache: dict[bytes, list[list[Any]]],
    left_horizon: int | None,
    right_horizon: int | None,
) -> None:
    """Move the index entry of each own key appended to (`before`: its entry before the
    batch) to what its rows in `cache` make it now."""
    for idx, side, horizon in ((lidx, b"L"[0], left_horizon), (ridx, b"R"[0], right_horizon)):
        if horizon is None:
            continue
        puts: list[tuple[int, bytes, int]] = []
        drops: list[tuple[int, bytes]] = []
        for key, old in before.items():
            if key[0] != side:
                continue
            kb = key[2:]
            expiry, count = _entry(cache[key], horizon)  # appended to: never empty
            if old is not None:
                if old[0] == expiry and old[1] == count:
                    continue
                if old[0] != expiry:
                    drops.append((old[0], kb))
            puts.append((expiry, kb, count))
        idx.delete_all(drops)
        idx.put_all(puts)


def _swap(fn: Callable[[Row, Row], Row]) -> Callable[[Row, Row], Row]:
    def swapped(right: Row, left: Row) -> Row:
        return fn(left, right)

    return swapped
