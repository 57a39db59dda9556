"""Course exercise 4 on the real broker, PostgreSQL, Parquet and Delta Lake: every event once in
the date-partitioned Parquet table, per-user totals in Delta equal to the sums of the input, one
`batch_log` row per batch adding up to the input; with PostgreSQL unreachable the summaries go
to the error file and the other two sinks still get everything."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
from deltalake import DeltaTable

from tests.conftest import KafkaHelper
from weir.agents import multi_sink
from weir.service.app import Trigger
from weir.service.runtime.worker import Worker
from weir.service.sinks.parquet import read_parquet

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.asyncio]


def events(n: int) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"e{i}",
            "user_id": f"u{i % 5}",
            "action": "buy",
            "amount": float(i % 9),
            "event_time": f"2024-05-0{1 + i % 2}T10:00:{i % 60:02d}Z",
        }
        for i in range(n)
    ]


async def run(kafka: KafkaHelper, state_dir: Path, data: Path, dsn: str) -> list[dict[str, object]]:
    topic = await kafka.topic("user-events-ms")
    rows = events(900)
    await kafka.produce(topic, rows)
    app = multi_sink.build_app(
        f"ms-{uuid.uuid4().hex[:6]}",
        topic,
        data,
        dsn,
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
        max_records_per_trigger=400,
    )
    app.agents["process_batch"].trigger = Trigger.available_now()
    await Worker(app).run()
    raw = read_parquet(data / "raw_events").to_pylist()
    assert sorted((r["event_id"], r["date"]) for r in raw) == sorted(
        (r["event_id"], str(r["event_time"])[:10]) for r in rows
    )
    totals = DeltaTable(str(data / "user_totals")).to_pyarrow_table().to_pylist()
    want: dict[str, float] = {}
    for r in rows:
        want[str(r["user_id"])] = want.get(str(r["user_id"]), 0.0) + float(r["amount"])  # type: ignore[arg-type]
    assert {t["user_id"]: t["total_amount"] for t in totals} == want
    return rows


async def test_three_sinks_each_get_every_batch(
    kafka: KafkaHelper, postgres_dsn: str, state_dir: Path, tmp_path: Path
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS batch_log")
    rows = await run(kafka, state_dir, tmp_path, postgres_dsn)
    with psycopg.connect(postgres_dsn) as conn:
        log = conn.execute("SELECT batch_id, row_count, total_amount FROM batch_log").fetchall()
    assert len(log) == 3  # 900 records, 400 a batch
    assert sum(n for _b, n, _t in log) == len(rows)
    assert sum(t for _b, _n, t in log) == sum(float(r["amount"]) for r in rows)  # type: ignore[arg-type]
    assert not (tmp_path / "errors.jsonl").exists()


async def test_postgres_down_goes_to_the_error_file_and_the_stream_goes_on(
    kafka: KafkaHelper, state_dir: Path, tmp_path: Path
) -> None:
    rows = await run(kafka, state_dir, tmp_path, "postgresql://weir@127.0.0.1:9/none")
    lines = [orjson.loads(x) for x in (tmp_path / "errors.jsonl").read_bytes().splitlines()]
    assert len(lines) == 3
    assert sum(line["rows"][0]["row_count"] for line in lines) == len(rows)
    assert all("postgres[batch_log]" in line["sink"] for line in lines)
