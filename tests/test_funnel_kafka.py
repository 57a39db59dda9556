"""Exercise 5 on the real broker: weir.agents.funnel's two queries run available-now over
generated traffic, twice (the second run with events stamped three hours late), and the Delta
table and Parquet files they leave are exactly what a plain-Python recomputation of the
generated input says, late rows excluded where Spark excludes them. `weir demo` (the funnel
live) runs for about 20 seconds and must check itself out."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from tests.conftest import KafkaHelper
from weir.agents import funnel
from weir.service.app import Trigger
from weir.service.local import Endpoints
from weir.service.runtime.worker import Worker
from weir.service.sinks.parquet import read_parquet
from weir.service.traffic import Traffic

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
MIN = 60_000
WINDOW = 15 * MIN
TIME = {"clicks": "click_time", "cart_events": "cart_time", "purchases": "purchase_time"}
KINDS = tuple(TIME)


def ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


async def produce(kafka: KafkaHelper, events: list[tuple[str, Any]]) -> None:
    """Each topic's events in their order (the order across topics does not matter)."""
    for topic in dict.fromkeys(t for t, _ in events):
        await kafka.produce(topic, [row for t, row in events if t == topic])


async def test_funnel_and_enrichment_on_kafka_match_a_recomputation(
    kafka: KafkaHelper, state_dir: Path, tmp_path: Path
) -> None:
    topic = {k: await kafka.topic(f"funnel-{k}") for k in KINDS}
    kind = {t: k for k, t in topic.items()}
    app = funnel.build_app(
        f"funnel-{uuid.uuid4().hex[:8]}",
        clicks_topic=topic["clicks"],
        carts_topic=topic["cart_events"],
        purchases_topic=topic["purchases"],
        delta_path=tmp_path / "funnel_metrics",
        parquet_path=tmp_path / "enriched_purchases",
        catalog_path=tmp_path / "catalog.parquet",
        trigger=Trigger.available_now(),
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
    )
    traffic = Traffic(T0, rate=1.0, duplicate_fraction=0.04, late_by_ms=3 * 3_600_000, seed=21)
    generated = funnel.generate(traffic, 2400, topic)
    first = list(islice(generated, 1200))  # 20 minutes, on time (duplicates included)
    traffic.late_fraction = 0.05
    second = list(generated)  # the next 20 minutes, 5% of them stamped 3 hours back
    bad_purchase = {"purchase_id": "bad", "user_id": "u1", "product_id": "P001"}
    bad = [
        (topic["clicks"], b"not json"),
        (topic["purchases"], {**bad_purchase, "quantity": "two", "purchase_time": T0}),
    ]

    await produce(kafka, first + bad)
    await Worker(app).run()
    await produce(kafka, second)
    await Worker(app).run()

    # Spark's rule, worked out from the input: after the first run the watermark W1 is the
    # minimum over the three topics of their latest event time, minus 5 minutes (every input
    # has had rows). Rows of the second run whose window ends at or before W1 are late in any
    # batch of it; on-time rows never are (each topic's events come in time order and the
    # watermark takes the minimum over topics, minus 5 minutes).
    latest: dict[str, int] = defaultdict(int)
    for t, row in first:
        latest[t] = max(latest[t], ms(row[TIME[kind[t]]]))
    w1 = min(latest.values()) - 5 * MIN
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    late = 0
    for n, (t, row) in enumerate(first + second):
        at = ms(row[TIME[kind[t]]])
        start = at - at % WINDOW
        if n >= len(first) and start + WINDOW <= w1:
            late += 1
            continue
        counts[start][KINDS.index(kind[t])] += 1
    stamped_late = sum(ms(r[TIME[kind[t]]]) < T0 for t, r in second)
    assert late == stamped_late > 40  # exactly the events stamped late, duplicates included

    delta_rows = DeltaTable(str(tmp_path / "funnel_metrics")).to_pyarrow_table().to_pylist()
    got = sorted(
        (
            ms(r["window_start"]),
            ms(r["window_end"]),
            r["click_count"],
            r["cart_count"],
            r["purchase_count"],
            r["conversion_rate"],
        )
        for r in delta_rows
    )
    assert got == [
        (start, start + WINDOW, c, k, p, p / c if c else None)
        for start, (c, k, p) in sorted(counts.items())
    ]
    assert len(got) == 3  # 40 minutes from T0, late rows dropped

    # the enrichment is stateless: every purchase is written, late ones too (as in Spark)
    catalog = {p: (category, price) for p, _name, category, price in funnel.PRODUCTS}
    expected = Counter(
        (
            row["purchase_id"],
            row["user_id"],
            row["product_id"],
            row["quantity"],
            ms(row["purchase_time"]),
            *catalog[row["product_id"]],
        )
        for t, row in first + second
        if kind[t] == "purchases"
    )
    written = Counter(
        (
            r["purchase_id"],
            r["user_id"],
            r["product_id"],
            r["quantity"],
            ms(r["purchase_time"]),
            r["category"],
            r["price"],
        )
        for r in read_parquet(tmp_path / "enriched_purchases").to_pylist()
    )
    assert written == expected
    assert sum(expected.values()) > len(expected)  # duplicated purchases are written twice

    # bad input went to each query's dead letters, and nothing else did
    for agent, n in (("funnel_metrics", 2), ("enriched_purchases", 1)):
        letters = await kafka.read(app.agents[agent].dead_letter_topic, expect=n, idle_s=1)
        reasons = sorted(dict(r.headers)["error.stage"].decode() for r in letters)
        assert reasons == (["decode", "schema"] if n == 2 else ["schema"])


async def test_weir_demo_runs_the_funnel_and_checks_itself(
    local_stack: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from weir.agents.demo import run_demo

    monkeypatch.setenv("WEIR_BOOTSTRAP_SERVERS", local_stack.bootstrap_servers)
    monkeypatch.setenv("WEIR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path / "state"))
    assert await run_demo(20) == 0
    out = capsys.readouterr().out
    assert "weir demo: OK" in out, out[-3000:]
    assert str(tmp_path / "home" / "funnel" / "funnel_metrics") in out
