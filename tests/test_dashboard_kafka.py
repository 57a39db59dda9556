"""Section 3.1 (weir.agents.stateless_ops) and practice problem 1 (weir.agents.
clickstream_dashboard) on the real broker with `Trigger.available_now()`, over their generated
input: exactly the rows a plain-Python model of the input gives, in the Kafka topic and in the
Parquet table; and `weir produce` writing exactly its replay copy's rows to the topic."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import KafkaHelper
from tests.models import dashboard, last_per_window, stateless_ops
from weir.agents import clickstream_dashboard
from weir.agents import stateless_ops as ops
from weir.service.app import Trigger
from weir.service.runtime.worker import Worker
from weir.service.sinks.parquet import read_parquet
from weir.service.traffic import Traffic

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_stateless_ops_writes_every_positive_event_transformed(
    kafka: KafkaHelper, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = await kafka.topic("ops-events")
    dst = await kafka.topic("ops-transformed")
    traffic = Traffic(T0, rate=1, late_fraction=0.05, duplicate_fraction=0.05, seed=5)
    good: list[dict[str, Any]] = [r for _t, r in ops.generate(traffic, 600)]
    good += [
        {"user_id": "u9", "action": None, "amount": 3.5, "timestamp": "2024-05-01T02:00:00+02:00"},
        {"user_id": "u9", "action": "view", "timestamp": "2024-05-01T00:00:01Z"},  # no amount
    ]
    bad = [
        {"user_id": "u8", "action": "view", "amount": "12.5", "timestamp": "2024-05-01T00:00:01Z"},
    ]
    not_a_time = {"user_id": "u8", "action": "view", "amount": 2.0, "timestamp": "yesterday"}
    good = [*good[:300], not_a_time, *good[300:]]  # to_timestamp gives null, as in Spark
    await kafka.produce(src, good[:300] + bad + good[300:])
    app = ops.build_app(
        unique("ops"),
        input_topic=src,
        output_topic=dst,
        trigger=Trigger.available_now(),
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
    )
    await Worker(app).run()

    expected = stateless_ops({"amount": None, **r} for r in good)
    records = await kafka.read(dst, expect=len(expected), idle_s=1.5)
    assert [orjson.loads(r.value) for r in records] == expected
    assert [r.key.decode() for r in records] == [e["user_id"] for e in expected]
    assert expected[-1]["event_time"] == "2024-05-01T00:00:00Z"
    assert expected[-1]["action_upper"] is None
    assert [e["event_time"] for e in expected if e["timestamp"] == "yesterday"] == [None]
    dead = await kafka.read(app.agents["stateless_ops"].dead_letter_topic, expect=1)
    reasons = [dict(r.headers)["error"].decode() for r in dead]
    assert len(reasons) == 1 and "amount: expected double, got string '12.5'" in reasons[0]
    printed = capsys.readouterr().out
    assert "Batch: 0" in printed and expected[0]["action_upper"] in printed


async def test_dashboard_writes_the_final_windows_of_the_kept_clicks_to_parquet(
    kafka: KafkaHelper, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = await kafka.topic("clickstream")
    traffic = Traffic(T0, rate=0.1, late_fraction=0.05, duplicate_fraction=0.03, seed=8)
    given = [r for _t, r in clickstream_dashboard.generate(traffic, 1500)]
    await kafka.produce(src, given)
    path = tmp_path / "dashboard"
    app = clickstream_dashboard.build_app(
        unique("dash"),
        input_topic=src,
        output_path=path,
        trigger=Trigger.available_now(),
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
        max_records_per_trigger=200,
    )
    progress: list[dict[str, Any]] = []
    app.on_progress(progress.append)
    await Worker(app).run()

    # the worker's micro-batches as its progress reports them (no-data batches too)
    sizes = [p["numInputRows"] for p in progress]
    assert sum(sizes) == len(given) and len(sizes) >= 8
    finals, dropped = dashboard(given, sizes)
    rows = read_parquet(path).to_pylist()
    assert last_per_window(rows) == finals
    assert len(rows) == sum(p["sink"]["numOutputRows"] for p in progress)
    assert dropped > 20
    assert sum(op["numRowsDroppedByWatermark"] for p in progress for op in p["stateOperators"]) == (
        dropped
    )
    lines = [x for x in capsys.readouterr().out.splitlines() if "processedRowsPerSecond=" in x]
    assert len(lines) == len(progress)
    assert all(x.startswith("clickstream_dashboard batch ") for x in lines)
    assert "state numRowsTotal=" in lines[-1]


async def test_weir_produce_writes_exactly_its_copy_to_the_topic(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    before = len(await kafka.read("clickstream", idle_s=0.5)) if await _exists(kafka) else 0
    copy = tmp_path / "clicks.jsonl"
    cmd = [sys.executable, "-m", "weir.service.cli", "produce", "clickstream_dashboard"]
    cmd += ["--count", "500", "--rate", "2000", "--copy", str(copy)]
    cmd += ["--late-fraction", "0.1", "--duplicate-fraction", "0.05"]
    env = {**os.environ, "WEIR_BOOTSTRAP_SERVERS": kafka.bootstrap}
    proc = await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = [orjson.loads(line) for line in copy.read_bytes().splitlines()]
    assert len(lines) > 500 and all(
        set(r) == {"user_id", "page", "action", "timestamp"} for r in lines
    )
    assert f"{len(lines)} events (clickstream: {len(lines)};" in proc.stderr
    records = await kafka.read("clickstream", expect=before + len(lines), idle_s=1.0)
    assert [orjson.loads(r.value) for r in records[before:]] == lines


async def _exists(kafka: KafkaHelper) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        return "clickstream" in await admin.list_topics()
    finally:
        await admin.close()
