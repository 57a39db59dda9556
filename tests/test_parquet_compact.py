"""Compaction of a Parquet sink's table on real files: the rows read back are the same (and
in the same order) before and after, fewer files, a batch replayed after a compaction still
skipped, a crash at any step invisible to readers and finished by the next compaction, files
committed during a compaction untouched; and the latest row per key (update-mode windows)
the same before and after."""

from __future__ import annotations

import asyncio
import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from weir.service.sinks import parquet, parquet_compact
from weir.service.sinks.base import BatchIdentity, SinkBatch
from weir.service.sinks.parquet import (
    METADATA,
    ParquetSink,
    committed_files,
    read_parquet,
    read_parquet_latest,
)
from weir.service.sinks.parquet_compact import CompactionResult, compact_parquet

SCHEMA = {
    "page": "string",
    "window_start": "timestamp",
    "window_end": "timestamp",
    "clicks": "long",
}
KEY = ["page", "window_start", "window_end"]
W = 1_714_557_600_000  # 2024-05-01T10:00:00Z, a one-minute window: [W + 60_000 * i, ...)


def update(page: str, i: int, clicks: int) -> dict[str, Any]:
    """An update-mode row: window i of `page` with its count so far."""
    start = W + 60_000 * i
    return {"page": page, "window_start": start, "window_end": start + 60_000, "clicks": clicks}


def write(sink: ParquetSink, task: int, n: int, rows: list[dict[str, Any]]) -> None:
    ident = BatchIdentity("clicks", task, n)
    asyncio.run(sink.write(SinkBatch(ident, rows, frozenset(), lambda: [])))


BATCHES = [  # (task, batch, rows): windows updated again in later batches
    (0, 0, [update("a", 0, 1), update("b", 0, 1)]),
    (0, 1, [update("a", 0, 2)]),
    (1, 0, [update("c", 0, 5), update("c", 1, 1)]),
    (0, 2, [update("a", 0, 3), update("a", 1, 1), update("b", 0, 2)]),
    (1, 1, [update("c", 1, 2), update("c", 1, 4)]),  # one window twice: the last row wins
]

ORDER = [  # (page, clicks) as read_parquet gives them: by task, then batch, then as written
    ("a", 1), ("b", 1), ("a", 2), ("a", 3), ("a", 1), ("b", 2),
    ("c", 5), ("c", 1), ("c", 2), ("c", 4),
]  # fmt: skip


def table_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))


def t(i: int) -> datetime:
    return datetime.fromtimestamp((W + 60_000 * i) / 1000, UTC)


def latest(page: str, i: int, clicks: int) -> dict[str, Any]:
    return {"page": page, "window_start": t(i), "window_end": t(i + 1), "clicks": clicks}


LATEST = [  # by task then batch of the winning row
    latest("a", 0, 3),
    latest("a", 1, 1),
    latest("b", 0, 2),
    latest("c", 0, 5),
    latest("c", 1, 4),
]


@pytest.mark.parametrize("partition_by", [[], ["page"]])
def test_compaction_keeps_every_row_in_order_in_fewer_files(
    tmp_path: Path, partition_by: list[str]
) -> None:
    root = tmp_path / "t"
    sink = ParquetSink(root, SCHEMA, partition_by)
    for task, n, rows in BATCHES:
        write(sink, task, n, rows)
    before = read_parquet(root).to_pylist()
    assert [(r["page"], r["clicks"]) for r in before] == ORDER
    assert read_parquet_latest(root, KEY).to_pylist() == LATEST

    result = compact_parquet(root)

    folders = ["page=a", "page=b", "page=c"] if partition_by else ["."]
    files_before = 7 if partition_by else 5  # one file per batch and folder
    assert result == CompactionResult(files_before, len(folders), 10, len(folders))
    expected = [f"{d}/compacted-00000001.parquet".removeprefix("./") for d in folders]
    assert table_files(root) == expected
    assert read_parquet(root).to_pylist() == before
    assert read_parquet_latest(root, KEY).to_pylist() == LATEST
    # again: nothing to do
    assert compact_parquet(root) == CompactionResult(len(folders), len(folders), 0, 0)
    assert table_files(root) == expected


def test_a_batch_replayed_after_compaction_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "t"
    sink = ParquetSink(root, SCHEMA)
    for task, n, rows in BATCHES:
        write(sink, task, n, rows)
    before = read_parquet(root).to_pylist()
    compact_parquet(root)
    task, n, rows = BATCHES[1]
    write(ParquetSink(root, SCHEMA), task, n, rows)  # after a crash: same identity, same rows
    assert table_files(root) == ["compacted-00000001.parquet"]
    assert read_parquet(root).to_pylist() == before
    assert len(list((root / METADATA).glob("*.json"))) == len(BATCHES)  # manifests kept


