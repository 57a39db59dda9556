"""Course exercise 3 end to end on the real broker and PostgreSQL: matched pairs in the
`matched_orders` topic and unmatched orders in the `unmatched_orders` table equal a plain-Python
recomputation of the join condition over the generated input (an order and a payment a day
later close every order's 4 hours); each order is in exactly one of the two."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from tests.conftest import KafkaHelper
from weir.agents import order_matching
from weir.service.app import Trigger
from weir.service.runtime.worker import Worker
from weir.service.traffic import Traffic
from weir.tables.timeutil import iso_utc, to_millis

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.asyncio]

T0 = 1_714_521_600_000
HOUR = 3_600_000


async def test_exercise_3_matched_to_kafka_unmatched_to_postgres(
    kafka: KafkaHelper, postgres_dsn: str, state_dir: Path
) -> None:
    traffic = Traffic(T0, rate=0.05, seed=9)  # an event every 20 s of event time
    events = list(order_matching.generate(traffic, 600))
    orders = [r for t, r in events if t == "orders"]
    payments = [r for t, r in events if t == "payments"]
    end = max(to_millis(r.get("order_ts") or r["pay_ts"]) for _t, r in events) + 24 * HOUR
    closing = (
        {"order_id": "o-end", "user_id": "u0", "amount": 1.0, "order_ts": iso_utc(end)},
        {
            "payment_id": "p-end",
            "order_id": "o-end",
            "payment_method": "card",
            "pay_ts": iso_utc(end),
        },
    )
    tag = uuid.uuid4().hex[:6]
    o_topic = await kafka.topic("orders")
    p_topic = await kafka.topic("payments")
    matched_topic = await kafka.topic("matched-orders")
    table = f"unmatched_orders_{tag}"
    await kafka.produce(o_topic, [*orders, closing[0]])
    await kafka.produce(p_topic, [*payments, closing[1]])
    app = order_matching.build_app(
        f"ex3-{tag}",
        o_topic,
        p_topic,
        matched_topic,
        table,
        postgres_dsn,
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
    )
    for agent in app.agents.values():
        agent.trigger = Trigger.available_now()
    await Worker(app).run()

    by_id = {o["order_id"]: o for o in orders}
    want_pairs = sorted(
        (p["order_id"], p["payment_id"])
        for p in payments
        if p["order_id"] in by_id
        and 0 <= to_millis(p["pay_ts"]) - to_millis(by_id[p["order_id"]]["order_ts"]) <= 4 * HOUR
    )
    got = await kafka.read_json(matched_topic, idle_s=1.0)
    pairs = sorted((r["order_id"], r["payment_id"]) for r in got)
    assert pairs == sorted([*want_pairs, ("o-end", "p-end")])
    assert len(want_pairs) > 200
    one = next(r for r in got if r["order_id"] == want_pairs[0][0])
    assert one["amount"] == by_id[one["order_id"]]["amount"] and one["pay_ts"].endswith("Z")

    paid = {o for o, _p in want_pairs}
    want_unmatched = sorted(o["order_id"] for o in orders if o["order_id"] not in paid)
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(f"SELECT order_id, amount, order_ts FROM {table}").fetchall()
    assert sorted(r[0] for r in rows) == want_unmatched
    assert len(want_unmatched) > 10
    for order_id, amount, ts in rows:
        assert amount == by_id[order_id]["amount"]
        assert ts == datetime.fromtimestamp(to_millis(by_id[order_id]["order_ts"]) / 1000, UTC)
