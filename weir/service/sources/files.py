"""File sources: JSON lines read in micro-batches (what `weir replay` reads).

A line is a record: its topic is the input name the source was given, partition 0, its
offset the line number (from 1), no key, no timestamp (-1). A batch holds its lines as bytes
and makes a record object only for a line that is looked at alone (one that failed), so
reading costs nothing per line. Blank lines are records that decode to nothing; the reader
of the batch skips them. Seeking to a line number and reading again gives the same records.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import IO

from weir.service.sources.base import LazyRecords, Records, Source, SourceRecord


@dataclass(frozen=True, slots=True)
class LineRecord:
    """One line of a file, as a `SourceRecord`."""

    topic: str
    offset: int
    value: bytes
    partition: int = 0
    timestamp: int = -1
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class LineRecords(LazyRecords):
    """The lines of one batch as `SourceRecord`s (`LineRecord`), made on demand; `values()` is
    the lines."""

    __slots__ = ()

    def record(self, i: int) -> SourceRecord:
        return LineRecord(self.topic, self.first + i, self.lines[i])


class JsonLinesSource(Source):
    """The lines of an open binary file, `max_records` lines a batch.

    Contract: bounded; positions are line numbers; `seek` only moves forward (the file is
    read once, like a stream)."""

    bounded = True

    def __init__(self, lines: IO[bytes], topic: str, name: str = "file") -> None:
        self._lines = lines
        self.topic = topic
        self.name = name
        self._next = 1
        self._done = False

    @property
    def description(self) -> str:
        return f"jsonl[{self.name}]"

    def partitions(self) -> set[int] | None:
        return {0}

    async def next_batch(self, max_records: int, wait_ms: int = 0) -> Records:
        return self.read(max_records)

    def read(self, max_records: int) -> Records:
        """`next_batch` without waiting (a file never makes one wait); a batch of blank lines
        only is an empty batch."""
        if max_records < 1:
            raise ValueError("batch size must be at least 1")
        chunk = list(islice(self._lines, max_records))
        first = self._next
        self._next += len(chunk)
        if not chunk:
            self._done = True
            return {}
        if all(line.isspace() for line in chunk):  # stops at the first line with text
            return {0: {}}
        return {0: {self.topic: LineRecords(self.topic, chunk, first)}}

    async def position(self, topic: str, partition: int) -> int:
        return self._next

    def seek(self, topic: str, partition: int, position: int) -> None:
        if position < self._next:
            raise ValueError(f"{self.description} reads forward only: at line {self._next}")
        for _ in islice(self._lines, position - self._next):
            pass
        self._next = position

    @property
    def exhausted(self) -> bool:
        return self._done
