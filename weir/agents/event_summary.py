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

Input: topic "events", JSON rows {"event_id", "user_id", "action", "amount", "event_time"}.
Output rows: action, window_start, window_end, event_count, total_amount, distinct_users.
"""

from __future__ import annotations

from weir import Query, approx_count_distinct, count, read, window
from weir import sum as spark_sum
from weir.agents import activity

events = read("events")

summary = (
    events.with_watermark("event_time", "3 minutes")
    .group_by(window("event_time", "10 minutes"), "action")
    .agg(
        count("*").alias("event_count"),
        spark_sum("amount").alias("total_amount"),
        approx_count_distinct("user_id").alias("distinct_users"),
    )
)

query: Query = summary.query("update")

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""

generate = activity.events
"""`weir produce`'s input: the course's events (weir.agents.activity.events)."""
