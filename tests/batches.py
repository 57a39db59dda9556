"""Driving a query's task batch by batch without a broker, for the operator tests."""

from __future__ import annotations

from weir.tables.operator import Row
from weir.tables.query import Query
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
