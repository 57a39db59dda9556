"""Fuzzing the edges with hypothesis: any bytes into the decoder, and any mix of good, odd and
broken records through a worker on the real broker. Nothing raises out of the worker, and every
input offset is accounted for exactly once: counted in the output or dead-lettered with its
source offset."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.conftest import KafkaHelper
from weir.service.app import App, Trigger
from weir.service.codec import decode_values
from weir.service.local import Endpoints
from weir.service.runtime.worker import Worker
from weir.tables.ops.functions import collect_list, udaf
from weir.tables.query import Query
from weir.tables.stream import Stream
from weir.tables.timeutil import iso_utc

NOW = 1_790_000_000_000

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(st.lists(st.one_of(st.binary(max_size=60), st.none(), json_values.map(orjson.dumps))))
@settings(max_examples=300, deadline=None)
def test_decode_values_accounts_for_every_value(values: list[bytes | None]) -> None:
    rows, errors = decode_values(values)
    failed = [i for i, _reason in errors]
    assert failed == sorted(set(failed))
    assert len(rows) + len(errors) == len(values)
    assert all(type(r) is dict for r in rows) and all(reason for _i, reason in errors)


times = st.one_of(
    st.integers(min_value=0, max_value=3600_000).map(lambda d: iso_utc(NOW + d)),
    st.just(iso_utc(NOW + 20 * 365 * 86_400_000)),  # far ahead: the event-time guard
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
)
records = st.one_of(
    st.binary(max_size=80),
    st.fixed_dictionaries(
        {},
        optional={
            "ts": times,
            "user": st.one_of(st.sampled_from(["a", "b", "c"]), json_values),
            "v": json_values,
        },
    ),
)


class _Picky:
    """A user aggregator that raises on anything but small integers."""

    def init(self) -> int:
        return 0

    def add(self, acc: int, value: Any) -> int:
        if type(value) is not int or not -1000 < value < 1000:
            raise TypeError(f"not a small int: {value!r}")
        return acc + value

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, acc: int) -> int:
        return acc


async def _scenario(bootstrap: str, state: Path, batch: list[Any]) -> None:
    name = f"fuzz-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{name}-in", 2, 1), NewTopic(f"{name}-out", 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    ids: dict[tuple[int, int], int] = {}
    try:
        futures = []
        for i, rec in enumerate(batch):
            # the standard encoder, so integers past 64 bits and NaN reach the worker as written
            value = json.dumps({**rec, "id": i}).encode() if isinstance(rec, dict) else rec
            futures.append((i, await producer.send(f"{name}-in", value=value, partition=i % 2)))
        for i, fut in futures:
            md = await fut
            ids[(md.partition, md.offset)] = i
    finally:
        await producer.stop()

    app = App(
        name,
        state_dir=state,
        bootstrap_servers=bootstrap,
        max_records_per_trigger=37,
        max_event_time_skew_ms="1 day",
    )

    @app.agent(
        app.topic(f"{name}-in"),
        sink=app.topic(f"{name}-out"),
        key="user",
        trigger=Trigger.available_now(),
    )
    def fuzzed(s: Stream) -> Query:
        return (
            s.with_watermark("ts", "1 hour")
            .map(lambda r: {**r, "user": r.get("user")})
            .group_by("user")
            .agg(udaf(_Picky(), "v").alias("total"), collect_list("id").alias("ids"))
            .query("update")
        )

    await asyncio.wait_for(Worker(app).run(), 120)

    reader = KafkaHelper(bootstrap)
    try:
        last = {r.key: orjson.loads(r.value)["ids"] for r in await reader.read(f"{name}-out")}
        dead = Counter(
            (int(dict(r.headers)["source.partition"]), int(dict(r.headers)["source.offset"]))
            for r in await reader.read(app.agents["fuzzed"].dead_letter_topic)
        )
    finally:
        await reader.close()
    counted = Counter(i for group in last.values() for i in group)
    assert max(counted.values(), default=1) == 1, "a record counted twice"
    assert max(dead.values(), default=1) == 1, "a record dead-lettered twice"
    accounted = {ids[pos] for pos in dead} | set(counted)
    assert accounted == set(range(len(batch))), "every input offset ends somewhere"
    assert not {ids[pos] for pos in dead} & set(counted), "counted and dead-lettered"


@pytest.mark.broker
@given(st.lists(records, min_size=20, max_size=120))
@example([b"", {"user": "a", "ts": 2**70}, {"ts": float("nan"), "v": 2**64}] * 7)
@settings(
    max_examples=4,
    deadline=None,
    # the same examples on every run, so CI is repeatable, and no shrinking: each example starts a
    # worker on the broker, so shrinking would outlast the test timeout
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_fuzzed_input_through_a_worker_accounts_for_every_offset(
    local_stack: Endpoints, batch: list[Any]
) -> None:
    with tempfile.TemporaryDirectory() as state:
        asyncio.run(_scenario(local_stack.bootstrap_servers, Path(state), batch))
