"""File writes the file sinks rely on: whole files appear at once (`write_atomically`), and
appended lines or renamed files survive a crash of the machine when asked (`sync`,
`append_durably`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomically(target: Path, write: Callable[[Path], Any], sync: bool = False) -> None:
    """Call `write(tmp)` for a temporary name in `target`'s folder (created if missing), then
    rename it over `target`: a reader sees the old file or the whole new one, and a crash
    leaves at most a ".<name>.tmp" file behind. With `sync`, the new file is fsync'ed before
    the rename and the folder after it, so the rename survives a power loss with its content.
    Raises what `write` or the file system raises."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    write(tmp)
    if sync:
        fsync_path(tmp)
    os.replace(tmp, target)
    if sync:
        fsync_path(target.parent)


def append_durably(path: Path, data: bytes) -> None:
    """Append `data` to `path` (created with its folders if missing) in one write call (so
    lines appended by other tasks do not interleave with it), then fsync it (and its folder
    when the file is new): on return the bytes survive a crash. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:  # a short write only on a full disk or a signal
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's entries: names created, renamed or removed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
