"""A task's micro-batch on Kafka, from the records read to everything the checkpoint writes.

The driver (weir.service.driver) decodes, runs the query and hands the rows to the agent's
sinks; here its rejects become dead-letter records with their source position, late rows go
to the late topic, and the state changes become changelog records. Records too large for
their topic become dead letters. Nothing is written here: the checkpoint writes the
`Outgoing` all or nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.structs import TopicPartition

from weir.service import driver
from weir.service.codec import render_row
from weir.service.runtime import topics
from weir.service.runtime.checkpoint import Outgoing, batch_position, json_or_repr, source_of
from weir.service.runtime.plans import ranges_of
from weir.service.runtime.topology import Stage
from weir.service.sinks.base import BatchIdentity, Sink
from weir.service.sources.base import SourceRecord, TopicRecords
from weir.tables.operator import ErrorStage, Row
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


class KafkaRejects:
    """Failures as dead-letter records (original key and bytes, source position in headers)
    and late rows to the agent's late topic."""

    def __init__(self, stage: Stage, out: Outgoing, batch_source: Any) -> None:
        self.stage = stage
        self.agent = stage.agent
        self.out = out
        self.batch_source = batch_source

    def record(self, rec: SourceRecord, reason: str, stage: ErrorStage) -> None:
        source = source_of(rec, self.stage.aliases)
        self.out.dead_letter(rec.key, rec.value, reason, stage, source)

    def row(self, row: Row, reason: str, stage: ErrorStage) -> None:
        self.out.dead_letter(None, json_or_repr(row), reason, stage, self.batch_source)

    def late(self, rows: list[tuple[str, Row]]) -> None:
        late_topic = self.agent.late_topic
        if late_topic is None:
            return
        ts_cols = self.agent.query.timestamp_columns
        for op_name, row in rows:
            value = orjson.dumps(render_row(row, ts_cols))
            self.out.add(late_topic.name, None, value, [("operator", op_name.encode())])


async def run_batch(
    stage: Stage,
    sinks: Sequence[Sink],
    query: QueryTask,
    partition: int,
    recs: TopicRecords,
    offsets: dict[TopicPartition, int],
    out: Outgoing,
    limits: dict[str, topics.TopicLimits],
    now: int,
    event_time_limit: int | None,
    source_state: Mapping[bytes, Any] | None = None,
) -> Batch:
    """Run one micro-batch of `partition` of `stage` (records per input topic) through `query` at
    processing time `now`, collecting what it writes in `out`; `offsets` are the input offsets
    to commit with it and `source_state` what the source keeps with it (the source's
    `offsets_after` and `state_for`). Raises SinkFailure when a sink raises; the
    query's own failures propagate."""
    agent = stage.agent
    ranges = ranges_of(recs)
    sources = []
    for topic, rs in recs.items():
        sources.append(
            {
                "description": f"kafka[{topic}]",
                "startOffset": {topic: {str(partition): rs[0].offset}},
                "endOffset": {topic: {str(partition): rs[-1].offset + 1}},
                "numInputRows": len(rs),
            }
        )
    batch_source = batch_position(recs, partition, agent.inputs[0].name)
    driven = await driver.run_batch(
        query,
        recs,
        now=now,
        rejects=KafkaRejects(stage, out, batch_source),
        sinks=sinks,
        identity=BatchIdentity(agent.group_id, partition, query.next_batch_id, ranges),
        event_time_limit=event_time_limit,
        aliases=stage.aliases,
        schemas=agent.schemas,
        record_columns=agent.record_columns,
        source_state=source_state,
        positions={topic: end for topic, (_first, end) in ranges.items()},
        transaction=out,
    )
    result = driven.result
    changes = result.txn.changes()
    out.add_all(agent.changelog_topic, changes.items(), partition=partition)
    keep = {agent.changelog_topic, stage.dead_letter_topic}  # their refusal fails the batch
    out.divert_oversized(limits, keep, batch_source)
    return Batch(result, out, offsets, changes, sources, driven.n_input, driven.decoded_at)
