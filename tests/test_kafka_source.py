"""Kafka source options on the real broker, as Spark's: starting offsets apply on the first
start only (committed offsets win afterwards), per partition too; committed offsets that fell
out of retention stop the query with a clear error, or reset with a metric when allowed;
progress records like Spark's lastProgress."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import TopicPartition

from tests.conftest import KafkaHelper
from weir.service import metrics
from weir.service.app import App, StartingOffsets, Trigger
from weir.service.runtime.failures import DataLossError
from weir.service.runtime.worker import Worker
from weir.tables.query import Query
from weir.tables.stream import Stream

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


def _app(
    kafka: KafkaHelper,
    state_dir: Path,
    name: str,
    src: str,
    dst: str,
    starting: StartingOffsets | None = None,
    **settings: object,
) -> App:
    app = App(name, state_dir=state_dir, bootstrap_servers=kafka.bootstrap, **settings)

    @app.agent(
        app.topic(src),
        sink=app.topic(dst),
        trigger=Trigger.available_now(),
        starting_offsets=starting,
    )
    def copy(s: Stream) -> Query:
        return s.map(lambda r: {"i": r["i"]}).query("append")

    return app


async def test_starting_offsets_first_start_only(kafka: KafkaHelper, state_dir: Path) -> None:
    src = await kafka.topic("so-in", partitions=2)
    dst = await kafka.topic("so-out")
    await kafka.produce(src, [{"i": i} for i in range(10)], partition=0)
    await kafka.produce(src, [{"i": i} for i in range(10, 20)], partition=1)
    starting = {src: {0: 7, 1: -1}}  # partition 0 from offset 7, partition 1 from the end
    await Worker(_app(kafka, state_dir, "so-app", src, dst, starting)).run()
    assert sorted(r["i"] for r in await kafka.read_json(dst, idle_s=1)) == [7, 8, 9]

    # Second start: committed offsets win over the starting offsets.
    await kafka.produce(src, [{"i": 100}], partition=0)
    await kafka.produce(src, [{"i": 200}], partition=1)
    app = _app(kafka, state_dir, "so-app", src, dst, starting)
    worker = Worker(app)
    await worker.run()
    assert sorted(r["i"] for r in await kafka.read_json(dst, idle_s=1)) == [7, 8, 9, 100, 200]

    progress = [p for p in worker.queries["copy"].recent if p["numInputRows"]]
    assert sum(p["numInputRows"] for p in progress) == 2
    p = progress[-1]
    assert {"batchId", "timestamp", "inputRowsPerSecond", "processedRowsPerSecond"} <= set(p)
    assert set(p["durationMs"]) == {
        "walCommit",
        "getBatch",
        "addBatch",
        "commitOffsets",
        "triggerExecution",
    }
    sources = [s for p in progress for s in p["sources"]]
    assert {s["description"] for s in sources} == {f"KafkaV2[Subscribe[{src}]]"}
    moved = {}
    for s in sources:
        for part, start in s["startOffset"][src].items():
            moved[part] = moved.get(part, 0) + s["endOffset"][src][part] - start
    assert moved == {"0": 1, "1": 1}  # one record read from each partition
    assert [s["endOffset"][src] for s in sources][-1] == {"0": 11, "1": 11}
    assert p["sink"]["description"] == f"kafka[{dst}]"
    assert sum(p["sink"]["numOutputRows"] for p in progress) == 2


async def test_data_loss_fails_or_resets(kafka: KafkaHelper, state_dir: Path) -> None:
    src = await kafka.topic("loss-in")
    dst = await kafka.topic("loss-out")
    await kafka.produce(src, [{"i": i} for i in range(5)])
    await Worker(_app(kafka, state_dir, "loss-app", src, dst)).run()
    await kafka.produce(src, [{"i": i} for i in range(5, 20)])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(src, 0): RecordsToDelete(12)})
    finally:
        await admin.close()

    with pytest.raises(DataLossError, match="lost to retention"):
        await Worker(_app(kafka, state_dir, "loss-app", src, dst)).run()
    assert sorted(r["i"] for r in await kafka.read_json(dst, idle_s=1)) == list(range(5))

    labels = ("loss-app", "copy", "main")
    resets = metrics.OFFSET_RESETS.labels(*labels)._value.get()
    app = _app(kafka, state_dir, "loss-app", src, dst, fail_on_data_loss=False)
    await Worker(app).run()
    got = sorted(r["i"] for r in await kafka.read_json(dst, idle_s=1))
    assert got == list(range(5)) + list(range(12, 20))
    assert metrics.OFFSET_RESETS.labels(*labels)._value.get() == resets + 1
