"""A micro-batch of one task, from the records read to everything the checkpoint writes.

Decode (bad values become dead letters) -> run the query -> the rows it rejects become dead
letters with the record they came from -> late rows -> the foreach-batch function -> the sink
records -> the state changes for the changelog -> records too large for their topic become
dead letters. Nothing is written here: the checkpoint writes the `Outgoing` all or nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition

from weir.service import metrics
from weir.service.app import Agent
from weir.service.codec import decode_values, encode_key, encode_rows, render_row
from weir.service.runtime import topics
from weir.service.runtime.checkpoint import (
    SOURCE_HEADER,
    Outgoing,
    batch_position,
    json_or_repr,
    source_of,
    source_value,
)
from weir.service.runtime.failures import SinkFailure
from weir.tables.operator import Row
from weir.tables.query import BatchResult, QueryTask


@dataclass
class Batch:
    """A task's micro-batch, run and ready for its checkpoint."""

    result: BatchResult
    out: Outgoing
    """Every record the checkpoint writes: outputs, dead letters, late rows, changelog."""
    offsets: dict[TopicPartition, int]
    """The input offsets to commit with it."""
    changes: dict[bytes, bytes | None]
    """The encoded state changes (also in `out`, for the changelog)."""
    sources: list[dict[str, Any]]
    """Per input, its offsets in progress-record form."""
    n_input: int
    decoded_at: float
    """Monotonic time when decoding ended."""


class _Records:
    """The batch's records per query input, and the rows decoded from them."""

    def __init__(self) -> None:
        self.kept: dict[str, tuple[list[ConsumerRecord], list[int] | None]] = {}

    def record_of(self, origin: tuple[str, int] | None) -> ConsumerRecord | None:
        """The record behind row `origin` = (input, position among its decoded rows)."""
        if origin is None:
            return None
        rs, positions = self.kept[origin[0]]
        return rs[origin[1] if positions is None else positions[origin[1]]]


async def run_batch(
    agent: Agent,
    query: QueryTask,
    partition: int,
    recs: dict[str, list[ConsumerRecord]],
    out: Outgoing,
    limits: dict[str, topics.TopicLimits],
    now: int,
    event_time_limit: int | None,
) -> Batch:
    """Run one micro-batch of `partition` (records per input topic) through `query` at
    processing time `now`, collecting what it writes in `out`. Raises SinkFailure when the
    foreach-batch function raises; the query's own failures propagate."""
    records = _Records()
    rows_by_input: dict[str, list[Row]] = {}
    offsets: dict[TopicPartition, int] = {}
    sources = []
    n_input = 0
    for topic, rs in recs.items():
        rows, errors = decode_values([r.value for r in rs])
        alias = agent.aliases.get(topic, topic)
        records.kept[alias] = (rs, None)
        if errors:
            for i, reason in errors:
                r = rs[i]
                out.dead_letter(r.key, r.value, reason, "decode", source_of(r, agent.aliases))
            failed = {i for i, _ in errors}
            records.kept[alias] = (rs, [i for i in range(len(rs)) if i not in failed])
        rows_by_input[alias] = rows
        n_input += len(rs)
        offsets[TopicPartition(topic, partition)] = rs[-1].offset + 1
        sources.append(
            {
                "description": f"kafka[{topic}]",
                "startOffset": {topic: {str(partition): rs[0].offset}},
                "endOffset": {topic: {str(partition): rs[-1].offset + 1}},
                "numInputRows": len(rs),
            }
        )
    batch_source = batch_position(recs, partition, agent.inputs[0].name)
    decoded_at = time.monotonic()
    positions = {tp.topic: offset for tp, offset in offsets.items()}
    result = query.run_batch(rows_by_input, now, event_time_limit, positions)
    ctx = result.ctx
    for (row, reason, stage), origin in zip(ctx.errors, result.error_origins, strict=True):
        record = records.record_of(origin)
        if record is not None:
            source = source_of(record, agent.aliases)
            out.dead_letter(record.key, record.value, reason, stage, source)
        else:
            out.dead_letter(None, json_or_repr(row), reason, stage, batch_source)
    if ctx.late_rows:
        metrics.LATE_ROWS.labels(agent.name).inc(len(ctx.late_rows))
        if agent.late_topic is not None:
            ts_cols = agent.query.timestamp_columns
            for op_name, row in ctx.late_rows:
                out.add(
                    agent.late_topic.name,
                    None,
                    orjson.dumps(render_row(row, ts_cols)),
                    [("operator", op_name.encode())],
                )
    if agent.foreach_batch is not None and result.rows:
        await _foreach_batch(agent, result)
    if agent.sink is not None and result.rows:
        _sink_records(agent, result, records, out)
    changes = result.txn.changes()
    for state_key, state_value in changes.items():
        out.add(agent.changelog_topic, state_key, state_value, partition=partition)
    out.divert_oversized(limits, {agent.changelog_topic, agent.dead_letter_topic}, batch_source)
    return Batch(result, out, offsets, changes, sources, n_input, decoded_at)


async def _foreach_batch(agent: Agent, result: BatchResult) -> None:
    assert agent.foreach_batch is not None
    ts_cols = agent.query.timestamp_columns
    try:
        res = agent.foreach_batch([render_row(r, ts_cols) for r in result.rows], result.batch_id)
        if asyncio.iscoroutine(res):
            await res
    except Exception as exc:
        raise SinkFailure(f"foreach_batch failed: {type(exc).__name__}: {exc}") from exc


def _sink_records(agent: Agent, result: BatchResult, records: _Records, out: Outgoing) -> None:
    assert agent.sink is not None
    sink = agent.sink.name
    if agent.raw_output:  # a repartition stage: each row names its input record
        for row, origin in zip(result.rows, result.row_origins(), strict=True):
            r = records.record_of(origin)
            hdrs = [] if r is None else [(SOURCE_HEADER, source_value(r))]
            out.add(sink, encode_key(row, agent.key), orjson.dumps(row), hdrs)
        return
    values = encode_rows(result.rows, agent.query.timestamp_columns)
    if agent.key:
        for row, value in zip(result.rows, values, strict=True):
            out.add(sink, encode_key(row, agent.key), value)
    else:
        for value in values:
            out.add(sink, None, value)
