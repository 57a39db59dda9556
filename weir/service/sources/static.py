"""Static tables for stream-static joins, read from Parquet, Delta Lake, CSV or PostgreSQL.

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

The join itself is `weir.tables.ops.static`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from weir.tables.operator import Row
from weir.tables.ops.static import StaticTable, normalize_rows
from weir.tables.timeutil import Duration, parse_duration

StaticFormat = Literal["parquet", "delta", "csv", "postgres", "rows"]


def _arrow_rows(table: Any) -> tuple[list[Row], list[str], set[str]]:
    import pyarrow as pa

    ts = {f.name for f in table.schema if pa.types.is_timestamp(f.type)}
    rows, seen_ts = normalize_rows(table.to_pylist())
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
    rows, ts = normalize_rows(raw)
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
            rows, ts = normalize_rows([dict(r) for r in data])
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
