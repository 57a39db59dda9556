"""Exactly-once on the real broker: a keyed running count survives repeated SIGKILLs, a restore
from the changelog alone into an empty state folder, and the in-memory store, with no duplicate
and no loss seen by a read_committed reader."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.checks import check_exact as _check_exact
from tests.checks import counting_env
from tests.checks import rows as _rows
from tests.conftest import KafkaHelper
from tests.workers import WorkerProcess, run_counting_to_end

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


async def _kill_mid_stream(
    kafka: KafkaHelper, env: dict[str, str], log: Path, dst: str, extra_s: float
) -> None:
    """Start a worker, wait until it has committed output in this run, let it go on for
    `extra_s` seconds, then SIGKILL it."""
    before = await kafka.end_offset_total(dst)
    w = WorkerProcess("tests.apps.counting:app", env, log)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while await kafka.end_offset_total(dst) <= before:
        assert w.proc.poll() is None, f"worker exited early:\n{w.tail()}"
        assert loop.time() < deadline, f"no output within 90s:\n{w.tail()}"
        await asyncio.sleep(0.1)
    await asyncio.sleep(extra_s)
    assert w.proc.poll() is None, f"worker exited before the kill:\n{w.tail()}"
    w.kill()


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_sigkill_restarts_then_changelog_restore_are_exact(
    kafka: KafkaHelper, tmp_path: Path, store: str
) -> None:
    src = await kafka.topic("eos-in", partitions=4)
    dst = await kafka.topic("eos-out", partitions=4)
    state = tmp_path / "state"
    env = {
        **counting_env(kafka, src, dst, "eos", 120),
        "WEIR_STATE_DIR": str(state),
        "WEIR_STORE": store,
        "WEIR_COMMIT_INTERVAL_MS": "50 ms",
    }
    produced: list[dict[str, object]] = []
    log = tmp_path / "worker.log"
    for extra_s in (1.0, 0.3, 1.7):
        batch = _rows(len(produced), 6000)
        produced += batch
        await kafka.produce(src, batch, key="k")
        await _kill_mid_stream(kafka, env, log, dst, extra_s)

    # Finish what is left, then verify.
    await run_counting_to_end(env, log)
    _check_exact(await kafka.read(dst, idle_s=1.5), produced)

    # A new machine: no local state at all; the changelog alone restores it.
    shutil.rmtree(state, ignore_errors=True)
    more = _rows(len(produced), 2000)
    produced += more
    await kafka.produce(src, more, key="k")
    await run_counting_to_end(env, log)
    _check_exact(await kafka.read(dst, idle_s=1.5), produced)
    assert "restoring" in log.read_text()


async def test_a_stale_committed_offset_does_not_process_a_batch_twice(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    """Right after a transaction completes (a broker restart, a fenced producer) the group
    coordinator can still answer with the offset from before it. The position committed with
    the state wins, so that batch is not processed twice."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    src = await kafka.topic("stale-in", partitions=1)
    dst = await kafka.topic("stale-out", partitions=1)
    env = {**counting_env(kafka, src, dst, "stale", 500), "WEIR_STATE_DIR": str(tmp_path / "s")}
    log = tmp_path / "worker.log"
    produced = _rows(0, 3000)
    await kafka.produce(src, produced, key="k")
    await run_counting_to_end(env, log)
    _check_exact(await kafka.read(dst, idle_s=1.0), produced)

    stale = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        group_id=f"{env['WEIR_TEST_APP']}-running_count",
        enable_auto_commit=False,
    )
    await stale.start()
    try:
        tp = TopicPartition(src, 0)
        stale.assign([tp])
        await stale.commit({tp: 1000})  # what a lagging coordinator answers
    finally:
        await stale.stop()
    more = _rows(3000, 1000)
    produced += more
    await kafka.produce(src, more, key="k")
    await run_counting_to_end(env, log)
    _check_exact(await kafka.read(dst, idle_s=1.0), produced)
    assert "not at the committed offset 1000" in log.read_text()
