"""The Kafka topic sink: output rows as JSON records of a topic, inside the checkpoint's
transaction (exactly once with the input offsets and the state under exactly_once)."""

from __future__ import annotations

import orjson

from weir.service.codec import encode_key, encode_rows, render_row
from weir.service.sinks.base import Delivery, KafkaRecords, Sink, SinkBatch
from weir.service.sources.base import SourceRecord
from weir.tables.operator import Row

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

    `headers`: a column whose value becomes the record's headers (Spark's `headers` column):
    a mapping or a list of [name, value] pairs, values as text (UTF-8) or null; the column is
    left out of the JSON value. A row whose headers cannot be read goes to the dead letters
    (stage "sink") with the reason; the others are written.

    `columns=True` is Spark's Kafka sink layout (`writeStream.format("kafka")`): the `value`
    column is the record's value and the `key` column its key (text as UTF-8, bytes as they
    are, null as none), a `headers` column its headers; other columns are not written. A row
    whose value or key is of another type goes to the dead letters with the reason.
    """

    delivery: Delivery = "transactional"

    def __init__(
        self,
        topic: str,
        key: tuple[str, ...] = (),
        raw: bool = False,
        headers: str | None = None,
        columns: bool = False,
    ) -> None:
        self.topic = topic
        self.key = key
        self.raw = raw
        self.headers = "headers" if columns else headers
        self.columns = columns

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
        if self.columns:
            self._write_columns(batch, out)
            return
        if self.headers is not None:
            self._write_with_headers(batch, out)
            return
        values = encode_rows(batch.rows, batch.timestamp_columns)
        if key:
            keys = [encode_key(row, key) for row in batch.rows]
            out.add_all(topic, zip(keys, values, strict=True))
        else:
            out.add_all(topic, [(None, value) for value in values])

    def _dead_letter(self, row: Row, batch: SinkBatch, out: KafkaRecords, exc: ValueError) -> None:
        """A row this sink cannot write, to the dead letters (stage "sink") with the reason."""
        whole = orjson.dumps(render_row(row, batch.timestamp_columns), default=str)
        out.dead_letter(None, whole, f"{self.description}: {exc}", "sink", None)

    def _write_columns(self, batch: SinkBatch, out: KafkaRecords) -> None:
        for row in batch.rows:
            try:
                value = _record_bytes(row.get("value"), "value")
                key = _record_bytes(row.get("key"), "key")
                hdrs = record_headers(row.get("headers")) if row.get("headers") else []
            except ValueError as exc:
                self._dead_letter(row, batch, out, exc)
                continue
            out.add(self.topic, key, value, hdrs)

    def _write_with_headers(self, batch: SinkBatch, out: KafkaRecords) -> None:
        col = self.headers
        assert col is not None
        for row in batch.rows:
            value = {k: v for k, v in row.items() if k != col}
            encoded = encode_rows([value], batch.timestamp_columns)[0]
            try:
                hdrs = record_headers(row.get(col))
            except ValueError as exc:
                self._dead_letter(row, batch, out, exc)
                continue
            out.add(self.topic, encode_key(row, self.key), encoded, hdrs)


def record_headers(given: object) -> list[tuple[str, bytes]]:
    """Kafka headers from a row's headers column: a mapping or [name, value] pairs (text or
    null values). Raises ValueError saying what it got otherwise."""
    if given is None:
        return []
    pairs = list(given.items()) if isinstance(given, dict) else given
    if not isinstance(pairs, list):
        raise ValueError(f"headers must be a mapping or [name, value] pairs, not {given!r}")
    out: list[tuple[str, bytes]] = []
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ValueError(f"a header must be [name, value], not {pair!r}")
        name, value = pair
        if value is not None and not isinstance(value, str | bytes):
            raise ValueError(f"header {name!r}: value must be text, not {value!r}")
        out.append(
            (name, b"" if value is None else value.encode() if isinstance(value, str) else value)
        )
    return out


def _record_bytes(v: object, column: str) -> bytes | None:
    """A `key` or `value` column as record bytes, as Spark's Kafka sink takes them."""
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    raise ValueError(f"the {column} column must be text or bytes, not {type(v).__name__} {v!r}")
