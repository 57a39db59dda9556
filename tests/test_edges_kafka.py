"""Nothing lost at the edges, on the real broker: records the broker refuses, oversized and
poison records, dead letters with their context, and backfills through repartition topics.

Every test accounts for every input offset: it ends in an output (the outputs list the ids of
the rows they hold), or in the dead-letter topic with its source offset; none twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from tests.conftest import KafkaHelper
from weir.service.app import App, Trigger
from weir.service.runtime.topics import describe_configs
from weir.service.runtime.worker import Worker
from weir.tables.ops.functions import collect_list, count, udaf
from weir.tables.query import Query
from weir.tables.stream import Stream
from weir.tables.timeutil import iso_utc

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

BIG = 2 * 1024 * 1024
NOW = 1_790_000_000_000  # 2026-09: event times of the tests are near this
YEAR = 365 * 24 * 3600 * 1000


async def _produce_raw(
    bootstrap: str, topic: str, values: list[tuple[int, bytes]]
) -> dict[tuple[int, int], bytes]:
    """Produce (partition, value) in order with a producer that accepts 4 MB records; return
    {(partition, offset): value}."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = [
            (value, await producer.send(topic, value=value, partition=p)) for p, value in values
        ]
        out = {}
        for value, fut in futures:
            md = await fut
            out[(md.partition, md.offset)] = value
        return out
    finally:
        await producer.stop()


def _row(i: int, user: str, ts: int, pad: int = 0) -> bytes:
    row: dict[str, Any] = {"id": i, "user": user, "ts": iso_utc(ts)}
    if pad:
        row["pad"] = "x" * pad
    return orjson.dumps(row)


def _dead_positions(records: list[Any]) -> Counter[tuple[int, int]]:
    out: Counter[tuple[int, int]] = Counter()
    for r in records:
        h = dict(r.headers)
        out[(int(h["source.partition"]), int(h["source.offset"]))] += 1
    return out


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_refused_records_lose_nothing_on_a_repartitioned_input(
    kafka: KafkaHelper, state_dir: Path, guarantee: str
) -> None:
    """A 2 MB value, a 2 MB value that is not JSON and an event ten years ahead, among good
    records on a two-partition input (so the agent repartitions): every good record is
    counted, the bad ones are dead-lettered with their source, nothing is lost or doubled."""
    src = await kafka.topic("edge-in", partitions=2, **{"max.message.bytes": str(4 * 1024 * 1024)})
    dst = await kafka.topic("edge-out", partitions=1)
    values: list[tuple[int, bytes]] = []
    i = 0
    for p in (0, 1):
        for j in range(300):
            if j == 100:
                values.append((p, _row(i, "big", NOW + j, pad=BIG)))
            elif j == 150:
                values.append((p, _row(i, "future", NOW + 10 * YEAR)))
            elif j == 200:
                values.append((p, b"x" * BIG))  # not JSON, too large for the dead letters
            else:
                values.append((p, _row(i, f"u{i % 7}", NOW + j * 1000)))
            i += 1
    produced = await _produce_raw(kafka.bootstrap, src, values)

    app = App(
        f"edge-{guarantee}",
        processing_guarantee=guarantee,
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
        max_records_per_trigger=120,
    )

    @app.agent(app.topic(src), sink=app.topic(dst), key="user", trigger=Trigger.available_now())
    def ids_per_user(s: Stream) -> Query:
        return (
            s.with_watermark("ts", "10 minutes")
            .group_by("user")
            .agg(count().alias("n"), collect_list("id").alias("ids"))
            .query("update")
        )

    await Worker(app).run()

    last: dict[str, dict[str, Any]] = {}
    for row in await kafka.read_json(dst, idle_s=1.5):
        last[row["user"]] = row
    counted = Counter(i for row in last.values() for i in row["ids"])
    assert all(row["n"] == len(row["ids"]) for row in last.values())
    dead = await kafka.read(app.agents["ids_per_user"].dead_letter_topic, idle_s=1.5)
    dead_at = _dead_positions(dead)
    expected_ids = {orjson.loads(v)["id"]: pos for pos, v in produced.items() if v[:1] == b"{"}
    assert set(counted) == set(expected_ids), "every JSON record is counted"
    assert max(counted.values()) == 1, "no record counted twice"
    assert "big" in last and "future" in last
    assert dead_at == Counter({(0, 200): 1, (1, 200): 1}), dead_at
    for r in dead:
        h = dict(r.headers)
        assert h["error.stage"] == b"decode"
        assert h["error.truncated"] == b"true"
        assert int(h["error.original.size"]) == BIG
        assert h["source.topic"] == src.encode()
        assert r.value == b"x" * len(r.value) and 900_000 < len(r.value) < BIG


async def test_backfill_through_repartition_keeps_records_until_consumed(
    kafka: KafkaHelper, state_dir: Path
) -> None:
    """Event times a month old: the repartition topic keeps its records regardless of age (no
    time or size retention) and Weir deletes them once stage 2 has committed them."""
    src = await kafka.topic("backfill-in", partitions=2)
    dst = await kafka.topic("backfill-out", partitions=1)
    old = NOW - 31 * 24 * 3600 * 1000
    values = [(i % 2, _row(i, f"u{i % 20}", old + i * 1000)) for i in range(2000)]
    await _produce_raw(kafka.bootstrap, src, values)
    app = App("backfill", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)

    @app.agent(app.topic(src), sink=app.topic(dst), key="user", trigger=Trigger.available_now())
    def per_user(s: Stream) -> Query:
        return s.with_watermark("ts", "10 minutes").group_by("user").count().query("update")

    await Worker(app).run()
    last = {row["user"]: row["count"] for row in await kafka.read_json(dst, idle_s=1.5)}
    assert last == {f"u{k}": 100 for k in range(20)}

    repartition = f"backfill-per_user-repartition-{src}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        config = (await describe_configs(admin, [repartition]))[repartition]
    finally:
        await admin.close()
    assert config["retention.ms"] == "-1" and config["retention.bytes"] == "-1"
    records = await kafka.read(repartition, idle_s=1.0)
    assert all(r.timestamp > NOW - 24 * 3600 * 1000 for r in records), "broker-time stamps"
    # Stage 2 committed everything, so everything before the end was deleted.
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(repartition, p) for p in (0, 1)]
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    assert sum(end.values()) >= 2000 and all(end[tp] > 10 for tp in tps)
    # Deleted up to the committed offset: at most the last commit marker is left.
    assert all(end[tp] - begin[tp] <= 1 for tp in tps), (begin, end)


