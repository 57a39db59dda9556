"""Compaction of a Parquet sink's table: the committed files of each partition folder rewritten
into one, as an update-mode query leaves a small file per batch (one row per changed window).

A compaction, crash-safe and never half-seen by `read_parquet`:

1. takes the table's compaction lock (one compaction at a time; the sink may keep writing);
2. lists the committed files (batch manifests, earlier compactions): a file committed later
   is not touched;
3. per partition folder with at least `min_files` of them, writes their rows, in batch order
   (by task, then batch number; a batch's rows as written), to `compacted-<n>.parquet`
   through a temporary name and a rename, fsync'ed;
4. writes the manifest `_weir_metadata/compactions/<n>.json` atomically (fsync'ed): per new
   file, the files it replaces and the batches whose rows it holds, in order. From here
   readers read the new files instead of the replaced ones;
5. deletes the replaced files.

A crash before step 4 leaves the new files unlisted, so unseen (the next compaction deletes
them); a crash during step 5 leaves replaced files that no reader reads (the next compaction
deletes them). Batch manifests stay: the sink still skips a batch it committed before a
compaction. A compacted file is compacted again with the files committed after it, keeping
batch order, so `read_parquet_latest` is the same before and after.

Limits: a folder is rewritten in memory; a reader that lists the folder itself (not through
the manifests) sees both the replaced and the new files between steps 3 and 5.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from weir.service.sinks.files import write_atomically
from weir.service.sinks.parquet import (
    COMPACTIONS,
    METADATA,
    Segment,
    committed_files,
    read_segments,
)

LOCK = "compaction.lock"
"""Under METADATA: held (flock) by the compaction under way."""
_COMPACTED = re.compile(r"\.?compacted-(\d+)\.parquet(\.tmp)?")
"""A compacted file, or its temporary name (".compacted-<n>.parquet.tmp")."""


@dataclass(frozen=True)
class CompactionResult:
    """What a compaction did."""

    files_before: int
    """Committed data files before."""
    files_after: int
    """Committed data files after."""
    rows: int
    """Rows rewritten into the new files."""
    folders: int
    """Partition folders compacted (one new file each)."""


def compact_parquet(path: str | Path, *, min_files: int = 2) -> CompactionResult:
    """Rewrite the committed files of each partition folder of the Parquet sink's table at
    `path` that has at least `min_files` of them into one file; see the module docstring.

    Safe while the sink writes, and to run again (a folder down to one file is left as it
    is). Raises ValueError for `min_files` below 2, BlockingIOError when another compaction
    holds the table's lock; a failure part-way leaves the table as it was for readers."""
    if isinstance(min_files, bool) or not isinstance(min_files, int) or min_files < 2:
        raise ValueError(f"min_files must be a whole number from 2, not {min_files!r}")
    root = Path(path)
    if not (root / METADATA).is_dir():
        return CompactionResult(0, 0, 0, 0)
    with _locked(root / METADATA / LOCK):
        n = _finish_interrupted(root)
        files = committed_files(root)
        folders: dict[str, list[str]] = {}
        for rel in sorted(files):
            folders.setdefault(Path(rel).parent.as_posix(), []).append(rel)
        groups = [
            _rewrite(root, folder, {rel: files[rel] for rel in members}, n)
            for folder, members in sorted(folders.items())
            if len(members) >= min_files
        ]
        if not groups:
            return CompactionResult(len(files), len(files), 0, 0)
        entry = orjson.dumps({"compaction": n, "files": groups})
        manifest = root / METADATA / COMPACTIONS / f"{n:08d}.json"
        write_atomically(manifest, lambda p: p.write_bytes(entry), sync=True)
        replaced = [rel for group in groups for rel in group["replaces"]]
        for rel in replaced:
            (root / rel).unlink(missing_ok=True)
        rows = sum(segment[3] for group in groups for segment in group["segments"])
        after = len(files) - len(replaced) + len(groups)
        return CompactionResult(len(files), after, rows, len(groups))


def _rewrite(root: Path, folder: str, files: dict[str, list[Segment]], n: int) -> dict[str, Any]:
    """Write the rows of `files` (of one folder) in batch order to that folder's compacted
    file number `n`; its manifest entry."""
    pieces = [
        piece for rel, segments in files.items() for piece in read_segments(root, rel, segments)
    ]
    pieces.sort(key=lambda piece: piece[0].order)
    table = pa.concat_tables([t for _, t in pieces], promote_options="default")
    rel = (Path(folder) / f"compacted-{n:08d}.parquet").as_posix()
    write_atomically(root / rel, partial(pq.write_table, table), sync=True)
    return {
        "file": rel,
        "replaces": sorted(files),
        "segments": [[s.name, s.task, s.batch, t.num_rows] for s, t in pieces],
    }


def _finish_interrupted(root: Path) -> int:
    """Finish what an interrupted compaction left: delete the files a finished compaction
    replaced that are still there, and the files of one that did not write its manifest.
    Returns the number of the next compaction."""
    done = 0
    for manifest in (root / METADATA / COMPACTIONS).glob("*.json"):
        done = max(done, int(manifest.stem))
        for group in orjson.loads(manifest.read_bytes())["files"]:
            for rel in group["replaces"]:
                (root / rel).unlink(missing_ok=True)
    for leftover in root.rglob("*compacted-*.parquet*"):
        match = _COMPACTED.fullmatch(leftover.name)
        if match and leftover.is_file() and (match[2] or int(match[1]) > done):
            leftover.unlink(missing_ok=True)
    return done + 1


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold the exclusive flock of `lock` (released when the process ends, even killed);
    raises BlockingIOError when another process holds it."""
    with lock.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BlockingIOError(
                f"another compaction of {lock.parent.parent} is under way"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
