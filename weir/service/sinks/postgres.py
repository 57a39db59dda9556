"""The PostgreSQL upsert sink: output rows upserted into a table on its key, one database
transaction per micro-batch, before the checkpoint commits.

A batch written again after a crash (after the write, before the Kafka commit) upserts the
same rows on the same keys, so the table ends the same: idempotent, as the course's
`foreachBatch` advice says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from weir.service.codec import render_row
from weir.service.endpoints import configured_postgres_dsn
from weir.service.sinks.base import Delivery, Sink, SinkBatch, SinkFailure

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


class PostgresUpsertSink(Sink):
    """Upserts rows into PostgreSQL table `table` on its `key` columns.

    The table is created on first use if missing (`column_types` gives SQL types; default
    text), with `key` as its primary key. Each batch is one transaction: all rows or none. The
    DSN defaults to `WEIR_POSTGRES_DSN` or the local server of `weir local up`, read at first
    use. A failing write raises `SinkFailure`, which aborts the checkpoint: the batch is
    retried, not lost. Times are written as ISO-8601 UTC text (or into a timestamptz column).
    """

    delivery: Delivery = "idempotent"

    def __init__(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        *,
        dsn: str | None = None,
        column_types: dict[str, str] | None = None,
    ) -> None:
        cols = list(columns)
        keys = list(key)
        if not keys or not set(keys) <= set(cols):
            raise ValueError(f"key {keys} must be a non-empty subset of columns {cols}")
        self.table = table
        self.columns = cols
        self.dsn = dsn
        types = column_types or {}
        col_sql = ", ".join(f"{_ident(c)} {types.get(c, 'text')}" for c in cols)
        self._create = (
            f"CREATE TABLE IF NOT EXISTS {_ident(table)} ({col_sql}, "
            f"PRIMARY KEY ({', '.join(_ident(k) for k in keys)}))"
        )
        updates = [c for c in cols if c not in keys]
        conflict = (
            "DO UPDATE SET " + ", ".join(f"{_ident(c)} = EXCLUDED.{_ident(c)}" for c in updates)
            if updates
            else "DO NOTHING"
        )
        self._insert = (
            f"INSERT INTO {_ident(table)} ({', '.join(_ident(c) for c in cols)}) "
            f"VALUES ({', '.join(['%s'] * len(cols))}) "
            f"ON CONFLICT ({', '.join(_ident(k) for k in keys)}) {conflict}"
        )
        self._conn: Any = None

    @property
    def description(self) -> str:
        return f"postgres[{self.table}]"

    async def write(self, batch: SinkBatch) -> None:
        ts_cols = batch.timestamp_columns
        try:
            await self.upsert([render_row(r, ts_cols) for r in batch.rows])
        except Exception as exc:
            raise SinkFailure(f"{self.description} failed: {type(exc).__name__}: {exc}") from exc

    async def upsert(self, rows: list[dict[str, Any]]) -> None:
        """Upsert `rows` (JSON-able values) in one transaction, connecting first if needed."""
        import psycopg

        conn = self._conn
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(self.dsn or configured_postgres_dsn())
            async with conn.transaction():
                await conn.execute(self._create)
            self._conn = conn
        cols = self.columns
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany(self._insert, [tuple(r.get(c) for c in cols) for r in rows])

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __call__(self, rows: list[dict[str, Any]], batch_id: int) -> None:
        """The sink as a foreach-batch function (rows already rendered)."""
        await self.upsert(rows)


def postgres_upsert(
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    *,
    dsn: str | None = None,
    column_types: dict[str, str] | None = None,
) -> PostgresUpsertSink:
    """A sink that upserts rows into PostgreSQL table `table` on `key`, for
    `@app.agent(..., foreach_batch=postgres_upsert(...))`; see `PostgresUpsertSink`."""
    return PostgresUpsertSink(table, columns, key, dsn=dsn, column_types=column_types)
