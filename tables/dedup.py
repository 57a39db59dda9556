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

This module also holds `TimeIndex`, the event-time ordered key layout that dedup, the
stream-stream join and the arbitrary-state operator use to evict by range scan.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from tables.operator import BatchContext, Operator, Row
from tables.store import StateView
from tables.timeutil import to_millis

if TYPE_CHECKING:
    from tables.query import Stream

_BIAS = 1 << 63


def encode_time(t: int) -> bytes:
    """Encode a signed epoch-ms int as 8 bytes whose byte order is the numeric order."""
    return (t + _BIAS).to_bytes(8, "big")


def decode_time(raw: bytes) -> int:
    """Inverse of `encode_time` over the first 8 bytes of `raw`."""
    return int.from_bytes(raw[:8], "big") - _BIAS


def encode_key(values: Iterable[Any]) -> bytes:
    """Encode key values as compact JSON (a key equals another iff the encodings are equal)."""
    return orjson.dumps(list(values))


def bucket_width_for(span_ms: int) -> int:
    """Pick a `TimeIndex` bucket width for state that lives about `span_ms` past the watermark.

    About 32 buckets over the span, between 1 second and 1 hour. The width is part of the
    state layout: it must depend only on the query definition, never on data.
    """
    return max(1_000, min(3_600_000, span_ms // 32 or 1_000))


class TimeIndex:
    """State keys ordered by a time, for eviction by a range scan, used one batch at a time.

    Layout under `namespace` of a `StateView`:

    * `namespace + b"e" + bucket(8) + time(8) + suffix` -> value: the entries, where
      bucket = time // width and both are `encode_time`-encoded, so the keys of a bucket sort
      by time;
    * `namespace + b"d"` -> sorted list of the buckets that may hold entries (the directory),
      read once and written at most once per batch.

    `pop_through(bound)` scans only the buckets that may hold times at or before `bound`:
    with a watermark that advances batch by batch that is one or two buckets, so eviction
    costs what it evicts, not the size of the state. Create one `TimeIndex` per batch (it
    caches the directory); call `flush` before the batch ends.
    """

    __slots__ = ("_added", "_dir", "_dir_key", "_entry", "_state", "width")

    def __init__(self, state: StateView, namespace: bytes, width_ms: int) -> None:
        self._state = state
        self._entry = namespace + b"e"
        self._dir_key = namespace + b"d"
        self.width = width_ms
        self._dir: list[int] | None = None
        self._added: set[int] = set()

    def key(self, t: int, suffix: bytes) -> bytes:
        """Return the state key (relative to the view) of the entry (t, suffix)."""
        return self._entry + encode_time(t // self.width) + encode_time(t) + suffix

    def put(self, t: int, suffix: bytes, value: Any) -> bytes:
        """Store the entry (t, suffix) -> value; return its key."""
        key = self._entry + encode_time(t // self.width) + encode_time(t) + suffix
        self._state.put(key, value)
        self._added.add(t // self.width)
        return key

    def note(self, t: int) -> None:
        """Record that an entry at time `t` was written directly under `key(t, ...)`."""
        self._added.add(t // self.width)

    def note_bucket(self, bucket: int) -> None:
        """Record that an entry of `bucket` (time // width) was written directly."""
        self._added.add(bucket)

    @property
    def entry_prefix(self) -> bytes:
        """The prefix of every entry key (`key(t, s)` = prefix + bucket + time + s)."""
        return self._entry

    def delete(self, t: int, suffix: bytes) -> None:
        """Remove the entry (t, suffix) (the directory is tidied by `pop_through`)."""
        self._state.delete(self.key(t, suffix))

    def _directory(self) -> list[int]:
        if self._dir is None:
            self._dir = list(self._state.get(self._dir_key) or ())
        return self._dir

    def pop_through(self, bound: int) -> list[tuple[int, bytes, Any]]:
        """Remove and return every entry with time <= `bound`, as (time, suffix, value).

        Ascending by (time, suffix). Entries written earlier in this batch are included.
        Reads only the buckets that may hold times at or before `bound`, each up to its first
        entry past `bound`.
        """
        directory = self._directory()
        buckets = sorted(set(directory) | self._added)
        last = bound // self.width
        out: list[tuple[int, bytes, Any]] = []
        expired: list[bytes] = []
        emptied: set[int] = set()
        state = self._state
        for b in buckets:
            if b > last:
                break
            prefix = self._entry + encode_time(b)
            n = len(prefix)
            drained = True
            for key, value in state.items(prefix):
                t = decode_time(key[n : n + 8])
                if t > bound:
                    drained = False
                    break
                out.append((t, key[n + 8 :], value))
                expired.append(key)
            if drained:
                emptied.add(b)
        # Delete only after all scans: a delete between two scans would make the next one
        # re-merge the transaction's pending keys.
        delete = state.delete
        for key in expired:
            delete(key)
        if emptied:
            self._dir = [b for b in buckets if b not in emptied]
            self._added = set()
            state.put(self._dir_key, self._dir)
        return out

    def flush(self) -> None:
        """Persist the directory if entries were added in new buckets during this batch."""
        directory = self._directory()
        new = self._added.difference(directory)
        if new:
            self._dir = sorted(set(directory) | new)
            self._state.put(self._dir_key, self._dir)
        self._added = set()

    def earliest(self) -> int | None:
        """The smallest entry time, or None when the index is empty (reads one entry)."""
        state = self._state
        for b in sorted(set(self._directory()) | self._added):
            prefix = self._entry + encode_time(b)
            for key, _value in state.items(prefix):
                return decode_time(key[len(prefix) : len(prefix) + 8])
        return None

    def count(self) -> int:
        """Number of entries (scans)."""
        return sum(1 for _ in self._state.items(self._entry))


def event_time_columns(stream: Stream) -> dict[str, int]:
    """Return the upstream watermarked columns with their (largest) delay in ms."""
    out: dict[str, int] = {}
    for _name, col, delay in stream.node.watermarks:
        out[col] = max(delay, out.get(col, delay))
    return out


def event_time(row: Row, col: str) -> int:
    """Return `row[col]` as epoch ms (parsing it in place if needed); raise ValueError."""
    value = row.get(col)
    if type(value) is int:
        return value
    ms = to_millis(value)
    row[col] = ms
    return ms


class DedupOperator(Operator):
    """`drop_duplicates` / `drop_duplicates_within_watermark`; see the module docstring.

    State layout (relative to the operator's prefix):

    * event-time mode (the watermarked column is among the key columns): a `TimeIndex` under
      b"t" whose entries are (event time, JSON of the other key values) -> 1, so the lookup
      of a row is one `get` and eviction is a range scan up to W;
    * keep-forever mode: b"k" + JSON key -> 1;
    * within-watermark mode: b"k" + JSON key -> expiry (event time + delay), plus a
      `TimeIndex` under b"t" of (expiry, JSON key) -> 1 for eviction.
    """

    stateful = True

    def __init__(self, stream: Stream, columns: list[str] | None, within: bool) -> None:
        self.columns = list(columns) if columns else None
        self.within = within
        self.name = "dedup_within_watermark" if within else "dedup"
        wms = event_time_columns(stream)
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

    def default_state_name(self) -> str:
        return f"{self.name}({', '.join(self.columns) if self.columns else '*'})"

    def fingerprint(self) -> dict[str, Any]:
        """Columns, event-time column and the time index's bucket width (its key layout)."""
        return {
            "kind": self.name,
            "columns": self.columns,
            "time_column": self.ts_col,
            "time_bucket_ms": self.width,
        }

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
        written = 0
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
            written += 1
            out.append(row)
        if ctx.watermark is not None:
            idx.pop_through(ctx.watermark)
        idx.flush()
        ctx.state_rows_updated += written
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
            ctx.state_rows_updated += 1
            out.append(row)
        return out

    def _process_within(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        col = self.ts_col
        assert col is not None
        idx = TimeIndex(state, b"t", self.width)
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
            ctx.state_rows_updated += 2
            out.append(row)
        if ctx.watermark is not None:
            for _t, suffix, _v in idx.pop_through(ctx.watermark):
                state.delete(b"k" + suffix)
        idx.flush()
        return out

    def state_rows(self, state: StateView) -> int:
        """Number of remembered keys."""
        if self.ts_col is not None and not self.within:
            return TimeIndex(state, b"t", self.width).count()
        return sum(1 for _ in state.items(b"k"))
