"""The PostgreSQL sink: output rows inserted into a table, or upserted on its key, one
database transaction per micro-batch, before the checkpoint commits.

The same transaction records the batch's identity (table, query, task, batch number) in the table
`weir_sink_batches`; a batch already recorded is skipped. A batch written again after a crash
(after the write, before the Kafka commit) has the same identity and the same rows
(weir.service.runtime.plans), so even an insert-only table ends the same: idempotent.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any

from weir.service.codec import render_rows
from weir.service.endpoints import configured_postgres_dsn
from weir.service.sinks.base import BatchId, BatchIdentity, Delivery, Sink, SinkBatch, SinkFailure

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


BATCHES = (
    "CREATE TABLE IF NOT EXISTS weir_sink_batches (query text NOT NULL, task integer NOT NULL, "
    "batch_id bigint NOT NULL, sink text NOT NULL DEFAULT '', "
    "written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sink, query, task, batch_id))"
)
_RECORD = (
    "INSERT INTO weir_sink_batches (sink, query, task, batch_id) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)


class PostgresUpsertSink(Sink):
    """Upserts rows into PostgreSQL table `table` on its `key` columns, or with an empty `key`
    inserts them.

    The table is created on first use if missing (`column_types` gives SQL types; default
    text), with `key` as its primary key. Each batch is one transaction: all rows or none,
    with its identity in `weir_sink_batches` (a batch already there is skipped). The
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
        if not set(keys) <= set(cols):
            raise ValueError(f"key {keys} must be a subset of columns {cols}")
        self.table = table
        self.columns = cols
        self.dsn = dsn
        types = column_types or {}
        col_sql = ", ".join(f"{_ident(c)} {types.get(c, 'text')}" for c in cols)
        primary = f", PRIMARY KEY ({', '.join(_ident(k) for k in keys)})" if keys else ""
        self._create = f"CREATE TABLE IF NOT EXISTS {_ident(table)} ({col_sql}{primary})"
        updates = [c for c in cols if c not in keys]
        conflict = (
            "DO UPDATE SET " + ", ".join(f"{_ident(c)} = EXCLUDED.{_ident(c)}" for c in updates)
            if updates
            else "DO NOTHING"
        )
        self._insert = (
            f"INSERT INTO {_ident(table)} ({', '.join(_ident(c) for c in cols)}) "
            f"VALUES ({', '.join(['%s'] * len(cols))})"
        )
        if keys:
            self._insert += f" ON CONFLICT ({', '.join(_ident(k) for k in keys)}) {conflict}"
        self._conn: Any = None

    @property
    def description(self) -> str:
        return f"postgres[{self.table}]"

    async def write(self, batch: SinkBatch) -> None:
        """Write the batch in one transaction. An unreachable server (connection refused or
        lost) is a transient `SinkFailure`: the connection is dropped and the batch retried
        until the server is back; any other error fails the batch as usual."""
        import psycopg

        ts_cols = batch.timestamp_columns
        try:
            await self.upsert(render_rows(batch.rows, ts_cols), batch.identity)
        except Exception as exc:
            lost = isinstance(exc, psycopg.OperationalError)
            if lost:
                await self.close()
            why = f"{self.description} failed: {type(exc).__name__}: {exc}"
            raise SinkFailure(why, transient=lost) from exc

    async def upsert(self, rows: list[dict[str, Any]], batch: BatchIdentity | None = None) -> None:
        """Write `rows` (JSON-able values) in one transaction, connecting first if needed;
        with `batch`, record it in `weir_sink_batches` in that transaction, or skip the rows when
        it is there already."""
        import psycopg

        conn = self._conn
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(self.dsn or configured_postgres_dsn())
            async with conn.transaction():
                await conn.execute(self._create)
                await conn.execute(BATCHES)
            self._conn = conn
        cols = self.columns
        async with conn.transaction(), conn.cursor() as cur:
            if batch is not None:
                # per table: two sinks of one query into one database each write the batch
                ident = (self.table, batch.query, batch.task, batch.batch_id)
                await cur.execute(_RECORD, ident)
                if await cur.fetchone() is None:
                    return  # written by an earlier attempt
            await cur.executemany(self._insert, [tuple(r.get(c) for c in cols) for r in rows])

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a connection the server dropped
                await conn.close()

    async def __call__(self, rows: list[dict[str, Any]], batch_id: int) -> None:
        """The sink as a foreach-batch function (rows already rendered); a `BatchId` is
        recorded as `write` records a batch."""
        ident = None
        if isinstance(batch_id, BatchId):
            ident = BatchIdentity(batch_id.query, batch_id.task, int(batch_id))
        await self.upsert(rows, ident)


def postgres_upsert(
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    *,
    dsn: str | None = None,
    column_types: dict[str, str] | None = None,
) -> PostgresUpsertSink:
    """A sink that upserts rows into PostgreSQL table `table` on `key`, for
    `@app.agent(..., sink=postgres_upsert(...))`; see `PostgresUpsertSink`."""
    if not key:
        raise ValueError("an upsert needs key columns; postgres_insert(...) inserts")
    return PostgresUpsertSink(table, columns, key, dsn=dsn, column_types=column_types)


def postgres_insert(
    table: str,
    columns: Sequence[str],
    *,
    dsn: str | None = None,
    column_types: dict[str, str] | None = None,
) -> PostgresUpsertSink:
    """A sink that inserts rows into PostgreSQL table `table`, each batch once (its identity
    recorded in `weir_sink_batches` in the same transaction); see `PostgresUpsertSink`."""
    return PostgresUpsertSink(table, columns, (), dsn=dsn, column_types=column_types)
