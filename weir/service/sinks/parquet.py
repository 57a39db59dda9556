"""The Parquet sink: each batch's rows as Parquet files of a table folder (pyarrow), committed
by a manifest, as Spark's file sink commits through `_spark_metadata`.

Layout of `path`:

* data files `[<col>=<value>/...]<query>-<task>-<batch>-<n>.parquet`, partitioned by the
  `partition_by` columns (Hive style), all written under temporary names, then renamed;
* `_weir_metadata/<query>-<task>-<batch>.json`, written (atomically) after the batch's data
  files: the files the batch committed;
* after a compaction (`parquet_compact`), `[<col>=<value>/...]compacted-<n>.parquet` files
  and `_weir_metadata/compactions/<n>.json`: which files each replaces, and the batches whose
  rows it holds, in order. Batch manifests stay, so a batch is still skipped once compacted.

Idempotent: a batch whose manifest exists is skipped, and a batch written again after a crash
(same identity, same rows: weir.service.runtime.plans) rewrites the same file names. A reader
that goes through the manifests (`read_parquet`) never sees a file of an uncommitted batch, a
half-written file, or a row twice during a compaction; a reader that lists the folder
(`pyarrow.dataset`, which skips names starting with "." or "_") never sees a half-written file
either, but may see the files of a batch not yet committed, or both a compaction's file and
the ones it replaces, as with Spark's file sink.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from weir.service.sinks.arrow import UNFIT, Schema, as_schema, to_table
from weir.service.sinks.base import BatchIdentity, Delivery, Sink, SinkBatch, SinkFailure
from weir.service.sinks.files import FileWriteError, cannot_write, write_atomically, write_files

METADATA = "_weir_metadata"
COMPACTIONS = "compactions"
"""Under METADATA: the compaction manifests (weir.service.sinks.parquet_compact)."""


class ParquetSink(Sink):
    """Rows to Parquet files under `path` with a fixed `schema`; see the module docstring.

    A row without a column gets null; a value that does not fit its column's type fails the
    batch with the column and the reason (`SinkFailure`), so nothing of it is committed.

    Each file is fsync'ed before its rename and the folder after it, data files before the
    manifest: once `write` returns (and the checkpoint commits the input offsets) the batch
    survives a power loss. A write the file system refuses (permission denied, read-only file
    system, a path through a file, disk full, file too large) fails the batch with one line,
    "parquet[<path>]: cannot write <file>: <OS reason>" (`files.cannot_write`), and leaves no
    half-written file (the temporary files are removed, none of them renamed) and no
    manifest: the batch is not committed. That failure is not transient: like Spark's file
    sink failing the query, the batch is retried `max_batch_retries` times and then, by
    default, the worker stops with its input uncommitted, so that once the path is fixed a
    restart writes each row once. A file system that is away (a network mount timing out) is
    transient: retried without limit."""

    delivery: Delivery = "idempotent"

    def __init__(self, path: str | Path, schema: Schema, partition_by: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.schema = as_schema(schema)
        self.partition_by = tuple(partition_by)
        missing = [c for c in self.partition_by if c not in self.schema.names]
        if missing:
            raise ValueError(f"partition_by columns {missing} are not in the schema")

    @property
    def description(self) -> str:
        return f"parquet[{self.path}]"

    async def write(self, batch: SinkBatch) -> None:
        name = _batch_name(batch.identity)
        manifest = self.path / METADATA / f"{name}.json"
        if manifest.exists():
            return  # committed by an earlier attempt
        try:
            table = to_table(batch.rows, self.schema)
        except UNFIT as exc:
            raise SinkFailure(f"{self.description}: a row does not fit the schema: {exc}") from exc
        parts = [
            (Path(folder) / f"{name}-{i}.parquet", part)
            for i, (folder, part) in enumerate(self._parts(table))
        ]
        try:
            write_files(
                [(self.path / rel, partial(pq.write_table, part)) for rel, part in parts],
                sync=True,
            )
            files = [str(rel) for rel, _part in parts]
            entry = {"batch": batch.identity.batch_id, "task": batch.identity.task, "files": files}
            write_atomically(manifest, lambda p: p.write_bytes(orjson.dumps(entry)), sync=True)
        except OSError as exc:
            path = exc.path if isinstance(exc, FileWriteError) else self.path
            raise cannot_write(self.description, path, exc) from exc

    def _parts(self, table: pa.Table) -> list[tuple[str, pa.Table]]:
        """(Hive-style folder, rows) per distinct value of the partition columns."""
        if not self.partition_by:
            return [("", table)]
        keys = [table.column(c).to_pylist() for c in self.partition_by]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, key in enumerate(zip(*keys, strict=True)):
            groups.setdefault(key, []).append(i)
        out = []
        for key, idx in groups.items():
            folder = "/".join(
                f"{c}={_path_value(v)}" for c, v in zip(self.partition_by, key, strict=True)
            )
            out.append((folder, table.take(idx).drop_columns(list(self.partition_by))))
        return out


def parquet(path: str | Path, schema: Schema, partition_by: Sequence[str] = ()) -> ParquetSink:
    """Spark's `format("parquet").option("path", ...)` with `partitionBy(...)`."""
    return ParquetSink(path, schema, partition_by)


