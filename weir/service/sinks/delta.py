"""The Delta Lake sink (the `deltalake` package, no JVM): append or merge each batch into a
Delta table, exactly once through Delta's application transactions.

Each commit carries the transaction (app id, version) = ("<query>-<task>", batch number); a
batch whose version the table already holds for its app id is skipped, so a batch run again
after a crash (same identity, same rows: weir.service.runtime.plans) changes nothing. Tasks of
one query commit to the same table; Delta retries a commit that races another (blind appends
never conflict), and a merge that still conflicts fails the batch, which is retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from weir.service.sinks.arrow import UNFIT, Schema, as_schema, to_table
from weir.service.sinks.base import Delivery, Sink, SinkBatch, SinkFailure

MAX_COMMIT_RETRIES = 20


class DeltaSink(Sink):
    """Rows into the Delta table at `path` with a fixed `schema`: appended, or merged on
    `keys` (an existing row with the same keys is updated, others inserted). The table is
    created by the first batch. A value that does not fit its column fails the batch."""

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
        """One Delta commit of the batch, unless the table has its version already."""
        try:
            dt: DeltaTable | None = DeltaTable(self.path)
        except TableNotFoundError:
            dt = None
        if dt is not None:
            done = dt.transaction_version(app_id)
            if done is not None and done >= version:
                return
        props = CommitProperties(
            app_transactions=[Transaction(app_id, version)],
            max_commit_retries=MAX_COMMIT_RETRIES,
        )
        if dt is None or self.mode == "append":
            write_deltalake(
                self.path,
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
