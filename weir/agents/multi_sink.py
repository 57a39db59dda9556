"""foreachBatch multi-sink writer (course exercise 4).

The exercise, in the course's PySpark::

    def process_batch(batch_df, batch_id):
        if batch_df.isEmpty():
            return
        batch_df.withColumn("date", to_date("event_time")) \\
            .write.partitionBy("date").mode("append").parquet("/data/raw_events")
        totals = batch_df.groupBy("user_id").agg(sum("amount").alias("total_amount"))
        DeltaTable.forPath(spark, "/data/user_totals").alias("t").merge(
            totals.alias("s"), "t.user_id = s.user_id AND t.last_batch_id < {batch_id}") ...
        try:
            write_summary_to_postgres(batch_id, batch_df)   # {batch_id, row_count, ...}
        except Exception as e:
            log_to_error_file(batch_id, e)                  # and the stream goes on

    events.writeStream.foreachBatch(process_batch) \\
        .trigger(processingTime="30 seconds").option("checkpointLocation", ...).start()

Why `batch_id` is critical: after a failure Spark (and Weir) runs the same batch again, with
the same id and the same input records. A sink that remembers which batch ids it has written
can skip the repeat; without the id, the retry appends the raw events twice and adds the
totals twice. In Weir the id (`BatchId`) also names the query and the task, because batch
numbers count per input partition; each sink here is idempotent on it: the Parquet sink
skips a batch whose manifest exists, the Delta sink a batch whose application transaction
version the table has, PostgreSQL a batch recorded in `weir_sink_batches`.

Per-user totals accumulate: the batch's sums are added to the table's current ones and merged
(upsert on user_id) in one Delta commit tagged with the batch id, so a batch run again is
skipped instead of added twice. One input partition keeps one writer per user (with more,
group the totals in the query instead: `group_by("user_id")` into `delta(..., mode="merge")`).

Input: topic "user_events" (exercise 1's schema). Outputs: Parquet at `raw_path` partitioned
by `date`, Delta table `totals_path` {user_id, total_amount}, PostgreSQL table `batch_log`
{batch_id, row_count, total_amount, timestamp}; when PostgreSQL fails (after 3 retries) the
batch's summary and the error go to `error_path` and the stream goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from weir import App, BatchId, Query, Stream, delta, foreach_batch, log_and_continue, parquet
from weir import read as read_stream
from weir.agents.event_summary import SCHEMA
from weir.agents.event_summary import generate as generate
from weir.service.sinks.postgres import postgres_upsert
from weir.tables.timeutil import iso_utc

RAW = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("action", pa.string()),
        ("amount", pa.float64()),
        ("event_time", pa.timestamp("ms", tz="UTC")),
        ("date", pa.string()),
    ]
)
TOTALS = pa.schema([("user_id", pa.string()), ("total_amount", pa.float64())])


class MultiSinkWriter:
    """`process_batch(rows, batch_id)`: the exercise's three writes, each idempotent on the
    batch id; see the module docstring."""

    def __init__(
        self, raw_path: Path, totals_path: Path, error_path: Path, dsn: str | None = None
    ) -> None:
        self.raw = parquet(raw_path, RAW, partition_by=["date"])
        self.totals_path = totals_path
        self.totals = delta(totals_path, TOTALS, mode="merge", keys=["user_id"])
        self.batch_log = log_and_continue(
            postgres_upsert(
                "batch_log",
                ["batch_id", "row_count", "total_amount", "timestamp"],
                key=["batch_id"],
                dsn=dsn,
                column_types={
                    "row_count": "integer",
                    "total_amount": "double precision",
                    "timestamp": "timestamptz",
                },
            ),
            error_path,
        )

    def _current(self, users: set[str]) -> dict[str, float]:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            table = DeltaTable(str(self.totals_path)).to_pyarrow_table()
        except TableNotFoundError:
            return {}
        return {r["user_id"]: r["total_amount"] for r in table.to_pylist() if r["user_id"] in users}

    async def __call__(self, rows: list[dict[str, Any]], batch_id: int) -> None:
        from weir import write_batch

        assert isinstance(batch_id, BatchId)
        if not rows:
            return
        raw = [{**r, "date": r["event_time"][:10]} for r in rows]
        await write_batch(raw, batch_id, self.raw)
        sums: dict[str, float] = {}
        for r in rows:
            sums[r["user_id"]] = sums.get(r["user_id"], 0.0) + (r["amount"] or 0.0)
        now = self._current(set(sums))
        totals = [{"user_id": u, "total_amount": now.get(u, 0.0) + t} for u, t in sums.items()]
        await write_batch(totals, batch_id, self.totals)
        summary = {
            "batch_id": batch_id.key,
            "row_count": len(rows),
            "total_amount": sum(sums.values()),
            "timestamp": iso_utc(int(time.time() * 1000)),
        }
        await write_batch([summary], batch_id, self.batch_log)


def build_app(
    name: str = "multi-sink",
    topic: str = "user_events",
    data: str | Path = "data/output/multi_sink",
    dsn: str | None = None,
    **settings: Any,
) -> App:
    """Exercise 4 on Kafka, a 30-second processing-time trigger; outputs under `data`
    (raw_events/, user_totals/, errors.jsonl)."""
    from weir import Trigger

    root = Path(data)
    writer = MultiSinkWriter(
        root / "raw_events", root / "user_totals", root / "errors.jsonl", dsn=dsn
    )
    app = App(name, **settings)
    app.agent(
        app.topic(topic),
        foreach_batch=foreach_batch(writer),
        schema=SCHEMA,
        trigger=Trigger.processing_time("30 seconds"),
        name="process_batch",
    )(passthrough)
    return app


def passthrough(events: Stream) -> Query:
    """Every event, as it is (the foreach-batch function does the work)."""
    return events.query("append")


app = build_app()
query: Query = passthrough(read_stream("user_events"))
"""The same query for replay mode (`weir replay multi_sink` runs the writer too)."""
