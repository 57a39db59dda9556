"""The memory sink: a named in-process table of a query's output, for tests and notebooks,
as Spark's memory sink. Not durable: it lives as long as the process."""

from __future__ import annotations

from typing import Any

from weir.service.codec import render_rows
from weir.service.sinks.base import Delivery, Sink, SinkBatch

_TABLES: dict[str, list[dict[str, Any]]] = {}
_LAST: dict[tuple[str, str, int], int] = {}
"""Per (table, query, task): the last batch added, so a batch passed again is not added
twice."""


class MemorySink(Sink):
    """Adds each batch's rows (times in ISO-8601 UTC) to the table `name`; in complete mode
    (`complete=True`) a batch replaces the rows its task added before, as Spark's memory sink
    does. Idempotent within the process: a batch of a task at or below its last batch added
    is skipped."""

    delivery: Delivery = "idempotent"

    def __init__(self, name: str, complete: bool = False) -> None:
        if not name:
            raise ValueError("a memory table needs a name")
        self.name = name
        self.complete = complete
        _TABLES.setdefault(name, [])

    @property
    def description(self) -> str:
        return f"memory[{self.name}]"

    async def write(self, batch: SinkBatch) -> None:
        ident = batch.identity
        mark = (self.name, ident.query, ident.task)
        last = _LAST.get(mark)
        if last is not None and ident.batch_id <= last:
            return
        rows = render_rows(batch.rows, batch.timestamp_columns)
        for r in rows:
            r["_task"] = ident.task
        table = _TABLES.setdefault(self.name, [])
        if self.complete:
            table[:] = [r for r in table if r.get("_task") != ident.task]
        table.extend(rows)
        _LAST[mark] = ident.batch_id


def memory(name: str, complete: bool = False) -> MemorySink:
    """Spark's `format("memory").queryName(name)`: read it back with `memory_table(name)`."""
    return MemorySink(name, complete)


def memory_table(name: str) -> list[dict[str, Any]]:
    """The rows of memory table `name` so far, in the order added (without the task column);
    raises KeyError for a table no sink created."""
    if name not in _TABLES:
        raise KeyError(f"no memory table {name!r}: create it with memory({name!r})")
    return [{k: v for k, v in r.items() if k != "_task"} for r in _TABLES[name]]


def drop_memory_table(name: str) -> None:
    """Forget memory table `name` (and which batches it holds)."""
    _TABLES.pop(name, None)
    for mark in [m for m in _LAST if m[0] == name]:
        del _LAST[mark]
