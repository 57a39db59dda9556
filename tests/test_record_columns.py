"""The Kafka record's own fields as columns (`record_columns`), as Spark's Kafka source gives
`key`, `topic`, `partition`, `offset` and `timestamp` beside the value: exact values on the
real broker, and the broker timestamp usable as event time through a repartition.

The windowed count groups by the window only: before the fix, its repartition records had no
key and spread over both partitions, so each task counted half a window (5 and 5, not 10)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import KafkaHelper
from weir.service.app import App, Trigger
from weir.service.record_columns import parse_record_columns
from weir.service.runtime.worker import Worker
from weir.tables.ops.functions import count
from weir.tables.query import Query
from weir.tables.stream import Stream
from weir.tables.window import window

BASE = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def test_spec_forms() -> None:
    assert parse_record_columns(True) == {
        f: f for f in ("key", "topic", "partition", "offset", "timestamp")
    }
    assert parse_record_columns(["key"]) == {"key": "key"}
    assert parse_record_columns({"timestamp": "kafka_ts"}) == {"timestamp": "kafka_ts"}
    assert parse_record_columns(None) == {}
    assert parse_record_columns(["value"]) == {"value": "value"}  # named only, not with True
    with pytest.raises(ValueError, match=r"unknown fields \['headers'\]"):
        parse_record_columns(["headers"])


@pytest.mark.broker
@pytest.mark.asyncio
async def test_record_columns_exact_and_broker_time_as_event_time(
    kafka: KafkaHelper, state_dir: Path
) -> None:
    src = await kafka.topic("reccols-in", partitions=2)
    raw = await kafka.topic("reccols-raw")
    counts = await kafka.topic("reccols-counts")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    sent = []
    try:
        for i in range(12):
            p = i % 2
            key = None if i == 5 else f"k{i % 3}".encode()
            ts = BASE + i * 60_000  # one a minute: 12 minutes, two 10-minute windows
            md = await producer.send_and_wait(
                src,
                orjson.dumps({"n": i, "timestamp": "not the broker's"}),
                key=key,
                partition=p,
                timestamp_ms=ts,
            )
            sent.append((i, key, p, md.offset, ts))
    finally:
        await producer.stop()
    app = App("reccols", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)

    @app.agent(
        app.topic(src),
        sink=app.topic(raw),
        trigger=Trigger.available_now(),
        headers="h",
        record_columns={
            "key": "key",
            "partition": "partition",
            "offset": "offset",
            "topic": "topic",
            "timestamp": "ts",
        },
    )
    def copy(s: Stream) -> Query:
        return s.map(lambda r: {**r, "h": {"from-offset": str(r["offset"])}}).query()

    @app.agent(
        app.topic(src),
        sink=app.topic(counts),
        trigger=Trigger.available_now(),
        record_columns={"timestamp": "ts"},
    )
    def per_window(s: Stream) -> Query:
        return (
            s.with_watermark("ts", "1 minute")
            .group_by(window("ts", "10 minutes"))
            .agg(count().alias("n"))
            .query("update")
        )

    await Worker(app).run()
    records = await kafka.read(raw, expect=12)
    assert sorted(dict(r.headers)["from-offset"] for r in records) == sorted(
        str(off).encode() for _i, _k, _p, off, _ts in sent
    )
    got = sorted(await kafka.read_json(raw, expect=12), key=lambda r: r["n"])
    assert got == [
        {
            "n": i,
            "timestamp": "not the broker's",
            "key": None if key is None else key.decode(),
            "partition": p,
            "offset": off,
            "topic": src,
            "ts": f"2024-05-01T00:{i:02d}:00Z",
        }
        for i, key, p, off, _ts in sent
    ]
    finals = {}
    outs = await kafka.read_json(counts, idle_s=1.5)
    for r in outs:
        finals[r["window_start"]] = r["n"]
    assert finals == {"2024-05-01T00:00:00Z": 10, "2024-05-01T00:10:00Z": 2}
