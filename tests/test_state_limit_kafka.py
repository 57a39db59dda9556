"""A per-task state limit (`max_state_rows`) on the real broker: a worker whose state grows
past it stops with one line naming the agent, the partition and the count; restarted under
the same limit it stops again at once; with a higher limit it goes on, and the counts read
back with read_committed are exact (the batch that crossed the limit was committed once)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.checks import KEYS, check_exact, counting_env, rows
from tests.conftest import KafkaHelper
from tests.workers import WorkerProcess

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

LIMIT = KEYS - 10


async def test_a_task_over_max_state_rows_stops_with_one_line_and_resumes_when_raised(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    src = await kafka.topic("limit-in")
    dst = await kafka.topic("limit-out")
    produced = rows(0, 400)  # KEYS distinct keys: the running count holds KEYS groups
    await kafka.produce(src, produced, key="k")
    env = {
        **counting_env(kafka, src, dst, "limit", 7),
        "WEIR_STATE_DIR": str(tmp_path / "state"),
        "WEIR_TEST_TRIGGER": "available_now",
    }
    log = tmp_path / "worker.log"

    for attempt in ("crosses the limit", "restarted over it"):
        w = WorkerProcess(
            "tests.apps.counting:app", {**env, "WEIR_MAX_STATE_ROWS": str(LIMIT)}, log
        )
        assert await asyncio.to_thread(w.wait, 120) != 0, f"{attempt}: worker went on:\n{w.tail()}"
        last = log.read_text().strip().splitlines()[-1]
        assert last.startswith(
            "weir worker: StateLimitError: running_count[0]: the state holds "
        ), last
        assert f"keys, over max_state_rows={LIMIT}" in last, last
        held = int(last.split("holds ")[1].split(" keys")[0].replace(",", ""))
        assert LIMIT < held <= LIMIT + 7, last  # one batch of 7 records crossed it

    w = WorkerProcess("tests.apps.counting:app", {**env, "WEIR_MAX_STATE_ROWS": str(KEYS)}, log)
    assert await asyncio.to_thread(w.wait, 120) == 0, w.tail()
    check_exact(await kafka.read(dst, idle_s=1.0), produced)
