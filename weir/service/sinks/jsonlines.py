"""The JSON-lines sink: each output row as one line of a file (what `weir replay` writes):
`batch_id`, then the row's columns, times in ISO-8601 UTC."""

from __future__ import annotations

from typing import IO

import orjson

from weir.service.codec import render_row
from weir.service.sinks.base import Delivery, Sink, SinkBatch


class JsonLinesSink(Sink):
    """Appends rows to an open binary file; the same rows give the same bytes.

    At least once: a batch written again is appended again (replay never retries one)."""

    delivery: Delivery = "at_least_once"

    def __init__(self, out: IO[bytes], name: str = "file") -> None:
        self.out = out
        self.name = name

    @property
    def description(self) -> str:
        return f"jsonl[{self.name}]"

    async def write(self, batch: SinkBatch) -> None:
        self.write_now(batch)

    def write_now(self, batch: SinkBatch) -> None:
        """`write` without the event loop (the file never makes one wait)."""
        prefix = {"batch_id": batch.identity.batch_id}
        ts_cols = batch.timestamp_columns
        dumps, write = orjson.dumps, self.out.write
        for row in batch.rows:
            write(dumps(prefix | render_row(row, ts_cols) if ts_cols else prefix | row))
            write(b"\n")
