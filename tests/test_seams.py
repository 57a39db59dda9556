"""The Source and Sink seams and the one micro-batch driver, without a broker: the JSON-lines
source, the Kafka topic, foreach-batch and JSON-lines sinks, and the driver's decode ->
query -> rejects -> sinks path that the worker and replay share."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import orjson
import pytest

from weir.service import driver
from weir.service.runtime.checkpoint import Outgoing
from weir.service.sinks.base import BatchId, BatchIdentity, SinkBatch, SinkFailure
from weir.service.sinks.console import ConsoleSink, table
from weir.service.sinks.foreach_batch import ForeachBatchSink
from weir.service.sinks.jsonlines import JsonLinesSink
from weir.service.sinks.kafka import SOURCE_HEADER, KafkaTopicSink
from weir.service.sinks.memory import MemorySink, drop_memory_table, memory_table
from weir.service.sinks.postgres import PostgresUpsertSink, postgres_upsert
from weir.service.sources.base import SourceRecord, values_of
from weir.service.sources.files import JsonLinesSource, LineRecord
from weir.tables.operator import ErrorStage, Row
from weir.tables.ops.functions import count
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import read
from weir.tables.window import window

ID = BatchIdentity("q", 0, 7)


def test_json_lines_source_positions_are_line_numbers() -> None:
    src = JsonLinesSource(io.BytesIO(b'{"a":1}\n\n{"a":2}\n{"a":3}\n{"a":4}\n \n'), "events")
    first = src.read(3)[0]["events"]
    assert [(r.offset, r.value) for r in first] == [
        (1, b'{"a":1}\n'),
        (2, b"\n"),
        (3, b'{"a":2}\n'),
    ]
    assert values_of(first) == [b'{"a":1}\n', b"\n", b'{"a":2}\n']
    assert [r.offset for r in first[1:]] == [2, 3]
    assert asyncio.run(src.position("events", 0)) == 4
    src.seek("events", 0, 5)  # skips line 4
    assert [r.offset for r in src.read(1)[0]["events"]] == [5]
    assert src.read(3) == {0: {}}  # blank lines only: an empty batch
    assert not src.exhausted
    assert src.read(3) == {} and src.exhausted
    with pytest.raises(ValueError, match="reads forward only"):
        src.seek("events", 0, 1)


def _batch(rows: list[Row], **kw: Any) -> SinkBatch:
    origins = kw.pop("origins", [None] * len(rows))
    return SinkBatch(ID, rows, frozenset(kw.pop("ts", ())), lambda: origins, **kw)


def test_kafka_topic_sink_writes_into_the_transaction() -> None:
    out = Outgoing("dlq", 1_000_000)
    sink = KafkaTopicSink("counts", ("user",))
    assert sink.delivery == "transactional"
    rows = [{"user": "a", "t": 0}, {"user": "b", "t": 1000}]
    asyncio.run(sink.write(_batch(rows, ts={"t"}, transaction=out)))
    assert out.records["counts"] == [
        (b"a", b'{"user":"a","t":"1970-01-01T00:00:00Z"}', []),
        (b"b", b'{"user":"b","t":"1970-01-01T00:00:01Z"}', []),
    ]
    with pytest.raises(RuntimeError, match="inside a Kafka transaction only"):
        asyncio.run(sink.write(_batch(rows)))


def test_kafka_topic_sink_writes_a_headers_column_as_record_headers() -> None:
    out = Outgoing("dlq", 1_000_000)
    sink = KafkaTopicSink("alerts", ("ad",), headers="hdrs")
    rows = [
        {"ad": "a1", "ctr": 0.1, "hdrs": {"source": "weir", "empty": None}},
        {"ad": "a2", "ctr": 0.2, "hdrs": [["trace", "t-1"], ["trace", "t-2"]]},
        {"ad": "a3", "ctr": 0.3},
        {"ad": "a4", "ctr": 0.4, "hdrs": [["n", 5]]},
    ]
    asyncio.run(sink.write(_batch(rows, transaction=out)))
    assert out.records["alerts"] == [
        (b"a1", b'{"ad":"a1","ctr":0.1}', [("source", b"weir"), ("empty", b"")]),
        (b"a2", b'{"ad":"a2","ctr":0.2}', [("trace", b"t-1"), ("trace", b"t-2")]),
        (b"a3", b'{"ad":"a3","ctr":0.3}', []),
    ]
    ((_key, value, hdrs),) = out.records["dlq"]
    assert orjson.loads(value or b"") == {"ad": "a4", "ctr": 0.4, "hdrs": [["n", 5]]}
    assert dict(hdrs)["error"] == b"kafka[alerts]: header 'n': value must be text, not 5"


def test_a_raw_kafka_sink_names_each_rows_input_record() -> None:
    out = Outgoing("dlq", 1_000_000)
    origin = LineRecord("clicks", 41, b"{}", partition=3, timestamp=1234)
    rows = [{"user": "a", "t": 5}, {"user": "b", "t": 6}]
    sink = KafkaTopicSink("rep", ("user",), raw=True)
    asyncio.run(sink.write(_batch(rows, origins=[origin, None], transaction=out)))
    assert out.records["rep"] == [
        (b"a", b'{"user":"a","t":5}', [(SOURCE_HEADER, b"3:41:1234")]),
        (b"b", b'{"user":"b","t":6}', []),
    ]


def test_foreach_batch_sink_passes_rendered_rows_and_the_batch_id() -> None:
    seen: list[tuple[list[dict[str, Any]], int]] = []

    async def fn(rows: list[dict[str, Any]], batch_id: int) -> None:
        seen.append((rows, batch_id))

    asyncio.run(ForeachBatchSink(fn).write(_batch([{"t": 0}], ts={"t"})))
    assert seen == [([{"t": "1970-01-01T00:00:00Z"}], 7)]
    # the number is the task's; the key (and str) names the query and the task too, so two
    # partitions' batch 7 never share a file name or a "written?" key
    batch_id = seen[0][1]
    assert isinstance(batch_id, BatchId) and batch_id + 1 == 8
    assert (batch_id.query, batch_id.task) == ("q", 0)
    assert batch_id.key == str(batch_id) == f"{batch_id}" == "q/0/7"

    def fails(rows: list[dict[str, Any]], batch_id: int) -> None:
        raise ValueError("no")

    with pytest.raises(SinkFailure, match="foreach_batch failed: ValueError: no"):
        asyncio.run(ForeachBatchSink(fails).write(_batch([{"t": 0}])))


def test_json_lines_sink_and_declared_deliveries() -> None:
    buf = io.BytesIO()
    asyncio.run(JsonLinesSink(buf).write(_batch([{"a": 1}, {"a": 2}])))
    assert buf.getvalue() == b'{"batch_id":7,"a":1}\n{"batch_id":7,"a":2}\n'
    assert JsonLinesSink(buf).delivery == "at_least_once"
    assert PostgresUpsertSink("t", ["k", "v"], ["k"]).delivery == "idempotent"
    with pytest.raises(ValueError, match="must be a subset of columns"):
        PostgresUpsertSink("t", ["k"], ["x"])
    with pytest.raises(ValueError, match="an upsert needs key columns"):
        postgres_upsert("t", ["k"], [])


class _Collect:
    """Rejects kept in lists."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str, ErrorStage]] = []
        self.rows: list[tuple[Row, ErrorStage]] = []
        self.late_rows: list[tuple[str, Row]] = []

    def record(self, rec: SourceRecord, reason: str, stage: ErrorStage) -> None:
        self.records.append((rec.offset, reason, stage))

    def row(self, row: Row, reason: str, stage: ErrorStage) -> None:
        self.rows.append((row, stage))

    def late(self, rows: list[tuple[str, Row]]) -> None:
        self.late_rows.extend(rows)


