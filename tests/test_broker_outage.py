"""A worker outlives its broker: started while the broker is down it waits (not ready) and
starts when the broker comes; with the broker gone for 30 s mid-stream it waits and goes on.
Counts read back with read_committed are exact: no duplicate, no loss.

This test runs its own broker (not the session's), since it stops and restarts it."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.checks import counting_env, until_exact
from tests.checks import rows as _rows
from tests.conftest import KafkaHelper
from tests.workers import WorkerProcess
from weir.service.local import LocalKafka, LocalStartError
from weir.service.local.proc import free_port

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


async def _up(kafka: LocalKafka) -> str:
    try:
        return await asyncio.to_thread(kafka.up)
    except LocalStartError as exc:
        pytest.fail(f"the test's own Kafka did not start: {exc}", pytrace=False)


async def _until_waiting(worker: WorkerProcess, port: int, timeout: float) -> None:
    """Wait until /readyz says the worker waits for Kafka (a slow machine may take seconds to
    start the worker); fails with the worker's log when it exits or does not say so in time."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: tuple[int, str] = (0, "")
    while asyncio.get_running_loop().time() < deadline:
        assert worker.proc.poll() is None, worker.story()
        seen = await asyncio.to_thread(_readyz, port)
        if seen[0] == 503 and "waiting for Kafka" in seen[1]:
            return
        await asyncio.sleep(0.2)
    said = f"/readyz never said 'waiting for Kafka' in {timeout:.0f}s: {seen}"
    pytest.fail(f"{said}\n{worker.story()}")


async def test_worker_waits_for_the_broker_and_survives_an_outage(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path / "kafka")
    bootstrap = await _up(broker)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("in", 4, 1), NewTopic("out", 4, 1)])
        await admin.close()
        kafka = KafkaHelper(bootstrap)
        produced = _rows(0, 3000)
        await kafka.produce("in", produced, key="k")
        await kafka.close()
        await asyncio.to_thread(broker.down)

        web_port = free_port()
        env = {
            **counting_env(kafka, "in", "out", "outage", 500),
            "WEIR_STATE_DIR": str(tmp_path / "state"),
            "WEIR_WEB_PORT": str(web_port),
            "WEIR_COMMIT_INTERVAL_MS": "100 ms",
        }
        worker = WorkerProcess("tests.apps.counting:app", env, tmp_path / "worker.log")
        try:
            # Broker down at start: the worker waits, alive and not ready.
            await _until_waiting(worker, web_port, 60)
            await asyncio.sleep(3)
            assert worker.proc.poll() is None, f"worker exited:\n{worker.tail()}"
            status, body = await asyncio.to_thread(_readyz, web_port)
            assert status == 503 and "waiting for Kafka" in body, (status, body, worker.story())

            assert await _up(broker) == bootstrap, "the broker keeps its address"
            kafka = KafkaHelper(bootstrap)
            await until_exact(kafka, "out", produced, 120, [worker])

            # Mid-stream: the broker goes away for 30 s while records are being processed.
            more = _rows(3000, 6000)
            produced += more
            await kafka.produce("in", more, key="k")
            await kafka.close()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(broker.down)
            await asyncio.sleep(30)
            assert worker.proc.poll() is None, f"worker exited:\n{worker.tail()}"
            await _up(broker)
            kafka = KafkaHelper(bootstrap)
            last = _rows(9000, 1000)
            produced += last
            await kafka.produce("in", last, key="k")
            await until_exact(kafka, "out", produced, 180, [worker])
            status, body = await asyncio.to_thread(_readyz, web_port)
            assert status == 200, body
            assert await asyncio.to_thread(worker.terminate, 60) == 0, worker.tail()
            await kafka.close()
        finally:
            if worker.proc.poll() is None:
                worker.kill()
    finally:
        await asyncio.to_thread(broker.down)
