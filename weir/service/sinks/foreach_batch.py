"""The foreach-batch sink: a user function called with each micro-batch's rows and batch id
before the checkpoint commits (Spark's `foreachBatch`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from weir.service.codec import render_row
from weir.service.sinks.base import BatchId, Delivery, Sink, SinkBatch, SinkFailure

BatchFn = Callable[[list[dict[str, Any]], int], Any]
"""A foreach-batch function: (rows, batch_id) -> None (may be a coroutine function); the
batch id is a `BatchId`: an int that also names its query and task (its `key`)."""


class ForeachBatchSink(Sink):
    """Calls `fn(rows, batch_id)` (rows with times as ISO-8601 UTC) once per batch with rows.

    At least once: a batch retried after a crash, even on another machine, is passed again
    with the same `BatchId` and exactly the same rows, so a function that skips a batch whose
    `batch_id.key` it already wrote (or upserts) is idempotent. A function that raises fails
    the checkpoint (`SinkFailure`)."""

    delivery: Delivery = "at_least_once"

    def __init__(self, fn: BatchFn) -> None:
        self.fn = fn

    @property
    def description(self) -> str:
        return f"foreach_batch[{getattr(self.fn, '__name__', type(self.fn).__name__)}]"

    async def write(self, batch: SinkBatch) -> None:
        ts_cols = batch.timestamp_columns
        try:
            res = self.fn([render_row(r, ts_cols) for r in batch.rows], BatchId(batch.identity))
            if asyncio.iscoroutine(res):
                await res
        except Exception as exc:
            raise SinkFailure(f"foreach_batch failed: {type(exc).__name__}: {exc}") from exc
