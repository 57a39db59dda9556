"""5-minute windows per user, written once final (course section 4.2, "Watermarking").

The course's PySpark::

    windowed_with_watermark = events \\
        .withWatermark("event_time", "10 minutes") \\
        .groupBy(window(col("event_time"), "5 minutes"), col("user_id")) \\
        .count()
    query = windowed_with_watermark.writeStream.outputMode("append") \\
        .format("parquet") ...

In append mode a window's row is written exactly once, with its final count, in the first
micro-batch whose watermark (largest event_time seen minus 10 minutes) is at or past the
window's end; its state is then dropped. Events up to 10 minutes late are still counted;
events for a window that has already been written are dropped and reported as late.

Input: topic "events", JSON rows {"event_id", "user_id", "action", "amount", "event_time"}.
Output rows: user_id, window_start, window_end, count.
"""

from __future__ import annotations

from weir import Query, col, read, window
from weir.agents import activity

events = read("events")

windowed_with_watermark = (
    events.withWatermark("event_time", "10 minutes")
    .groupBy(window(col("event_time"), "5 minutes"), col("user_id"))
    .count()
)

query: Query = windowed_with_watermark.query("append")

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""

generate = activity.events
"""`weir produce`'s input: the course's events (weir.agents.activity.events)."""
