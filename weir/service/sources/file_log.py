"""The file log of a directory source: which files it has taken and the offsets of their
rows, fixed for good once logged (`weir.service.sources.directory`)."""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class LoggedFile:
    """A taken file: its rows have offsets `first` to `first + rows - 1`."""

    name: str
    first: int
    rows: int
    size: int
    mtime_ms: int

    @property
    def end(self) -> int:
        return self.first + self.rows


class FileLog:
    """The files a directory source has taken, in taking order: `log_dir/files.jsonl`, one
    JSON object a line ({"name", "first", "rows", "size", "mtime_ms"}).

    Contract: `append` returns once the entry is on disk (written, flushed, fsync'ed); the
    entries' offsets are contiguous from 0. A torn last line (a crash while appending, before
    any row of that file was returned) is cut off on opening; any other damage raises
    ValueError naming the log and the line.
    """

    def __init__(self, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.path = log_dir / "files.jsonl"
        self.names: set[str] = set()
        self.end = 0
        """The offset after the last logged row."""
        self._firsts: list[int] = []
        self._with_rows: list[LoggedFile] = []
        self._load()

    def covering(self, first: int, end: int) -> list[LoggedFile]:
        """The logged files with rows in offsets [first, end), in order."""
        if first >= end or first >= self.end:
            return []
        i = bisect_right(self._firsts, first) - 1
        out = []
        for entry in self._with_rows[max(i, 0) :]:
            if entry.first >= end:
                break
            out.append(entry)
        return out

    def adopt(self, entries: list[LoggedFile]) -> None:
        """Make the log start with `entries` (the files with rows a checkpoint has, in
        order): kept as it is when it already does (it may hold files taken after them),
        rewritten to exactly `entries` when it does not (it was lost, or another machine's
        checkpoint took other files there), atomically and durably."""
        if self._with_rows[: len(entries)] == entries:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(_line(e) + b"\n" for e in entries))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.names, self.end, self._firsts, self._with_rows = set(), 0, [], []
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        *lines, torn = data.split(b"\n")
        for n, line in enumerate(lines, 1):
            try:
                entry = from_dict(orjson.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                where = f"file log {self.path}, line {n}"
                raise ValueError(f"{where}: not a file entry ({exc})") from None
            self._check(entry, f"file log {self.path}, line {n}")
            self._add(entry)
        if torn:
            with open(self.path, "r+b") as f:
                f.truncate(len(data) - len(torn))
                os.fsync(f.fileno())

    def _check(self, entry: LoggedFile, where: str) -> None:
        if entry.first != self.end or entry.rows < 0 or entry.name in self.names:
            raise ValueError(
                f"{where}: {entry.name!r} at offset {entry.first} does not follow the log "
                f"(expected a new file at offset {self.end})"
            )

    def _add(self, entry: LoggedFile) -> None:
        self.names.add(entry.name)
        self.end = entry.end
        if entry.rows:
            self._firsts.append(entry.first)
            self._with_rows.append(entry)

    def append(self, entry: LoggedFile) -> None:
        """Log a newly taken file, durably, before any of its rows is returned; raises OSError
        when it cannot be written (the log is left as it was)."""
        self._check(entry, f"file log {self.path}")
        created = not self.path.exists()
        line = _line(entry)
        with open(self.path, "ab") as f:
            start = f.tell()
            try:
                f.write(line + b"\n")
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                f.truncate(start)  # no torn line for the next append to follow
                raise
        if created:  # the new file's directory entry must be durable too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._add(entry)

    def at(self, offset: int) -> LoggedFile:
        """The logged file holding row `offset` (which must be below `end`)."""
        return self._with_rows[bisect_right(self._firsts, offset) - 1]


def _line(entry: LoggedFile) -> bytes:
    return orjson.dumps(as_dict(entry))


def as_dict(entry: LoggedFile) -> dict[str, Any]:
    """The entry as the log (and a checkpoint) keeps it."""
    return {
        "name": entry.name,
        "first": entry.first,
        "rows": entry.rows,
        "size": entry.size,
        "mtime_ms": entry.mtime_ms,
    }


def from_dict(obj: Any) -> LoggedFile:
    """An entry from `as_dict`'s form; raises KeyError, TypeError or ValueError otherwise."""
    return LoggedFile(
        str(obj["name"]),
        int(obj["first"]),
        int(obj["rows"]),
        int(obj["size"]),
        int(obj["mtime_ms"]),
    )
