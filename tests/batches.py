"""Driving a query's task batch by batch without a broker, for the operator tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from weir.tables.operator import Row
from weir.tables.query import Query
from weir.tables.state.rocksdb import RocksDBStore
from weir.tables.state.store import Store


def run(query: Query, store: Store, batches: list[list[Row]]) -> list[list[Row]]:
    """Each batch's output rows, every batch committed; an empty batch is a no-data batch.
    The rows are copied first (operators may change their input rows)."""
    task = query.task(store)
    outs = []
    for batch in batches:
        result = task.run_batch({"events": [dict(r) for r in batch]} if batch else {}, 0)
        task.commit(result)
        outs.append(result.rows)
    return outs


def run_restarting(
    make: Callable[[], Query], path: Path, batches: list[list[Row]]
) -> list[list[Row]]:
    """`run`, as a new process per batch: a new query and a reopened RocksDB store at `path`
    each batch, so only the store carries state from one batch to the next."""
    outs: list[list[Row]] = []
    for batch in batches:
        db = RocksDBStore(path)
        try:
            outs.extend(run(make(), db, [batch]))
        finally:
            db.close()
    return outs
