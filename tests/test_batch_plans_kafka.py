"""A batch that writes outside the Kafka checkpoint runs again, after a crash, over exactly the
same input: a foreach-batch writer idempotent by batch identity (tests/apps/batch_files.py),
the Parquet sink read through its manifests (fed from Kafka, or from a folder of files), the
Delta sink and an insert-only PostgreSQL table lose and repeat nothing when the worker dies
after its write and before the checkpoint and comes back with another
`max_records_per_trigger` (which used to change the batch)."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import psycopg
import pytest
from deltalake import DeltaTable

from tests.conftest import KafkaHelper
from tests.workers import WorkerProcess
from weir.service.runtime.runner import CRASH_AFTER_SINKS_ENV, CRASH_EXIT_CODE
from weir.service.sinks.parquet import read_parquet

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

N = 3000


@pytest.mark.parametrize(
    ("guarantee", "sink"),
    [
        ("exactly_once", "files"),
        ("at_least_once", "files"),
        ("exactly_once", "parquet"),
        ("at_least_once", "delta"),
        ("exactly_once", "parquet-from-files"),
        pytest.param("exactly_once", "postgres", marks=pytest.mark.postgres),
    ],
)
async def test_crash_after_an_external_write_loses_and_repeats_nothing(
    kafka: KafkaHelper, tmp_path: Path, guarantee: str, sink: str, request: pytest.FixtureRequest
) -> None:
    src = await kafka.topic("plans-in", partitions=2)
    files = sink.endswith("-from-files")  # the input is a folder of files, not a topic
    sink = sink.removesuffix("-from-files")
    folder = tmp_path / "in"
    folder.mkdir()
    for start in range(0, N, 250):  # both partitions, in chunks
        rows = [{"id": i} for i in range(start, start + 250)]
        if files:
            (folder / f"part-{start:05d}.json").write_bytes(
                b"".join(orjson.dumps(r) + b"\n" for r in rows)
            )
        else:
            await kafka.produce(src, rows, partition=(start // 250) % 2)
    env = {
        "WEIR_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WEIR_PROCESSING_GUARANTEE": guarantee,
        "WEIR_TEST_APP": f"plans-{uuid.uuid4().hex[:8]}",
        "WEIR_TEST_INPUT": src,
        "WEIR_TEST_BATCH_DIR": str(tmp_path / "batches"),
        "WEIR_STATE_DIR": str(tmp_path / "state"),
        "WEIR_TEST_SINK": sink,
    }
    if files:
        env["WEIR_TEST_INPUT_DIR"] = str(folder)
        old = time.time() - 10
        for f in folder.iterdir():
            os.utime(f, (old, old))
    table = f"plans_{uuid.uuid4().hex[:8]}"
    if sink == "postgres":
        env["WEIR_POSTGRES_DSN"] = request.getfixturevalue("postgres_dsn")
        env["WEIR_TEST_BATCH_DIR"] = str(tmp_path / table)
    crashes = 0
    # each run crashes after its 2nd batch's write, then resumes with another batch size
    for run, size in enumerate((170, 430)):
        log = tmp_path / f"worker{run}.log"
        extra = {"WEIR_MAX_RECORDS_PER_TRIGGER": str(size), CRASH_AFTER_SINKS_ENV: "2"}
        w = WorkerProcess("tests.apps.batch_files:app", {**env, **extra}, log)
        rc = w.wait(120)
        assert rc in (0, CRASH_EXIT_CODE), w.tail()
        crashes += rc == CRASH_EXIT_CODE
    w = WorkerProcess(
        "tests.apps.batch_files:app", {**env, "WEIR_MAX_RECORDS_PER_TRIGGER": "90"}, log
    )
    assert w.wait(120) == 0, w.tail()
    assert crashes == 2
    seen: Counter[int] = Counter()
    if sink == "parquet":  # what a reader of the committed table sees
        seen.update(read_parquet(tmp_path / "batches").column("id").to_pylist())
    elif sink == "postgres":
        with psycopg.connect(env["WEIR_POSTGRES_DSN"]) as conn:
            seen.update(i for (i,) in conn.execute(f"SELECT id FROM {table}"))
    elif sink == "delta":
        table = DeltaTable(str(tmp_path / "batches")).to_pyarrow_table()
        seen.update(table.column("id").to_pylist())
    else:
        for f in (tmp_path / "batches").glob("*.json"):
            seen.update(r["id"] for r in orjson.loads(f.read_bytes()))
        assert not list((tmp_path / "batches").glob("*.tmp"))
    missing = sorted(set(range(N)) - set(seen))
    doubled = sorted(i for i, n in seen.items() if n > 1)
    assert (missing[:10], doubled[:10]) == ([], []), (len(missing), len(doubled))
    assert sum(seen.values()) == N
