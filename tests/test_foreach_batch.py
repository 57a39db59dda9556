"""foreach_batch as Spark users use it: the batch as an Arrow table, a function that keeps
failing kept in an error file (retried with backoff first) while the query goes on, the same
for any sink (`log_and_continue`), and `write_batch` to several sinks keeping the batch's
identity (idempotent sinks write a batch run again once). Real files in tmp_path."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from weir.service import metrics
from weir.service.sinks.base import BatchId, BatchIdentity, Delivery, Sink, SinkBatch, SinkFailure
from weir.service.sinks.errors import LogAndContinueSink, log_and_continue
from weir.service.sinks.foreach_batch import ForeachBatchSink, foreach_batch, write_batch
from weir.service.sinks.parquet import ParquetSink, read_parquet

pytestmark = pytest.mark.asyncio

T0 = 1_714_557_900_000  # 2024-05-01T10:05:00Z
ROWS = [
    {"page": "a", "n": 3, "avg": 1.5, "start": T0, "note": None},
    {"page": "b", "n": 1, "avg": 2.0, "start": T0 + 60_000, "note": None},
]


def batch(rows: list[dict[str, Any]], n: int = 7, task: int = 2) -> SinkBatch:
    return SinkBatch(BatchIdentity("clicks", task, n), rows, frozenset({"start"}), lambda: [])


def errors_counted(sink: str) -> float:
    labels = {"app": "", "query": "", "sink": sink}  # outside a worker
    value = metrics.REGISTRY.get_sample_value("weir_sink_errors_total", labels)
    return value or 0.0


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The backoff waits asked for (not waited)."""
    asked: list[float] = []
    real = asyncio.sleep

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        await real(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    yield asked


async def test_arrow_gets_a_table_with_times_as_utc_milliseconds() -> None:
    seen: list[tuple[pa.Table, Any]] = []
    sink = foreach_batch(lambda table, batch_id: seen.append((table, batch_id)), arrow=True)
    await sink.write(batch(ROWS))
    table, batch_id = seen[0]
    assert table.schema == pa.schema(
        [
            ("page", pa.string()),
            ("n", pa.int64()),
            ("avg", pa.float64()),
            ("start", pa.timestamp("ms", tz="UTC")),
            ("note", pa.null()),
        ]
    )
    start = datetime(2024, 5, 1, 10, 5, tzinfo=UTC)
    assert table.to_pylist() == [
        {"page": "a", "n": 3, "avg": 1.5, "start": start, "note": None},
        {"page": "b", "n": 1, "avg": 2.0, "start": start.replace(minute=6), "note": None},
    ]
    assert isinstance(batch_id, BatchId) and batch_id.key == "clicks/2/7" and batch_id == 7

    # a schema given: its columns and types, a row that does not fit fails the batch
    typed = foreach_batch(
        lambda table, _: seen.append((table, _)), arrow={"page": "string", "start": "timestamp"}
    )
    await typed.write(batch(ROWS))
    assert seen[1][0].to_pydict() == {"page": ["a", "b"], "start": [start, start.replace(minute=6)]}
    with pytest.raises(SinkFailure, match="does not fit the schema"):
        await typed.write(batch([{"page": 12, "start": T0}]))
    # without arrow the rows are dicts, times rendered (as ForeachBatchSink(fn) always did)
    plain = foreach_batch(lambda rows, _: seen.append((rows, _)))
    assert isinstance(plain, ForeachBatchSink)
    await plain.write(batch(ROWS[:1]))
    assert seen[2][0] == [{**ROWS[0], "start": "2024-05-01T10:05:00Z"}]


async def test_a_function_that_keeps_failing_is_retried_then_kept_in_the_error_file(
    tmp_path: Path, sleeps: list[float]
) -> None:
    calls: list[int] = []

    def store_rows(rows: list[dict[str, Any]], batch_id: int) -> None:
        calls.append(batch_id)
        raise ConnectionError("warehouse unreachable")

    errors = tmp_path / "errors" / "clicks.jsonl"
    sink = foreach_batch(
        store_rows, on_error="log_and_continue", error_path=errors, retries=3, backoff="2 seconds"
    )
    assert isinstance(sink, LogAndContinueSink) and sink.delivery == "at_least_once"
    assert sink.description == "log_and_continue[foreach_batch[store_rows]]"
    before = errors_counted("foreach_batch[store_rows]")
    await sink.write(batch(ROWS))  # returns: the batch commits
    assert calls == [7, 7, 7, 7]  # the call and 3 retries
    assert sleeps == [2.0, 4.0, 8.0]  # exponential backoff from 2 seconds
    lines = errors.read_bytes().splitlines()
    assert len(lines) == 1
    line = orjson.loads(lines[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", line.pop("failed_at"))
    assert line == {
        "query": "clicks",
        "task": 2,
        "batch_id": 7,
        "batch": "clicks/2/7",
        "sink": "foreach_batch[store_rows]",
        "error": "ConnectionError: warehouse unreachable",
        "rows": [
            {"page": "a", "n": 3, "avg": 1.5, "start": "2024-05-01T10:05:00Z", "note": None},
            {"page": "b", "n": 1, "avg": 2.0, "start": "2024-05-01T10:06:00Z", "note": None},
        ],
    }
    assert errors_counted("foreach_batch[store_rows]") == before + 1
    await sink.write(batch(ROWS[:1], n=8))  # the next batch: appended
    assert [orjson.loads(x)["batch"] for x in errors.read_bytes().splitlines()] == [
        "clicks/2/7",
        "clicks/2/8",
    ]


async def test_a_function_that_fails_once_then_succeeds_writes_no_error_line(
    tmp_path: Path, sleeps: list[float]
) -> None:
    got: list[list[dict[str, Any]]] = []

    async def flaky(rows: list[dict[str, Any]], batch_id: int) -> None:
        got.append(rows)
        if len(got) == 1:
            raise TimeoutError("once")

    errors = tmp_path / "errors.jsonl"
    sink = foreach_batch(flaky, on_error="log_and_continue", error_path=errors, backoff="500 ms")
    before = errors_counted("foreach_batch[flaky]")
    await sink.write(batch(ROWS))
    assert len(got) == 2 and got[0] == got[1]
    assert sleeps == [0.5]
    assert not errors.exists()
    assert errors_counted("foreach_batch[flaky]") == before


async def test_the_modes_are_checked_when_made(tmp_path: Path) -> None:
    def fn(rows: list[dict[str, Any]], batch_id: int) -> None: ...

    with pytest.raises(ValueError, match="needs error_path"):
        foreach_batch(fn, on_error="log_and_continue")
    with pytest.raises(ValueError, match="on_error must be"):
        foreach_batch(fn, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="error_path is for"):
        foreach_batch(fn, error_path=tmp_path / "e")
    with pytest.raises(ValueError, match="retries must be"):
        foreach_batch(fn, on_error="log_and_continue", error_path=tmp_path / "e", retries=-1)
    with pytest.raises(ValueError, match="not a duration"):
        foreach_batch(fn, on_error="log_and_continue", error_path=tmp_path / "e", backoff="soon")


class Broken(Sink):
    """A sink failing its first `failures` writes, as a built-in sink fails (SinkFailure)."""

    delivery: Delivery = "idempotent"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[SinkBatch] = []
        self.events: list[str] = []

    @property
    def description(self) -> str:
        return "broken[db]"

    async def open(self) -> None:
        self.events.append("open")

    async def close(self) -> None:
        self.events.append("close")

    async def write(self, batch: SinkBatch) -> None:
        if self.failures:
            self.failures -= 1
            try:
                raise OSError("disk quota exceeded")
            except OSError as exc:
                raise SinkFailure("broken[db] failed: OSError: disk quota exceeded") from exc
        self.written.append(batch)


async def test_any_sink_can_log_and_continue(tmp_path: Path, sleeps: list[float]) -> None:
    inner = Broken(failures=2)
    sink = log_and_continue(inner, tmp_path / "errors.jsonl", retries=1, backoff=100)
    assert (sink.delivery, sink.description) == ("idempotent", "log_and_continue[broken[db]]")
    await sink.open()
    before = errors_counted("broken[db]")
    await sink.write(batch(ROWS[:1], n=0))  # fails twice: given up on
    await sink.write(batch(ROWS[1:], n=1))  # written
    await sink.close()
    assert inner.events == ["open", "close"]
    assert [b.identity.batch_id for b in inner.written] == [1]
    assert sleeps == [0.1]  # one retry, then the batch is given up on
    (line,) = (orjson.loads(x) for x in (tmp_path / "errors.jsonl").read_bytes().splitlines())
    assert (line["batch"], line["sink"], line["error"]) == (
        "clicks/2/0",
        "broken[db]",
        "OSError: disk quota exceeded",
    )
    assert line["rows"] == [{**ROWS[0], "start": "2024-05-01T10:05:00Z"}]
    assert errors_counted("broken[db]") == before + 1

    # an error file that cannot be written fails the batch as if there were no wrapper
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    sink = log_and_continue(Broken(failures=1), blocked / "errors.jsonl", retries=0)
    with pytest.raises(SinkFailure, match="could not be written") as failure:
        await sink.write(batch(ROWS))
    assert isinstance(failure.value.__cause__, SinkFailure)


PARQUET = {"page": "string", "n": "integer", "start": "timestamp"}


async def test_write_batch_to_two_parquet_sinks_writes_a_batch_run_again_once(
    tmp_path: Path,
) -> None:
    first = ParquetSink(tmp_path / "first", PARQUET)
    second = ParquetSink(tmp_path / "second", PARQUET, partition_by=["page"])

    async def both(rows: list[dict[str, Any]], batch_id: BatchId) -> None:
        await write_batch(rows, batch_id, first, second)

    sink = foreach_batch(both)
    await sink.write(batch(ROWS))
    await sink.write(batch(ROWS))  # the same batch again (a retry after a crash): skipped
    await sink.write(batch(ROWS[:1], n=8))
    start = datetime(2024, 5, 1, 10, 5, tzinfo=UTC)
    expected = [
        {"page": "a", "n": 3, "start": start},
        {"page": "b", "n": 1, "start": start.replace(minute=6)},
        {"page": "a", "n": 3, "start": start},
    ]
    assert read_parquet(tmp_path / "first").to_pylist() == expected
    assert read_parquet(tmp_path / "second").to_pylist() == [
        {"n": r["n"], "start": r["start"], "page": r["page"]} for r in expected
    ]


class Capture(Sink):
    """What a sink is given."""

    def __init__(self) -> None:
        self.batches: list[SinkBatch] = []

    @property
    def description(self) -> str:
        return "capture"

    async def write(self, batch: SinkBatch) -> None:
        self.batches.append(batch)


async def test_write_batch_gives_sinks_rows_as_the_engine_holds_them() -> None:
    batch_id = BatchId(BatchIdentity("clicks", 2, 7))
    start = datetime(2024, 5, 1, 10, 5, tzinfo=UTC)
    capture = Capture()
    rows = [
        {"page": "a", "start": start, "seen": "2024-05-01T10:05:00Z", "day": "2024-05-01"},
        {"page": "b", "start": "2024-05-01T10:06:00Z", "seen": None, "day": "2024-05-01"},
    ]
    await write_batch(rows, batch_id, capture, timestamp_columns=["seen"])
    (got,) = capture.batches
    assert got.identity == BatchIdentity("clicks", 2, 7)
    assert got.timestamp_columns == {"start", "seen"}  # a datetime's column, and named ones
    assert got.rows == [
        {"page": "a", "start": T0, "seen": T0, "day": "2024-05-01"},
        {"page": "b", "start": T0 + 60_000, "seen": None, "day": "2024-05-01"},
    ]
    assert rows[0]["start"] == start  # the caller's rows are not changed
    # an Arrow table (as foreach_batch(arrow=True) gives): its timestamp columns
    table = pa.table({"page": ["a"], "start": pa.array([start], pa.timestamp("ms", tz="UTC"))})
    await write_batch(table, batch_id, capture)
    assert capture.batches[1].rows == [{"page": "a", "start": T0}]
    assert capture.batches[1].timestamp_columns == {"start"}
    await write_batch([], batch_id, capture)  # no rows: no write
    assert len(capture.batches) == 2
    with pytest.raises(TypeError, match="needs the BatchId"):
        await write_batch(rows, 7, capture)  # type: ignore[arg-type]
