"""foreach-batch sinks: functions for `@app.agent(..., foreach_batch=...)`, called with each
micro-batch's output rows and batch id before the checkpoint commits.

A foreach-batch sink sees a batch again when its checkpoint is retried (a crash after the write
but before the Kafka commit), so every writer here is idempotent: rows are upserted on their
key, as the course's `foreachBatch` advice says.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from weir.tables.operator import Row

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def postgres_upsert(
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    *,
    dsn: str | None = None,
    column_types: dict[str, str] | None = None,
) -> Callable[[list[Row], int], Awaitable[None]]:
    """A foreach-batch sink that upserts rows into PostgreSQL table `table`.

    The table is created on first use if missing (`column_types` gives SQL types; default
    text), with `key` as its primary key. Each batch is one transaction: all rows or none. The
    DSN defaults to `WEIR_POSTGRES_DSN` or the local server of `weir local up`, read at first
    use. A failing write raises, which aborts the checkpoint: the batch is retried, not lost.
    """
    cols = list(columns)
    keys = list(key)
    if not keys or not set(keys) <= set(cols):
        raise ValueError(f"key {keys} must be a non-empty subset of columns {cols}")
    types = column_types or {}
    col_sql = ", ".join(f"{_ident(c)} {types.get(c, 'text')}" for c in cols)
    create = (
        f"CREATE TABLE IF NOT EXISTS {_ident(table)} ({col_sql}, "
        f"PRIMARY KEY ({', '.join(_ident(k) for k in keys)}))"
    )
    updates = [c for c in cols if c not in keys]
    conflict = (
        "DO UPDATE SET " + ", ".join(f"{_ident(c)} = EXCLUDED.{_ident(c)}" for c in updates)
        if updates
        else "DO NOTHING"
    )
    insert = (
        f"INSERT INTO {_ident(table)} ({', '.join(_ident(c) for c in cols)}) "
        f"VALUES ({', '.join(['%s'] * len(cols))}) "
        f"ON CONFLICT ({', '.join(_ident(k) for k in keys)}) {conflict}"
    )
    state: dict[str, Any] = {}

    async def write(rows: list[Row], batch_id: int) -> None:
        import psycopg

        conn = state.get("conn")
        if conn is None or conn.closed:
            from weir.service.endpoints import configured_postgres_dsn

            conn = await psycopg.AsyncConnection.connect(dsn or configured_postgres_dsn())
            async with conn.transaction():
                await conn.execute(create)
            state["conn"] = conn
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany(insert, [tuple(r.get(c) for c in cols) for r in rows])

    return write
