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

Each row is handled on its own: no state, no watermark, append mode (every kept row is
written once, in input order). A null amount is not > 0, so the row is filtered out, as in
Spark; `event_time` is the `timestamp` text as a timestamp column (ISO-8601 UTC in the
output), `action_upper` the action in upper case (null stays null). Where Spark's
`from_json` and `to_timestamp` make a misfit null, Weir dead-letters the record with the
field and the reason (an `amount` that is not a number, a `timestamp` that is not a time).

The app's agent reads topic `events` with that schema, writes every micro-batch to the
console and to the Kafka topic `events_transformed` (keyed by user_id), one micro-batch
every 5 seconds as the course triggers it.

Input: topic "events", JSON rows {"user_id", "action", "amount", "timestamp"}.
Output rows: user_id, action, amount, timestamp, event_time, action_upper.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from weir import App, Query, Stream, Trigger, console, read
from weir.agents.activity import activity
from weir.service.traffic import Event, Traffic

SCHEMA = {"user_id": "string", "action": "string", "amount": "double", "timestamp": "string"}
"""The course's StructType: the timestamp arrives as text and is parsed by the query."""


def _positive(row: dict[str, Any]) -> bool:
    amount = row.get("amount")
    return amount is not None and amount > 0


def _upper(row: dict[str, Any]) -> Any:
    action = row.get("action")
    return None if action is None else action.upper()


def transform(events: Stream) -> Stream:
    """filter(amount > 0), then event_time = to_timestamp(timestamp) and action_upper =
    upper(action)."""
    return (
        events.filter(_positive)
        .with_column("event_time", lambda r: r.get("timestamp"), timestamp=True)
        .with_column("action_upper", _upper)
    )


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
