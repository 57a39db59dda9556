"""The directory source over real files: formats, limits, restarts from a checkpointed
position, files still being written, ordering, unreadable files and a lost file log."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from weir.service.codec import decode_values
from weir.service.sources.base import SourceRecord, values_of
from weir.service.sources.directory import DirectorySource
from weir.tables.schema import Schema, SchemaError

TOPIC = "events"
SCHEMA = {"f": "string", "n": "integer"}


def put(directory: Path, name: str, data: bytes | str, age_s: float = 60.0) -> Path:
    """Add a file the recommended way: written under a hidden name, aged, renamed in."""
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    t = time.time() - age_s
    os.utime(tmp, (t, t))
    path = directory / name
    os.replace(tmp, path)
    return path


def jsonl(name: str, n: int) -> str:
    return "".join(orjson.dumps({"f": name, "n": i}).decode() + "\n" for i in range(1, n + 1))


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def source(directory: Path, log_dir: Path, **kw: Any) -> DirectorySource:
    fmt = kw.pop("format", "json")
    schema = kw.pop("schema", SCHEMA)
    kw.setdefault("settle", 0)
    return DirectorySource(directory, fmt, TOPIC, schema, log_dir=log_dir, **kw)


async def batch(src: DirectorySource, max_records: int = 1000, wait_ms: int = 400) -> list[Any]:
    got = await src.next_batch(max_records, wait_ms)
    if not got:
        return []
    assert list(got) == [0] and list(got[0]) == [TOPIC]
    return list(got[0][TOPIC])


async def drain(src: DirectorySource, max_records: int = 1000) -> list[SourceRecord]:
    out: list[SourceRecord] = []
    while recs := await batch(src, max_records):
        out.extend(recs)
    return out


def rows(recs: Sequence[SourceRecord]) -> list[Any]:
    return [orjson.loads(r.value or b"") for r in recs]


def where(recs: Sequence[SourceRecord]) -> list[tuple[str, int]]:
    """(file, row) of each record, from its headers."""
    out = []
    for r in recs:
        h = dict(r.headers)
        out.append((h["file"].decode(), int(h["row"])))
    return out


@pytest.mark.asyncio
async def test_json_lines_are_records_with_file_and_row_headers(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    put(d, "a.jsonl", '\ufeff{"f": "a", "n": 1}\n\n{"f": "a", "n": 2}\n   \n{"f": "a", "n": 3}')
    src = source(d, tmp_path / "log")
    assert src.partitions() == {0} and src.bounded is False
    assert src.description == f"files[json:{d}]"
    recs = await drain(src)
    assert [r.value for r in recs] == [
        b'{"f": "a", "n": 1}',
        b'{"f": "a", "n": 2}',
        b'{"f": "a", "n": 3}',
    ]
    assert [r.offset for r in recs] == [0, 1, 2]
    assert where(recs) == [("a.jsonl", 1), ("a.jsonl", 2), ("a.jsonl", 3)]
    assert all((r.topic, r.partition, r.key, r.timestamp) == (TOPIC, 0, None, -1) for r in recs)
    assert await src.position(TOPIC, 0) == 3
    log = [orjson.loads(line) for line in (tmp_path / "log" / "files.jsonl").read_bytes().split()]
    st = (d / "a.jsonl").stat()
    assert log == [
        {
            "name": "a.jsonl",
            "first": 0,
            "rows": 3,
            "size": st.st_size,
            "mtime_ms": st.st_mtime_ns // 10**6,
        }
    ]


@pytest.mark.asyncio
async def test_csv_fields_typed_by_schema_and_a_bad_one_left_as_text(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    schema = {
        "id": "integer",
        "price": "double",
        "ok": "boolean",
        "at": "timestamp",
        "name": "string",
    }
    put(d, "empty.csv", "id,price\n")  # a header only: no rows, no offsets
    put(
        d,
        "p.csv",
        "\r\nid,price,ok,at,name,extra\r\n"
        '1,9.5,TRUE,2024-05-01T10:00:00Z,"Smith, J",x\r\n'
        "x1,2,false,,  ,y\r\n"
        "\r\n"
        "3,abc,maybe,2024-05-01,,\r\n"
        '5,1_0,False,,"a,\n,b",\r\n'  # a quoted field holding a line break
        "-4\r\n",
    )
    src = source(d, tmp_path / "log", format="csv", schema=schema)
    recs = await drain(src)
    assert rows(recs) == [
        {
            "id": 1,
            "price": 9.5,
            "ok": True,
            "at": "2024-05-01T10:00:00Z",
            "name": "Smith, J",
            "extra": "x",
        },
        {"id": "x1", "price": 2.0, "ok": False, "at": None, "name": "  ", "extra": "y"},
        {"id": 3, "price": "abc", "ok": "maybe", "at": "2024-05-01", "name": None, "extra": None},
        {"id": 5, "price": "1_0", "ok": False, "at": None, "name": "a,\n,b", "extra": None},
        {"id": -4, "price": None, "ok": None, "at": None, "name": None, "extra": None},
    ]
    assert [r.offset for r in recs] == [0, 1, 2, 3, 4]
    assert where(recs) == [("p.csv", i) for i in range(1, 6)]
    # What the driver does with them: the first fits, the second is rejected naming `id`.
    decoded, errors = decode_values(values_of(recs))
    assert errors == []
    typed = Schema(schema)
    assert typed.conform(decoded[0])["at"] == 1714557600000
    with pytest.raises(SchemaError, match=r"^id: expected integer, got string 'x1'"):
        typed.conform(decoded[1])
    with pytest.raises(SchemaError, match=r"^price: expected double"):
        typed.conform(decoded[2])


@pytest.mark.asyncio
async def test_csv_that_is_not_utf8_is_one_unreadable_record(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    put(d, "a.csv", b"id\n\xff\xfe\n")
    put(d, "b.csv", "id\n7\n")
    recs = await drain(source(d, tmp_path / "log", format="csv", schema={"id": "integer"}))
    assert len(recs) == 2
    assert (recs[0].value or b"").startswith(b"unreadable file: csv: not UTF-8 text")
    assert where(recs) == [("a.csv", 1), ("b.csv", 1)]
    assert rows(recs[1:]) == [{"id": 7}]


@pytest.mark.asyncio
async def test_parquet_rows_with_timestamps_as_iso_text_to_the_ms(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    table = pa.table(
        {
            "id": pa.array([1, 2, None], pa.int64()),
            # naive: UTC; the last one is before 1970 with sub-ms digits (floored)
            "at": pa.array(
                [
                    datetime(2024, 5, 1, 10, 0, 0, 123456),
                    None,
                    datetime(1969, 12, 31, 23, 59, 59, 999500),
                ],
                pa.timestamp("us"),
            ),
            "at_ns": pa.array(
                [1714557600123456789, 0, None], pa.timestamp("ns", tz="Europe/Paris")
            ),
            "day": pa.array([date(2024, 5, 1), None, None], pa.date32()),
            "price": pa.array([Decimal("1.50"), None, Decimal("-2.25")], pa.decimal128(5, 2)),
            "tags": pa.array([["x", "y"], [], None], pa.list_(pa.string())),
            "nested": pa.array(
                [{"at": 1714557600123456789}, None, {"at": None}],
                pa.struct([("at", pa.timestamp("ns"))]),
            ),
            "extra": ["not", "in", "schema"],
        }
    )
    put(d, "t.parquet", parquet_bytes(table))
    schema = {
        "id": "integer",
        "at": "timestamp",
        "at_ns": "timestamp",
        "day": "timestamp",
        "price": "double",
        "tags": ["string"],
        "nested": {"at": "timestamp"},
        "missing": "string",
    }
    recs = await drain(source(d, tmp_path / "log", format="parquet", schema=schema))
    assert rows(recs) == [
        {
            "id": 1,
            "at": "2024-05-01T10:00:00.123000Z",
            "at_ns": "2024-05-01T10:00:00.123000Z",
            "day": "2024-05-01",
            "price": 1.5,
            "tags": ["x", "y"],
            "nested": {"at": "2024-05-01T10:00:00.123456Z"},
        },
        {
            "id": 2,
            "at": None,
            "at_ns": "1970-01-01T00:00:00Z",
            "day": None,
            "price": None,
            "tags": [],
            "nested": None,
        },
        {
            "id": None,
            "at": "1969-12-31T23:59:59.999000Z",
            "at_ns": None,
            "day": None,
            "price": -2.25,
            "tags": None,
            "nested": {"at": None},
        },
    ]
    assert where(recs) == [("t.parquet", 1), ("t.parquet", 2), ("t.parquet", 3)]
    typed = Schema(schema)
    first = typed.conform(orjson.loads(recs[0].value or b""))
    assert first["day"] == 1714521600000 and first["nested"] == {"at": 1714557600123}


@pytest.mark.asyncio
async def test_corrupt_parquet_is_one_dead_letter_and_the_next_file_is_read(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    put(d, "a.parquet", b"PAR1 this is not a parquet file PAR1")
    put(d, "b.parquet", parquet_bytes(pa.table({"n": [1, 2]})))
    recs = await drain(source(d, tmp_path / "log", format="parquet", schema={"n": "integer"}))
    assert [r.offset for r in recs] == [0, 1, 2]
    assert where(recs) == [("a.parquet", 1), ("b.parquet", 1), ("b.parquet", 2)]
    assert (recs[0].value or b"").startswith(b"unreadable file: parquet: ")
    decoded, errors = decode_values(values_of(recs))
    assert decoded == [{"n": 1}, {"n": 2}]
    assert [i for i, _ in errors] == [0] and errors[0][1].startswith("value is not JSON")


@pytest.mark.asyncio
async def test_max_files_per_trigger_and_max_records(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    sizes = {"f1.jsonl": 5, "f2.jsonl": 3, "f3.jsonl": 4}
    for name, n in sizes.items():
        put(d, name, jsonl(name, n))
    every = [{"f": name, "n": i} for name, n in sizes.items() for i in range(1, n + 1)]

    src = source(d, tmp_path / "log2", max_files_per_trigger=2)
    batches = []
    while recs := await batch(src, max_records=4):
        batches.append(recs)
    assert [[f for f, _ in where(b)] for b in batches] == [
        ["f1.jsonl"] * 4,
        ["f1.jsonl", "f2.jsonl", "f2.jsonl", "f2.jsonl"],
        ["f3.jsonl"] * 4,
    ]
    flat = [r for b in batches for r in b]
    assert rows(flat) == every
    assert [r.offset for r in flat] == list(range(12))

    src = source(d, tmp_path / "log1", max_files_per_trigger=1)
    batches = []
    while recs := await batch(src, max_records=100):
        batches.append(recs)
    assert [len(b) for b in batches] == [5, 3, 4]
    assert rows([r for b in batches for r in b]) == every


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("size", "committed"),
    [(3, 2), (5, 1), (4, 3), (3, 1)],
    ids=["mid-file", "file-boundary", "log-end", "logged-file-unreturned-past-checkpoint"],
)
async def test_restart_from_a_checkpointed_position(
    tmp_path: Path, size: int, committed: int
) -> None:
    d, log = tmp_path / "in", tmp_path / "log"
    d.mkdir()
    put(d, "b.jsonl", jsonl("b", 5))
    put(d, "d.jsonl", jsonl("d", 5))
    src1 = source(d, log)
    before: list[SourceRecord] = []
    for _ in range(committed):
        before.extend(await batch(src1, size))
    position = await src1.position(TOPIC, 0)
    assert position == len(before)
    await batch(src1, size)  # read but never committed: the restart must give it again
    del src1
    # Meanwhile: a file whose name sorts before the taken ones, and one after.
    put(d, "a.jsonl", jsonl("a", 2))
    put(d, "e.jsonl", jsonl("e", 2))

    src2 = source(d, log)
    src2.seek(TOPIC, 0, position)
    after = await drain(src2, size)
    assert [r.offset for r in before + after] == list(range(14))
    everything = [
        (f, n) for f, k in [("b", 5), ("d", 5), ("a", 2), ("e", 2)] for n in range(1, k + 1)
    ]
    assert [(r["f"], r["n"]) for r in rows(before + after)] == everything

    # Offsets are fixed: a third source from 0 gives exactly the same records.
    src3 = source(d, log)
    src3.seek(TOPIC, 0, 0)
    again = await drain(src3, 5)
    assert [(r.offset, r.value, tuple(r.headers)) for r in again] == [
        (r.offset, r.value, tuple(r.headers)) for r in before + after
    ]


@pytest.mark.asyncio
async def test_a_file_being_written_is_read_only_once_settled(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    src = source(d, tmp_path / "log", settle="1 second", pattern="*.jsonl")
    growing = d / "grow.jsonl"
    growing.write_text(jsonl("g", 2))  # visible name, modified just now
    assert await src.next_batch(100, 300) == {}
    with open(growing, "a") as f:
        f.write(jsonl("g", 3)[len(jsonl("g", 2)) :])
    assert await src.next_batch(100, 300) == {}
    old = time.time() - 5
    os.utime(growing, (old, old))
    # Never read: hidden, underscore, not matching the pattern.
    for name in (".hidden.jsonl", "_SUCCESS.jsonl", "notes.txt"):
        put(d, name, jsonl(name, 1))
    recs = await drain(src)
    assert rows(recs) == [{"f": "g", "n": 1}, {"f": "g", "n": 2}, {"f": "g", "n": 3}]
    # A file renamed in from a hidden name is read.
    put(d, "late.jsonl", jsonl("late", 1))
    assert rows(await drain(src)) == [{"f": "late", "n": 1}]
    names = [
        orjson.loads(line)["name"]
        for line in (tmp_path / "log" / "files.jsonl").read_bytes().split()
    ]
    assert names == ["grow.jsonl", "late.jsonl"]


@pytest.mark.asyncio
async def test_a_file_that_changes_between_listings_waits(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    src = source(d, tmp_path / "log")
    path = put(d, "x.jsonl", jsonl("x", 1), age_s=60)
    mtime = path.stat().st_mtime_ns
    assert await src.next_batch(100, 0) == {}  # first listing: not confirmed yet
    with open(path, "a") as f:  # a writer that keeps the old modification time
        f.write(orjson.dumps({"f": "x", "n": 2}).decode() + "\n")
    os.utime(path, ns=(mtime, mtime))
    assert await src.next_batch(100, 0) == {}  # the size changed between listings
    assert rows(await drain(src)) == [{"f": "x", "n": 1}, {"f": "x", "n": 2}]


@pytest.mark.asyncio
async def test_modified_order(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    put(d, "c.jsonl", jsonl("c", 1), age_s=30)
    put(d, "a.jsonl", jsonl("a", 1), age_s=10)
    put(d, "b.jsonl", jsonl("b", 1), age_s=20)
    by_time = await drain(source(d, tmp_path / "log-m", order="modified"))
    assert [r["f"] for r in rows(by_time)] == ["c", "b", "a"]
    by_name = await drain(source(d, tmp_path / "log-n"))
    assert [r["f"] for r in rows(by_name)] == ["a", "b", "c"]


@pytest.mark.asyncio
async def test_returns_promptly_when_rows_are_there(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    put(d, "a.jsonl", jsonl("a", 3))
    src = source(d, tmp_path / "log")
    assert len(await batch(src, 1)) == 1
    start = time.monotonic()
    assert len(await batch(src, 10, wait_ms=10_000)) == 2
    assert time.monotonic() - start < 1


@pytest.mark.asyncio
async def test_fill_takes_what_arrives_within_the_wait_and_stop_ends_it(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    put(d, "a.jsonl", jsonl("a", 2))
    src = source(d, tmp_path / "log")
    assert len(await batch(src, 1)) == 1
    filling = asyncio.create_task(src.next_batch(100, 1500, fill=True))
    await asyncio.sleep(0.2)
    put(d, "b.jsonl", jsonl("b", 1))
    got = await filling
    assert where(got[0][TOPIC]) == [("a.jsonl", 2), ("b.jsonl", 1)]
    assert await src.position(TOPIC, 0) == 3

    stop = asyncio.Event()
    waiting = asyncio.create_task(src.next_batch(100, 10_000, stop=stop))
    await asyncio.sleep(0.2)
    stop.set()
    start = time.monotonic()
    assert await waiting == {}
    assert time.monotonic() - start < 1


@pytest.mark.asyncio
async def test_lost_log_and_changed_inputs_raise(tmp_path: Path) -> None:
    d, log = tmp_path / "in", tmp_path / "log"
    d.mkdir()
    put(d, "a.jsonl", jsonl("a", 2))
    put(d, "b.jsonl", jsonl("b", 2))
    src = source(d, log)
    assert len(await drain(src)) == 4
    position = await src.position(TOPIC, 0)

    (log / "files.jsonl").unlink()
    expected = f"the file log at {log / 'files.jsonl'} is missing entries for the checkpoint"
    with pytest.raises(ValueError, match=re.escape(expected)):
        source(d, log).seek(TOPIC, 0, position)

    # Logged again by a fresh source; then an input file changes under it.
    fresh = source(d, log)
    assert len(await drain(fresh)) == 4
    put(d, "a.jsonl", jsonl("a", 3))
    changed = source(d, log)
    changed.seek(TOPIC, 0, 0)
    with pytest.raises(ValueError, match=r"a\.jsonl .* the input changed under a running query"):
        await changed.next_batch(10, 0)
    (d / "b.jsonl").unlink()
    gone = source(d, log)
    gone.seek(TOPIC, 0, 2)
    with pytest.raises(ValueError, match=r"b\.jsonl .*is gone"):
        await gone.next_batch(10, 0)


@pytest.mark.asyncio
async def test_torn_last_log_line_is_cut(tmp_path: Path) -> None:
    d, log = tmp_path / "in", tmp_path / "log"
    d.mkdir()
    put(d, "a.jsonl", jsonl("a", 2))
    assert len(await drain(source(d, log))) == 2
    whole = (log / "files.jsonl").read_bytes()
    (log / "files.jsonl").write_bytes(whole + b'{"name": "b.js')  # a crash mid-append
    put(d, "b.jsonl", jsonl("b", 1))
    src = source(d, log)
    src.seek(TOPIC, 0, 2)
    assert rows(await drain(src)) == [{"f": "b", "n": 1}]
    lines = (log / "files.jsonl").read_bytes().splitlines()
    assert lines[0] == whole.rstrip(b"\n") and orjson.loads(lines[1])["name"] == "b.jsonl"
