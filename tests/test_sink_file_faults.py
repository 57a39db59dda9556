"""Parquet and Delta tables whose path cannot be written, on real files: one line naming the
sink, the path and the OS reason, nothing created; and a write failing midway (a file size
limit, RLIMIT_FSIZE, in a writer subprocess: the kernel refuses the write with EFBIG, as a
full disk refuses it with ENOSPC) leaves no half-written file to a reader reading all along,
and the batch written again later shows once."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable

from weir.service.sinks.base import BatchIdentity, Sink, SinkBatch, SinkFailure
from weir.service.sinks.delta import DeltaSink
from weir.service.sinks.parquet import ParquetSink, read_parquet

SCHEMA = {"id": "integer", "pad": "string"}
LIMIT = 1_000_000
"""The writer subprocess's largest file, in bytes: the big batch's file outgrows it."""
BIG = 40_100
"""Rows 100 to BIG are the big batch: 2.5 MB of Parquet (part "a" of them: 0.25 MB)."""


def make(kind: str, path: Path) -> Sink:
    if kind == "parquet":
        return ParquetSink(path, SCHEMA)
    if kind == "parquet-by-part":
        return ParquetSink(path, {**SCHEMA, "part": "string"}, partition_by=["part"])
    return DeltaSink(path, SCHEMA)


def rows(lo: int, hi: int) -> list[dict[str, Any]]:
    # padding that does not compress; part "a" a tenth of the rows, "b" the rest
    return [
        {"id": i, "pad": hashlib.sha256(b"%d" % i).hexdigest(), "part": "ab"[i % 10 > 0]}
        for i in range(lo, hi)
    ]


def batch(n: int, data: list[dict[str, Any]]) -> SinkBatch:
    return SinkBatch(BatchIdentity("app-copy", 0, n), data, frozenset(), lambda: [])


def ids(kind: str, path: Path) -> list[int]:
    """The ids a reader of the committed table sees."""
    if kind == "delta":
        if not (path / "_delta_log").exists():
            return []
        return sorted(DeltaTable(str(path)).to_pyarrow_table().column("id").to_pylist())
    return sorted(read_parquet(path).column("id").to_pylist()) if path.exists() else []


@pytest.mark.parametrize("kind", ["parquet", "delta"])
@pytest.mark.parametrize("shape", ["under a file", "a file"])
def test_a_path_through_a_file_fails_with_one_line(tmp_path: Path, kind: str, shape: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    path = blocker / "table" if shape == "under a file" else blocker
    sink = make(kind, path)
    with pytest.raises(SinkFailure) as failed:
        asyncio.run(sink.write(batch(0, rows(0, 3))))
    file = f"{path}/app-copy-0-00000000-0.parquet" if kind == "parquet" else str(path)
    assert str(failed.value) == f"{kind}[{path}]: cannot write {file}: Not a directory"
    assert not failed.value.transient  # someone must fix the path: retries run out
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


WRITER = """
import asyncio, os, resource, sys
from tests.test_sink_file_faults import BIG, batch, make, rows
from weir.service.sinks.base import SinkFailure
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))
try:
    asyncio.run(make(sys.argv[1], __import__("pathlib").Path(sys.argv[2])).write(
        batch(1, rows(100, BIG))))
    print("written")
except SinkFailure as exc:
    print(f"{exc} transient={exc.transient}")
sys.stdout.flush()
os._exit(0)  # not through delta-rs's teardown at exit (delta-io/delta-rs#2184)
"""


@pytest.mark.parametrize("kind", ["parquet", "parquet-by-part", "delta"])
def test_a_write_failing_midway_leaves_no_torn_file_and_the_retry_shows_once(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "table"
    sink = make(kind, path)
    asyncio.run(sink.write(batch(0, rows(0, 100))))
    seen: list[list[int]] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def read_all_along() -> None:  # a reader of the table, all the while
        try:
            while not done.is_set():
                seen.append(ids(kind, path))
                if kind != "delta":  # and one that lists the folder
                    listed = ds.dataset(path, format="parquet", partitioning="hive").to_table()
                    seen.append(sorted(listed.column("id").to_pylist()))
        except BaseException as exc:
            failures.append(exc)

    reader = threading.Thread(target=read_all_along)
    reader.start()
    try:
        out = subprocess.run(
            [sys.executable, "-c", WRITER, kind, str(path), str(LIMIT)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        done.set()
        reader.join()
    assert failures == []
    line = out.stdout.strip()
    assert line.startswith(f"{kind.split('-')[0]}[{path}]: cannot write {path}"), out
    assert line.endswith(": File too large transient=False"), out
    first = list(range(100))
    assert seen and all(s == first for s in seen), {len(s) for s in seen}
    assert ids(kind, path) == first
    # no half-written file left, not even a hidden one
    assert [p.name for p in path.rglob("*") if p.is_file() and p.stat().st_size >= LIMIT] == []
    assert [p.name for p in path.rglob("*.tmp")] == []
    # the disk has room again: the batch is written again, whole, once
    asyncio.run(sink.write(batch(1, rows(100, BIG))))
    asyncio.run(sink.write(batch(1, rows(100, BIG))))  # and once more: skipped
    assert ids(kind, path) == list(range(BIG))
    if kind != "delta":
        listed = ds.dataset(path, format="parquet", partitioning="hive").to_table()
        assert sorted(listed.column("id").to_pylist()) == list(range(BIG))
