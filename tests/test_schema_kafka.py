"""An agent with an input schema on the real broker: values that do not fit go to the
dead-letter topic with the field and the reason, the rest are typed (a timestamp field comes
out as ISO-8601 text), also when the agent is repartitioned."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.conftest import KafkaHelper
from weir.service.app import App, Trigger
from weir.service.runtime.worker import Worker
from weir.tables.ops.functions import count
from weir.tables.ops.functions import sum as spark_sum
from weir.tables.query import Query
from weir.tables.stream import Stream

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


async def test_misfits_are_dead_lettered_with_the_field_and_the_rest_typed(
    kafka: KafkaHelper, state_dir: Path
) -> None:
    src = await kafka.topic("schema-in", partitions=2)
    dst = await kafka.topic("schema-out")
    good = [
        {"user": f"u{i % 3}", "amount": i, "at": f"2024-05-01T00:0{i % 10}:00Z"} for i in range(60)
    ]
    bad = [
        {"user": "u0", "amount": "12.5", "at": "2024-05-01T00:00:00Z"},
        {"user": "u1", "amount": 1, "at": "not a time"},
    ]
    await kafka.produce(src, good[:30] + bad[:1], partition=0)
    await kafka.produce(src, good[30:] + bad[1:], partition=1)
    app = App("schema", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)

    @app.agent(
        app.topic(src),
        sink=app.topic(dst),
        key="user",
        trigger=Trigger.available_now(),
        schema={"user": "string", "amount": "double", "at": "timestamp"},
    )
    def totals(s: Stream) -> Query:
        per_user = s.group_by("user").agg(count().alias("n"), spark_sum("amount").alias("total"))
        return per_user.query("update")

    @app.agent(
        app.topic(src),
        name="copies",
        sink=app.topic(dst),
        trigger=Trigger.available_now(),
        schema={"user": "string", "amount": "double", "at": "timestamp"},
    )
    def copies(s: Stream) -> Query:
        return s.filter(lambda r: r["amount"] == 7.0).query()

    await Worker(app).run()
    out = await kafka.read_json(dst, idle_s=1.5)
    finals: dict[str, tuple[int, float]] = {}
    for r in out:
        if "n" in r:
            finals[r["user"]] = (r["n"], r["total"])
    want: dict[str, tuple[int, float]] = {}
    for g in good:
        n, t = want.get(g["user"], (0, 0.0))
        want[g["user"]] = (n + 1, t + g["amount"])
    assert finals == want
    assert [r for r in out if "n" not in r] == [
        {"user": "u1", "amount": 7.0, "at": "2024-05-01T00:07:00Z"}
    ]
    for agent in ("totals", "copies"):
        dead = await kafka.read(app.agents[agent].dead_letter_topic, expect=2)
        reasons = sorted(dict(r.headers)["error"].decode() for r in dead)
        assert len(reasons) == 2, agent
        assert "amount: expected double, got string '12.5'" in reasons[0] + reasons[1]
        assert any(x.startswith("schema: at: ") for x in reasons)
        assert {orjson.loads(r.value)["user"] for r in dead} == {"u0", "u1"}
