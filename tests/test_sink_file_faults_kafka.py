"""A Parquet or Delta table whose path cannot be written, under a real `weir worker` on the real
broker: the worker retries the batch `max_batch_retries` times (one warning line each, counted
in `weir_sink_write_failures`), then stops with one readable line naming the sink, the path and
the OS reason, and a non-zero exit, its input offsets not committed. Once the path is fixed, a
restart writes every row exactly once."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable

from tests.conftest import KafkaHelper
from tests.workers import WorkerProcess
from weir.service.sinks.parquet import read_parquet

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

N = 2000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape_until_exit(w: WorkerProcess, port: int, timeout: float) -> str:
    """The last /metrics page the worker served before it exited."""
    page = ""
    deadline = time.monotonic() + timeout
    while w.proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                page = r.read().decode()
        except OSError:
            pass
        time.sleep(0.1)
    return page


@pytest.mark.parametrize("sink", ["parquet", "delta"])
async def test_an_unwritable_table_stops_the_worker_and_the_restart_writes_each_row_once(
    kafka: KafkaHelper, tmp_path: Path, sink: str
) -> None:
    src = await kafka.topic("unwritable-in", partitions=2)
    for start in range(0, N, 250):
        rows = [{"id": i} for i in range(start, start + 250)]
        await kafka.produce(src, rows, partition=(start // 250) % 2)
    blocker = tmp_path / "data"
    blocker.write_text("a file where the tables' folder should be")
    table = blocker / "copy"
    port = free_port()
    env = {
        "WEIR_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WEIR_PROCESSING_GUARANTEE": "exactly_once",
        "WEIR_TEST_APP": f"unwritable-{uuid.uuid4().hex[:8]}",
        "WEIR_TEST_INPUT": src,
        "WEIR_TEST_BATCH_DIR": str(table),
        "WEIR_STATE_DIR": str(tmp_path / "state"),
        "WEIR_TEST_SINK": sink,
        "WEIR_MAX_RECORDS_PER_TRIGGER": "300",
        "WEIR_MAX_BATCH_RETRIES": "2",
    }
    log = tmp_path / "worker.log"
    w = WorkerProcess("tests.apps.batch_files:app", {**env, "WEIR_WEB_PORT": str(port)}, log)
    page = await asyncio.to_thread(scrape_until_exit, w, port, 120)
    assert await asyncio.to_thread(w.wait, 30) == 1, w.tail()
    text = log.read_text()
    last = text.strip().splitlines()[-1]
    file = rf"{table}/\S+\.parquet" if sink == "parquet" else str(table)
    assert re.fullmatch(
        rf"weir worker: BatchFailedError: copy\[\d\]: a batch failed 3 times, last with "
        rf"SinkFailure: {sink}\[{table}\]: cannot write {file}: Not a directory "
        r"\(on_batch_failure='dead_letter' sends such batches to the dead letters instead\)",
        last,
    ), last
    # one line a failed attempt, per task (input partition), and nothing else about it
    stopped = re.match(r"weir worker: BatchFailedError: copy\[(\d)\]", last)
    assert stopped
    attempts: dict[str, list[int]] = {}
    for line in text.splitlines()[:-1]:
        if "SinkFailure" not in line and "Not a directory" not in line:
            continue
        found = re.search(
            rf"WARNING weir.worker copy\[(\d)\]: checkpoint failed \(SinkFailure: "
            rf"{sink}\[{table}\]: cannot write {file}: Not a directory\); "
            r"aborting and rewinding \(attempt (\d)\)$",
            line,
        )
        assert found, line
        attempts.setdefault(found.group(1), []).append(int(found.group(2)))
    assert attempts[stopped.group(1)] == [1, 2, 3], attempts
    assert all(a == list(range(1, len(a) + 1)) for a in attempts.values()), attempts
    assert "Traceback" not in text
    counted = re.search(
        rf'weir_sink_write_failures_total{{app="[^"]+",query="copy",'
        rf'sink="{sink}\[{table}\]"}} (\S+)',
        page,
    )
    assert counted and float(counted.group(1)) >= 1, page

    blocker.unlink()  # the operator fixes the path
    w = WorkerProcess("tests.apps.batch_files:app", env, tmp_path / "worker2.log")
    assert await asyncio.to_thread(w.wait, 120) == 0, w.tail()
    if sink == "parquet":
        ids = read_parquet(table).column("id").to_pylist()
    else:
        ids = DeltaTable(str(table)).to_pyarrow_table().column("id").to_pylist()
    seen = Counter(ids)
    assert sorted(seen) == list(range(N))
    assert [i for i, n in seen.items() if n > 1] == []
