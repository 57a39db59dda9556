"""A chain of stateful operators on the real broker: the course's practice problem 2
(weir.agents.ad_click_through: impressions left-outer-joined with clicks on (ad_id, user_id),
then counted per ad and hour) over two-partition topics whose records are spread without
regard to their keys. The join and the count run in one stage, repartitioned by ad_id (the
column both group by), so every window of an ad is counted whole, exactly once."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KafkaHelper
from weir.agents.ad_click_through import click_through
from weir.service.app import App, Trigger
from weir.service.runtime.worker import Worker
from weir.tables.query import Query
from weir.tables.stream import Stream
from weir.tables.timeutil import iso_utc, to_millis

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
MIN = 60_000
HOUR = 60 * MIN
ADS = [f"ad{i}" for i in range(6)]


def traffic(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Impressions over 5 hours, a third of them clicked 0..40 minutes later (so some clicks
    fall outside the 30 minutes), in time order give or take a minute: nothing is late."""
    rng = random.Random(seed)
    imps: list[dict[str, Any]] = []
    clicks: list[dict[str, Any]] = []
    for k in range(600):
        t = T0 + k * 30_000
        ad, user = rng.choice(ADS), f"u{rng.randrange(40)}"
        imps.append({"ad_id": ad, "user_id": user, "impression_time": iso_utc(t)})
        if rng.random() < 0.33:
            ct = t + rng.randint(0, 40) * MIN
            clicks.append({"ad_id": ad, "user_id": user, "click_time": iso_utc(ct)})
    clicks.sort(key=lambda c: c["click_time"])
    # a day later, one of each per ad: every task's watermark passes every window
    far = iso_utc(T0 + 24 * HOUR)
    for ad in ADS:
        imps.append({"ad_id": ad, "user_id": "flush", "impression_time": far})
        clicks.append({"ad_id": ad, "user_id": "flush", "click_time": far})
    return imps, clicks


def expected(imps: list[dict[str, Any]], clicks: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """Per (ad, hour) that closes: distinct impressions, distinct clicks within 30 minutes."""
    seen: dict[tuple[str, int], set[tuple[str, int]]] = defaultdict(set)
    hit: dict[tuple[str, int], set[tuple[str, int]]] = defaultdict(set)
    for i in imps:
        it = to_millis(i["impression_time"])
        if i["user_id"] == "flush":
            continue
        w = (i["ad_id"], it - it % HOUR)
        seen[w].add((i["user_id"], it))
        for c in clicks:
            ct = to_millis(c["click_time"])
            same = c["ad_id"] == i["ad_id"] and c["user_id"] == i["user_id"]
            if same and it <= ct <= it + 30 * MIN:
                hit[w].add((c["user_id"], ct))
    return {
        (ad, start, len(s), len(hit[(ad, start)]), round(len(hit[(ad, start)]) / len(s), 6))
        for (ad, start), s in seen.items()
    }


async def test_practice_problem_2_on_two_partitions_counts_every_window_whole(
    kafka: KafkaHelper, state_dir: Path
) -> None:
    imp_t = await kafka.topic("ctr-impressions", partitions=2)
    clk_t = await kafka.topic("ctr-clicks", partitions=2)
    out_t = await kafka.topic("ctr-out")
    imps, clicks = traffic(5)
    rng = random.Random(6)
    for topic, rows in ((imp_t, imps), (clk_t, clicks)):
        for i in range(0, len(rows), 50):  # key-blind: chunks go to either partition
            await kafka.produce(topic, rows[i : i + 50], partition=rng.randrange(2))

    app = App("ctr", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)

    @app.agent(
        app.topic(imp_t), app.topic(clk_t), sink=app.topic(out_t), trigger=Trigger.available_now()
    )
    def per_hour(impressions: Stream, clicks: Stream) -> Query:
        return click_through(impressions, clicks).query("append")

    worker = Worker(app)
    await worker.run()
    assert set(worker.runners) == {
        "per_hour",
        f"per_hour-repartition-{imp_t}",
        f"per_hour-repartition-{clk_t}",
    }
    rows = await kafka.read_json(out_t, idle_s=1.5)
    got = [
        (r["ad_id"], to_millis(r["window_start"]), r["impressions"], r["clicks"], r["ctr"])
        for r in rows
    ]
    assert len(got) == len(set(got)), "a window was emitted twice"
    assert set(got) == expected(imps, clicks)
    assert len(got) == 6 * 5  # every ad has impressions in each of the 5 hours
