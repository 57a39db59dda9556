"""Repartitioning on the real broker: grouping by a column that is not the record key goes
through an internal repartition topic and stays exact; watermarks survive it; available-now
queries stop by themselves."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from tests.conftest import KafkaHelper
from weir.service.app import App, Trigger
from weir.service.runtime.worker import Worker
from weir.tables.ops.functions import count, sum
from weir.tables.query import Query
from weir.tables.stream import Stream
from weir.tables.timeutil import iso_utc
from weir.tables.window import window

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

T0 = 1_700_000_400_000  # a 10-minute boundary
MIN = 60_000


async def test_repartitioned_update_count_is_exact(kafka: KafkaHelper, state_dir: Path) -> None:
    src = await kafka.topic("rp-in", partitions=3)
    dst = await kafka.topic("rp-out", partitions=2)
    rng = random.Random(3)
    rows = [{"user": f"u{rng.randrange(25)}", "amount": rng.randrange(100)} for _ in range(5000)]
    # Keys are random, so every user's rows are spread over all three partitions.
    for i in range(0, len(rows), 1000):
        await kafka.produce(src, rows[i : i + 1000], partition=(i // 1000) % 3)

    app = App("rp-count", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)

    @app.agent(app.topic(src), sink=app.topic(dst), key="user", trigger=Trigger.available_now())
    def per_user(s: Stream) -> Query:
        return (
            s.group_by("user").agg(count().alias("n"), sum("amount").alias("total")).query("update")
        )

    worker = Worker(app)
    await worker.run()
    assert set(worker.runners) == {"per_user", "per_user-repartition-" + src}

    seq: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in await kafka.read(dst, idle_s=1.5):
        row = orjson.loads(r.value)
        seq[row["user"]].append((row["n"], row["total"]))
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        expected[row["user"]][0] += 1
        expected[row["user"]][1] += row["amount"]
    assert {u: s[-1] for u, s in seq.items()} == {u: tuple(v) for u, v in expected.items()}
    for u, s in seq.items():
        ns = [n for n, _ in s]
        assert ns == sorted(set(ns)), f"{u}: {ns}"
    # Every user is counted by exactly one stage-2 task (one output partition per key).
    parts_per_user: dict[str, set[int]] = defaultdict(set)
    for r in await kafka.read(dst, idle_s=0.5):
        parts_per_user[orjson.loads(r.value)["user"]].add(r.partition)
    assert all(len(p) == 1 for p in parts_per_user.values())


async def test_windowed_append_across_repartition(kafka: KafkaHelper, state_dir: Path) -> None:
    src = await kafka.topic("rpw-in", partitions=2)
    dst = await kafka.topic("rpw-out", partitions=1)
    rows = [
        {"action": ("click", "view", "buy")[i % 3], "amount": i % 10, "ts": iso_utc(T0 + i * 3000)}
        for i in range(2000)  # in event-time order: 100 minutes, nothing late
    ]
    half = len(rows) // 2
    await kafka.produce(src, rows[:half], partition=0)
    await kafka.produce(src, rows[half:], partition=1)

    app = App("rp-window", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)

    @app.agent(app.topic(src), sink=app.topic(dst), trigger=Trigger.available_now())
    def windows(s: Stream) -> Query:
        return (
            s.with_watermark("ts", "5 minutes")
            .group_by(window("ts", "10 minutes"), "action")
            .agg(count().alias("n"), sum("amount").alias("total"))
            .query("append")
        )

    worker = Worker(app)
    await worker.run()
    out = await kafka.read_json(dst, idle_s=1.5)

    # Brute force: every window that the final watermark of its task closed.
    final_wm = {}
    for p in worker.queries["windows"].recent:
        for task in p["tasks"]:
            final_wm[task["partition"]] = task["watermark"]
    brute: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for i, row in enumerate(rows):
        start = T0 + (i * 3000) // (10 * MIN) * 10 * MIN
        brute[(row["action"], iso_utc(start))][0] += 1
        brute[(row["action"], iso_utc(start))][1] += row["amount"]
    got = {(o["action"], o["window_start"]): [o["n"], o["total"]] for o in out}
    assert len(got) == len(out), "a window was emitted twice"
    assert got, "no window was closed"
    for key, value in got.items():
        assert brute[key] == value, key
    # All windows that end 5 minutes before the last event are closed in append mode.
    last = T0 + (len(rows) - 1) * 3000
    closable = {k for k in brute if _end(k[1]) <= last - 5 * MIN}
    assert closable <= set(got), sorted(closable - set(got))
    assert final_wm  # progress reported the watermark


def _end(start_iso: str) -> int:
    from weir.tables.timeutil import to_millis

    return to_millis(start_iso) + 10 * MIN