class _FailsOnSeven:
    """A user aggregator that raises on the value 7 (a poison pill)."""

    def init(self) -> int:
        return 0

    def add(self, acc: int, value: Any) -> int:
        if value == 7:
            raise ValueError("seven is not allowed")
        return acc + int(value)

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, acc: int) -> int:
        return acc


async def test_poison_pills_and_bad_rows_are_dead_lettered_with_their_record(
    kafka: KafkaHelper, state_dir: Path
) -> None:
    """A user aggregator that raises on some rows and rows without an event time: those rows
    go to the dead letters with their original key, bytes and source; the batch goes on."""
    src = await kafka.topic("poison-in", partitions=1)
    dst = await kafka.topic("poison-out", partitions=1)
    values = []
    for i in range(200):
        row: dict[str, Any] = {"id": i, "user": f"u{i % 3}", "v": i % 10}
        if i % 50 != 25:
            row["ts"] = iso_utc(NOW + i * 1000)
        values.append(orjson.dumps(row))
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        for i, v in enumerate(values):
            await producer.send(src, value=v, key=f"key{i}".encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()

    app = App("poison", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)

    @app.agent(app.topic(src), sink=app.topic(dst), key="user", trigger=Trigger.available_now())
    def sums(s: Stream) -> Query:
        return (
            s.with_watermark("ts", "10 minutes")
            .group_by("user")
            .agg(udaf(_FailsOnSeven(), "v").alias("total"), collect_list("id").alias("ids"))
            .query("update")
        )

    await asyncio.wait_for(Worker(app).run(), 120)
    last = {row["user"]: row for row in await kafka.read_json(dst, idle_s=1.5)}
    no_time = {i for i in range(200) if i % 50 == 25}
    sevens = {i for i in range(200) if i % 10 == 7} - no_time
    good = set(range(200)) - no_time - sevens
    assert sorted(i for row in last.values() for i in row["ids"]) == sorted(good)
    for user, row in last.items():
        assert row["total"] == sum(i % 10 for i in good if f"u{i % 3}" == user)
    dead = await kafka.read(app.agents["sums"].dead_letter_topic, idle_s=1.5)
    by_offset = {int(dict(r.headers)["source.offset"]): r for r in dead}
    assert set(by_offset) == no_time | sevens
    for offset, r in by_offset.items():
        h = dict(r.headers)
        assert r.key == f"key{offset}".encode() and r.value == values[offset]
        assert h["source.topic"] == src.encode() and h["source.partition"] == b"0"
        assert h["source.timestamp"].decode().endswith("Z")
        if offset in sevens:
            assert h["error.stage"] == b"user_function"
            assert b"ValueError: seven is not allowed" in h["error"]
        else:
            assert h["error.stage"] == b"event_time"


@pytest.mark.parametrize("policy", ["fail", "dead_letter"])
async def test_failing_foreach_batch_is_retried_then_follows_the_policy(
    kafka: KafkaHelper, state_dir: Path, policy: str
) -> None:
    """A foreach-batch function that raises on a batch holding a poison row: retried
    `max_batch_retries` times, then the worker stops with one line (fail) or the batch's
    records go to the dead letters and the query goes on (dead_letter)."""
    src = await kafka.topic("sinkfail-in", partitions=1)
    await kafka.produce(src, [{"id": i, "poison": i == 150} for i in range(300)])
    calls: list[int] = []
    written: list[int] = []

    def sink(rows: list[dict[str, Any]], batch_id: int) -> None:
        calls.append(batch_id)
        if any(r["poison"] for r in rows):
            raise ConnectionRefusedError("the sink said no")
        written.extend(r["id"] for r in rows)

    app = App(
        f"sinkfail-{policy}",
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
        max_records_per_trigger=100,
        max_batch_retries=2,
        on_batch_failure=policy,
    )

    @app.agent(app.topic(src), foreach_batch=sink, trigger=Trigger.available_now())
    def passthrough(s: Stream) -> Query:
        return s.query("append")

    from weir.service.runtime.failures import BatchFailedError

    if policy == "fail":
        with pytest.raises(BatchFailedError, match="failed 3 times, last with SinkFailure"):
            await asyncio.wait_for(Worker(app).run(), 120)
        assert 150 not in written and sorted(written) == list(range(len(written)))
        return
    await asyncio.wait_for(Worker(app).run(), 120)
    dead = await kafka.read(app.agents["passthrough"].dead_letter_topic, idle_s=1.5)
    dead_ids = [orjson.loads(r.value)["id"] for r in dead]
    assert sorted(written + dead_ids) == list(range(300)), "every record once"
    assert 150 in dead_ids and dead_ids == list(range(dead_ids[0], dead_ids[-1] + 1))
    h = dict(dead[0].headers)
    assert h["error.stage"] == b"sink" and b"the sink said no" in h["error"]
