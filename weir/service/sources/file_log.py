"""The file log of a directory source: which files it has taken and the offsets of their
rows, fixed for good once logged (`weir.service.sources.directory`)."""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

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

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        *lines, torn = data.split(b"\n")
        for n, line in enumerate(lines, 1):
            try:
                obj = orjson.loads(line)
                entry = LoggedFile(
                    str(obj["name"]),
                    int(obj["first"]),
                    int(obj["rows"]),
                    int(obj["size"]),
                    int(obj["mtime_ms"]),
                )
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
        line = orjson.dumps(
            {
                "name": entry.name,
                "first": entry.first,
                "rows": entry.rows,
                "size": entry.size,
                "mtime_ms": entry.mtime_ms,
            }
        )
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
