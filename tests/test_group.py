"""Consumer-group behaviour on the real broker: two workers split the partitions; when one
stops (SIGTERM: final checkpoint, leaves the group) the survivor takes its partitions over and
the results stay exact."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.checks import check_exact, counting_env, rows, until_exact
from tests.conftest import KafkaHelper
from tests.workers import WorkerProcess

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

_ASSIGNED = re.compile(r"weir\.worker running_count: assigned partitions \[([0-9, ]*)\]")


def _assigned(log: Path) -> set[int] | None:
    """The partitions of the stage-2 agent after the worker's latest rebalance."""
    found = _ASSIGNED.findall(log.read_text(errors="replace")) if log.exists() else []
    if not found:
        return None
    return {int(x) for x in found[-1].split(",") if x.strip()}


async def _until(cond: object, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_two_workers_split_then_survivor_takes_over(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    src = await kafka.topic("grp-in", partitions=4)
    dst = await kafka.topic("grp-out", partitions=4)
    base = counting_env(kafka, src, dst, "grp", 500)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = WorkerProcess(
        "tests.apps.counting:app", {**base, "WEIR_STATE_DIR": str(tmp_path / "a")}, log_a
    )
    b = WorkerProcess(
        "tests.apps.counting:app", {**base, "WEIR_STATE_DIR": str(tmp_path / "b")}, log_b
    )
    try:
        produced = rows(0, 8000)
        await kafka.produce(src, produced, key="k")

        def split() -> bool:
            pa, pb = _assigned(log_a), _assigned(log_b)
            return bool(pa) and bool(pb) and not (pa & pb) and (pa | pb) == {0, 1, 2, 3}  # type: ignore[operator]

        await _until(split, 90, f"both workers to hold partitions\nA:\n{a.tail()}\nB:\n{b.tail()}")
        more = rows(len(produced), 8000)
        produced += more
        await kafka.produce(src, more, key="k")

        assert await asyncio.to_thread(a.terminate, 90) == 0, a.tail()
        await _until(lambda: _assigned(log_b) == {0, 1, 2, 3}, 90, f"takeover\n{b.tail()}")
        last = rows(len(produced), 4000)
        produced += last
        await kafka.produce(src, last, key="k")

        await until_exact(kafka, dst, produced, 120, [b])
        assert await asyncio.to_thread(b.terminate, 90) == 0, b.tail()
        # Nothing more appears after the clean stop, and the result is still exact.
        check_exact(await kafka.read(dst, idle_s=1.0), produced)
        assert "Traceback" not in log_a.read_text() + log_b.read_text()
    finally:
        for w in (a, b):
            if w.proc.poll() is None:
                w.kill()


async def test_frozen_zombie_is_fenced_and_results_stay_exact(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    """Worker A is frozen (SIGSTOP) mid-stream until the group evicts it and B takes over its
    partitions (B's producers take A's transactional ids, fencing A's); when A wakes up,
    whatever it tries to commit for partitions it lost cannot become visible: a
    read_committed reader sees exact counts."""
    import signal

    src = await kafka.topic("zombie-in", partitions=2)
    dst = await kafka.topic("zombie-out", partitions=2)
    base = counting_env(kafka, src, dst, "zombie", 200)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    produced = rows(0, 20000)
    await kafka.produce(src, produced, key="k")
    a = WorkerProcess(
        "tests.apps.counting:app", {**base, "WEIR_STATE_DIR": str(tmp_path / "a")}, log_a
    )
    b: WorkerProcess | None = None
    try:
        await _until(lambda: _assigned(log_a) == {0, 1}, 90, f"A's assignment\n{a.tail()}")
        before = await kafka.end_offset_total(dst)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while await kafka.end_offset_total(dst) <= before:
            assert loop.time() < deadline, a.tail()
            await asyncio.sleep(0.1)
        a.proc.send_signal(signal.SIGSTOP)  # frozen in the middle of the stream
        b = WorkerProcess(
            "tests.apps.counting:app", {**base, "WEIR_STATE_DIR": str(tmp_path / "b")}, log_b
        )
        await _until(lambda: _assigned(log_b) == {0, 1}, 120, f"B's takeover\n{b.tail()}")
        a.proc.send_signal(signal.SIGCONT)  # the zombie wakes up and tries to go on
        more = rows(len(produced), 4000)
        produced += more
        await kafka.produce(src, more, key="k")
        await until_exact(kafka, dst, produced, 150, [a, b])
        for w in (a, b):
            assert await asyncio.to_thread(w.terminate, 90) == 0, w.tail()
        check_exact(await kafka.read(dst, idle_s=1.0), produced)
    finally:
        for w in (a, b):
            if w is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
                w.kill()
