"""Real-time dashboard metrics (course practice problem 1): per page and 5-minute window,
page views, unique users and the most popular action.

The problem: read clickstream events (user_id, page, action, timestamp) from Kafka; compute
5-minute tumbling window aggregations (page views per page, unique users per page, the most
popular action type); write the results to the console and to Parquet; add a 2-minute
watermark for late events; monitor processing rate and state size. In PySpark (3.4+)::

    dashboard = clicks \\
        .withWatermark("timestamp", "2 minutes") \\
        .groupBy(window(col("timestamp"), "5 minutes"), col("page")) \\
        .agg(
            count("*").alias("page_views"),
            approx_count_distinct("user_id").alias("unique_users"),
            mode("action").alias("top_action"),
        )
    to_console = dashboard.writeStream.outputMode("update").format("console").start()
    to_parquet = dashboard.writeStream.outputMode("update").format("parquet") ...
    # and a StreamingQueryListener printing processedRowsPerSecond and numRowsTotal

* **Unique users** are exact (`count_distinct`): Spark refuses distinct aggregations on
  streams, hence its `approx_count_distinct`, but here the set of a (page, window) group is
  bounded, as only users active on that page in those 5 minutes, and dropped once the
  watermark passes the window's end, so exact costs little and the dashboard's numbers
  can be checked against the clicks.
* **Most popular action** is `mode("action")` (weir.tables.ops.mode): the most frequent
  action in the group, a tie going to the alphabetically first.
* **Late events**: the watermark is the latest timestamp seen minus 2 minutes; a click for
  a window that ended at or before the previous batch's watermark is dropped (counted in
  `numRowsDroppedByWatermark`); a window leaves state once the watermark passes its end.
* **Update mode into Parquet**: every micro-batch writes one file per task holding one row
  per (page, window) it changed, with that window's values so far. A window therefore
  appears once per batch that changed it; its latest row is its current value, and final
  once the watermark has passed its end. Read the table with `read_parquet(path)` (only
  committed batches, in batch order: a page's windows are all in one task) and keep the
  last row per (page, window_start).
* **Monitoring**: `print_progress`, an `app.on_progress` listener, prints one line per
  committed batch: input rows, processedRowsPerSecond, inputRowsPerSecond, and the state
  (numRowsTotal, numRowsUpdated, numRowsDroppedByWatermark) with the watermark.

A micro-batch every 10 seconds by default: each batch writes a Parquet file, so the default
continuous micro-batches would leave many small files.

Input: topic "clickstream", JSON rows {"user_id", "page", "action", "timestamp"}.
Output rows: page, window_start, window_end, page_views, unique_users, top_action.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from weir import App, Query, Stream, Trigger, console, count, count_distinct, parquet, read, window
from weir.agents.activity import activity
from weir.service.traffic import Event, Traffic
from weir.tables.ops.mode import mode

SCHEMA = {"user_id": "string", "page": "string", "action": "string", "timestamp": "timestamp"}
"""The clickstream's fields (a value that does not fit is dead-lettered with the reason)."""

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("page", pa.string()),
        pa.field("window_start", pa.timestamp("ms", tz="UTC")),
        pa.field("window_end", pa.timestamp("ms", tz="UTC")),
        pa.field("page_views", pa.int64()),
        pa.field("unique_users", pa.int64()),
        pa.field("top_action", pa.string()),
    ]
)
"""The Parquet table's columns."""

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""


def dashboard(clicks: Stream) -> Stream:
    """Per page and 5-minute window of `timestamp` (2-minute watermark): page_views,
    unique_users and top_action."""
    return (
        clicks.with_watermark("timestamp", "2 minutes")
        .group_by(window("timestamp", "5 minutes"), "page")
        .agg(
            count().alias("page_views"),
            count_distinct("user_id").alias("unique_users"),
            mode("action").alias("top_action"),
        )
    )


def progress_line(progress: Mapping[str, Any]) -> str:
    """One line for a batch's progress record (weir.service.runtime.progress): its agent and
    batch, input rows, processedRowsPerSecond, inputRowsPerSecond, and the state: numRowsTotal
    summed over the stateful operators that report it ("?" when none does), numRowsUpdated,
    numRowsDroppedByWatermark, and the watermark."""
    ops = progress.get("stateOperators") or []
    totals = [op["numRowsTotal"] for op in ops if op.get("numRowsTotal") is not None]
    updated = sum(op.get("numRowsUpdated") or 0 for op in ops)
    dropped = sum(op.get("numRowsDroppedByWatermark") or 0 for op in ops)
    watermark = (progress.get("eventTime") or {}).get("watermark")
    return (
        f"{progress.get('name')} batch {progress.get('batchId')}: "
        f"numInputRows={progress.get('numInputRows')} "
        f"processedRowsPerSecond={progress.get('processedRowsPerSecond')} "
        f"inputRowsPerSecond={progress.get('inputRowsPerSecond')} "
        f"state numRowsTotal={sum(totals) if totals else '?'} numRowsUpdated={updated} "
        f"numRowsDroppedByWatermark={dropped} watermark={watermark}"
    )


def print_progress(progress: Mapping[str, Any]) -> None:
    """The app's progress listener: `progress_line` on standard output."""
    print(progress_line(progress), flush=True)


def build_app(
    name: str = "clickstream_dashboard",
    input_topic: str = "clickstream",
    output_path: str | Path = "output/clickstream_dashboard",
    trigger: Trigger | None = None,
    **settings: Any,
) -> App:
    """The Kafka pipeline: `input_topic` (with SCHEMA) -> dashboard -> the console and the
    Parquet table at `output_path` (OUTPUT_SCHEMA), update mode, a micro-batch every 10
    seconds unless `trigger` says otherwise, `print_progress` after each batch. `settings`
    are App settings (state_dir, bootstrap_servers, ...)."""
    settings.setdefault("max_event_time_skew_ms", max_event_time_skew)
    app = App(name, **settings)
    app.agent(
        app.topic(input_topic),
        sink=[console(), parquet(output_path, OUTPUT_SCHEMA)],
        schema=SCHEMA,
        trigger=trigger or Trigger.processing_time("10 seconds"),
        name="clickstream_dashboard",
    )(lambda clicks: dashboard(clicks).query("update"))
    app.on_progress(print_progress)
    return app


app = build_app()
query: Query = dashboard(read("clickstream")).query("update")
"""The same query for replay mode (`weir replay clickstream_dashboard`)."""


def generate(traffic: Traffic, n: int) -> Iterator[Event]:
    """`weir produce`'s input: `clickstream` {user_id, page, action, timestamp}, each page
    with its own favourite action."""
    return activity(
        traffic,
        n,
        topic="clickstream",
        time_field="timestamp",
        fields=("user_id", "page", "action"),
    )
