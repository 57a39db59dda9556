"""The Parquet sink: each batch's rows as Parquet files of a table folder (pyarrow), committed
by a manifest, as Spark's file sink commits through `_spark_metadata`.

Layout of `path`:

* data files `[<col>=<value>/...]<query>-<task>-<batch>-<n>.parquet`, partitioned by the
  `partition_by` columns (Hive style), each written under a temporary name and renamed;
* `_weir_metadata/<query>-<task>-<batch>.json`, written (atomically) after the batch's data
  files: the files the batch committed.

Idempotent: a batch whose manifest exists is skipped, and a batch written again after a crash
(same identity, same rows: weir.service.runtime.plans) rewrites the same file names. A reader
that goes through the manifests (`read_parquet`) never sees a file of an uncommitted batch or
a half-written file; a reader that lists the folder may, as with Spark's file sink.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from weir.service.sinks.arrow import UNFIT, Schema, as_schema, to_table
from weir.service.sinks.base import BatchIdentity, Delivery, Sink, SinkBatch, SinkFailure

METADATA = "_weir_metadata"


class ParquetSink(Sink):
    """Rows to Parquet files under `path` with a fixed `schema`; see the module docstring.

    A row without a column gets null; a value that does not fit its column's type fails the
    batch with the column and the reason (`SinkFailure`), so nothing of it is committed."""

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
        files = []
        for i, (folder, part) in enumerate(self._parts(table)):
            rel = Path(folder) / f"{name}-{i}.parquet"
            _write_atomically(self.path / rel, lambda p, t=part: pq.write_table(t, p))
            files.append(str(rel))
        entry = {"batch": batch.identity.batch_id, "task": batch.identity.task, "files": files}
        _write_atomically(manifest, lambda p: p.write_bytes(orjson.dumps(entry)))

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
    """The committed rows of a Parquet sink's table: only files a manifest lists (partition
    columns restored from the folder names); an empty table when nothing is committed."""
    root = Path(path)
    tables = []
    for manifest in sorted((root / METADATA).glob("*.json")):
        for rel in orjson.loads(manifest.read_bytes())["files"]:
            t = pq.read_table(root / rel)
            for part in reversed(Path(rel).parent.parts):
                col, _, value = part.partition("=")
                t = t.append_column(col, pa.array([value] * t.num_rows, pa.string()))
            tables.append(t)
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def _batch_name(ident: BatchIdentity) -> str:
    query = re.sub(r"[^A-Za-z0-9_.-]", "_", ident.query)
    return f"{query}-{ident.task}-{ident.batch_id:08d}"


def _write_atomically(target: Path, write: Any) -> None:
    """Write through a temporary name in the same folder, then rename over `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    write(tmp)
    os.replace(tmp, target)


def _path_value(v: Any) -> str:
    text = "__HIVE_DEFAULT_PARTITION__" if v is None else str(v)
    return re.sub(r"[/\\=]", "_", text)