def test_new_batches_and_a_second_compaction_keep_batch_order(tmp_path: Path) -> None:
    root = tmp_path / "t"
    sink = ParquetSink(root, SCHEMA)
    for task, n, rows in BATCHES[:3]:
        write(sink, task, n, rows)
    assert compact_parquet(root) == CompactionResult(3, 1, 5, 1)
    for task, n, rows in BATCHES[3:]:  # task 0's batch 2 goes between rows of the compacted file
        write(sink, task, n, rows)
    assert compact_parquet(root) == CompactionResult(3, 1, 10, 1)
    assert table_files(root) == ["compacted-00000002.parquet"]
    assert [(r["page"], r["clicks"]) for r in read_parquet(root).to_pylist()] == ORDER
    assert read_parquet_latest(root, KEY).to_pylist() == LATEST


def test_a_batch_committed_during_a_compaction_is_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "t"
    sink = ParquetSink(root, SCHEMA)
    for task, n, rows in BATCHES[:4]:
        write(sink, task, n, rows)
    rewrite = parquet_compact._rewrite

    def sink_writes_meanwhile(*args: Any) -> Any:
        write(sink, *BATCHES[4][:2], BATCHES[4][2])  # after the listing, before the manifest
        return rewrite(*args)

    monkeypatch.setattr(parquet_compact, "_rewrite", sink_writes_meanwhile)
    assert compact_parquet(root) == CompactionResult(4, 1, 8, 1)
    assert table_files(root) == ["clicks-1-00000001-0.parquet", "compacted-00000001.parquet"]
    assert read_parquet_latest(root, KEY).to_pylist() == LATEST
    assert len(read_parquet(root)) == 10


def test_a_crash_before_the_compaction_manifest_changes_nothing_readers_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "t"
    sink = ParquetSink(root, SCHEMA, partition_by=["page"])
    for task, n, rows in BATCHES:
        write(sink, task, n, rows)
    before = read_parquet(root).to_pylist()
    files = table_files(root)
    replace = os.replace

    def crash_at_the_manifest(src: Any, dst: Any) -> None:
        if Path(dst).parent.name == "compactions":
            raise OSError("power cut")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_at_the_manifest)
    with pytest.raises(OSError, match="power cut"):
        compact_parquet(root)
    monkeypatch.undo()
    # the compacted files were written, not listed: unseen
    assert set(table_files(root)) - set(files) == {
        f"page={p}/compacted-00000001.parquet" for p in "abc"
    }
    assert read_parquet(root).to_pylist() == before
    # the next compaction drops what the crash left and does it again
    assert compact_parquet(root) == CompactionResult(7, 3, 10, 3)
    assert read_parquet(root).to_pylist() == before
    assert not list(root.rglob("*.tmp"))


def test_a_crash_while_deleting_the_replaced_files_is_finished_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "t"
    sink = ParquetSink(root, SCHEMA)
    for task, n, rows in BATCHES:
        write(sink, task, n, rows)
    before = read_parquet(root).to_pylist()
    unlink = Path.unlink
    deleted: list[str] = []

    def crash_after_one(self: Path, missing_ok: bool = False) -> None:
        if deleted:
            raise OSError("power cut")
        deleted.append(self.name)
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", crash_after_one)
    with pytest.raises(OSError, match="power cut"):
        compact_parquet(root)
    monkeypatch.undo()
    assert len(table_files(root)) == 5  # 4 replaced files left, and the compacted one
    assert read_parquet(root).to_pylist() == before  # replaced files are not read
    assert compact_parquet(root) == CompactionResult(1, 1, 0, 0)
    assert table_files(root) == ["compacted-00000001.parquet"]


def test_a_reader_that_listed_the_files_before_a_compaction_finished_lists_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "t"
    sink = ParquetSink(root, SCHEMA)
    for task, n, rows in BATCHES:
        write(sink, task, n, rows)
    before = read_parquet(root).to_pylist()
    stale = [committed_files(root)]  # listed, then the compaction deletes those files
    compact_parquet(root)
    listed = parquet.committed_files
    monkeypatch.setattr(parquet, "committed_files", lambda r: stale.pop() if stale else listed(r))
    assert read_parquet(root).to_pylist() == before
    assert not stale


def test_compaction_checks_its_arguments_and_runs_one_at_a_time(tmp_path: Path) -> None:
    assert compact_parquet(tmp_path / "nothing") == CompactionResult(0, 0, 0, 0)
    root = tmp_path / "t"
    write(ParquetSink(root, SCHEMA), *BATCHES[0][:2], BATCHES[0][2])
    with pytest.raises(ValueError, match="min_files must be"):
        compact_parquet(root, min_files=1)
    with (root / METADATA / parquet_compact.LOCK).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(BlockingIOError, match="another compaction"):
            compact_parquet(root)
    with pytest.raises(ValueError, match=r"key columns \['nope'\]"):
        read_parquet_latest(root, ["nope"])
    assert read_parquet_latest(tmp_path / "nothing", KEY).num_rows == 0
