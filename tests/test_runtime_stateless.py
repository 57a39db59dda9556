"""A stateless agent on the real broker: batches in, outputs and offsets committed, bad records
dead-lettered with the reason, under both processing guarantees."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.conftest import KafkaHelper
from weir.service.app import App, Trigger
from weir.service.runtime.worker import Worker
from weir.service.sinks.console import ConsoleSink
from weir.service.sinks.memory import drop_memory_table, memory, memory_table
from weir.tables.query import Query
from weir.tables.stream import Stream

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_filter_map_to_topic_with_dead_letters(
    kafka: KafkaHelper, state_dir: Path, guarantee: str
) -> None:
    src = await kafka.topic("in", partitions=3)
    dst = await kafka.topic("out", partitions=2)
    rows = [{"id": i, "amount": i % 7} for i in range(3000)]
    bad = [b"not json", b"[1,2]", b'{"id": "x", "amount": null}']
    for i, row in enumerate(rows):
        row["k"] = str(i % 11)
    await kafka.produce(src, rows[:1500], key="k")
    await kafka.produce(src, bad, partition=1)
    await kafka.produce(src, rows[1500:], key="k")

    app = App(
        f"stateless-{guarantee}",
        processing_guarantee=guarantee,
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
    )
    in_t, out_t = app.topic(src), app.topic(dst)

    @app.agent(in_t, sink=out_t, key="id", trigger=Trigger.available_now())
    def big_amounts(s: Stream) -> Query:
        return (
            s.filter(lambda r: r["amount"] >= 4)
            .map(lambda r: {"id": r["id"], "double": r["amount"] * 2})
            .query("append")
        )

    await Worker(app).run()

    out = await kafka.read_json(dst, expect=1284)
    expected = sorted((r["id"], r["amount"] * 2) for r in rows if r["amount"] >= 4)
    assert sorted((o["id"], o["double"]) for o in out) == expected
    dead = await kafka.read(app.agents["big_amounts"].dead_letter_topic, expect=3)
    reasons = sorted(dict(r.headers)["error"].decode() for r in dead)
    assert len(dead) == 3
    assert reasons[0].startswith("filter failed") or any("filter failed" in x for x in reasons)
    assert sum("not JSON" in x for x in reasons) == 1
    assert sum("expected an object" in x for x in reasons) == 1


async def test_one_agent_writes_a_topic_a_memory_table_and_the_console(
    kafka: KafkaHelper, state_dir: Path
) -> None:
    src = await kafka.topic("multi-in", partitions=2)
    dst = await kafka.topic("multi-out")
    rows = [{"id": i, "word": "ab"[i % 2]} for i in range(400)]
    await kafka.produce(src, rows[:200], partition=0)
    await kafka.produce(src, rows[200:], partition=1)
    app = App("multi-sink", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)
    screen = io.StringIO()
    drop_memory_table("words")

    @app.agent(
        app.topic(src),
        sink=[app.topic(dst), memory("words"), ConsoleSink(num_rows=3, out=screen)],
        trigger=Trigger.available_now(),
    )
    def words(s: Stream) -> Query:
        return s.filter(lambda r: r["word"] == "a").query("append")

    await Worker(app).run()
    want = sorted(r["id"] for r in rows if r["word"] == "a")
    assert sorted(r["id"] for r in memory_table("words")) == want
    assert sorted(r["id"] for r in await kafka.read_json(dst, expect=200)) == want
    shown = screen.getvalue()
    assert "Batch: 0 (task 0)" in shown and "Batch: 0 (task 1)" in shown
    assert "| id|word|\n+---+----+\n|200|   a|\n|202|   a|\n|204|   a|\n" in shown
    assert "only showing top 3 rows" in shown
    with pytest.raises(ValueError, match="at most one Kafka topic"):
        app.agent(app.topic(src), sink=[app.topic(dst), app.topic(src)])
