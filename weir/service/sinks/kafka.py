"""The Kafka topic sink: output rows as JSON records of a topic, inside the checkpoint's
transaction (exactly once with the input offsets and the state under exactly_once)."""

from __future__ import annotations

import orjson

from weir.service.codec import encode_key, encode_rows
from weir.service.sinks.base import Delivery, Sink, SinkBatch
from weir.service.sources.base import SourceRecord

SOURCE_HEADER = "weir.source"
"""Header of a repartition record: "partition:offset:timestamp" of the input record stage 1
made it from, so stage 2's dead letters name the input record."""


def source_value(r: SourceRecord) -> bytes:
    """The `weir.source` header value naming record `r`."""
    return b"%d:%d:%d" % (r.partition, r.offset, r.timestamp)


class KafkaTopicSink(Sink):
    """Rows to `topic` as JSON values (times rendered as ISO-8601 UTC), keyed by the JSON of
    the `key` columns (none: no key, records spread by partition).

    `raw`: an internal (repartition) topic: rows are written as the engine holds them and each
    record names its input record in the `weir.source` header; with no key columns (a global
    aggregation) every row goes to partition 0, so one task sees them all.
    """

    delivery: Delivery = "transactional"

    def __init__(self, topic: str, key: tuple[str, ...] = (), raw: bool = False) -> None:
        self.topic = topic
        self.key = key
        self.raw = raw

    @property
    def description(self) -> str:
        return f"kafka[{self.topic}]"

    async def write(self, batch: SinkBatch) -> None:
        out = batch.transaction
        if out is None:
            raise RuntimeError(f"{self.description} writes inside a Kafka transaction only")
        topic, key = self.topic, self.key
        if self.raw:
            one = None if key else 0
            for row, r in zip(batch.rows, batch.origins(), strict=True):
                hdrs = [] if r is None else [(SOURCE_HEADER, source_value(r))]
                out.add(topic, encode_key(row, key), orjson.dumps(row), hdrs, partition=one)
            return
        values = encode_rows(batch.rows, batch.timestamp_columns)
        if key:
            for row, value in zip(batch.rows, values, strict=True):
                out.add(topic, encode_key(row, key), value)
        else:
            for value in values:
                out.add(topic, None, value)
