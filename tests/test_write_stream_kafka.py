"""The course's section 3.1 and 8.2, as the course writes them end to end, on the real broker:
`raw.select(from_json(col("value").cast("string"), schema)...)` through `writeStream.format(
"kafka").option("topic", ...).start()` writes exactly the transformed rows, key and value as
Spark's Kafka sink writes a `key` and a `value` column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KafkaHelper
from weir import (
    App,
    DoubleType,
    Stream,
    StringType,
    StructField,
    StructType,
    col,
    from_json,
    to_timestamp,
    upper,
)
from weir.service.runtime.worker import Worker

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

schema = StructType(
    [
        StructField("user_id", StringType()),
        StructField("action", StringType()),
        StructField("amount", DoubleType()),
        StructField("timestamp", StringType()),
    ]
)


async def test_course_pipeline_with_write_stream_to_kafka(
    kafka: KafkaHelper, state_dir: Path
) -> None:
    src, dst = await kafka.topic("ws-events"), await kafka.topic("ws-out")
    rows: list[Any] = [
        {"user_id": f"u{i % 7}", "action": "click", "amount": float(i % 5), "timestamp": None}
        for i in range(200)
    ]
    for i, r in enumerate(rows):
        r["timestamp"] = f"2024-05-01T00:{i % 60:02d}:00Z"
    rows.insert(50, b"{not json")  # from_json (PERMISSIVE) makes every field null: filtered out
    await kafka.produce(src, rows)
    app = App(f"ws-{dst[-6:]}", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)

    @app.agent(app.topic(src), record_columns={"value": "value"})
    def stateless(raw: Stream) -> Any:
        events = raw.select(from_json(col("value").cast("string"), schema).alias("data")).select(
            "data.*"
        )
        filtered = events.filter(col("amount") > 0)
        transformed = filtered.withColumn(
            "event_time", to_timestamp(col("timestamp"))
        ).withColumn(
            "action_upper", upper(col("action"))
        )  # fmt: skip
        output = transformed.select(
            col("user_id").alias("key"), col("amount").cast("string").alias("value")
        )
        return (
            output.writeStream.format("kafka")
            .option("kafka.bootstrap.servers", kafka.bootstrap)
            .option("topic", dst)
            .option("checkpointLocation", "/checkpoints/kafka_output/")
            .trigger(availableNow=True)
            .start()
        )

    await Worker(app).run()
    want = [r for r in rows if isinstance(r, dict) and r["amount"] > 0]
    got = await kafka.read(dst, expect=len(want), idle_s=1.5)
    assert [(r.key, r.value) for r in got] == [
        (r["user_id"].encode(), str(r["amount"]).encode()) for r in want
    ]
    assert len(got) == 160