def read_parquet(path: str | Path) -> pa.Table:
    """The committed rows of a Parquet sink's table, in batch order (by task, then batch
    number, then partition folder; a batch's rows as written), partition columns restored
    from the folder names; an empty table when nothing is committed.

    Only files a manifest lists are read, less those a finished compaction replaced
    (`parquet_compact`): a compaction under way is not seen, a finished one is seen whole, so
    no row is read twice or missed. A file deleted by a compaction finishing during the read
    makes it read the manifests again."""
    root = Path(path)
    for _ in range(_READ_ATTEMPTS - 1):
        try:
            return _read(root)
        except FileNotFoundError:
            continue
    return _read(root)


def read_parquet_latest(path: str | Path, key: Sequence[str]) -> pa.Table:
    """The latest committed row per `key` (e.g. ["page", "window_start", "window_end"] for
    the windows an update-mode query writes again as they change): of the rows with the same
    key values, the one `read_parquet` gives last (the later batch by task then batch number,
    within a batch the last row), the same before and after a compaction. Rows in the order
    of `read_parquet`. Raises ValueError for no key or a key column the table lacks."""
    table = read_parquet(path)
    keys = list(key)
    if not keys:
        raise ValueError("read_parquet_latest needs key columns")
    if table.num_rows == 0:
        return table
    missing = [k for k in keys if k not in table.column_names]
    if missing:
        raise ValueError(f"key columns {missing} are not in the table {table.column_names}")
    positions = pa.array(range(table.num_rows), pa.int64())
    last = (
        table.select(keys)
        .append_column(_POSITION, positions)
        .group_by(keys, use_threads=False)
        .aggregate([(_POSITION, "max")])
        .column(f"{_POSITION}_max")
    )
    return table.take(pc.take(last, pc.sort_indices(last)))


@dataclass(frozen=True)
class Segment:
    """The rows of one committed batch in a data file."""

    name: str
    """The batch's manifest name ("<query>-<task>-<batch>")."""
    task: int
    batch: int
    rows: int | None
    """How many rows, in the file's order; None: the whole file (a file the batch wrote)."""

    @property
    def order(self) -> tuple[int, int, str]:
        """Where the batch's rows go in the table: by task, then batch number."""
        return (self.task, self.batch, self.name)


def committed_files(root: Path) -> dict[str, list[Segment]]:
    """Every data file of the table to read (path relative to `root`), with the batches whose
    rows it holds, in file order: the files of the batch manifests and of the compaction
    manifests, less those a compaction replaced. Batch manifests are read first, so a
    compaction finishing meanwhile is seen whole or not at all."""
    files: dict[str, list[Segment]] = {}
    for manifest in (root / METADATA).glob("*.json"):
        entry = orjson.loads(manifest.read_bytes())
        segment = Segment(manifest.stem, entry["task"], entry["batch"], None)
        files.update((rel, [segment]) for rel in entry["files"])
    replaced: set[str] = set()
    for manifest in sorted((root / METADATA / COMPACTIONS).glob("*.json")):
        for group in orjson.loads(manifest.read_bytes())["files"]:
            files[group["file"]] = [Segment(*s) for s in group["segments"]]
            replaced.update(group["replaces"])
    return {rel: segments for rel, segments in files.items() if rel not in replaced}


def read_segments(root: Path, rel: str, segments: list[Segment]) -> list[tuple[Segment, pa.Table]]:
    """The rows of data file `rel` (without partition columns) cut into its batches' rows.
    Raises ValueError when a compaction manifest's row counts do not match the file."""
    table = pq.read_table(root / rel)
    if len(segments) == 1 and segments[0].rows is None:
        return [(segments[0], table)]
    out, at = [], 0
    for segment in segments:
        out.append((segment, table.slice(at, segment.rows)))
        at += segment.rows or 0
    if at != table.num_rows:
        raise ValueError(f"{rel} has {table.num_rows} rows, its compaction manifest {at}")
    return out


_READ_ATTEMPTS = 5
_POSITION = "__weir_position"


def _read(root: Path) -> pa.Table:
    pieces = []
    for rel, segments in committed_files(root).items():
        folder = Path(rel).parent
        for segment, table in read_segments(root, rel, segments):
            order = (*segment.order, folder.as_posix())
            pieces.append((order, _with_partition_columns(table, folder)))
    if not pieces:
        return pa.table({})
    pieces.sort(key=lambda piece: piece[0])
    return pa.concat_tables([table for _, table in pieces], promote_options="default")


def _with_partition_columns(table: pa.Table, folder: Path) -> pa.Table:
    """`table` with the Hive partition columns of `folder` ("<col>=<value>/...") as strings."""
    for part in reversed(folder.parts):
        col, _, value = part.partition("=")
        table = table.append_column(col, pa.array([value] * table.num_rows, pa.string()))
    return table


def _batch_name(ident: BatchIdentity) -> str:
    query = re.sub(r"[^A-Za-z0-9_.-]", "_", ident.query)
    return f"{query}-{ident.task}-{ident.batch_id:08d}"


def _path_value(v: Any) -> str:
    text = "__HIVE_DEFAULT_PARTITION__" if v is None else str(v)
    return re.sub(r"[/\\=]", "_", text)
