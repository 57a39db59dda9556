"""Two PostgreSQL sinks of one query in one database each get every batch.

Found as a new user would: the batch record that makes a PostgreSQL sink idempotent was keyed
by (query, task, batch) only, so the second table of the same query found each batch already
recorded and silently skipped its rows (an exercise 4 writer with two tables lost one)."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import KafkaHelper
from weir.service.app import App, Trigger
from weir.service.runtime.worker import Worker
from weir.service.sinks.postgres import postgres_insert
from weir.tables.query import Query
from weir.tables.stream import Stream

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.asyncio]


async def test_two_tables_of_one_query_each_get_every_row(
    kafka: KafkaHelper, postgres_dsn: str, state_dir: Path
) -> None:
    src = await kafka.topic("pg-two")
    rows = [{"id": i, "user": f"u{i % 4}"} for i in range(300)]
    await kafka.produce(src, rows)
    tag = uuid.uuid4().hex[:8]
    tables = [f"pg_all_{tag}", f"pg_copy_{tag}"]
    app = App(f"pg-two-{tag}", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)

    @app.agent(
        app.topic(src),
        sink=[
            postgres_insert(t, ["id", "user"], dsn=postgres_dsn, column_types={"id": "integer"})
            for t in tables
        ],
        trigger=Trigger.available_now(),
    )
    def copy(s: Stream) -> Query:
        return s.query()

    await Worker(app).run()
    with psycopg.connect(postgres_dsn) as conn:
        for t in tables:
            got = conn.execute(f'SELECT id, "user" FROM {t} ORDER BY id').fetchall()
            assert got == [(r["id"], r["user"]) for r in rows], t
