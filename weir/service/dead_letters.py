"""Dead letters: a record that cannot be processed or written is kept, never dropped.

A dead letter carries the original key and value bytes and these headers:
`error` (the exception class and message, or the reason), `error.stage` (decode, schema,
event_time, user_function, sink, size, batch), and where the record came from:
`source.topic`, `source.partition`, `source.offset`, `source.timestamp` (ISO-8601 UTC), and
for a record read from a file `source.file` and `source.row` (its row in that file). A
failure that belongs to no single input record (an aggregate's output row, a whole batch)
names the batch's input range in `source.offsets` ("first-last") instead of `source.offset`.
A row that fails after a repartition (in stage 2) carries the repartitioned row as its value
and the `source.*` of the input record it was made from.
A record too large for the dead-letter topic is stored truncated, with `error.truncated` and
`error.original.size` (its size in bytes) so nothing is silently cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from weir.tables.operator import ErrorStage
from weir.tables.timeutil import iso_utc

Headers = list[tuple[str, bytes]]

_MAX_ERROR_TEXT = 2000
"""Longest `error` header kept: a user exception's message may be arbitrarily long."""


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a dead letter's record was read."""

    topic: str
    partition: int
    offset: int | None = None
    """The record's offset; None when the failure belongs to a range of records."""
    timestamp: int | None = None
    """The record's broker timestamp in epoch ms, when known."""
    offsets: tuple[int, int] | None = None
    """(first, last) offsets of the batch the failure belongs to, when not one record."""
    details: tuple[tuple[str, bytes], ...] = ()
    """Where in a file the record was (`file`, `row`), for a file source's record."""


def headers(error: str, stage: ErrorStage, source: SourcePosition | None) -> Headers:
    """The dead-letter headers for a failure (see the module doc)."""
    text = error if len(error) <= _MAX_ERROR_TEXT else error[:_MAX_ERROR_TEXT] + "..."
    out: Headers = [("error", text.encode()), ("error.stage", stage.encode())]
    if source is not None:
        out.append(("source.topic", source.topic.encode()))
        out.append(("source.partition", str(source.partition).encode()))
        if source.offset is not None:
            out.append(("source.offset", str(source.offset).encode()))
        if source.offsets is not None:
            out.append(("source.offsets", f"{source.offsets[0]}-{source.offsets[1]}".encode()))
        if source.timestamp is not None and source.timestamp >= 0:
            out.append(("source.timestamp", iso_utc(source.timestamp).encode()))
        out.extend((f"source.{name}", value) for name, value in source.details)
    return out


def record_size(key: bytes | None, value: bytes | None, hdrs: Headers) -> int:
    """Bytes a record takes as a batch of its own: what a topic's `max.message.bytes` bounds."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, hdrs)
    return size


def fit(
    key: bytes | None, value: bytes | None, hdrs: Headers, limit: int
) -> tuple[bytes | None, bytes | None, Headers]:
    """Return the record as it can be stored under `limit` bytes: unchanged when it fits,
    else with its value (then its key) cut short and the truncation headers added."""
    if record_size(key, value, hdrs) <= limit:
        return key, value, hdrs
    original = len(value or b"") + len(key or b"")
    hdrs = [*hdrs, ("error.truncated", b"true"), ("error.original.size", str(original).encode())]
    room = limit - record_size(None, None, hdrs) - 64  # varint and rounding slack
    key = key if key is None or len(key) <= room // 2 else key[: room // 2]
    if value is not None:
        value = value[: max(0, room - len(key or b""))]
    return key, value, hdrs
