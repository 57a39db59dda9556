"""The Delta Lake sink on real Delta tables: appends and merges exactly once per batch
identity (Delta application transactions), from several tasks, and a row that does not fit
failing the batch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from weir.service.sinks.base import BatchIdentity, SinkBatch, SinkFailure
from weir.service.sinks.delta import DeltaSink

SCHEMA = {"user": "string", "total": "double", "n": "integer"}


def batch(task: int, n: int, rows: list[dict[str, Any]]) -> SinkBatch:
    return SinkBatch(BatchIdentity("app-agent", task, n), rows, frozenset(), lambda: [])


def rows_of(path: Path) -> list[tuple[Any, ...]]:
    d = DeltaTable(str(path)).to_pyarrow_table().to_pydict()
    return sorted(zip(d["user"], d["total"], d["n"], strict=True))


def test_append_commits_each_batch_once_per_task(tmp_path: Path) -> None:
    sink = DeltaSink(tmp_path / "t", SCHEMA)
    assert sink.delivery == "idempotent"
    asyncio.run(sink.write(batch(0, 0, [{"user": "a", "total": 1.0, "n": 1}])))
    asyncio.run(sink.write(batch(1, 0, [{"user": "b", "total": 2.0, "n": 1}])))
    asyncio.run(sink.write(batch(0, 0, [{"user": "a", "total": 1.0, "n": 1}])))  # again: skipped
    asyncio.run(sink.write(batch(0, 1, [{"user": "a", "total": 3.0, "n": 2}])))
    assert rows_of(tmp_path / "t") == [("a", 1.0, 1), ("a", 3.0, 2), ("b", 2.0, 1)]
    dt = DeltaTable(str(tmp_path / "t"))
    assert dt.transaction_version("app-agent-0") == 1
    assert dt.transaction_version("app-agent-1") == 0


def test_merge_upserts_on_the_keys_and_a_replayed_batch_changes_nothing(tmp_path: Path) -> None:
    sink = DeltaSink(tmp_path / "t", SCHEMA, mode="merge", keys=["user"])
    asyncio.run(sink.write(batch(0, 0, [{"user": "a", "total": 1.0, "n": 1}])))
    asyncio.run(
        sink.write(
            batch(0, 1, [{"user": "a", "total": 5.0, "n": 2}, {"user": "b", "total": 2.0, "n": 1}])
        )
    )
    version = DeltaTable(str(tmp_path / "t")).version()
    asyncio.run(sink.write(batch(0, 1, [{"user": "a", "total": 9.0, "n": 9}])))  # replay: skipped
    assert DeltaTable(str(tmp_path / "t")).version() == version
    assert rows_of(tmp_path / "t") == [("a", 5.0, 2), ("b", 2.0, 1)]


def test_definition_and_row_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a merge needs keys"):
        DeltaSink(tmp_path / "t", SCHEMA, mode="merge")
    with pytest.raises(ValueError, match=r"columns \['nope'\] are not in the schema"):
        DeltaSink(tmp_path / "t", SCHEMA, keys=["nope"])
    sink = DeltaSink(tmp_path / "t", SCHEMA)
    with pytest.raises(SinkFailure, match="does not fit the schema"):
        asyncio.run(sink.write(batch(0, 0, [{"user": "a", "total": "lots", "n": 1}])))
    assert not (tmp_path / "t" / "_delta_log").exists()
