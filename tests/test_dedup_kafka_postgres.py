"""Exercise 2 end to end on the real broker and the real PostgreSQL: duplicates from producer
retries are removed; the clean events reach the Kafka topic and, through an idempotent
foreach-batch upsert, the PostgreSQL log table, once each."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import KafkaHelper
from weir.agents.dedup import build_app
from weir.service.app import Trigger
from weir.service.runtime.worker import Worker
from weir.tables.timeutil import iso_utc

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.asyncio]

T0 = 1_700_000_000_000


async def test_clean_events_to_kafka_and_postgres(
    kafka: KafkaHelper, postgres_dsn: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEIR_POSTGRES_DSN", postgres_dsn)
    raw = await kafka.topic("raw-events", partitions=2)
    clean = await kafka.topic("clean-events", partitions=2)
    table = f"clean_events_log_{uuid.uuid4().hex[:8]}"
    rng = random.Random(5)
    events = [
        {
            "event_id": f"e{i}",
            "user_id": f"u{i % 7}",
            "amount": i / 4,
            "event_ts": iso_utc(T0 + i * 1000),
        }
        for i in range(600)
    ]
    sent = events + [rng.choice(events) for _ in range(150)]  # retries resend the same payload
    rng.shuffle(sent)
    await kafka.produce(raw, sent, key="event_id")

    app = build_app(
        f"dedup-{uuid.uuid4().hex[:6]}",
        raw,
        clean,
        table,
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
    )
    app.agents["dedup"].trigger = Trigger.available_now()
    await Worker(app).run()

    out = await kafka.read_json(clean, idle_s=1.0)
    assert sorted(o["event_id"] for o in out) == sorted(e["event_id"] for e in events)
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            f'SELECT event_id, user_id, amount, event_ts FROM "{table}" ORDER BY event_id'
        ).fetchall()
    assert len(rows) == len(events)
    by_id = {e["event_id"]: e for e in events}
    for event_id, user_id, amount, ts in rows:
        e = by_id[event_id]
        assert (user_id, amount, iso_utc(int(ts.timestamp() * 1000))) == (
            e["user_id"],
            e["amount"],
            e["event_ts"],
        )
