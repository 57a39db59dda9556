"""The foreach-batch sink: a user function called with each micro-batch's rows and batch id
before the checkpoint commits (Spark's `foreachBatch`), given the rows as dicts or as an
Arrow table (`foreach_batch(fn, arrow=True)`), failing the batch or keeping it in an error
file when the function keeps failing (`on_error`), and `write_batch` to write the batch to
several sinks from inside the function, keeping its identity (so idempotent sinks stay so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from weir.service.codec import render_rows
from weir.service.sinks.base import BatchId, BatchIdentity, Delivery, Sink, SinkBatch, SinkFailure
from weir.service.sinks.errors import log_and_continue
from weir.tables.operator import Row
from weir.tables.timeutil import Duration, to_millis

if TYPE_CHECKING:  # pyarrow loads only for an Arrow function or table
    import pyarrow as pa

    from weir.service.sinks.arrow import Schema

BatchFn = Callable[[list[dict[str, Any]], int], Any]
"""A foreach-batch function: (rows, batch_id) -> None (may be a coroutine function); the
batch id is a `BatchId`: an int that also names its query and task (its `key`)."""
ArrowBatchFn = Callable[["pa.Table", int], Any]
"""A foreach-batch function given the rows as a `pyarrow.Table` (`foreach_batch(arrow=...)`)."""


class ForeachBatchSink(Sink):
    """Calls `fn(rows, batch_id)` (rows with times as ISO-8601 UTC) once per batch with rows;
    with `arrow` (True: schema inferred from the rows; or a schema, as the Parquet sink takes
    one) `fn(table, batch_id)` with a `pyarrow.Table`, times as timestamp[ms, tz=UTC].

    At least once: a batch retried after a crash, even on another machine, is passed again
    with the same `BatchId` and exactly the same rows, so a function that skips a batch whose
    `batch_id.key` it already wrote (or upserts) is idempotent. A function that raises, or
    rows that do not fit the Arrow schema, fail the checkpoint (`SinkFailure`)."""

    delivery: Delivery = "at_least_once"

    def __init__(self, fn: BatchFn | ArrowBatchFn, arrow: bool | Schema = False) -> None:
        self.fn = fn
        self.arrow = arrow is not False
        self.schema: pa.Schema | None = None
        if not isinstance(arrow, bool):
            from weir.service.sinks.arrow import as_schema

            self.schema = as_schema(arrow)

    @property
    def description(self) -> str:
        return f"foreach_batch[{getattr(self.fn, '__name__', type(self.fn).__name__)}]"

    async def write(self, batch: SinkBatch) -> None:
        rows = self._table(batch) if self.arrow else self._dicts(batch)
        try:
            res = self.fn(rows, BatchId(batch.identity))
            if asyncio.iscoroutine(res):
                await res
        except Exception as exc:
            raise SinkFailure(f"foreach_batch failed: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _dicts(batch: SinkBatch) -> list[dict[str, Any]]:
        return render_rows(batch.rows, batch.timestamp_columns)

    def _table(self, batch: SinkBatch) -> pa.Table:
        from weir.service.sinks.arrow import UNFIT, infer_schema, to_table

        try:
            schema = self.schema
            if schema is None:
                schema = infer_schema(batch.rows, batch.timestamp_columns)
            return to_table(batch.rows, schema)
        except UNFIT as exc:
            raise SinkFailure(f"{self.description}: a row does not fit the schema: {exc}") from exc


def foreach_batch(
    fn: BatchFn | ArrowBatchFn,
    *,
    arrow: bool | Schema = False,
    on_error: Literal["fail", "log_and_continue"] = "fail",
    error_path: str | Path | None = None,
    retries: int = 3,
    backoff: Duration = "1 second",
) -> Sink:
    """Spark's `foreachBatch(fn)`: `fn(rows, batch_id)` per batch (see `ForeachBatchSink`;
    `arrow` passes a `pyarrow.Table`).

    on_error="fail" (default): a failing function fails the batch (`SinkFailure`); the worker
    retries it, then applies its `on_batch_failure` policy: nothing is lost.
    on_error="log_and_continue": a failing call is retried `retries` times with exponential
    backoff from `backoff`; a batch still failing is kept as one JSON line in `error_path`
    (required), counted in `weir_sink_errors`, logged, and the query goes on (the batch
    commits): see `weir.service.sinks.errors`."""
    sink = ForeachBatchSink(fn, arrow)
    if on_error == "fail":
        if error_path is not None:
            raise ValueError("error_path is for on_error='log_and_continue'")
        return sink
    if on_error == "log_and_continue":
        if error_path is None:
            raise ValueError(
                "on_error='log_and_continue' needs error_path: the file failed batches are kept in"
            )
        return log_and_continue(sink, error_path, retries, backoff)
    raise ValueError(f"on_error must be 'fail' or 'log_and_continue', not {on_error!r}")


async def write_batch(
    rows: Sequence[Mapping[str, Any]] | pa.Table,
    batch_id: BatchId,
    *sinks: Sink,
    timestamp_columns: Iterable[str] = (),
) -> None:
    """Write one batch's rows to `sinks`, in order, as the batch `batch_id`, from inside a
    foreach-batch function (Spark's "write to several sinks" foreachBatch pattern).

    Each sink gets the batch with the identity of `batch_id` (query, task, number), so a sink
    idempotent on it (Parquet, Delta Lake, PostgreSQL) writes it once even when the function
    runs again for the same batch after a failure. `rows` are dicts as the function got them,
    or a `pyarrow.Table`: they are given to the sinks as the engine holds rows, times as epoch
    ms in `SinkBatch.timestamp_columns`: the columns of an Arrow timestamp type, those holding
    a `datetime` (naive: UTC), and `timestamp_columns` (whose ISO-8601 strings are converted
    too). Other ISO-8601 strings stay strings, which the Parquet and Delta Lake sinks convert
    by their schema and the others write as rendered rows.

    A failing sink raises (its `SinkFailure`) and the later sinks are not written: let it fail
    the function (on_error="fail"), so the batch is retried and the sinks already written
    skip it. No rows: nothing is written. The sinks are not opened or closed here (the file
    and table sinks need neither; close a PostgreSQL sink yourself). Raises TypeError when
    `batch_id` is a plain int, which does not name the batch's query and task."""
    if not isinstance(batch_id, BatchId):
        raise TypeError(
            f"write_batch needs the BatchId the function was given, not {type(batch_id).__name__}"
            ": its query and task make the batch's identity"
        )
    batch = _engine_batch(rows, batch_id, frozenset(timestamp_columns))
    if not batch.rows:
        return
    for sink in sinks:
        await sink.write(batch)


def _engine_batch(
    rows: Sequence[Mapping[str, Any]] | pa.Table, batch_id: BatchId, times: frozenset[str]
) -> SinkBatch:
    """User-facing rows as a SinkBatch of `batch_id`'s identity (see `write_batch`)."""
    if hasattr(rows, "schema") and hasattr(rows, "to_pylist"):  # a pyarrow.Table
        import pyarrow as pa

        times |= {f.name for f in rows.schema if pa.types.is_timestamp(f.type)}
        dicts: list[Row] = rows.to_pylist()
    else:
        dicts = [dict(r) for r in rows]
    times |= {c for r in dicts for c, v in r.items() if isinstance(v, datetime)}
    for r in dicts:
        for c in times:
            v = r.get(c)
            if isinstance(v, str | datetime):
                r[c] = to_millis(v)
    ident = BatchIdentity(batch_id.query, batch_id.task, int(batch_id))
    return SinkBatch(ident, dicts, times, lambda: [None] * len(dicts))
