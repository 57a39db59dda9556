"""The rate source (Spark's `rate` format): rows `{"timestamp": ..., "value": n}`, n = 0, 1, 2,
..., at a fixed rate, for demos and tests.

Record n is row n: topic as given, partition 0, offset n, its timestamp (epoch ms) as the
record's timestamp, no key. Its time is a pure function of the start time and n
(`rate_offset_ms`), and the start time is fixed at the first start and kept in
`<log_dir>/rate.json`, so the source replays: seeking to n on any instance over the same
log_dir gives the same rows from n on, as Spark's rate source does.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson

from weir.service.sources.base import Records, Source, SourceRecord
from weir.service.sources.files import LineRecord, LineRecords
from weir.tables.timeutil import iso_utc, parse_duration


class StampedRecords(LineRecords):
    """Records of one batch with consecutive offsets, each with its own timestamp, made on
    demand (a `LineRecords` whose records carry a time); `values()` is the values."""

    __slots__ = ("stamps",)

    def __init__(self, topic: str, values: list[bytes], first: int, stamps: list[int]) -> None:
        super().__init__(topic, values, first)
        self.stamps = stamps
        """Epoch ms of each value, in order."""

    def record(self, i: int) -> SourceRecord:
        return LineRecord(self.topic, self.first + i, self.lines[i], timestamp=self.stamps[i])


def rate_offset_ms(n: int, rows_per_second: int, ramp_up_ms: int) -> int:
    """Milliseconds from the start to row `n` (floored): row n is due when n rows came before.

    Without ramp-up that is `(n * 1000) // rows_per_second`. With it, the rate grows linearly
    from 0 to `rows_per_second` over `ramp_up_ms` and stays there (Spark's RateStreamProvider
    ramps in whole-second steps; this is the continuous version): the ramp holds
    `rows_per_second * ramp_up_ms / 2000` rows. Non-decreasing in n; exact integer arithmetic.
    """
    r, t = rows_per_second, ramp_up_ms
    if 2000 * n < r * t:  # ramping: r * x² / (2000 * t) rows have come by x ms
        return math.isqrt(2000 * t * n // r)  # isqrt(floor(q)) == floor(sqrt(q))
    return (t * r + 2000 * n) // (2 * r)  # t + (n - r * t / 2000) * 1000 / r


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class RateSource(Source):
    """`rows_per_second` rows a second (after `ramp_up`), from the first start on.

    Contract: unbounded; one partition, 0; positions are row numbers, and `seek` moves
    anywhere (backwards too). `next_batch` returns the rows due (timestamp <= `clock()`) from
    the position, at most `max_records`, waiting for the next one up to `wait_ms`. `start`
    reads `<log_dir>/rate.json`, or writes it (atomically) with the clock's time on the first
    start; it raises ValueError when the file is unreadable or was written for another
    rate or ramp-up (a new log_dir starts over). `clock` gives epoch ms (default: wall time).
    """

    bounded = False

    def __init__(
        self,
        rows_per_second: int,
        topic: str = "rate",
        *,
        log_dir: str | Path,
        ramp_up: str | int | timedelta = 0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if isinstance(rows_per_second, bool) or not isinstance(rows_per_second, int):
            raise ValueError(f"rows_per_second must be an int, not {rows_per_second!r}")
        if rows_per_second < 1:
            raise ValueError(f"rows_per_second must be at least 1, not {rows_per_second}")
        self.rows_per_second = rows_per_second
        self.topic = topic
        self.log_dir = Path(log_dir)
        self.ramp_up_ms = parse_duration(ramp_up)
        self.clock = clock or _wall_ms
        self.start_ms: int | None = None
        """The time of row 0, epoch ms (None before `start`)."""
        self._next = 0

    @property
    def description(self) -> str:
        return f"rate[{self.rows_per_second}/s]"

    @property
    def log_file(self) -> Path:
        """Where the start time is kept."""
        return self.log_dir / "rate.json"

    async def start(self) -> None:
        if self.start_ms is not None:
            return
        meta = {"rows_per_second": self.rows_per_second, "ramp_up_ms": self.ramp_up_ms}
        if self.log_file.exists():
            try:
                kept = orjson.loads(self.log_file.read_bytes())
                start_ms = kept["start_ms"]
                if type(start_ms) is not int:
                    raise TypeError
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{self.log_file} is not a rate source's log") from None
            was = {k: kept.get(k) for k in meta}
            if was != meta:
                raise ValueError(f"{self.log_file} was written for {was}, not {meta}")
        else:
            start_ms = self.clock()
            _write_atomically(self.log_file, orjson.dumps({"start_ms": start_ms, **meta}))
        self.start_ms = start_ms

    def partitions(self) -> set[int] | None:
        return None if self.start_ms is None else {0}

    def timestamp_of(self, n: int) -> int:
        """Row `n`'s timestamp, epoch ms. Raises RuntimeError before `start`."""
        if self.start_ms is None:
            raise RuntimeError(f"{self.description} is not started")
        return self.start_ms + rate_offset_ms(n, self.rows_per_second, self.ramp_up_ms)

    def _due(self, now: int, limit: int) -> int:
        """How many rows from the position, at most `limit`, are due at `now`."""
        lo, hi = self._next, self._next + limit
        while lo < hi:  # the first row not due (timestamps do not decrease)
            mid = (lo + hi) // 2
            if self.timestamp_of(mid) <= now:
                lo = mid + 1
            else:
                hi = mid
        return lo - self._next

    async def next_batch(self, max_records: int, wait_ms: int = 0) -> Records:
        if max_records < 1:
            raise ValueError("batch size must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_ms, 0) / 1000
        while True:
            now = self.clock()
            count = self._due(now, max_records)
            if count:
                return self._rows(count)
            left = deadline - loop.time()
            if left <= 0:
                return {}
            await asyncio.sleep(min(left, (self.timestamp_of(self._next) - now) / 1000))

    def _rows(self, count: int) -> Records:
        first = self._next
        stamps = [self.timestamp_of(n) for n in range(first, first + count)]
        values = [
            b'{"timestamp":"%s","value":%d}' % (iso_utc(ts).encode(), n)
            for n, ts in enumerate(stamps, first)
        ]
        self._next = first + count
        return {0: {self.topic: StampedRecords(self.topic, values, first, stamps)}}

    async def position(self, topic: str, partition: int) -> int:
        self._check(topic, partition)
        return self._next

    def seek(self, topic: str, partition: int, position: int) -> None:
        self._check(topic, partition)
        if position < 0:
            raise ValueError(f"{self.description}: no row {position}")
        self._next = position

    def _check(self, topic: str, partition: int) -> None:
        if topic != self.topic or partition != 0:
            raise ValueError(
                f"{self.description} has partition 0 of {self.topic!r} only, "
                f"not {partition} of {topic!r}"
            )


def _write_atomically(target: Path, data: bytes) -> None:
    """Write `data` to `target` so that it is whole or absent after a crash: a temporary file
    in the same folder, fsynced, renamed over it, and the folder fsynced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
