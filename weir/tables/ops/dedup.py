"""Streaming deduplication: Spark's `dropDuplicates` and `dropDuplicatesWithinWatermark`.

Semantics (Spark 3.4+, micro-batch; W(k) is the batch's eviction watermark, L(k) = W(k-1)):

* `drop_duplicates(columns)` where the stream's watermarked event-time column is one of
  `columns`: a row whose event time is at or before L(k) is late (it goes to
  `ctx.late_rows`, it is never compared with state); otherwise it is emitted unless a row
  with the same values in `columns` was already seen. After batch k every remembered key
  whose event time is at or before W(k) is forgotten. A forgotten key can never come back:
  any later row with that event time is late.
* `drop_duplicates(columns)` without the event-time column among `columns`: the keys are
  remembered forever (a warning is issued once, at definition). Rows are still dropped as
  late when the stream has a watermark, as Spark does.
* `drop_duplicates()` (no columns): all columns of the row form the key.
* `drop_duplicates_within_watermark(columns)`: the key is `columns` without the event-time
  column; the first row of a key is emitted and the key is remembered until its event time
  plus the watermark delay is at or before W(k). Requires a watermark.

Dedup supports only the append output mode (`check_output_mode`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import orjson

from weir.tables.operator import BatchContext, Operator, Row
from weir.tables.state.layout import TimeIndex, bucket_width_for, encode_key, encode_time
from weir.tables.state.store import StateView
from weir.tables.watermark import event_time, event_time_columns


class DedupOperator(Operator):
    """`drop_duplicates` / `drop_duplicates_within_watermark`; see the module docstring.

    State layout (relative to the operator's prefix):

    * event-time mode (the watermarked column is among the key columns): a `TimeIndex` under
      b"t" whose entries are (event time, JSON of the other key values) -> 1, so the lookup
      of a row is one `get` and eviction is a range scan up to W;
    * keep-forever mode: b"k" + JSON key -> 1;
    * within-watermark mode: b"k" + JSON key -> expiry (event time + delay), plus in local
      state (rebuilt from those after a restore) a `TimeIndex` under b"t" of
      (expiry, JSON key) -> 1 for eviction.
    """

    stateful = True

    def __init__(
        self, watermarks: Iterable[tuple[str, str, int]], columns: list[str] | None, within: bool
    ) -> None:
        """`watermarks`: (input, column, delay) of every watermark upstream."""
        self.columns = list(columns) if columns else None
        self.within = within
        self.name = "dedup_within_watermark" if within else "dedup"
        wms = event_time_columns(watermarks)
        ts_col: str | None = None
        if self.columns is not None:
            ts_col = next((c for c in self.columns if c in wms), None)
        elif len(wms) == 1:
            ts_col = next(iter(wms))
        # Late rows are dropped whenever the stream has a (single) watermarked column.
        self.late_col: str | None = ts_col or (next(iter(wms)) if len(wms) == 1 else None)
        self.delay = wms[self.late_col] if self.late_col is not None else 0
        if within:
            if self.late_col is None:
                raise ValueError(
                    "dropDuplicatesWithinWatermark is not supported on streaming "
                    "DataFrames/Datasets without watermark: call with_watermark(...) first"
                )
            self.ts_col: str | None = self.late_col
            self.key_cols = (
                [c for c in self.columns if c != self.ts_col] if self.columns is not None else None
            )
        else:
            self.ts_col = ts_col
            self.key_cols = (
                [c for c in self.columns if c != ts_col] if self.columns is not None else None
            )
            if ts_col is None:
                warnings.warn(
                    f"drop_duplicates({self.columns}) has no watermarked event-time column "
                    "among its columns: every key is kept in state forever (include the "
                    "event-time column, e.g. ['event_id', 'event_ts'], to bound the state)",
                    stacklevel=3,
                )
        self.width = bucket_width_for(max(self.delay, 60_000))

    def partition_columns(self, parent: int) -> tuple[str, ...] | None:
        return None if self.key_cols is None else tuple(self.key_cols)

    def watches_event_time(self) -> bool:
        """Spark counts dedup as event-time state only with the event time among its keys
        (or within the watermark)."""
        return self.within or self.ts_col is not None

    def default_state_name(self) -> str:
        return f"{self.name}({', '.join(self.columns) if self.columns else '*'})"

    def fingerprint(self) -> dict[str, Any]:
        """Columns, event-time column and the time index's bucket width (its key layout)."""
        found: dict[str, Any] = {
            "kind": self.name,
            "columns": self.columns,
            "time_column": self.ts_col,
            "time_bucket_ms": self.width,
        }
        if self.within:
            found["index"] = "local"
        return found

    def check_output_mode(self, mode: str, has_watermark: bool) -> None:
        """Refuse the output modes Spark refuses for a streaming deduplication."""
        if mode != "append":
            raise ValueError(
                f"{mode.capitalize()} output mode is not supported for {self.name} on "
                "streaming DataFrames/Datasets: deduplication emits each row once, when it is "
                "first seen, so use the append output mode"
            )

    def _key_values(self, row: Row) -> list[Any]:
        if self.key_cols is not None:
            return [row.get(c) for c in self.key_cols]
        ts = self.ts_col
        return [[c, row[c]] for c in sorted(row) if c != ts]

    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        """Emit the first row of each key, in arrival order; drop late rows and duplicates."""
        if self.within:
            return self._process_within(rows, state, ctx)
        if self.ts_col is None:
            return self._process_forever(rows, state, ctx)
        late = ctx.late_watermark
        col = self.ts_col
        idx = TimeIndex(state, b"t", self.width)
        width = self.width
        get, put = state.get, state.put
        out: list[Row] = []
        seen: set[bytes] = set()
        dumps = orjson.dumps
        key_cols = self.key_cols
        for row in rows:
            ts = row.get(col)
            if type(ts) is not int:
                try:
                    ts = event_time(row, col)
                except ValueError as exc:
                    ctx.errors.append((row, f"{self.name}: {col}: {exc}", "event_time"))
                    continue
            if late is not None and ts <= late:
                ctx.late_rows.append((self.name, row))
                continue
            suffix = (
                dumps([row.get(c) for c in key_cols])
                if key_cols is not None
                else dumps(self._key_values(row))
            )
            key = b"te" + encode_time(ts // width) + encode_time(ts) + suffix
            if key in seen or get(key) is not None:
                continue
            seen.add(key)
            put(key, 1)
            idx.note(ts)
            out.append(row)
        ctx.rows_added += len(out)
        if ctx.watermark is not None:
            ctx.rows_removed += len(idx.pop_through(ctx.watermark))
        idx.flush()
        ctx.rows_updated += len(out)
        return out

    def _late(self, row: Row, ctx: BatchContext) -> bool | None:
        """True when late (recorded), None when unparsable (dead-lettered), else False."""
        col = self.late_col
        if col is None or ctx.late_watermark is None:
            return False
        try:
            ts = event_time(row, col)
        except ValueError as exc:
            ctx.errors.append((row, f"{self.name}: {col}: {exc}", "event_time"))
            return None
        if ts <= ctx.late_watermark:
            ctx.late_rows.append((self.name, row))
            return True
        return False

    def _process_forever(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        out: list[Row] = []
        for row in rows:
            if self._late(row, ctx) is not False:
                continue
            key = b"k" + encode_key(self._key_values(row))
            if state.get(key) is not None:
                continue
            state.put(key, 1)
            out.append(row)
        ctx.rows_added += len(out)
        ctx.rows_updated += len(out)
        return out

    def _process_within(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        col = self.ts_col
        assert col is not None
        idx = TimeIndex(state.local(), b"t", self.width)
        out: list[Row] = []
        for row in rows:
            if self._late(row, ctx) is not False:
                continue
            try:
                ts = event_time(row, col)
            except ValueError as exc:
                ctx.errors.append((row, f"{self.name}: {col}: {exc}", "event_time"))
                continue
            suffix = encode_key(self._key_values(row))
            key = b"k" + suffix
            if state.get(key) is not None:
                continue
            expiry = ts + self.delay
            state.put(key, expiry)
            idx.put(expiry, suffix, 1)
            out.append(row)
        ctx.rows_added += len(out)
        ctx.rows_updated += len(out)
        if ctx.watermark is not None:
            expired = idx.pop_through(ctx.watermark)
            for suffix in expired:
                state.delete(b"k" + suffix)
            ctx.rows_removed += len(expired)
        idx.flush()
        return out

    def rebuild_local(self, state: StateView) -> None:
        """Within the watermark: the expiry index, from the expiry kept with each key."""
        if not self.within:
            return
        state.delete_all(state.keys(b"t"))  # where an older Weir kept the index
        idx = TimeIndex(state.local(), b"t", self.width)
        for key, expiry in state.items(b"k"):
            idx.put(expiry, key[1:], 1)
        idx.flush()

    def state_rows(self, state: StateView) -> int:
        """Number of remembered keys."""
        if self.ts_col is not None and not self.within:
            return TimeIndex(state, b"t", self.width).count()
        return sum(1 for _ in state.items(b"k"))
