"""File writes the file sinks rely on: whole files appear at once (`write_atomically`), and
appended lines or renamed files survive a crash of the machine when asked (`sync`,
`append_durably`); a write the file system refuses becomes one line naming the sink, the path
and the operating system's reason (`cannot_write`)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from weir.service.sinks.base import SinkFailure

TRANSIENT_ERRNOS = frozenset(
    {
        errno.ETIMEDOUT,
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.ENETUNREACH,
    }
)
"""OS errors of a file system that is away (a network mount timing out), not refusing."""


class FileWriteError(OSError):
    """A file the file system refused to write (`write_files`): `path` is its name (not the
    temporary one), errno and strerror those of the OSError it is raised from."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.path = path


def write_atomically(target: Path, write: Callable[[Path], Any], sync: bool = False) -> None:
    """Call `write(tmp)` for a temporary name in `target`'s folder (created if missing), then
    rename it over `target`: a reader sees the old file or the whole new one. With `sync`, the
    new file is fsync'ed before the rename and the folder after it, so the rename survives a
    power loss with its content. Raises what `write` or the file system raises, having
    removed the temporary file (an OSError as a FileWriteError); a crash leaves at most a
    ".<name>.tmp" file behind."""
    write_files([(target, write)], sync)


def write_files(files: Sequence[tuple[Path, Callable[[Path], Any]]], sync: bool = False) -> None:
    """`write_atomically` for several files at once: every file is written (and, with `sync`,
    fsync'ed) under its temporary name first, then all are renamed (then, with `sync`, their
    folders fsync'ed). A write that fails (a full disk, a file too large, a refused path)
    raises before any file appears, and leaves no temporary file behind; only a crash or a
    failing rename in the last step can leave some of the files renamed and not others.
    An OSError is raised as a FileWriteError naming the file."""
    tmps: list[Path] = []
    at = files[0][0] if files else Path()
    try:
        for at, write in files:
            ensure_folder(at.parent)
            tmp = at.with_name(f".{at.name}.tmp")
            tmps.append(tmp)
            write(tmp)
            if sync:
                fsync_path(tmp)
        for tmp, (at, _write) in zip(tmps, files, strict=False):
            os.replace(tmp, at)
    except BaseException as exc:
        for tmp in tmps:  # a half-written file is not left behind
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, FileWriteError):
            raise FileWriteError(at, exc) from exc
        raise
    if sync:
        for folder in dict.fromkeys(target.parent for target, _write in files):
            fsync_path(folder)


def ensure_folder(path: Path) -> None:
    """Create the folder `path` and its parents if missing. Raises OSError, NotADirectoryError
    when `path` or a parent of it is a file."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # `path` is a file: say so, not "File exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from exc


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


def os_reason(exc: BaseException) -> tuple[int, str] | None:
    """(errno, the OS's words for it) of a failure the file system caused: an OSError with an
    errno, or an error of a native library that quotes one ("... (os error 28)", Rust's
    "Os { code: 28, ... }", as delta-rs does), looked for along `__cause__` too; None if none."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "errno", None) if isinstance(seen, OSError) else None
        if not isinstance(code, int):
            found = _OS_ERROR.search(str(seen))
            code = int(found.group(1) or found.group(2)) if found else None
        if code is not None:
            return code, os.strerror(code)
        seen = seen.__cause__
    return None


def cannot_write(description: str, path: str | Path, exc: BaseException) -> SinkFailure:
    """The SinkFailure for a write of `path` the file system refused: one line, "<sink>: cannot
    write <path>: <OS reason>" (as "Permission denied", "Read-only file system", "Not a
    directory", "No space left on device"). Transient only when the file system is away
    (TRANSIENT_ERRNOS): a refusal needs someone to fix the path, so the batch's retries run out
    and `on_batch_failure` applies (by default the worker stops, its input not committed)."""
    found = os_reason(exc)
    reason = found[1] if found else one_line(exc)
    transient = found is not None and found[0] in TRANSIENT_ERRNOS
    return SinkFailure(f"{description}: cannot write {path}: {reason}", transient=transient)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (native libraries add help on more lines), or
    its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_OS_ERROR = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")
