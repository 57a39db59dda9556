"""SIGTERM during a long processing-time trigger (30 s) takes effect at once: the worker
commits what the trigger gathered so far, logs that it stops, and exits within seconds
(it used to sit out the rest of the interval, silently). Its logs are JSON lines
(WEIR_LOG_FORMAT=json) with one line per lifecycle event."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from tests.conftest import KafkaHelper
from tests.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


async def test_sigterm_interrupts_a_waiting_trigger_and_commits_what_it_gathered(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    src, dst = await kafka.topic("long-in"), await kafka.topic("long-out")
    env = {
        "WEIR_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WEIR_TEST_APP": f"long-{uuid.uuid4().hex[:8]}",
        "WEIR_TEST_INPUT": src,
        "WEIR_TEST_OUTPUT": dst,
        "WEIR_STATE_DIR": str(tmp_path / "state"),
        "WEIR_LOG_FORMAT": "json",
    }
    log = tmp_path / "worker.log"
    w = WorkerProcess("tests.apps.long_trigger:app", env, log)
    wait_for(lambda: "assigned partitions" in log.read_text(), 60, "the worker's assignment")
    await kafka.produce(src, [{"id": i} for i in range(100)])
    time.sleep(3)  # the rows are in the trigger's 30-second batch, not yet committed
    started = time.monotonic()
    assert w.terminate(timeout=60) == 0, w.tail()
    took = time.monotonic() - started
    assert took < 8, f"SIGTERM took {took:.1f} s\n{w.tail()}"
    assert "stop requested: the batch in flight is committed" in log.read_text(), w.tail()
    out = await kafka.read_json(dst, expect=100, idle_s=1.0)
    assert sorted(r["id"] for r in out) == list(range(100))
    lines = [orjson.loads(line) for line in log.read_text().splitlines()]  # every line JSON
    events = [(e["event"], e.get("query"), e.get("partition")) for e in lines if "event" in e]
    assert events == [
        ("assigned", "copy", None),
        ("first_batch", "copy", 0),
        ("stopping", "copy", None),
        ("stopped", None, None),
    ], events
    first = next(e for e in lines if e.get("event") == "first_batch")
    assert first["app"] == env["WEIR_TEST_APP"] and first["records"] == 100
    assert {"time", "level", "logger", "message"} <= first.keys()
