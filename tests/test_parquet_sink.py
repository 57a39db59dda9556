"""The Parquet sink on real Parquet files: exact rows read back through the manifests, Hive
partitions, a batch written again after a crash leaving no duplicate and no partial file
visible, and a row that does not fit the schema failing the batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from weir.service.sinks.base import BatchIdentity, SinkBatch, SinkFailure
from weir.service.sinks.parquet import METADATA, ParquetSink, read_parquet

SCHEMA = {"id": "integer", "user": "string", "amount": "double", "ts": "timestamp", "day": "string"}


def batch(task: int, n: int, rows: list[dict[str, Any]]) -> SinkBatch:
    return SinkBatch(BatchIdentity("app-agent", task, n), rows, frozenset({"ts"}), lambda: [])


def row(i: int, day: str) -> dict[str, Any]:
    return {"id": i, "user": f"u{i % 3}", "amount": i / 2, "ts": 1_700_000_000_000 + i, "day": day}


def rows_of(table: pa.Table) -> list[tuple[Any, ...]]:
    d = table.to_pydict()
    return sorted(zip(d["id"], d["user"], d["amount"], d["ts"], d["day"], strict=True))


def test_batches_of_two_tasks_read_back_exactly_partitioned_by_day(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "t", SCHEMA, partition_by=["day"])
    assert sink.delivery == "idempotent"
    asyncio.run(sink.write(batch(0, 0, [row(1, "2024-05-01"), row(2, "2024-05-02")])))
    asyncio.run(sink.write(batch(1, 0, [row(3, "2024-05-01")])))  # another task's batch 0
    table = read_parquet(tmp_path / "t")
    ts = datetime.fromtimestamp(1_700_000_000, UTC)
    assert rows_of(table) == [
        (1, "u1", 0.5, ts.replace(microsecond=1000), "2024-05-01"),
        (2, "u2", 1.0, ts.replace(microsecond=2000), "2024-05-02"),
        (3, "u0", 1.5, ts.replace(microsecond=3000), "2024-05-01"),
    ]
    folders = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert folders == [METADATA, "day=2024-05-01", "day=2024-05-02"]


def test_a_batch_written_again_after_a_crash_shows_once(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "t", SCHEMA)
    first = [row(i, "d") for i in range(5)]
    asyncio.run(sink.write(batch(0, 0, first)))
    # a crash after the data files and before the manifest of batch 1, with a half file
    asyncio.run(sink.write(batch(0, 1, [row(9, "d")])))
    (tmp_path / "t" / METADATA / "app-agent-0-00000001.json").unlink()
    (tmp_path / "t" / ".app-agent-0-00000001-0.parquet.tmp").write_bytes(b"PAR1 half")
    assert [r[0] for r in rows_of(read_parquet(tmp_path / "t"))] == [0, 1, 2, 3, 4]
    asyncio.run(sink.write(batch(0, 1, [row(9, "d")])))  # the batch again: committed once
    asyncio.run(sink.write(batch(0, 1, [row(9, "d")])))  # and once more: skipped
    assert [r[0] for r in rows_of(read_parquet(tmp_path / "t"))] == [0, 1, 2, 3, 4, 9]


def test_a_row_that_does_not_fit_fails_the_batch_and_commits_nothing(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "t", SCHEMA)
    bad = [row(1, "d"), {**row(2, "d"), "amount": "twelve"}]
    with pytest.raises(SinkFailure, match="does not fit the schema"):
        asyncio.run(sink.write(batch(0, 0, bad)))
    assert read_parquet(tmp_path / "t").num_rows == 0
    with pytest.raises(ValueError, match="unknown type 'money'"):
        ParquetSink(tmp_path / "u", {"x": "money"})
    with pytest.raises(ValueError, match=r"partition_by columns \['nope'\]"):
        ParquetSink(tmp_path / "u", SCHEMA, partition_by=["nope"])
