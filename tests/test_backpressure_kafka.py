"""Backpressure on the real broker: a slow sink slows consumption instead of growing memory.

A worker copies ~100 MB of 1 KB records into a foreach-batch function that sleeps per batch.
While it is slow the worker reads only what its batches take (bounded by
`max_records_per_trigger` and the consumer's fetch size): its resident memory stays within a
few tens of MB of where it was at the first batch, and its committed offset trails the input.
Once the sink is fast again it catches up, and the sink has seen every record exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import KafkaHelper
from tests.workers import WorkerProcess

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

N = 100_000
PAD = "x" * 1000


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _seen(folder: Path) -> list[int]:
    return [i for f in folder.glob("*.json") for i in orjson.loads(f.read_bytes())]


async def test_a_slow_sink_pauses_consumption_and_memory_stays_flat(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    src = await kafka.topic("slow-in")
    await kafka.produce(src, [{"id": i, "pad": PAD} for i in range(N)])
    batches, flag = tmp_path / "batches", tmp_path / "slow"
    flag.touch()
    env = {
        "WEIR_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WEIR_TEST_APP": f"slow-{time.time_ns()}",
        "WEIR_TEST_INPUT": src,
        "WEIR_TEST_BATCH_DIR": str(batches),
        "WEIR_TEST_SLOW_FLAG": str(flag),
        "WEIR_TEST_SLOW_S": "0.5",
        "WEIR_MAX_RECORDS_PER_TRIGGER": "1000",
        "WEIR_STATE_DIR": str(tmp_path / "state"),
    }
    w = WorkerProcess("tests.apps.slow_sink:app", env, tmp_path / "worker.log")
    deadline = time.monotonic() + 90
    while not any(batches.glob("*.json")):
        assert w.proc.poll() is None, w.tail()
        assert time.monotonic() < deadline, f"no batch within 90 s:\n{w.tail()}"
        await asyncio.sleep(0.1)
    first = _rss_mib(w.proc.pid)
    peak = first
    for _ in range(40):  # 10 s of a slow sink: ~20 batches of 1,000 records
        await asyncio.sleep(0.25)
        peak = max(peak, _rss_mib(w.proc.pid))
    taken = len(_seen(batches))
    assert taken < N // 3, f"the slow sink saw {taken} records: consumption did not slow"
    # Reading ahead all ~100 MB would add well over 100 MB (the values and their decoded rows).
    assert peak - first < 40, f"RSS grew {peak - first:.0f} MiB (from {first:.0f} MiB) while slow"

    flag.unlink()
    assert await asyncio.to_thread(w.wait, 180) == 0, w.tail()
    seen = _seen(batches)
    assert sorted(seen) == list(range(N)), f"{len(seen)} ids seen, {len(set(seen))} distinct"
