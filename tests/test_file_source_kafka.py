"""The directory file source in the worker: a query stopped in the middle of a directory and
restarted (with more files arrived, one still being written) neither reads a file twice nor
skips one; the half-written file is read whole once it is complete. Output checked on Kafka
with a read_committed reader."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import KafkaHelper
from weir.service.app import App
from weir.service.runtime.worker import Worker
from weir.tables.query import Query
from weir.tables.stream import Stream

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

SCHEMA = {"id": "integer", "file": "string"}


def write(folder: Path, name: str, ids: range) -> None:
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(b"".join(orjson.dumps({"id": i, "file": name}) + b"\n" for i in ids))
    os.replace(tmp, folder / name)  # moved in whole, as the README says to
    old = time.time() - 10
    os.utime(folder / name, (old, old))


def files_app(name: str, folder: Path, out: str, state_dir: Path, bootstrap: str) -> App:
    app = App(name, state_dir=state_dir, bootstrap_servers=bootstrap, commit_interval_ms=100)
    src = app.files("orders", folder, schema=SCHEMA, max_files_per_trigger=1, settle="1 second")

    @app.agent(src, sink=app.topic(out))
    def copy(s: Stream) -> Query:
        return s.query()

    return app


async def run_until(app: App, batches: int, timeout: float = 60, settle_s: float = 0) -> None:
    """Run the worker until `batches` batches committed (then `settle_s` more), then stop it."""
    worker = Worker(app)
    seen: list[dict[str, Any]] = []
    app.on_progress(seen.append)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + timeout
    while len(seen) < batches and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
    await asyncio.sleep(settle_s)
    worker.stop()
    await asyncio.wait_for(task, 60)
    assert len(seen) >= batches, f"only {len(seen)} batches in {timeout}s"


async def test_restart_mid_directory_reads_each_file_once(
    kafka: KafkaHelper, state_dir: Path, tmp_path: Path
) -> None:
    out = await kafka.topic("files-out")
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(6):
        write(folder, f"part-{k:02d}.json", range(k * 100, k * 100 + 100))
    with open(folder / "part-03.json", "ab") as f:  # a row that does not fit the schema
        f.write(b'{"id": "not a number", "file": "part-03.json"}\n')
    name = f"files-{out[-6:]}"
    await run_until(files_app(name, folder, out, state_dir, kafka.bootstrap), 3)
    first = await kafka.read_json(out, idle_s=1.0)
    assert 300 <= len(first) < 600, "expected a stop in the middle of the directory"
    # meanwhile: two more files, one with a name sorting first, and one still being written
    write(folder, "part-00a.json", range(1000, 1050))
    write(folder, "part-07.json", range(700, 800))
    growing = folder / "part-08.json"

    async def writer() -> None:  # a slow writer: 10 lines every 0.3 s, under the settle time
        for k in range(10):
            with open(growing, "ab") as f:
                lines = range(800 + k * 10, 810 + k * 10)
                f.write(
                    b"".join(orjson.dumps({"id": i, "file": growing.name}) + b"\n" for i in lines)
                )
            await asyncio.sleep(0.3)

    worker_app = files_app(name, folder, out, state_dir, kafka.bootstrap)
    worker = Worker(worker_app)
    task = asyncio.create_task(worker.run())
    await writer()
    await asyncio.sleep(6)
    worker.stop()
    await asyncio.wait_for(task, 60)
    rows = await kafka.read_json(out, idle_s=1.0)
    ids = sorted(r["id"] for r in rows)
    assert ids == sorted([*range(0, 600), *range(1000, 1050), *range(700, 900)])
    by_file: dict[str, int] = {}
    for r in rows:
        by_file[r["file"]] = by_file.get(r["file"], 0) + 1
    assert by_file["part-08.json"] == 100, "the file being written was read half"
    agent = worker_app.agents["copy"]
    dead = await kafka.read(agent.dead_letter_topic, expect=1)
    assert len(dead) == 1
    hdrs = dict(dead[0].headers)
    assert hdrs["source.file"] == b"part-03.json" and hdrs["source.row"] == b"101"
    assert hdrs["error"].startswith(b"schema: id: expected integer")


async def test_a_new_machine_reads_on_from_the_checkpoint_alone(
    kafka: KafkaHelper, state_dir: Path, tmp_path: Path
) -> None:
    """The state folder (with the local file log) is lost between runs, as on a rescheduled
    pod: the taken files come back from the changelog with the state, so the restarted query
    neither reads the first files again nor skips any (before: it stopped, the log lost)."""
    out = await kafka.topic("files-moved-out")
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(6):
        write(folder, f"part-{k:02d}.json", range(k * 100, k * 100 + 100))
    name = f"files-moved-{out[-6:]}"
    await run_until(files_app(name, folder, out, state_dir, kafka.bootstrap), 3)
    done = len(await kafka.read_json(out, idle_s=1.0))
    shutil.rmtree(state_dir)
    write(folder, "part-00a.json", range(1000, 1050))  # sorts first, arrives late
    left = 1 + (600 - done) // 100  # files still to read, one a batch
    await run_until(files_app(name, folder, out, state_dir, kafka.bootstrap), left)
    ids = sorted(r["id"] for r in await kafka.read_json(out, idle_s=1.0))
    assert ids == sorted([*range(0, 600), *range(1000, 1050)])