def _lines(topic: str, *values: bytes, first: int = 1) -> list[SourceRecord]:
    return [LineRecord(topic, first + i, v) for i, v in enumerate(values)]


def test_driver_rejects_bad_records_traces_bad_rows_and_hands_rows_to_the_sinks() -> None:
    q = read("events").map(lambda r: {**r, "n": 10 // r["d"]}).query("append")
    task = q.task(MemoryStore())
    rejects, buf = _Collect(), io.BytesIO()
    recs = _lines("events", b'{"d":1}', b"not json", b'{"d":0}', b'{"d":2}')
    driven = asyncio.run(
        driver.run_batch(
            task, {"events": recs}, now=0, rejects=rejects, sinks=[JsonLinesSink(buf)], identity=ID
        )
    )
    assert driven.n_input == 4 and len(driven.result.rows) == 2
    assert [(o, s) for o, _r, s in rejects.records] == [(2, "decode"), (3, "user_function")]
    assert [orjson.loads(x) for x in buf.getvalue().splitlines()] == [
        {"batch_id": 0, "d": 1, "n": 10},
        {"batch_id": 0, "d": 2, "n": 5},
    ]


def test_driver_routes_rows_by_column_and_reports_late_rows() -> None:
    clicks = read("clicks").with_watermark("t", "0 seconds")
    views = read("views").with_watermark("t", "0 seconds")
    q = (
        clicks.union(views)
        .group_by(window("t", "10 seconds"))
        .agg(count().alias("n"))
        .query("append")
    )
    task = q.task(MemoryStore())
    rejects = _Collect()

    def batch(*values: bytes) -> None:
        recs = _lines("", *values)
        driven = asyncio.run(
            driver.run_batch(task, {"": recs}, now=0, rejects=rejects, identity=ID, route="topic")
        )
        task.commit(driven.result)

    batch(
        b'{"topic":"clicks","t":"1970-01-01T00:00:25Z"}',
        b'{"topic":"views","t":"1970-01-01T00:00:25Z"}',
        b'{"topic":"nope","t":"1970-01-01T00:00:01Z"}',
    )
    assert rejects.records == [
        (3, "topic must be one of ['clicks', 'views'], got 'nope'", "schema")
    ]
    batch(b'{"topic":"views","t":"1970-01-01T00:00:26Z"}')  # W is 25 s from now on
    assert rejects.late_rows == []
    batch(b'{"topic":"clicks","t":"1970-01-01T00:00:01Z"}')
    assert [row["t"] for _op, row in rejects.late_rows] == [1000]


def test_console_sink_prints_a_spark_style_table() -> None:
    out = io.StringIO()
    sink = ConsoleSink(num_rows=2, truncate=True, out=out)
    rows = [{"word": "a", "count": 2}, {"word": "x" * 25, "count": None}, {"word": "c"}]
    asyncio.run(sink.write(_batch(rows)))
    assert out.getvalue().splitlines() == [
        "-" * 43,
        "Batch: 7 (task 0)",
        "-" * 43,
        "+--------------------+-----+",
        "|                word|count|",
        "+--------------------+-----+",
        "|                   a|    2|",
        "|xxxxxxxxxxxxxxxxx...| null|",
        "+--------------------+-----+",
        "only showing top 2 rows",
        "",
    ]
    assert table([{"a": "long text"}], None) == [
        "+---------+",
        "|a        |",
        "+---------+",
        "|long text|",
        "+---------+",
    ]


def test_memory_sink_keeps_each_batch_once_per_task() -> None:
    drop_memory_table("t")
    sink = MemorySink("t")
    assert sink.delivery == "idempotent"

    def batch(task: int, n: int, rows: list[Row]) -> SinkBatch:
        return SinkBatch(BatchIdentity("q", task, n), rows, frozenset({"ts"}), lambda: [])

    asyncio.run(sink.write(batch(0, 0, [{"k": "a", "ts": 0}])))
    asyncio.run(sink.write(batch(1, 0, [{"k": "b", "ts": 1000}])))  # another task's batch 0
    asyncio.run(sink.write(batch(0, 0, [{"k": "a", "ts": 0}])))  # batch 0 again: skipped
    asyncio.run(sink.write(batch(0, 1, [{"k": "c", "ts": 0}])))
    assert memory_table("t") == [
        {"k": "a", "ts": "1970-01-01T00:00:00Z"},
        {"k": "b", "ts": "1970-01-01T00:00:01Z"},
        {"k": "c", "ts": "1970-01-01T00:00:00Z"},
    ]
    drop_memory_table("t")
    full = MemorySink("t", complete=True)
    asyncio.run(full.write(batch(0, 0, [{"k": "a", "n": 1}])))
    asyncio.run(full.write(batch(1, 0, [{"k": "b", "n": 1}])))
    asyncio.run(full.write(batch(0, 1, [{"k": "a", "n": 2}])))  # replaces task 0's rows only
    assert memory_table("t") == [{"k": "b", "n": 1}, {"k": "a", "n": 2}]
    with pytest.raises(KeyError, match="no memory table 'nope'"):
        memory_table("nope")
