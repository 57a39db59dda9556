"""Stateless operations (course section 3.1): filter and derived columns, in append mode.

The course's PySpark::

    schema = StructType([
        StructField("user_id", StringType()),
        StructField("action", StringType()),
        StructField("amount", DoubleType()),
        StructField("timestamp", StringType()),
    ])
    events = raw.select(
        from_json(col("value").cast("string"), schema).alias("data")
    ).select("data.*")
    filtered = events.filter(col("amount") > 0)
    transformed = filtered.withColumn(
        "event_time", to_timestamp(col("timestamp"))
    ).withColumn(
        "action_upper", upper(col("action"))
    )
    query = transformed.writeStream \\
        .outputMode("append") \\
        .format("console") \\
        .trigger(processingTime="5 seconds") \\
        .start()

Weir's `transform` is the course's three lines after the parse, as written. The parse itself
is the agent's `schema=SCHEMA` (the course's StructType): each Kafka value is decoded and
typed against it. Each row is handled on its own: no state, no watermark, append mode (every
kept row is written once, in input order). A null amount is not > 0, so the row is filtered
out, as in Spark; `event_time` is the `timestamp` text as a timestamp column (ISO-8601 UTC in
the output; text that is not a time gives null, as Spark's `to_timestamp`), `action_upper`
the action in upper case (null stays null). Where Spark's `from_json` makes a misfit null,
Weir dead-letters the record with the field and the reason (an `amount` that is not a
number), so no bad value passes silently.

The app's agent reads topic `events` with that schema, writes every micro-batch to the
console and to the Kafka topic `events_transformed` (keyed by user_id), one micro-batch
every 5 seconds as the course triggers it.

Input: topic "events", JSON rows {"user_id", "action", "amount", "timestamp"}.
Output rows: user_id, action, amount, timestamp, event_time, action_upper.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from weir import (
    App,
    DoubleType,
    Query,
    Stream,
    StringType,
    StructField,
    StructType,
    Trigger,
    col,
    console,
    read,
    to_timestamp,
    upper,
)
from weir.agents.activity import activity
from weir.service.traffic import Event, Traffic

SCHEMA = StructType(
    [
        StructField("user_id", StringType()),
        StructField("action", StringType()),
        StructField("amount", DoubleType()),
        StructField("timestamp", StringType()),
    ]
)
"""The course's StructType: the timestamp arrives as text and is parsed by the query."""


def transform(events: Stream) -> Stream:
    """filter(amount > 0), then event_time = to_timestamp(timestamp) and action_upper =
    upper(action), as the course writes them."""
    filtered = events.filter(col("amount") > 0)
    transformed = filtered.withColumn("event_time", to_timestamp(col("timestamp"))).withColumn(
        "action_upper", upper(col("action"))
    )
    return transformed


def build_app(
    name: str = "stateless_ops",
    input_topic: str = "events",
    output_topic: str = "events_transformed",
    trigger: Trigger | None = None,
    **settings: Any,
) -> App:
    """The Kafka pipeline: `input_topic` (with SCHEMA) -> transform -> the console and
    `output_topic`; a micro-batch every 5 seconds unless `trigger` says otherwise. `settings`
    are App settings (state_dir, bootstrap_servers, ...)."""
    app = App(name, **settings)
    app.agent(
        app.topic(input_topic),
        sink=[app.topic(output_topic), console()],
        key="user_id",
        schema=SCHEMA,
        trigger=trigger or Trigger.processing_time("5 seconds"),
        name="stateless_ops",
    )(lambda events: transform(events).query("append"))
    return app


app = build_app()
query: Query = transform(read("events")).query("append")
"""The same query for replay mode (`weir replay stateless_ops`)."""


def generate(traffic: Traffic, n: int) -> Iterator[Event]:
    """`weir produce`'s input: `events` {user_id, action, amount, timestamp}, about one
    amount in five 0 or a refund (negative), which the filter drops."""
    return activity(
        traffic,
        n,
        topic="events",
        time_field="timestamp",
        fields=("user_id", "action", "amount"),
        nonpositive=0.2,
    )
