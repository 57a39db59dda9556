"""The Delta Lake sink (the `deltalake` package, no JVM): append or merge each batch into a
Delta table, exactly once through Delta's application transactions.

Each commit carries the transaction (app id, version) = ("<query>-<task>", batch number); a
batch whose version the table already holds for its app id is skipped, so a batch run again
after a crash (same identity, same rows: weir.service.runtime.plans) changes nothing, and
neither does a retry after a commit that went through but was not answered. The check and
the commit are one step: the commit must be the next version after the snapshot the check
read (delta-rs's own commit retries are off), so two writers of the same batch at once (a
worker and the one taking its partition over) commit it once. delta-rs's conflict check
alone lets both commit (seen with deltalake 1.6 under load), as it does not treat the
check's read of the app id as part of the transaction.

Concurrent writers: tasks of one query, other queries or other programs may commit to the
same table. A commit that finds the table moved on since its snapshot, or that conflicts
(delta-rs's `CommitFailedError`: a merge racing an append that added files, an append or
merge racing a merge, delete or overwrite that removed files), is tried again from a fresh
snapshot, `CONFLICT_RETRIES` times with jittered backoff and one warning each (writing the
batch's data files again: the failed attempt's are left unreferenced, for `vacuum`); a
batch still conflicting fails as a transient `SinkFailure`, which the worker retries without
limit. Writers racing on one table thus cost retries, not correctness (a merge racing a
steady stream of appends waits for a gap).

Files: delta-rs writes data files under new unique names and commits by creating the next
`_delta_log` entry atomically, so a reader (`DeltaTable(path).to_pyarrow_table()`) sees a
batch whole or not at all, also when a write fails midway (the data files written are left
unreferenced, for `vacuum`). A write the file system refuses fails the batch with one line,
"delta[<path>]: cannot write <path>: <OS reason>" (`files.cannot_write`), not transient, as
for the Parquet sink: retried `max_batch_retries` times, then `on_batch_failure`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from weir.service.sinks.arrow import UNFIT, Schema, as_schema, to_table
from weir.service.sinks.base import Delivery, Sink, SinkBatch, SinkFailure
from weir.service.sinks.files import cannot_write, ensure_folder, one_line, os_reason

log = logging.getLogger("weir.worker")

CONFLICT_RETRIES = 6
"""Retries of a conflicting commit from a fresh snapshot, before the batch fails (transient)."""
CONFLICT_BACKOFF_S = 0.05
"""The first wait before such a retry; it doubles, up to 1 s, with jitter."""


class DeltaSink(Sink):
    """Rows into the Delta table at `path` with a fixed `schema`: appended, or merged on
    `keys` (an existing row with the same keys is updated, others inserted). The table is
    created by the first batch. A value that does not fit its column fails the batch.
    Concurrent writers and failing writes: see the module docstring."""

    delivery: Delivery = "idempotent"

    def __init__(
        self,
        path: str | Path,
        schema: Schema,
        mode: Literal["append", "merge"] = "append",
        keys: Sequence[str] = (),
        partition_by: Sequence[str] = (),
    ) -> None:
        self.path = str(path)
        self.schema = as_schema(schema)
        if mode not in ("append", "merge"):
            raise ValueError(f"mode must be 'append' or 'merge', not {mode!r}")
        if mode == "merge" and not keys:
            raise ValueError("a merge needs keys=[...]: the columns that identify a row")
        unknown = [c for c in (*keys, *partition_by) if c not in self.schema.names]
        if unknown:
            raise ValueError(f"columns {unknown} are not in the schema")
        self.mode = mode
        self.keys = tuple(keys)
        self.partition_by = list(partition_by)

    @property
    def description(self) -> str:
        return f"delta[{self.path}]"

    async def write(self, batch: SinkBatch) -> None:
        try:
            table = to_table(batch.rows, self.schema)
        except UNFIT as exc:
            raise SinkFailure(f"{self.description}: a row does not fit the schema: {exc}") from exc
        ident = batch.identity
        await asyncio.to_thread(self._commit, table, f"{ident.query}-{ident.task}", ident.batch_id)

    def _commit(self, table: pa.Table, app_id: str, version: int) -> None:
        """Commit the batch once: retried from a fresh snapshot while it conflicts with
        another writer's commit (a retry finding the batch's version in the table is a
        no-op). Raises SinkFailure: transient for a conflict that outlasts the retries or a
        file system away, permanent for a refused write or another Delta error."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                if not self.path.partition("://")[1]:  # a local table: its folder, or why not
                    ensure_folder(Path(self.path))
                self._commit_once(table, app_id, version)
                return
            except CommitFailedError as exc:
                why = one_line(exc)
                if attempt == CONFLICT_RETRIES:
                    raise SinkFailure(
                        f"{self.description}: batch {app_id}/{version} still conflicts with "
                        f"concurrent commits after {attempt} retries: {why}",
                        transient=True,
                    ) from exc
                wait = min(1.0, CONFLICT_BACKOFF_S * 2**attempt) * random.uniform(0.5, 1.5)
                log.warning(
                    "%s: batch %s/%d conflicts with a concurrent commit (%s); retry %d in %.2fs",
                    self.description,
                    app_id,
                    version,
                    why,
                    attempt + 1,
                    wait,
                )
                time.sleep(wait)
            except (OSError, DeltaError) as exc:
                if os_reason(exc) is not None:
                    raise cannot_write(self.description, self.path, exc) from exc
                raise SinkFailure(f"{self.description}: {one_line(exc)}") from exc

    def _commit_once(self, table: pa.Table, app_id: str, version: int) -> None:
        """One Delta commit of the batch, unless the table has its version already; raises
        CommitFailedError when another commit (or the table's creation) came first."""
        try:
            dt: DeltaTable | None = DeltaTable(self.path)
        except TableNotFoundError:
            dt = None
        if dt is not None:
            done = dt.transaction_version(app_id)
            if done is not None and done >= version:
                return
        # the next version after `dt` or a CommitFailedError: nobody committed the batch since
        props = CommitProperties(
            app_transactions=[Transaction(app_id, version)], max_commit_retries=0
        )
        if dt is None or self.mode == "append":
            write_deltalake(
                self.path if dt is None else dt,
                table,
                mode="append",
                partition_by=self.partition_by or None,
                commit_properties=props,
            )
            return
        on = " AND ".join(f"t.{k} = s.{k}" for k in self.keys)
        (
            dt.merge(table, on, source_alias="s", target_alias="t", commit_properties=props)
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )


def delta(
    path: str | Path,
    schema: Schema,
    mode: Literal["append", "merge"] = "append",
    keys: Sequence[str] = (),
    partition_by: Sequence[str] = (),
) -> DeltaSink:
    """Spark's `format("delta")` in append mode, or a `DeltaTable.merge` upsert on `keys`."""
    return DeltaSink(path, schema, mode, keys, partition_by)
