"""The directory source: files arriving in a directory read as a stream, like Spark's file
stream source (`spark.readStream.format("json").schema(...).load(dir)`).

Each row of each file is a record (`weir.service.sources.file_formats` reads the rows); the
files the source has taken are kept in an append-only file log, which fixes every row's
position for good, so a checkpointed position means the same rows after a restart. See
`DirectorySource`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from weir.service.sources.base import LazyRecords, Records, Source, SourceRecord
from weir.service.sources.file_formats import FORMATS, Format, read_rows, unreadable
from weir.service.sources.file_log import FileLog, LoggedFile, as_dict, from_dict
from weir.tables.schema import Schema
from weir.tables.timeutil import parse_duration

Order = Literal["name", "modified"]
_KEY = b"files/"
"""Checkpoint state keys: a taken file's entry, by its first offset (8 bytes, big-endian)."""
POLL_MS = 100
"""How often a waiting `next_batch` lists the directory again."""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One row of a file, as a `SourceRecord`; headers `file` (its name) and `row` (its
    number among the file's rows, from 1: blank lines and a CSV header are not rows)."""

    topic: str
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    partition: int = 0
    timestamp: int = -1
    key: bytes | None = None


class FileRecords(LazyRecords):
    """A batch's rows as `SourceRecord`s (`FileRecord`) made on demand, offsets from `first`
    on, contiguous; `values()` is the rows' bytes."""

    __slots__ = ("_names", "_rows", "_starts")

    def __init__(self, topic: str, first: int) -> None:
        super().__init__(topic, [], first)
        self._starts: list[int] = []
        """Index of each file's first row in the batch."""
        self._names: list[str] = []
        self._rows: list[int] = []
        """Each file's row number (from 1) at its first index."""

    def add(self, name: str, row: int, values: list[bytes]) -> None:
        """Append rows `row`, `row + 1`, ... of file `name` (continuing its last file or not)."""
        if not self._names or self._names[-1] != name:
            self._starts.append(len(self.lines))
            self._names.append(name)
            self._rows.append(row)
        self.lines.extend(values)

    @property
    def files(self) -> int:
        """How many files the batch holds rows of."""
        return len(self._names)

    @property
    def last_file(self) -> str | None:
        return self._names[-1] if self._names else None

    @property
    def end(self) -> int:
        """The offset after the last record."""
        return self.first + len(self.lines)

    def record(self, i: int) -> SourceRecord:
        f = bisect_right(self._starts, i) - 1
        row = self._rows[f] + i - self._starts[f]
        headers = (("file", self._names[f].encode()), ("row", str(row).encode()))
        return FileRecord(self.topic, self.first + i, self.lines[i], headers)


class DirectorySource(Source):
    """The rows of the files arriving in directory `path` (not its subdirectories), in
    format `format` ("json" lines, "csv", "parquet"; see `file_formats`), as input `topic`.

    Records: partition 0; offsets count all rows of all taken files from 0, contiguous, in
    taking order; the value is one row's JSON object bytes, no key, no timestamp (-1); headers
    `file` (the file's name) and `row` (the row's number in the file, from 1), so a dead
    letter says where a bad row came from. A file that cannot be read at all is one record
    whose value is not JSON (`unreadable file: <reason>`): the driver dead-letters it and
    reading goes on with the next file. `schema` types CSV fields and picks Parquet columns;
    the driver still conforms every row.

    Complete files only: names starting with "." or "_" and names not matching `pattern`
    (fnmatch, e.g. "*.csv") are ignored. A visible file is taken once its modification time
    is at least `settle` old and its size and modification time did not change between two
    listings of the directory, so a file still being written is not read half. The safe way
    to add a file is to write it under a hidden name (".name.tmp") and rename it in.

    Order: new files are taken by name (`order="name"`) or by (modification time, name)
    (`order="modified"`), each at most once (by name: a file written again under a taken
    name is ignored). A file whose name sorts before taken ones is taken later, not skipped.
    A batch holds at most `max_records` rows, of at most `max_files_per_trigger` files; a
    file may span several batches.

    The file log (`log_dir/files.jsonl`, `weir.service.sources.file_log`) records each taken
    file with its first offset, row count, size and modification time, durably, before any
    of its rows is returned; from then on its offsets are fixed, as Kafka offsets are. A new
    source on the same `log_dir` (after a restart) starts at offset 0; `seek` to a
    checkpointed position gives exactly the rows that followed it before, re-reading logged
    files, then takes new files. Failures raise ValueError: a logged file that must be
    re-read and is gone or changed size or row count (the input changed under a running
    query), a seek beyond the log's end (the log was lost), a damaged log; and on
    construction, a `path` that is not a directory. One source at a time per `log_dir`.

    `next_batch` reads files in a worker thread; the rows of the file being consumed are
    kept in memory (the whole file) until the batch moves past it.
    """

    bounded = False

    def __init__(
        self,
        path: str | Path,
        format: Format,
        topic: str,
        schema: Schema | Mapping[str, Any],
        *,
        log_dir: str | Path,
        max_files_per_trigger: int | None = None,
        order: Order = "name",
        settle: str | int | timedelta = "2 seconds",
        pattern: str = "*",
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown file format {format!r} ({', '.join(FORMATS)})")
        if order not in ("name", "modified"):
            raise ValueError(f"order must be 'name' or 'modified', not {order!r}")
        if max_files_per_trigger is not None and max_files_per_trigger < 1:
            raise ValueError(f"max_files_per_trigger must be at least 1: {max_files_per_trigger}")
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"{self.path} is not a directory")
        if Path(log_dir).resolve() == self.path.resolve():
            raise ValueError(f"log_dir must not be the input directory {self.path}")
        self.format: Format = format
        self.topic = topic
        self.schema = schema if isinstance(schema, Schema) else Schema(schema)
        self.max_files_per_trigger = max_files_per_trigger
        self.order: Order = order
        self.settle_ms = parse_duration(settle)
        self.pattern = pattern
        self.log = FileLog(Path(log_dir))
        self._pos = 0
        self._current: tuple[LoggedFile, list[bytes]] | None = None
        """The logged file being consumed and its rows."""
        self._ready: deque[tuple[str, int, int]] = deque()
        """Settled files not taken yet, in taking order: (name, size, mtime_ns)."""
        self._seen: dict[str, tuple[int, int]] = {}
        """Other untaken files at the last listing: (size, mtime_ns)."""
        self._lock = threading.Lock()  # a cancelled next_batch's thread may still be running

    @property
    def description(self) -> str:
        return f"files[{self.format}:{self.path}]"

    def partitions(self) -> set[int] | None:
        return {0}

    async def next_batch(
        self,
        max_records: int,
        wait_ms: int,
        *,
        fill: bool = False,
        stop: asyncio.Event | None = None,
    ) -> Records:
        """Up to `max_records` rows from the current position: what is available now, waiting
        up to `wait_ms` for a first row (listing the directory every `POLL_MS`), or with
        `fill` what arrives within `wait_ms`; `{}` when there is none. Stops waiting when
        `stop` is set (an empty batch when it is set before the call).

        A call cancelled while waiting leaves the position where it was: its rows come
        again. Raises ValueError when a logged file to re-read changed (see the class)."""
        if max_records < 1:
            raise ValueError("batch size must be at least 1")
        deadline = time.monotonic() + wait_ms / 1000
        batch = FileRecords(self.topic, self._pos)
        while not (stop is not None and stop.is_set()):
            await asyncio.to_thread(self._fill, batch, max_records)
            remaining = deadline - time.monotonic()
            if len(batch) >= max_records or remaining <= 0 or (batch and not fill):
                break
            await asyncio.sleep(min(POLL_MS / 1000, remaining))
        if not batch:
            return {}
        self._pos = batch.end
        return {0: {self.topic: batch}}

    async def position(self, topic: str, partition: int) -> int:
        self._check(topic, partition)
        return self._pos

    def seek(self, topic: str, partition: int, position: int) -> None:
        self._check(topic, partition)
        if position < 0:
            raise ValueError(f"{self.description}: no position {position}")
        if position > self.log.end:
            raise ValueError(
                f"the file log at {self.log.path} is missing entries for the checkpoint: "
                f"position {position} is beyond its end ({self.log.end}); the log was lost "
                "or replaced, so which files the checkpoint has read is unknown"
            )
        self._pos = position

    def checkpoint_state(self, first: int, end: int) -> dict[bytes, Any]:
        """The log entries of the files with rows in [first, end), keyed by first offset."""
        return {
            _KEY + e.first.to_bytes(8, "big"): as_dict(e) for e in self.log.covering(first, end)
        }

    def restore_state(self, state: Mapping[bytes, Any]) -> None:
        """Rebuild the file log from a checkpoint's entries (`FileLog.adopt`): a worker whose
        state folder was lost, or another machine, reads the same files at the same offsets."""
        entries = [from_dict(v) for k, v in sorted(state.items()) if k.startswith(_KEY)]
        with self._lock:
            self.log.adopt(entries)
            self._current = None
            self._ready.clear()  # listed before: some may be taken files now

    def _check(self, topic: str, partition: int) -> None:
        if topic != self.topic or partition != 0:
            raise ValueError(f"{self.description} has only {self.topic!r} partition 0")

    # -- reading (in a worker thread) ----------------------------------------------------
    def _fill(self, batch: FileRecords, max_records: int) -> None:
        """Append rows to `batch` up to the limits: logged files' rows first, then new
        files', listing the directory at most once."""
        limit = self.max_files_per_trigger
        listed = False
        with self._lock:
            while len(batch) < max_records:
                pos = batch.end
                if pos < self.log.end:
                    entry = self.log.at(pos)
                    if limit is not None and batch.files >= limit and batch.last_file != entry.name:
                        return
                    values = self._rows_of(entry)
                    k = pos - entry.first
                    n = min(max_records - len(batch), entry.rows - k)
                    batch.add(entry.name, k + 1, values[k : k + n])
                elif limit is not None and batch.files >= limit:
                    return
                elif self._ready:
                    self._take(*self._ready.popleft())
                elif listed:
                    return
                else:
                    self._list()
                    listed = True

    def _list(self) -> None:
        """List the directory: settled files go to `_ready` in taking order, the others to
        `_seen`, to be checked at the next listing."""
        now_ns = time.time_ns()
        settle_ns = self.settle_ms * 1_000_000
        seen: dict[str, tuple[int, int]] = {}
        ready: list[tuple[Any, str, int, int]] = []
        with os.scandir(self.path) as entries:
            for e in entries:
                name = e.name
                if (
                    name[0] in "._"
                    or name in self.log.names
                    or not fnmatch.fnmatchcase(name, self.pattern)
                ):
                    continue
                try:
                    if not e.is_file():
                        continue
                    st = e.stat()
                except FileNotFoundError:  # renamed away meanwhile
                    continue
                stat = (st.st_size, st.st_mtime_ns)
                if self._seen.get(name) == stat and now_ns - st.st_mtime_ns >= settle_ns:
                    key = (st.st_mtime_ns, name) if self.order == "modified" else name
                    ready.append((key, name, st.st_size, st.st_mtime_ns))
                else:
                    seen[name] = stat
        self._seen = seen
        self._ready.extend(item[1:] for item in sorted(ready))

    def _take(self, name: str, size: int, mtime_ns: int) -> None:
        """Read a settled file, log it and make its rows current; a file that is gone or
        changed since it was listed is left for a later listing."""
        try:
            data, st = self._read(name)
        except FileNotFoundError:
            return
        except OSError as exc:
            values = [unreadable(f"{type(exc).__name__}: {exc.strerror or exc}")]
        else:
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns) or len(data) != size:
                self._seen[name] = (st.st_size, st.st_mtime_ns)
                return
            values = read_rows(data, self.format, self.schema)
        entry = LoggedFile(name, self.log.end, len(values), size, mtime_ns // 1_000_000)
        self.log.append(entry)
        self._current = (entry, values)

    def _rows_of(self, entry: LoggedFile) -> list[bytes]:
        """The rows of a logged file: the current one's, or read again (after a seek or a
        restart) and checked against the log."""
        if self._current is not None and self._current[0] == entry:
            return self._current[1]
        where = f"{self.path / entry.name} (file log {self.log.path})"
        try:
            data, _st = self._read(entry.name)
        except FileNotFoundError:
            raise ValueError(f"{where} is gone: the input changed under a running query") from None
        if len(data) != entry.size:
            raise ValueError(
                f"{where} has {len(data)} bytes, the log says {entry.size}: the input "
                "changed under a running query"
            )
        values = read_rows(data, self.format, self.schema)
        if len(values) != entry.rows:
            raise ValueError(
                f"{where} has {len(values)} rows, the log says {entry.rows}: the input "
                "changed under a running query"
            )
        self._current = (entry, values)
        return values

    def _read(self, name: str) -> tuple[bytes, os.stat_result]:
        with open(self.path / name, "rb") as f:
            st = os.fstat(f.fileno())
            return f.read(), st
