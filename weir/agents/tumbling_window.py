"""Tumbling 10-minute windows per action (course section 4.1, "Tumbling window").

The course's PySpark::

    tumbling = events \\
        .withWatermark("event_time", "5 minutes") \\
        .groupBy(window(col("event_time"), "10 minutes"), col("action")) \\
        .agg(
            count("*").alias("event_count"),
            spark_sum("amount").alias("total_amount"),
            avg("amount").alias("avg_amount"),
        )
    query = tumbling.writeStream.outputMode("update") ...

Each event falls in exactly one window [start, start + 10 min). In update mode every
micro-batch emits the windows whose aggregates it changed; once the watermark (largest
event_time seen minus 5 minutes) passes a window's end the window is dropped from state and
later events for it are reported as late instead of reopening it.

Input: topic "events", JSON rows {"event_id", "user_id", "action", "amount", "event_time"}.
Output rows: action, window_start, window_end, event_count, total_amount, avg_amount.
"""

from __future__ import annotations

from weir import Query, avg, col, count, read, window
from weir import sum as spark_sum
from weir.agents import activity

events = read("events")

tumbling = (
    events.withWatermark("event_time", "5 minutes")
    .groupBy(window(col("event_time"), "10 minutes"), col("action"))
    .agg(
        count("*").alias("event_count"),
        spark_sum("amount").alias("total_amount"),
        avg("amount").alias("avg_amount"),
    )
)

query: Query = tumbling.query("update")

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""

generate = activity.events
"""`weir produce`'s input: the course's events (weir.agents.activity.events)."""
