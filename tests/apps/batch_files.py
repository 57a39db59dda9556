"""A foreach-batch writer that is idempotent by batch identity, for crash tests: each batch's
rows go to one JSON file named by `batch_id` (its key: query, task, number), written under a
temporary name and renamed, and a batch whose file exists is skipped, as the course's
exercise 4 asks of a foreach-batch function.

WEIR_TEST_INPUT names the input topic (WEIR_TEST_INPUT_DIR: a folder of JSON-lines files
read by the directory source instead), WEIR_TEST_APP the app, WEIR_TEST_BATCH_DIR the folder;
WEIR_TEST_SINK=parquet or delta writes through that sink instead (same folder); postgres
inserts into the PostgreSQL table named like the folder (WEIR_POSTGRES_DSN);
the worker stops once the input is processed (available-now). WEIR_* settings apply.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from weir.service.app import App, Trigger
from weir.service.sinks.base import Sink
from weir.service.sinks.delta import delta
from weir.service.sinks.parquet import parquet
from weir.service.sinks.postgres import postgres_insert
from weir.tables.query import Query
from weir.tables.stream import Stream

app = App(os.environ.get("WEIR_TEST_APP", "batch-files"))
_in_dir = os.environ.get("WEIR_TEST_INPUT_DIR")
_in = (
    app.files("batch-files-in", _in_dir, schema={"id": "integer"}, settle="1 second")
    if _in_dir
    else app.topic(os.environ.get("WEIR_TEST_INPUT", "batch-files-in"))
)
_dir = Path(os.environ.get("WEIR_TEST_BATCH_DIR", "batches"))


def write_batch(rows: list[dict[str, Any]], batch_id: Any) -> None:
    """One file per batch identity; a batch already written is skipped."""
    _dir.mkdir(parents=True, exist_ok=True)
    final = _dir / (str(batch_id).replace("/", "_") + ".json")
    if final.exists():
        return
    tmp = final.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(rows))
    tmp.rename(final)


_kind = os.environ.get("WEIR_TEST_SINK", "files")
if _kind in ("parquet", "delta", "postgres"):  # a built-in sink instead
    if _kind == "postgres":  # insert-only: the table is named by the folder's last part
        _sink: Sink = postgres_insert(_dir.name, ["id"], column_types={"id": "bigint"})
    else:
        _sink = (parquet if _kind == "parquet" else delta)(_dir, {"id": "integer"})

    @app.agent(_in, sink=_sink, name="copy", trigger=Trigger.available_now())
    def to_table(events: Stream) -> Query:
        """Every event, unchanged."""
        return events.query("append")

else:

    @app.agent(_in, foreach_batch=write_batch, trigger=Trigger.available_now())
    def copy(events: Stream) -> Query:
        """Every event, unchanged."""
        return events.query("append")
