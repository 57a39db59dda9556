"""Concurrent writers on one real Delta table: merges of two tasks racing each other and
another program's appends conflict for real (delta-rs's CommitFailedError "a concurrent
transaction added new data", and for an append racing a merge "deleted data this operation
read"); each conflict is retried from a fresh snapshot, one warning a
retry, and every batch lands once: exact rows, one MERGE commit per merged batch. Two writers of the
same batch at once (a worker and the one taking its partition over) commit it once (with
delta-rs's commit retries on, both committed now and then under load: the batch twice)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from weir.service.sinks.arrow import as_schema, to_table
from weir.service.sinks.base import BatchIdentity, SinkBatch, SinkFailure
from weir.service.sinks.delta import DeltaSink

SCHEMA = {"key": "string", "value": "integer"}
BATCHES = 12
APPENDS = 30


def batch(task: int, n: int, rows: list[dict[str, Any]], query: str = "app-agent") -> SinkBatch:
    return SinkBatch(BatchIdentity(query, task, n), rows, frozenset(), lambda: [])


def rows_of(path: Path) -> list[tuple[str, int]]:
    d = DeltaTable(str(path)).to_pyarrow_table().to_pydict()
    return sorted(zip(d["key"], d["value"], strict=True))


async def write_retrying(sink: DeltaSink, b: SinkBatch) -> int:
    """Write `b` as the worker does: a transient failure is retried; the transient count."""
    transient = 0
    while True:
        try:
            await sink.write(b)
            return transient
        except SinkFailure as exc:
            assert exc.transient, exc
            transient += 1


def test_racing_merges_and_appends_land_every_batch_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t"
    write_deltalake(str(path), to_table([{"key": "x0", "value": -1}], as_schema(SCHEMA)))
    # two tasks of a query merging, a task of another query appending, and another program
    merging = [DeltaSink(path, SCHEMA, mode="merge", keys=["key"]) for _task in (0, 1)]
    appending = DeltaSink(path, SCHEMA)
    failed: list[BaseException] = []

    def other_program() -> None:  # appends, retrying its own conflicts
        try:
            for i in range(1, APPENDS + 1):
                time.sleep(0.02)
                more = to_table([{"key": f"x{i}", "value": -1}], as_schema(SCHEMA))
                while True:
                    try:
                        write_deltalake(str(path), more, mode="append")
                        break
                    except CommitFailedError:
                        continue
        except BaseException as exc:
            failed.append(exc)

    async def merge(t: int) -> None:
        for n in range(BATCHES):
            # the task's five keys updated to the batch number, and one new key a batch
            rows = [{"key": f"t{t}-k{j}", "value": n} for j in range(5)]
            rows.append({"key": f"t{t}-n{n}", "value": n})
            await write_retrying(merging[t], batch(t, n, rows))

    async def append() -> None:
        for n in range(BATCHES):
            rows = [{"key": f"a{n}-{j}", "value": n} for j in range(3)]
            await write_retrying(appending, batch(0, n, rows, query="other-agent"))

    async def writers() -> None:
        await asyncio.gather(merge(0), merge(1), append())

    program = threading.Thread(target=other_program)
    caplog.set_level(logging.WARNING, "weir.worker")
    program.start()
    try:
        asyncio.run(writers())
    finally:
        program.join()
    assert failed == []
    want = [(f"x{i}", -1) for i in range(APPENDS + 1)]
    want += [(f"a{n}-{j}", n) for n in range(BATCHES) for j in range(3)]
    for t in (0, 1):
        want += [(f"t{t}-k{j}", BATCHES - 1) for j in range(5)]
        want += [(f"t{t}-n{n}", n) for n in range(BATCHES)]
    assert rows_of(path) == sorted(want)  # nothing lost, nothing twice
    dt = DeltaTable(str(path))
    assert [h["operation"] for h in dt.history()].count("MERGE") == 2 * BATCHES
    versions = [dt.transaction_version(a) for a in ("app-agent-0", "app-agent-1", "other-agent-0")]
    assert versions == [BATCHES - 1] * 3
    retries = [r.getMessage() for r in caplog.records if "conflicts with" in r.getMessage()]
    assert retries, "no commit conflicted: the test did not test conflicts"
    assert all("\n" not in m and m.startswith(f"delta[{path}]: batch ") for m in retries)


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_two_writers_of_the_same_batch_at_once_commit_it_once(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "t"
    keys = ["key"] if mode == "merge" else []
    write_deltalake(str(path), to_table([{"key": "seed", "value": 0}], as_schema(SCHEMA)))
    for n in range(8):
        # the old owner of task 0 and the new one write batch n at the same moment
        writers = [DeltaSink(path, SCHEMA, mode=mode, keys=keys) for _ in range(2)]  # type: ignore[arg-type]
        rows = [{"key": f"k{n}-{j}", "value": n} for j in range(3)]

        async def race(writers: list[DeltaSink] = writers, n: int = n, rows: Any = rows) -> None:
            await asyncio.gather(*(write_retrying(w, batch(0, n, rows)) for w in writers))

        asyncio.run(race())
    want = [("seed", 0)] + [(f"k{n}-{j}", n) for n in range(8) for j in range(3)]
    assert rows_of(path) == sorted(want)
    dt = DeltaTable(str(path))
    assert dt.version() == 8  # the table's creation, then one commit a batch
    assert dt.transaction_version("app-agent-0") == 7
