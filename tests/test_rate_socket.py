"""The rate source (a clock moved by hand: the due rows, exact times, replay from rate.json) and
the socket source (a real TCP server on 127.0.0.1: lines in order, includeTimestamp, end of
stream, the connection error)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from weir.service.codec import decode_values
from weir.service.sources.base import Records, SourceRecord, values_of
from weir.service.sources.rate import RateSource, rate_offset_ms
from weir.service.sources.socket import SocketSource
from weir.tables.timeutil import to_millis

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


class Clock:
    """Epoch ms that move only when told."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _records(batch: Records, topic: str) -> Sequence[SourceRecord]:
    assert list(batch) == [0] and list(batch[0]) == [topic]
    return batch[0][topic]


def _rows(batch: Records, topic: str = "rate") -> list[tuple[int, int, dict[str, object]]]:
    """(offset, record timestamp, decoded value) per record; the values as the driver reads
    them (`values_of`), which must match each record's own value."""
    records = _records(batch, topic)
    rows, errors = decode_values(values_of(records))
    assert errors == []
    assert [r.value for r in records] == values_of(records)
    assert all(r.partition == 0 and r.topic == topic and r.key is None for r in records)
    return [(r.offset, r.timestamp, row) for r, row in zip(records, rows, strict=True)]


def _rate_row(n: int, ms: int, iso: str) -> tuple[int, int, dict[str, object]]:
    return (n, T0 + ms, {"timestamp": iso, "value": n})


@pytest.mark.asyncio
async def test_rate_gives_the_due_rows_and_replays_from_its_log(tmp_path: Path) -> None:
    clock = Clock(T0)
    src = RateSource(4, log_dir=tmp_path, clock=clock)
    assert src.description == "rate[4/s]" and not src.bounded
    assert src.partitions() is None
    await src.start()
    assert src.partitions() == {0}
    assert orjson.loads((tmp_path / "rate.json").read_bytes()) == {
        "start_ms": T0,
        "rows_per_second": 4,
        "ramp_up_ms": 0,
    }
    assert _rows(await src.next_batch(100, 0)) == [_rate_row(0, 0, "2023-11-14T22:13:20Z")]
    assert await src.next_batch(100, 0) == {}  # row 1 is due at +250 ms

    clock.now = T0 + 999
    assert _rows(await src.next_batch(100, 0)) == [
        _rate_row(1, 250, "2023-11-14T22:13:20.250Z"),
        _rate_row(2, 500, "2023-11-14T22:13:20.500Z"),
        _rate_row(3, 750, "2023-11-14T22:13:20.750Z"),
    ]
    clock.now = T0 + 2000
    first = await src.next_batch(2, 0)
    rest = await src.next_batch(100, 0)
    assert _rows(first) == [
        _rate_row(4, 1000, "2023-11-14T22:13:21Z"),
        _rate_row(5, 1250, "2023-11-14T22:13:21.250Z"),
    ]
    assert _rows(rest) == [
        _rate_row(6, 1500, "2023-11-14T22:13:21.500Z"),
        _rate_row(7, 1750, "2023-11-14T22:13:21.750Z"),
        _rate_row(8, 2000, "2023-11-14T22:13:22Z"),
    ]
    assert await src.position("rate", 0) == 9
    assert await src.next_batch(100, 0) == {}

    # A new instance later on the same log_dir keeps the start: from row 3 the same records.
    again = RateSource(4, log_dir=tmp_path, clock=Clock(T0 + 60_000))
    await again.start()
    assert again.start_ms == T0
    again.seek("rate", 0, 4)
    assert _rows(await again.next_batch(2, 0)) == _rows(first)
    assert _rows(await again.next_batch(3, 0)) == _rows(rest)
    # Backwards on the first one too.
    src.seek("rate", 0, 4)
    assert _rows(await src.next_batch(5, 0)) == _rows(first) + _rows(rest)

    with pytest.raises(ValueError, match="written for"):
        await RateSource(5, log_dir=tmp_path).start()
    with pytest.raises(ValueError, match="partition 0 of 'rate' only"):
        src.seek("other", 0, 0)


@pytest.mark.asyncio
async def test_rate_waits_for_the_next_row_up_to_wait_ms(tmp_path: Path) -> None:
    clock = Clock(T0)
    src = RateSource(4, log_dir=tmp_path, clock=clock)
    await src.start()
    await src.next_batch(10, 0)  # row 0

    began = time.monotonic()
    assert await src.next_batch(10, 50) == {}  # the clock stands still: wait_ms passes
    assert 0.04 <= time.monotonic() - began < 1.0

    async def move() -> None:
        await asyncio.sleep(0.02)
        clock.now = T0 + 300

    mover = asyncio.create_task(move())
    began = time.monotonic()
    batch = await src.next_batch(10, 5_000)  # sleeps until row 1 is due (250 ms), not 5 s
    await mover
    assert 0.2 <= time.monotonic() - began < 2.5
    assert _rows(batch) == [_rate_row(1, 250, "2023-11-14T22:13:20.250Z")]


def test_rate_arguments_are_checked(tmp_path: Path) -> None:
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValueError, match="rows_per_second") as info:
            RateSource(bad, log_dir=tmp_path)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="duration"):
        RateSource(1, log_dir=tmp_path, ramp_up="soon")


