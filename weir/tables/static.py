"""Stream-static joins: enrich a stream with a table read from Parquet, Delta Lake, CSV or
PostgreSQL (Spark's `stream.join(spark.read.parquet(...), ...)`).

Usage::

    products = static_table("/data/products/")  # Parquet file or directory
    enriched = purchases.join(products, on="product_id", how="left")

`static_table(source, format=None, query=None, reload_every=None)`:

* `format` is inferred when omitted: a `postgresql://` / `postgres://` DSN or a libpq
  "host=..." string is PostgreSQL (then `query` is required, e.g. "SELECT * FROM products");
  a directory with `_delta_log` is Delta Lake; a `.csv` path is CSV; anything else is
  Parquet (a file or a directory of files). A list of dicts is used as is (`format="rows"`).
* `reload_every` (a duration, processing time): re-read the table in the first batch that
  starts at least that long after the last load. Without it the table is read once, when
  the join is defined (as Spark resolves a static DataFrame's schema at definition).

Semantics: stateless; each stream row is joined with every table row whose key values are
equal (a null key never matches). `how="inner"` drops stream rows without a match;
`how="left"` emits them once with None for the table's columns. Output columns follow
`weir.tables.join.RowCombiner` (a non-key name on both sides becomes `left_<n>` / `right_<n>`).
Table values are normalised to JSON-able ones: timestamps become epoch ms (and the column is
rendered as a timestamp), dates and times ISO text, decimals floats, bytes UTF-8 text.
No watermark is needed and any output mode is allowed.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from weir.tables.join import RowCombiner, normalize_how, normalize_on
from weir.tables.operator import BatchContext, Operator, Row
from weir.tables.query import Stream
from weir.tables.store import StateView
from weir.tables.timeutil import Duration, parse_duration, to_millis

StaticFormat = Literal["parquet", "delta", "csv", "postgres", "rows"]


def _normalize(value: Any) -> Any:
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


def _normalize_rows(rows: list[dict[str, Any]]) -> tuple[list[Row], set[str]]:
    ts_cols: set[str] = set()
    out: list[Row] = []
    for r in rows:
        row: Row = {}
        for c, v in r.items():
            if isinstance(v, datetime):
                ts_cols.add(c)
            row[c] = _normalize(v)
        out.append(row)
    return out, ts_cols


def _arrow_rows(table: Any) -> tuple[list[Row], list[str], set[str]]:
    import pyarrow as pa

    ts = {f.name for f in table.schema if pa.types.is_timestamp(f.type)}
    rows, seen_ts = _normalize_rows(table.to_pylist())
    return rows, list(table.schema.names), ts | seen_ts


def _load_parquet(path: str) -> tuple[list[Row], list[str], set[str]]:
    import pyarrow.parquet as pq

    return _arrow_rows(pq.read_table(path))


def _load_delta(path: str) -> tuple[list[Row], list[str], set[str]]:
    from deltalake import DeltaTable

    return _arrow_rows(DeltaTable(path).to_pyarrow_table())


def _load_csv(path: str) -> tuple[list[Row], list[str], set[str]]:
    import pyarrow.csv as pcsv

    return _arrow_rows(pcsv.read_csv(path))


def _load_postgres(dsn: str, query: str) -> tuple[list[Row], list[str], set[str]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query.encode())
        columns = [d.name for d in cur.description or ()]
        raw = cur.fetchall()
    rows, ts = _normalize_rows(raw)
    return rows, columns, ts


def _is_dsn(source: str) -> bool:
    s = source.strip()
    return s.startswith(("postgresql://", "postgres://")) or (
        "host=" in s and "=" in s.split()[0] and not Path(s).exists()
    )


def _infer_format(source: str | Path) -> StaticFormat:
    text = str(source)
    if isinstance(source, str) and _is_dsn(source):
        return "postgres"
    p = Path(text)
    if p.is_dir() and (p / "_delta_log").is_dir():
        return "delta"
    if p.suffix.lower() == ".csv":
        return "csv"
    return "parquet"


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


def static_table(
    source: str | Path | Sequence[Row],
    *,
    format: StaticFormat | None = None,
    query: str | None = None,
    reload_every: Duration | None = None,
) -> StaticTable:
    """Describe a static table to join a stream with; see the module docstring."""
    reload_ms = parse_duration(reload_every) if reload_every is not None else None
    if not isinstance(source, str | Path):
        data = [dict(r) for r in source]

        def load_rows() -> tuple[list[Row], list[str], set[str]]:
            rows, ts = _normalize_rows([dict(r) for r in data])
            cols: dict[str, None] = {}
            for r in rows:
                cols.update(dict.fromkeys(r))
            return rows, list(cols), ts

        return StaticTable(load_rows, f"{len(data)} rows", reload_ms)
    fmt = format or _infer_format(source)
    text = str(source)
    loader: Callable[[], tuple[list[Row], list[str], set[str]]]
    if fmt == "postgres":
        if not query:
            raise ValueError("a PostgreSQL static table needs query='SELECT ...'")
        sql = query

        def load_pg() -> tuple[list[Row], list[str], set[str]]:
            return _load_postgres(text, sql)

        loader = load_pg
        desc = f"postgres: {sql}"
    elif fmt == "parquet":
        loader, desc = (lambda: _load_parquet(text)), f"parquet: {text}"
    elif fmt == "delta":
        loader, desc = (lambda: _load_delta(text)), f"delta: {text}"
    elif fmt == "csv":
        loader, desc = (lambda: _load_csv(text)), f"csv: {text}"
    else:
        raise ValueError(f"unknown static table format {fmt!r}")
    return StaticTable(loader, desc, reload_ms)


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


def make_static_join(
    stream: Stream,
    table: StaticTable,
    *,
    on: str | Sequence[str | tuple[str, str]] | None,
    how: str = "inner",
    left_columns: Sequence[str] | None = None,
) -> Stream:
    """Return `stream` joined with `table` (inner or left); see the module docstring."""
    keys = normalize_on(on)
    kind = normalize_how(how, ("inner", "left_outer"))
    assert kind in ("inner", "left_outer")
    _rows, columns, ts_cols = table.snapshot()
    combiner = RowCombiner(keys, left_columns, columns)
    # A table timestamp column keeps its name unless a stream column clashes (then right_<c>);
    # a clashing stream timestamp column becomes left_<c>.
    lts = stream.node.timestamp_columns
    out_ts = {c for c in ts_cols if c not in combiner.shared}
    out_ts |= {f"right_{c}" for c in out_ts} | {f"left_{c}" for c in lts if c in columns}
    op = StaticJoinOperator(table, keys, kind, combiner, out_ts)
    return stream.then(op)
