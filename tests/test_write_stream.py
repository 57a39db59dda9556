"""`stream.writeStream...` returned by an agent (weir.tables.writer, weir.service.write_stream):
the course's last lines give the agent's output mode, sinks, trigger and name; what Weir
cannot run is refused, in one line, when the agent is declared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from weir import App, Stream, col
from weir.service.sinks.console import ConsoleSink
from weir.service.sinks.memory import MemorySink
from weir.service.sinks.parquet import ParquetSink

SCHEMA = "user_id STRING, action STRING, amount DOUBLE, event_time TIMESTAMP"


def declare(build: Any, tmp_path: Path, schema: str | None = SCHEMA) -> Any:
    app = App("ws", state_dir=tmp_path / "state")
    app.agent(app.topic("events"), schema=schema, name=None)(build)
    return next(iter(app.agents.values()))


def test_the_course_console_writer_sets_mode_sink_and_trigger(tmp_path: Path) -> None:
    def transformed(events: Stream) -> Any:
        out = events.filter(col("amount") > 0).withColumn("action_upper", col("action"))
        return (
            out.writeStream.outputMode("append")
            .format("console")
            .option("truncate", "false")
            .trigger(processingTime="5 seconds")
            .start()
        )

    agent = declare(transformed, tmp_path)
    assert agent.query.output_mode == "append"
    assert agent.trigger.kind == "processing_time" and agent.trigger.interval_ms == 5000
    (sink,) = agent.sinks
    assert isinstance(sink, ConsoleSink) and sink.width is None  # truncate false
    assert agent.sink is None and agent.name == "transformed"


def test_kafka_memory_parquet_and_available_now(tmp_path: Path) -> None:
    def to_kafka(events: Stream) -> Any:
        return (
            events.groupBy("action").count()
            .select(col("action").alias("key"), col("count").cast("string").alias("value"))
            .writeStream.outputMode("update")
            .format("kafka").option("topic", "counts")
            .option("checkpointLocation", "/checkpoints/counts/")
            .trigger(availableNow=True).start()
        )  # fmt: skip

    agent = declare(to_kafka, tmp_path)
    assert agent.sink.name == "counts" and agent.query.output_mode == "update"
    assert agent.kafka_columns  # Spark's layout: the value column is the record's value
    assert agent.trigger.kind == "available_now"

    def to_memory(events: Stream) -> Any:
        counts = events.groupBy("action").count()
        return counts.writeStream.outputMode("complete").format("memory").queryName("c").start()

    agent = declare(to_memory, tmp_path)
    (sink,) = agent.sinks
    assert isinstance(sink, MemorySink) and agent.name == "c"

    def to_parquet(events: Stream) -> Any:
        kept = events.select("user_id", "amount", "event_time")
        return (
            kept.writeStream.format("parquet").partitionBy("user_id").start(str(tmp_path / "out"))
        )

    agent = declare(to_parquet, tmp_path)
    (sink,) = agent.sinks
    assert isinstance(sink, ParquetSink)
    assert [(f.name, str(f.type)) for f in sink.schema] == [
        ("user_id", "string"),
        ("amount", "double"),
        ("event_time", "timestamp[ms, tz=UTC]"),
    ]


@pytest.mark.parametrize(
    ("build", "schema", "message"),
    [
        (lambda s: s.writeStream.format("jdbc"), SCHEMA, "format 'jdbc' is not one of"),
        (lambda s: s.writeStream.format("console").option("colour", 1), SCHEMA, "'colour'"),
        (lambda s: s.writeStream.format("kafka"), SCHEMA, r'needs option\("topic"'),
        (lambda s: s.writeStream.format("memory"), SCHEMA, "needs queryName"),
        (
            lambda s: s.writeStream.format("kafka").option("topic", "t"),
            SCHEMA,
            "needs a 'value' column",
        ),
        (
            lambda s: (
                s.select(col("amount").alias("value"))
                .writeStream.format("kafka")
                .option("topic", "t")
            ),
            SCHEMA,
            "value column must be text or binary, not double",
        ),
        (lambda s: s.writeStream.format("parquet"), SCHEMA, r'needs option\("path"'),
        (
            lambda s: s.writeStream.format("parquet").option("path", "/tmp/x"),
            None,
            "they are not known: give the agent a schema",
        ),
        (
            lambda s: s.groupBy("action").count().writeStream.outputMode("append"),
            SCHEMA,
            "Append output mode not supported",
        ),
    ],
)
def test_refused_when_declared_in_one_line(
    build: Any, schema: str | None, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message) as e:
        declare(build, tmp_path, schema)
    assert "\n" not in str(e.value)


def test_bad_mode_and_trigger_refused_when_called() -> None:
    from weir import read

    with pytest.raises(ValueError, match="not one of append, update, complete"):
        read("e").writeStream.outputMode("upsert")
    with pytest.raises(ValueError, match="one of processingTime"):
        read("e").writeStream.trigger()


def test_the_kafka_columns_layout_writes_value_and_key_and_dead_letters_the_rest() -> None:
    import asyncio

    from weir.service.sinks.base import BatchIdentity, SinkBatch
    from weir.service.sinks.kafka import KafkaTopicSink

    class Records:
        def __init__(self) -> None:
            self.added: list[tuple[Any, ...]] = []
            self.dead: list[str] = []

        def add(self, topic: str, key: Any, value: Any, headers: Any = None, **_: Any) -> None:
            self.added.append((topic, key, value, headers))

        def dead_letter(self, key: Any, value: Any, error: str, *_: Any) -> None:
            self.dead.append(error)

    rows = [
        {"key": "a", "value": "1", "other": 5},
        {"key": None, "value": b"\x00raw"},
        {"key": "b", "value": None, "headers": {"h": "x"}},
        {"key": "c", "value": 2.5},
    ]
    out = Records()
    batch = SinkBatch(BatchIdentity("q", 0, 0), rows, frozenset(), lambda: [], out)
    asyncio.run(KafkaTopicSink("t", columns=True).write(batch))
    assert out.added == [
        ("t", b"a", b"1", []),
        ("t", None, b"\x00raw", []),
        ("t", b"b", None, [("h", b"x")]),
    ]
    assert out.dead == ["kafka[t]: the value column must be text or bytes, not float 2.5"]
