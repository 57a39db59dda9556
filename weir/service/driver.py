"""The micro-batch driver, the one path a batch takes in the worker and in `weir replay`:

decode the records (bad values are rejected with their record) -> run the query -> the rows
it rejects, traced back to their input records -> late rows -> the sinks.

What is environment-specific stays outside: the source that read the records, the
`Rejects` that keeps failures (dead-letter topic or file) and the sinks. Nothing here commits:
the caller makes the batch durable (the worker's checkpoint) or moves on (replay).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from weir.service import metrics
from weir.service.codec import decode_values
from weir.service.record_columns import add_record_columns
from weir.service.sinks.base import BatchIdentity, KafkaRecords, Sink, SinkBatch
from weir.service.sources.base import SourceRecord, values_of
from weir.tables.operator import ErrorStage, Row
from weir.tables.query import BatchResult, QueryTask
from weir.tables.schema import Schema, SchemaError


class Rejects(Protocol):
    """Where a batch's failures go (dead letters) and its late rows."""

    def record(self, rec: SourceRecord, reason: str, stage: ErrorStage) -> None:
        """Input record `rec` failed (or a row made from it), for `reason`."""
        ...

    def row(self, row: Row, reason: str, stage: ErrorStage) -> None:
        """A row that comes from no single input record (an aggregate) failed."""
        ...

    def late(self, rows: list[tuple[str, Row]]) -> None:
        """Rows dropped as late, with the operator that dropped them."""
        ...


@dataclass
class Driven:
    """A batch through the driver, not yet durable."""

    result: BatchResult
    n_input: int
    """Input records of the batch (decoded or not)."""
    decoded_at: float
    """Monotonic time when decoding ended."""
    output: SinkBatch | None
    """What the sinks get (None: the batch emitted no row)."""


class _Kept:
    """The records behind each input's decoded rows, to trace a row back to its record."""

    def __init__(self) -> None:
        self.by_input: dict[str, tuple[Sequence[SourceRecord], list[int] | None]] = {}

    def record_of(self, origin: tuple[str, int] | None) -> SourceRecord | None:
        """The record behind row `origin` = (input, position among its decoded rows)."""
        if origin is None:
            return None
        recs, positions = self.by_input[origin[0]]
        return recs[origin[1] if positions is None else positions[origin[1]]]


def _conform(
    rows: list[Row],
    order: Sequence[int],
    recs: Sequence[SourceRecord],
    schema: Schema,
    rejects: Rejects,
) -> tuple[list[Row], list[int]]:
    """The rows that fit `schema`, conformed, with the positions of their records; each misfit
    is rejected with its record, the field and the reason."""
    good: list[Row] = []
    kept: list[int] = []
    for i, row in zip(order, rows, strict=True):
        try:
            good.append(schema.conform(row))
        except SchemaError as exc:
            rejects.record(recs[i], f"schema: {exc}", "schema")
            continue
        kept.append(i)
    return good, kept


def _decode(
    records: Mapping[str, Sequence[SourceRecord]],
    inputs: Sequence[str],
    aliases: Mapping[str, str],
    route: str | None,
    rejects: Rejects,
    kept: _Kept,
    schemas: Mapping[str, Schema],
    columns: Mapping[str, str],
) -> dict[str, list[Row]]:
    rows_by_input: dict[str, list[Row]] = {}
    for topic, recs in records.items():
        rows, errors = decode_values(values_of(recs))
        positions: list[int] | None = None
        if errors:
            for i, reason in errors:
                rejects.record(recs[i], reason, "decode")
            failed = {i for i, _ in errors}
            positions = [i for i in range(len(recs)) if i not in failed]
        if route is None:
            name = aliases.get(topic, topic)
            schema = schemas.get(name)
            if schema is not None:
                order = positions if positions is not None else range(len(recs))
                rows, positions = _conform(rows, order, recs, schema, rejects)
            if columns:
                add_record_columns(rows, recs, positions, columns)
            rows_by_input[name] = rows
            kept.by_input[name] = (recs, positions)
            continue
        # One stream carrying several inputs: each row names its input in column `route`.
        order = positions if positions is not None else range(len(recs))
        routed: dict[str, tuple[list[Row], list[int]]] = {n: ([], []) for n in inputs}
        for i, row in zip(order, rows, strict=True):
            name = row.pop(route, None)
            target = routed.get(name) if isinstance(name, str) else None
            if target is None:
                why = f"{route} must be one of {list(inputs)}, got {name!r}"
                rejects.record(recs[i], why, "schema")
                continue
            target[0].append(row)
            target[1].append(i)
        for name, (rs, source) in routed.items():
            schema = schemas.get(name)
            if schema is not None:
                rs, source = _conform(rs, source, recs, schema, rejects)
            if columns:
                add_record_columns(rs, recs, source, columns)
            rows_by_input[name] = rs
            kept.by_input[name] = (recs, source)
    return rows_by_input


