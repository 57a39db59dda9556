"""Keep a query going past a batch a sink cannot write: `log_and_continue(sink, error_path)`
retries the write, then keeps the batch's rows in an error file and lets the batch commit, as
a Spark foreachBatch function that catches its own errors and saves the failed batch.

The error file holds one JSON line per batch given up on:

    {"query", "task", "batch_id" (the task's batch number), "batch" (its key "<query>/<task>/
     <n>"), "sink" (the wrapped sink's description), "error" ("<Type>: <message>" of the last
     failure; for a SinkFailure that wraps an exception, the wrapped one: a foreach-batch
     function's own), "failed_at" (ISO-8601 UTC), "rows" (times as ISO-8601 UTC)}

Nothing is lost: the line is written, flushed and fsync'ed before the batch is reported
written; if the error file itself cannot be written the batch fails (`SinkFailure`) as it
would without the wrapper, and is retried. A batch retried after a crash between the line
and the checkpoint commit may be written by the sink, or given up on again: its line may then
appear twice (same "batch" key), so the file is at least once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import orjson

from weir.service import metrics
from weir.service.codec import render_rows
from weir.service.sinks.base import BatchId, Sink, SinkBatch, SinkFailure
from weir.service.sinks.files import append_durably
from weir.tables.timeutil import Duration, iso_utc, parse_duration

log = logging.getLogger("weir.worker")


class LogAndContinueSink(Sink):
    """Writes each batch through `sink`; a batch it still fails to write after `retries`
    retries (waits of `backoff`, doubling) goes to the error file at `error_path`, counts in
    `weir_sink_errors{sink=...}`, logs one warning, and commits; see the module docstring.

    The wrapped sink's `open`, `close` and delivery are the wrapper's: a batch it writes is
    delivered as it promises; a batch given up on is in the error file instead."""

    def __init__(
        self, sink: Sink, error_path: str | Path, retries: int = 3, backoff: Duration = "1 second"
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number from 0, not {retries!r}")
        self.sink = sink
        self.error_path = Path(error_path)
        self.retries = retries
        self.backoff_ms = parse_duration(backoff)
        self.delivery = sink.delivery

    @property
    def description(self) -> str:
        return f"log_and_continue[{self.sink.description}]"

    async def open(self) -> None:
        await self.sink.open()

    async def close(self) -> None:
        await self.sink.close()

    async def write(self, batch: SinkBatch) -> None:
        error = await self._try(batch)
        if error is None:
            return
        ident = batch.identity
        key = BatchId(ident).key
        line = {
            "query": ident.query,
            "task": ident.task,
            "batch_id": ident.batch_id,
            "batch": key,
            "sink": self.sink.description,
            "error": reason(error),
            "failed_at": iso_utc(time.time_ns() // 1_000_000),
            "rows": render_rows(batch.rows, batch.timestamp_columns),
        }
        data = orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"
        try:
            append_durably(self.error_path, data)
        except OSError as exc:
            raise SinkFailure(
                f"{self.description}: batch {key} failed ({reason(error)}) and its error file "
                f"{self.error_path} could not be written: {exc}"
            ) from error
        metrics.SINK_ERRORS.labels(*metrics.current(), self.sink.description).inc()
        log.warning(
            "%s: batch %s failed %d times (%s); its %d rows are in %s, continuing",
            self.sink.description,
            key,
            self.retries + 1,
            reason(error),
            len(batch.rows),
            self.error_path,
        )

    async def _try(self, batch: SinkBatch) -> Exception | None:
        """Write the batch, retrying; the last failure if every attempt failed."""
        error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_ms * 2 ** (attempt - 1) / 1000)
            try:
                await self.sink.write(batch)
                return None
            except Exception as exc:
                error = exc
                metrics.SINK_WRITE_FAILURES.labels(*metrics.current(), self.sink.description).inc()
                log.debug("%s: attempt %d failed: %s", self.sink.description, attempt + 1, exc)
        return error


def log_and_continue(
    sink: Sink, error_path: str | Path, retries: int = 3, backoff: Duration = "1 second"
) -> LogAndContinueSink:
    """`sink`, but a batch it still fails to write after `retries` retries (exponential
    backoff from `backoff`) is kept in the JSON-lines file `error_path` and the query goes on;
    see `LogAndContinueSink`."""
    return LogAndContinueSink(sink, error_path, retries, backoff)


def reason(exc: BaseException) -> str:
    """ "<Type>: <message>" of a failure; for a SinkFailure raised from another exception (a
    foreach-batch function's, a driver's), of that one."""
    if isinstance(exc, SinkFailure) and exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}"
