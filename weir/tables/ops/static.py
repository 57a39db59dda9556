"""Stream-static joins: enrich a stream with a table read from outside it (Spark's
`stream.join(spark.read.parquet(...), ...)`). The table is read by a loader the caller
supplies (`weir.service.sources.static.static_table` reads Parquet, Delta Lake, CSV and
PostgreSQL); this module only joins.

Semantics: stateless; each stream row is joined with every table row whose key values are
equal (a null key never matches). `how="inner"` drops stream rows without a match;
`how="left"` emits them once with None for the table's columns. Output columns follow
`weir.tables.ops.combine.RowCombiner` (a non-key name on both sides becomes `left_<n>` /
`right_<n>`). Table values are normalised to JSON-able ones (`normalize_rows`): timestamps
become epoch ms (and the column is rendered as a timestamp), dates and times ISO text,
decimals floats, bytes UTF-8 text. No watermark is needed and any output mode is allowed.
With `reload_every_ms` the table is re-read in the first batch that starts at least that
long (processing time) after the last load.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from weir.tables.operator import BatchContext, Operator, Row
from weir.tables.ops.combine import RowCombiner, normalize_how, normalize_on
from weir.tables.state.store import StateView
from weir.tables.timeutil import to_millis


def normalize_value(value: Any) -> Any:
    """A value from Arrow as rows hold it: times as epoch ms, decimals as floats, durations in
    ms, bytes as text (base64 when not UTF-8)."""
    if isinstance(value, datetime):
        return to_millis(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return round(value.total_seconds() * 1000)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode()
    return value


def normalize_rows(rows: list[dict[str, Any]]) -> tuple[list[Row], set[str]]:
    ts_cols: set[str] = set()
    out: list[Row] = []
    for r in rows:
        row: Row = {}
        for c, v in r.items():
            if isinstance(v, datetime):
                ts_cols.add(c)
            row[c] = normalize_value(v)
        out.append(row)
    return out, ts_cols


class StaticTable:
    """A table read from outside the stream, re-read every `reload_every_ms` (processing time).

    Contract: `load` returns (rows, columns, timestamp columns) with JSON-able values; the
    first load happens at definition (`snapshot`), so a bad path or DSN fails there.
    """

    def __init__(
        self,
        loader: Callable[[], tuple[list[Row], list[str], set[str]]],
        description: str,
        reload_every_ms: int | None = None,
    ) -> None:
        self.loader = loader
        self.description = description
        self.reload_every_ms = reload_every_ms
        self._snapshot: tuple[list[Row], list[str], set[str]] | None = None

    def load(self) -> tuple[list[Row], list[str], set[str]]:
        """Read the table now (and remember it as the current snapshot)."""
        self._snapshot = self.loader()
        return self._snapshot

    def snapshot(self) -> tuple[list[Row], list[str], set[str]]:
        """The last loaded contents (loading once if never loaded)."""
        if self._snapshot is None:
            return self.load()
        return self._snapshot

    def __repr__(self) -> str:
        return f"StaticTable({self.description})"


class StaticJoinOperator(Operator):
    """Stateless stream-static hash join; the table's index is a cache rebuilt on reload.

    Output order: stream rows in arrival order, each followed by its matches in table order.
    """

    stateful = False

    def __init__(
        self,
        table: StaticTable,
        keys: list[tuple[str, str]],
        how: Literal["inner", "left_outer"],
        combiner: RowCombiner,
        timestamp_cols: set[str],
    ) -> None:
        self.table = table
        self.keys = keys
        self.how = how
        self.combiner = combiner
        self.name = f"static_join({how})"
        self._ts = timestamp_cols
        self._index: dict[tuple[Any, ...], list[Row]] = {}
        self._loaded_at: int | None = None
        self._build(table.snapshot()[0])

    def _build(self, rows: list[Row]) -> None:
        index: dict[tuple[Any, ...], list[Row]] = {}
        cols = [rc for _, rc in self.keys]
        for r in rows:
            kv = tuple(r.get(c) for c in cols)
            if None in kv:
                continue
            index.setdefault(kv, []).append(r)
        self._index = index

    def timestamp_columns(self) -> set[str]:
        return set(self._ts)

    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        """Join the batch with the current table contents (reloading it first when due)."""
        every = self.table.reload_every_ms
        if every is not None:
            if self._loaded_at is None:
                self._loaded_at = ctx.processing_time
            elif ctx.processing_time - self._loaded_at >= every:
                self._build(self.table.load()[0])
                self._loaded_at = ctx.processing_time
        index = self._index
        cols = [lc for lc, _ in self.keys]
        pair, left_only = self.combiner.pair, self.combiner.left_only
        keep_unmatched = self.how == "left_outer"
        out: list[Row] = []
        for row in rows:
            kv = tuple(row.get(c) for c in cols)
            matches = index.get(kv) if None not in kv else None
            if matches:
                for m in matches:
                    out.append(pair(row, m))
            elif keep_unmatched:
                out.append(left_only(row))
        return out


def static_join(
    stream_timestamp_columns: frozenset[str],
    table: StaticTable,
    *,
    on: str | Sequence[str | tuple[str, str]] | None,
    how: str = "inner",
    left_columns: Sequence[str] | None = None,
) -> StaticJoinOperator:
    """The operator joining a stream (whose timestamp columns are given) with `table`,
    inner or left; see the module docstring."""
    keys = normalize_on(on)
    kind = normalize_how(how, ("inner", "left_outer"))
    assert kind in ("inner", "left_outer")
    _rows, columns, ts_cols = table.snapshot()
    combiner = RowCombiner(keys, left_columns, columns)
    # A table timestamp column keeps its name unless a stream column clashes (then right_<c>);
    # a clashing stream timestamp column becomes left_<c>.
    lts = stream_timestamp_columns
    out_ts = {c for c in ts_cols if c not in combiner.shared}
    out_ts |= {f"right_{c}" for c in out_ts} | {f"left_{c}" for c in lts if c in columns}
    return StaticJoinOperator(table, keys, kind, combiner, out_ts)
