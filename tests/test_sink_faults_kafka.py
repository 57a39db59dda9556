"""A sink's server going away mid-run: PostgreSQL stopped while a worker writes an insert-only
table, and started again 15 s later. The worker retries the batch (the server being away is
transient, as Kafka being away is, so it does not count against `max_batch_retries`) and
catches up: every row in the table once. Before, the outage used up the retries and the worker
stopped with "a batch failed 3 times"."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import KafkaHelper
from weir.service.app import App
from weir.service.local.postgres import LocalPostgres
from weir.service.runtime.worker import Worker
from weir.service.sinks.postgres import postgres_insert

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.asyncio]

N = 3000


def count(dsn: str, table: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
    except psycopg.Error:
        return -1


async def until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_postgres_down_mid_run_loses_and_doubles_nothing(
    kafka: KafkaHelper, state_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pg = LocalPostgres(tmp_path_factory.mktemp("pg-fault"))
    dsn = pg.up()
    try:
        src = await kafka.topic("pg-fault-in", partitions=2)

        async def produce(lo: int, hi: int) -> None:
            for start in range(lo, hi, 300):
                rows = [{"id": i} for i in range(start, start + 300)]
                await kafka.produce(src, rows, partition=(start // 300) % 2)

        await produce(0, 600)
        table = f"pg_fault_{uuid.uuid4().hex[:8]}"
        app = App(
            f"pg-fault-{uuid.uuid4().hex[:6]}",
            state_dir=state_dir,
            bootstrap_servers=kafka.bootstrap,
            max_records_per_trigger=100,
            max_batch_retries=2,  # an outage is not a failing batch: it must outlast these
        )
        sink = postgres_insert(table, ["id"], dsn=dsn, column_types={"id": "integer"})
        app.agent(app.topic(src), sink=sink, name="copy")(lambda s: s.query())
        worker = Worker(app)
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: count(dsn, table) >= 500, 60, "the first rows")
            await asyncio.to_thread(pg.down)
            await produce(600, N)  # batches that must wait for the server
            await asyncio.sleep(15)
            assert not task.done(), "the worker stopped while PostgreSQL was away"
            assert pg.up() == dsn  # the same port again
            await until(lambda: count(dsn, table) >= N, 90, "the worker to catch up")
            await asyncio.sleep(1)  # nothing more may come
        finally:
            worker.stop()
            await asyncio.wait_for(task, 60)
        with psycopg.connect(dsn) as conn:
            ids = [i for (i,) in conn.execute(f"SELECT id FROM {table}")]
        assert sorted(ids) == list(range(N)), (len(ids), len(set(ids)))
    finally:
        pg.down()
