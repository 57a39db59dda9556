"""Event summary per action and 10-minute window (course exercise 1).

The exercise, in the course's PySpark::

    summary = events \\
        .withWatermark("event_time", "3 minutes") \\
        .groupBy(window(col("event_time"), "10 minutes"), col("action")) \\
        .agg(
            count("*").alias("event_count"),
            spark_sum("amount").alias("total_amount"),
            approx_count_distinct("user_id").alias("distinct_users"),
        )
    query = summary.writeStream.outputMode("update") \\
        .format("parquet").option("path", "/data/output/event_summary/") ...

A 3-minute watermark tolerates events up to 3 minutes late; tumbling 10-minute windows are
grouped by action. Distinct users are counted with a HyperLogLog sketch (relative error
within 5%), so the state per window stays a few kilobytes however many users there are. In
update mode each micro-batch emits the windows it changed; windows are dropped once the
watermark passes their end.

Input: topic "user_events", JSON rows {"event_id", "user_id", "action", "amount",
"event_time"} (the exercise's schema, checked: a row that does not fit is dead-lettered).
Output rows: action, window_start, window_end, event_count, total_amount, distinct_users.

The app (`weir run event_summary`) writes them to Parquet in update mode, as the exercise
asks: every micro-batch appends one row per window it changed, so a window appears once per
batch that touched it and the latest row is its current value; `read_parquet_latest(path,
key=["action", "window_start", "window_end"])` reads exactly that. A batch takes at most 5,000
records (`maxOffsetsPerTrigger=5000`: `max_records_per_trigger`), and a progress listener
prints `inputRowsPerSecond` after each micro-batch (the exercise's `query.lastProgress`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from weir import App, Query, Schema, Stream, approx_count_distinct, count, parquet, read, window
from weir import sum as spark_sum
from weir.agents import activity
from weir.service.traffic import Event, Traffic

SCHEMA = Schema(
    {
        "event_id": "string",
        "user_id": "string",
        "action": "string",
        "amount": "double",
        "event_time": "timestamp",
    }
)
OUTPUT = pa.schema(
    [
        ("action", pa.string()),
        ("window_start", pa.timestamp("ms", tz="UTC")),
        ("window_end", pa.timestamp("ms", tz="UTC")),
        ("event_count", pa.int64()),
        ("total_amount", pa.float64()),
        ("distinct_users", pa.int64()),
    ]
)
KEY = ["action", "window_start", "window_end"]
"""One output row per (action, window): `read_parquet_latest(path, key=KEY)`."""


def summarize(events: Stream) -> Stream:
    """The exercise's aggregation: 3-minute watermark, 10-minute windows per action."""
    return (
        events.with_watermark("event_time", "3 minutes")
        .group_by(window("event_time", "10 minutes"), "action")
        .agg(
            count("*").alias("event_count"),
            spark_sum("amount").alias("total_amount"),
            approx_count_distinct("user_id").alias("distinct_users"),
        )
    )


summary = summarize(read("user_events"))
query: Query = summary.query("update")


def build_app(
    name: str = "event-summary",
    topic: str = "user_events",
    path: str | Path = "data/output/event_summary",
    **settings: Any,
) -> App:
    """Exercise 1 on Kafka: `topic` -> the summary -> Parquet at `path`, update mode, 5,000
    records per micro-batch at most, `inputRowsPerSecond` printed after each one."""
    settings.setdefault("max_records_per_trigger", 5000)
    settings.setdefault("max_event_time_skew_ms", max_event_time_skew)
    app = App(name, **settings)

    @app.agent(app.topic(topic), sink=parquet(path, OUTPUT), schema=SCHEMA, name="summary")
    def event_summary(events: Stream) -> Query:
        return summarize(events).query("update")

    @app.on_progress
    def print_rate(progress: dict[str, Any]) -> None:
        print(
            f"batch {progress['batchId']}: {progress['numInputRows']} rows, "
            f"inputRowsPerSecond {progress['inputRowsPerSecond']}",
            flush=True,
        )

    return app


max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""

app = build_app()


def generate(traffic: Traffic, n: int) -> Iterator[Event]:
    """`weir produce`'s input: the course's events on `user_events` (weir.agents.activity)."""
    return activity.activity(traffic, n, topic="user_events", time_field="event_time")
