"""The socket source (Spark's `socket` format): text lines read from a TCP server.

For demos only: like Spark's, it is not replayable. The lines exist only in memory between
their arrival and the batch that takes them, so after a restart (or a retried batch, which
seeks back) the lines already taken are not read again, and a query over it cannot give
end-to-end exactly-once results.

Line n (from 0 since `start`) is record n: topic as given, partition 0, offset n, the
receive time (epoch ms) as the record's timestamp, no key; its value is the JSON object
`{"value": "<line>"}`, with `"timestamp"` (the receive time as ISO-8601 UTC) added under
`include_timestamp` as Spark's includeTimestamp. A line ends at "\\n" (a "\\r" before it is
dropped, as Spark's readLine does); bytes that are not UTF-8 become U+FFFD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque

import orjson

from weir.service.sources.base import Records, Source
from weir.service.sources.rate import StampedRecords
from weir.tables.timeutil import iso_utc

log = logging.getLogger("weir.worker")

_CHUNK = 64 * 1024


class SocketSource(Source):
    """The lines a TCP server at `host:port` sends, from the connection on.

    Contract: `start` connects (a one-line ConnectionError naming host:port when it cannot)
    and reads lines in the background into a buffer of at most about `max_buffered` lines
    (beyond that it stops reading, so TCP holds the sender back); `next_batch` takes up to
    `max_records` buffered lines, waiting up to `wait_ms` for the first. Positions are line
    numbers; `seek` cannot go anywhere but the position: another position logs a warning and
    reading continues from the current one. When the server closes the connection (or it
    breaks: logged) the source is `exhausted` once the buffered lines are taken; it is not
    `bounded`, yet an available-now run ends there.
    """

    bounded = False

    def __init__(
        self,
        host: str,
        port: int,
        topic: str = "socket",
        *,
        include_timestamp: bool = False,
        max_buffered: int = 100_000,
    ) -> None:
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, not {max_buffered}")
        self.host = host
        self.port = port
        self.topic = topic
        self.include_timestamp = include_timestamp
        self.max_buffered = max_buffered
        self._buffer: deque[tuple[bytes, int]] = deque()
        """Lines received and not yet taken: (value, receive time ms)."""
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False
        self._next = 0
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def description(self) -> str:
        return f"socket[{self.host}:{self.port}]"

    async def start(self) -> None:
        try:
            reader, self._writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise ConnectionError(
                f"cannot connect to {self.host}:{self.port}: {_reason(exc)}"
            ) from None
        self._room.set()
        self._reader = asyncio.create_task(self._read(reader), name=self.description)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None
        self._closed = True

    async def _read(self, reader: asyncio.StreamReader) -> None:
        partial = b""
        try:
            while True:
                await self._room.wait()
                chunk = await reader.read(_CHUNK)
                if not chunk:
                    break
                *lines, partial = (partial + chunk).split(b"\n")
                self._add(lines)
            if partial:  # the last line, without its "\n"
                self._add([partial])
            log.info("%s: the server closed the connection", self.description)
        except OSError as exc:
            log.warning("%s: connection lost: %s", self.description, exc)
        finally:
            self._closed = True
            self._arrived.set()

    def _add(self, lines: list[bytes]) -> None:
        if not lines:
            return
        now = time.time_ns() // 1_000_000
        extra = {"timestamp": iso_utc(now)} if self.include_timestamp else {}
        for line in lines:
            text = line.removesuffix(b"\r").decode("utf-8", errors="replace")
            self._buffer.append((orjson.dumps({"value": text, **extra}), now))
        if len(self._buffer) >= self.max_buffered:
            self._room.clear()
        self._arrived.set()

    def partitions(self) -> set[int] | None:
        return None if self._writer is None else {0}

    async def next_batch(self, max_records: int, wait_ms: int = 0) -> Records:
        if max_records < 1:
            raise ValueError("batch size must be at least 1")
        if not self._buffer and not self._closed and wait_ms > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait_ms / 1000)
        if not self._buffer:
            return {}
        taken = [self._buffer.popleft() for _ in range(min(max_records, len(self._buffer)))]
        if len(self._buffer) < self.max_buffered:
            self._room.set()
        first = self._next
        self._next += len(taken)
        values = [v for v, _ in taken]
        stamps = [ts for _, ts in taken]
        return {0: {self.topic: StampedRecords(self.topic, values, first, stamps)}}

    async def position(self, topic: str, partition: int) -> int:
        return self._next

    def seek(self, topic: str, partition: int, position: int) -> None:
        """A no-op: at the position already, or (logged) a position it cannot go to."""
        if position != self._next:
            log.warning(
                "%s cannot replay: asked for line %d, continues from line %d",
                self.description,
                position,
                self._next,
            )

    @property
    def exhausted(self) -> bool:
        return self._closed and not self._buffer


def _reason(exc: OSError) -> str:
    """The one-line why of a failed connection ("Connection refused")."""
    if exc.errno is not None and exc.errno > 0:  # asyncio's own text repeats the address
        return os.strerror(exc.errno)
    return " ".join((exc.strerror or str(exc) or type(exc).__name__).split())
