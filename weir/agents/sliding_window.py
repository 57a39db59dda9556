"""Sliding 10-minute windows every 5 minutes per user (course section 4.1, "Sliding window").

The course's PySpark::

    sliding = events \\
        .withWatermark("event_time", "5 minutes") \\
        .groupBy(window(col("event_time"), "10 minutes", "5 minutes"), col("user_id")) \\
        .agg(
            count("*").alias("event_count"),
            spark_sum("amount").alias("total_amount"),
        )
    query = sliding.writeStream.outputMode("update") ...

The slide (5 min) is shorter than the window (10 min), so windows overlap and each event is
counted in the 2 windows that cover it. In update mode each micro-batch emits the windows it
changed; a window is dropped once the watermark (largest event_time seen minus 5 minutes)
passes its end, and an event arriving for an already-closed window is reported as late for
that window (it may still count in the later window that covers it).

Input: topic "events", JSON rows {"event_id", "user_id", "action", "amount", "event_time"}.
Output rows: user_id, window_start, window_end, event_count, total_amount.
"""

from __future__ import annotations

from weir import Query, col, count, read, window
from weir import sum as spark_sum
from weir.agents import activity

events = read("events")

sliding = (
    events.withWatermark("event_time", "5 minutes")
    .groupBy(window(col("event_time"), "10 minutes", "5 minutes"), col("user_id"))
    .agg(
        count("*").alias("event_count"),
        spark_sum("amount").alias("total_amount"),
    )
)

query: Query = sliding.query("update")

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""

generate = activity.events
"""`weir produce`'s input: the course's events (weir.agents.activity.events)."""
