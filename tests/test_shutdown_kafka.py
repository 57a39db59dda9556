"""SIGTERM during a long processing-time trigger (30 s) takes effect at once: the worker
commits what the trigger gathered so far, logs that it stops, and exits within seconds
(it used to sit out the rest of the interval, silently). Its logs are JSON lines
(WEIR_LOG_FORMAT=json) with one line per lifecycle event."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from tests.conftest import KafkaHelper
from tests.workers import WorkerProcess, wait_for
from weir.service import commands


@pytest.mark.broker
@pytest.mark.asyncio
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


@pytest.mark.broker
@pytest.mark.asyncio
async def test_sigterm_aborts_a_batch_that_does_not_commit_within_the_bound(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    """A sink that takes a minute: SIGTERM with shutdown_timeout_ms=1000 aborts the batch in
    flight, says so, and the worker exits 0 within seconds; the next start writes every record
    exactly once."""
    src = await kafka.topic("bound-in")
    await kafka.produce(src, [{"id": i} for i in range(50)])
    batches, flag = tmp_path / "batches", tmp_path / "slow"
    flag.touch()
    env = {
        "WEIR_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WEIR_TEST_APP": f"bound-{uuid.uuid4().hex[:8]}",
        "WEIR_TEST_INPUT": src,
        "WEIR_TEST_BATCH_DIR": str(batches),
        "WEIR_TEST_SLOW_FLAG": str(flag),
        "WEIR_TEST_SLOW_S": "60",
        "WEIR_TEST_ASYNC": "1",
        "WEIR_SHUTDOWN_TIMEOUT_MS": "1000",
        "WEIR_STATE_DIR": str(tmp_path / "state"),
    }
    log = tmp_path / "worker.log"
    w = WorkerProcess("tests.apps.slow_sink:app", env, log)
    wait_for(lambda: (batches / "writing").exists(), 90, "the sink's first write")
    started = time.monotonic()
    assert w.terminate(timeout=60) == 0, w.tail()
    took = time.monotonic() - started
    assert took < 10, f"SIGTERM took {took:.1f} s\n{w.tail()}"
    text = log.read_text()
    assert "did not commit within 1 s of the stop request" in text, w.tail()
    assert "aborted: its input is processed again after the restart" in text
    assert not list(batches.glob("*.json"))  # the slow write never finished

    flag.unlink()
    again = WorkerProcess("tests.apps.slow_sink:app", env, tmp_path / "again.log")
    assert again.wait(120) == 0, again.tail()
    seen = [i for f in batches.glob("*.json") for i in orjson.loads(f.read_bytes())]
    assert sorted(seen) == list(range(50))


def test_the_stop_watchdog_ends_a_process_whose_loop_is_blocked(tmp_path: Path) -> None:
    """User code blocking the event loop cannot hold a stop past its bound: the watchdog logs
    one line and ends the process with code 1."""
    script = (
        "import logging, sys, time\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s')\n"
        "from weir.service import commands\n"
        "commands._start_watchdog(0.5)\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == commands.STOP_TIMEOUT_EXIT == 1
    assert time.monotonic() - started < 15
    (line,) = done.stderr.splitlines()
    assert line.startswith("stop: still running 0 s after the stop request")
    assert "its input is processed again after the restart" in line