def process(
    task: QueryTask,
    records: Mapping[str, Sequence[SourceRecord]],
    *,
    now: int,
    rejects: Rejects,
    identity: BatchIdentity,
    event_time_limit: int | None = None,
    aliases: Mapping[str, str] | None = None,
    route: str | None = None,
    positions: Mapping[str, int] | None = None,
    transaction: KafkaRecords | None = None,
    schemas: Mapping[str, Schema] | None = None,
    record_columns: Mapping[str, str] | None = None,
    source_state: Mapping[bytes, Any] | None = None,
) -> Driven:
    """Run one micro-batch of `task` up to its sinks: `records` per source topic (an empty
    mapping is a no-data batch) at processing time `now` (epoch ms).

    `aliases` maps a source topic to the query input it feeds (repartition topics); `route`
    names the column that says which input a row feeds when one source carries several
    (replay). Rows with an event time after `event_time_limit` are rejected. `positions`
    (per source topic, the position after the batch) are committed with the state.
    `schemas` (per query input) conform each decoded row, rejecting a misfit with its record
    (weir.tables.schema); `record_columns` adds the record's own fields to every row
    (weir.service.record_columns); `source_state` is committed with the state too (what a
    source needs to find its positions again). The returned `output` is what the sinks get: the rows
    with the batch identity (`identity.batch_id` is set from the task) and `transaction`
    for transactional sinks.
    Raises what the query raises (the batch could not run at all); the task's state is
    untouched until the caller commits."""
    kept = _Kept()
    inputs = task.query.inputs
    schemas = schemas or {}
    rows_by_input = _decode(
        records, inputs, aliases or {}, route, rejects, kept, schemas, record_columns or {}
    )
    n_input = sum(len(recs) for recs in records.values())
    decoded_at = time.monotonic()
    result = task.run_batch(rows_by_input, now, event_time_limit, positions, source_state)
    ctx = result.ctx
    for (row, reason, stage), origin in zip(ctx.errors, result.error_origins, strict=True):
        rec = kept.record_of(origin)
        if rec is not None:
            rejects.record(rec, reason, stage)
        else:
            rejects.row(row, reason, stage)
    if ctx.late_rows:
        rejects.late(ctx.late_rows)
    output = None
    if result.rows:
        output = SinkBatch(
            BatchIdentity(identity.query, identity.task, result.batch_id, identity.inputs),
            result.rows,
            task.query.timestamp_columns,
            lambda: [kept.record_of(o) for o in result.row_origins()],
            transaction,
        )
    return Driven(result, n_input, decoded_at, output)


async def run_batch(
    task: QueryTask,
    records: Mapping[str, Sequence[SourceRecord]],
    *,
    sinks: Sequence[Sink] = (),
    **options: Any,
) -> Driven:
    """`process` the batch (same arguments), then write its rows to `sinks` in order. Raises
    what `process` raises and `SinkFailure`; a sink's failure counts in
    `weir_sink_write_failures`, a success's time in `weir_sink_write_seconds`."""
    driven = process(task, records, **options)
    if driven.output is not None:
        labels = metrics.current()
        for sink in sinks:
            began = time.monotonic()
            try:
                await sink.write(driven.output)
            except Exception:
                metrics.SINK_WRITE_FAILURES.labels(*labels, sink.description).inc()
                raise
            metrics.SINK_SECONDS.labels(*labels, sink.description).observe(time.monotonic() - began)
    return driven