@pytest.mark.asyncio
async def test_rate_log_that_is_not_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "rate.json").write_bytes(b"{broken")
    with pytest.raises(ValueError, match="not a rate source's log"):
        await RateSource(1, log_dir=tmp_path).start()


@pytest.mark.asyncio
async def test_rate_ramps_up_to_rows_per_second(tmp_path: Path) -> None:
    for n in range(1000):  # no ramp-up: Spark's n * 1000 / rowsPerSecond
        assert rate_offset_ms(n, 7, 0) == n * 1000 // 7

    clock = Clock(T0)
    src = RateSource(10, log_dir=tmp_path, ramp_up="4 seconds", clock=clock)
    await src.start()
    clock.now = T0 + 7_999
    batch = await src.next_batch(1000, 0)
    offsets = [ts - T0 for _, ts, _ in _rows(batch)]
    assert offsets == [src.timestamp_of(n) - T0 for n in range(len(offsets))]
    assert offsets == sorted(offsets)
    per_second = [sum(1 for ms in offsets if s * 1000 <= ms < (s + 1) * 1000) for s in range(8)]
    # Rate 10 * t / 4 s during the ramp: 20 rows in its 4 s, growing; then 10 every second.
    assert per_second == [2, 3, 7, 8, 10, 10, 10, 10]
    assert offsets[:2] == [0, 894] and offsets[19:22] == [3898, 4000, 4100]


async def _served() -> tuple[asyncio.Server, int, asyncio.Queue[asyncio.StreamWriter]]:
    """A TCP server on 127.0.0.1 that hands each connection's writer to the test."""
    writers: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await writers.put(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, writers


async def _take(src: SocketSource, count: int, max_records: int) -> list[Records]:
    """Batches until `count` records came (each at most `max_records`)."""
    batches: list[Records] = []
    got = 0
    while got < count:
        batch = await src.next_batch(max_records, 2_000)
        assert batch, f"only {got} of {count} lines came"
        got += len(_records(batch, src.topic))
        batches.append(batch)
    return batches


@pytest.mark.asyncio
async def test_socket_lines_in_order_until_the_server_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, port, writers = await _served()
    src = SocketSource("127.0.0.1", port)
    assert src.description == f"socket[127.0.0.1:{port}]" and not src.bounded
    assert src.partitions() is None
    await src.start()
    try:
        assert src.partitions() == {0}
        peer = await writers.get()
        assert await src.next_batch(10, 50) == {}  # nothing sent yet
        assert not src.exhausted

        peer.write(b"hello\ncaf\xff\n\nlast\r\n")
        await peer.drain()
        batches = await _take(src, 4, 2)
        assert all(len(_records(b, "socket")) <= 2 for b in batches)
        rows = [r for b in batches for r in _rows(b, "socket")]
        assert [(offset, row) for offset, _, row in rows] == [
            (0, {"value": "hello"}),
            (1, {"value": "caf\ufffd"}),
            (2, {"value": ""}),
            (3, {"value": "last"}),
        ]
        assert await src.position("socket", 0) == 4

        with caplog.at_level(logging.WARNING, logger="weir.worker"):
            src.seek("socket", 0, 4)
            assert caplog.records == []
            src.seek("socket", 0, 1)
        assert "cannot replay" in caplog.text
        assert await src.position("socket", 0) == 4

        peer.write(b"tail")  # no newline: still a line when the connection ends
        peer.close()
        await peer.wait_closed()
        (last,) = await _take(src, 1, 10)
        assert [(o, row) for o, _, row in _rows(last, "socket")] == [(4, {"value": "tail"})]
        assert await src.next_batch(10, 2_000) == {}
        assert src.exhausted
    finally:
        await src.stop()
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_socket_include_timestamp_and_a_small_buffer() -> None:
    server, port, writers = await _served()
    src = SocketSource("127.0.0.1", port, "lines", include_timestamp=True, max_buffered=1)
    await src.start()
    try:
        peer = await writers.get()
        before = time.time_ns() // 1_000_000
        peer.write(b"lin")  # a line split across reads
        await peer.drain()
        assert await src.next_batch(10, 50) == {}
        peer.write(b"e 0\n")
        for n in range(1, 5):
            peer.write(b"line %d\n" % n)
        await peer.drain()
        batches = await _take(src, 5, 1)
        after = time.time_ns() // 1_000_000
        rows = [r for b in batches for r in _rows(b, "lines")]
        assert [(o, row["value"]) for o, _, row in rows] == [(n, f"line {n}") for n in range(5)]
        for _, stamp, row in rows:
            assert set(row) == {"value", "timestamp"}
            assert isinstance(row["timestamp"], str) and row["timestamp"].endswith("Z")
            assert to_millis(row["timestamp"]) == stamp
            assert before <= stamp <= after
        peer.close()
        await peer.wait_closed()
        assert await src.next_batch(10, 2_000) == {}
        assert src.exhausted
    finally:
        await src.stop()
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_socket_to_a_closed_port_is_a_one_line_error() -> None:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = SocketSource("127.0.0.1", port)
    with pytest.raises(ConnectionError) as info:
        await src.start()
    assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert src.partitions() is None
    await src.stop()
