"""The checkpoint: one task's micro-batch made durable, all or nothing.

For one task (input partition p) and one micro-batch:

1. the driver decodes the batch's records, runs the query and collects everything the batch
   writes in an `Outgoing`: outputs, dead letters, late rows and the state changes for the
   changelog; records too large for their topic become dead letters (`divert_oversized`);
2. a transaction on the task's own transactional producer (`<app>-<agent>-<p>`) takes the
   changelog and the input offsets (`send_offsets_to_transaction`), and under exactly_once the
   outputs too; every send is acknowledged before it commits. Under at_least_once the outputs
   and dead letters go first, on the agent's shared idempotent producer, and are all
   acknowledged before the transaction begins. A refused record fails the checkpoint; it is
   never skipped (`Committer.commit`);
3. only then the state changes are committed to the local store, with the changelog offset
   they reach.

Any failure aborts the whole checkpoint: the transaction is aborted, the task is rebuilt from
its local store plus the changelog tail and the consumer rewinds to the committed offsets, so
no output is duplicated (exactly_once) and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from weir.service import dead_letters
from weir.service.dead_letters import SourcePosition
from weir.service.runtime import topics
from weir.service.sinks.kafka import SOURCE_HEADER
from weir.service.sources.base import POSITION_HEADERS, SourceRecord
from weir.tables.operator import ErrorStage

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
"""(key, value, headers) of a record to produce."""


@dataclass
class Outgoing:
    """Records of one checkpoint, per topic."""

    dead_letter_topic: str
    dead_letter_limit: int
    """The dead-letter topic's max.message.bytes: larger dead letters are truncated."""
    records: dict[str, list[Record]] = field(default_factory=dict)
    partitions: dict[str, int | None] = field(default_factory=dict)
    """Fixed partition per topic (changelog: the task's), or None for key hashing."""
    dead_by_reason: dict[str, int] = field(default_factory=dict)
    """Dead letters added, per reason (the failure's stage)."""

    @property
    def n_dead(self) -> int:
        """Dead letters added."""
        return sum(self.dead_by_reason.values())

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        self.records.setdefault(topic, []).append((key, value, headers or []))
        self.partitions.setdefault(topic, partition)

    def add_all(
        self,
        topic: str,
        pairs: Iterable[tuple[bytes | None, bytes | None]],
        partition: int | None = None,
    ) -> None:
        """`add` each (key, value) of `pairs`, without headers, in their order."""
        recs: list[Record] = [(k, v, []) for k, v in pairs]
        if recs:
            self.records.setdefault(topic, []).extend(recs)
            self.partitions.setdefault(topic, partition)

    def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        error: str,
        stage: ErrorStage,
        source: SourcePosition | None,
    ) -> None:
        """Add a dead letter (truncated to fit the topic; see weir.service.dead_letters)."""
        hdrs = dead_letters.headers(error, stage, source)
        key, value, hdrs = dead_letters.fit(key, value, hdrs, self.dead_letter_limit)
        self.add(self.dead_letter_topic, key, value, hdrs)
        self.dead_by_reason[stage] = self.dead_by_reason.get(stage, 0) + 1

    def divert_oversized(
        self, limits: dict[str, topics.TopicLimits], keep: set[str], source: SourcePosition
    ) -> None:
        """Move records too large for their topic to the dead letters (stage "size"); topics
        in `keep` are left alone (their refusal fails the checkpoint)."""
        for topic, recs in list(self.records.items()):
            if topic in keep:
                continue
            limit = limits.get(topic, topics.TopicLimits()).max_message_bytes
            # Cheap bound first: no key and value near the limit means no record over it
            # (headers are small: the error text is capped, the source header is short).
            if max((len(k or b"") + len(v or b"") for k, v, _h in recs), default=0) < limit // 2:
                continue
            fitting = []
            for key, value, hdrs in recs:
                size = dead_letters.record_size(key, value, hdrs)
                if size <= limit:
                    fitting.append((key, value, hdrs))
                else:
                    why = (
                        f"record of {size} bytes for {topic} exceeds its max.message.bytes {limit}"
                    )
                    self.dead_letter(key, value, why, "size", source)
            self.records[topic] = fitting


class Committer:
    """Sends a checkpoint's records and commits its offsets, for one agent's tasks."""

    def __init__(self, group_id: str, changelog: str) -> None:
        self.group_id = group_id
        self.changelog = changelog
        self._partitioner = DefaultPartitioner()
        self._partition_counts: dict[str, list[int]] = {}
        self.written: dict[TopicPartition, int] = {}
        """Per topic partition, the offset after the last record a committed checkpoint
        wrote (what a read_committed reader must reach to have read all of it)."""

    async def commit(
        self,
        producer: AIOKafkaProducer,
        task_partition: int,
        out: Outgoing,
        offsets: dict[TopicPartition, int],
        outputs: AIOKafkaProducer | None = None,
    ) -> int | None:
        """Produce the checkpoint's records and commit the offsets. Every record is
        acknowledged before the offsets are committed, so a refused record fails the
        checkpoint instead of being skipped. Return the changelog offset after this
        checkpoint's records (None when it wrote none).

        `producer` is the task's transactional producer: the changelog and the offsets always
        commit together in its transaction, so the state and the input position never part,
        and a previous owner still running (a member the group already dropped) is fenced
        rather than writing state behind the new owner's back. Under exactly_once the outputs
        join that transaction; under at_least_once they go first through `outputs` and must
        all be acknowledged before the transaction begins (a crash between: duplicates,
        never loss).
        """
        results: list[tuple[str, Any, int]] = []
        if outputs is not None:
            others = [t for t in out.records if t != self.changelog]
            results = await _acknowledged(
                await self._send_all(outputs, task_partition, out, others)
            )
            if self.changelog not in out.records and not offsets:
                return None
        await producer.begin_transaction()
        try:
            mine = None if outputs is None else [self.changelog]
            results += await _acknowledged(
                await self._send_all(producer, task_partition, out, mine)
            )
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group_id)
            await producer.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            raise
        end = None
        written = self.written
        for topic, md, n in results:
            after = md.offset + n
            tp = TopicPartition(topic, md.partition)
            written[tp] = max(written.get(tp, 0), after)
            if topic == self.changelog:
                end = max(end or 0, after)
        return end

    async def _send_all(
        self,
        producer: AIOKafkaProducer,
        task_partition: int,
        out: Outgoing,
        only: Sequence[str] | None = None,
    ) -> list[tuple[str, asyncio.Future[Any], int]]:
        """Send the records of `out` (of the topics in `only`, if given), in their order."""
        futures: list[tuple[str, asyncio.Future[Any], int]] = []
        for topic, recs in out.records.items():
            if only is not None and topic not in only:
                continue
            fixed = out.partitions.get(topic)
            parts = await self._partitions(producer, topic)
            by_part: dict[int, list[Record]] = {}
            unkeyed = parts[task_partition % len(parts)]
            if fixed is not None:
                by_part[fixed] = recs
            elif all(rec[0] is None for rec in recs):
                by_part[unkeyed] = recs
            else:
                hashed = self._partitioner
                for rec in recs:
                    part = unkeyed if rec[0] is None else hashed(rec[0], parts, parts)
                    group = by_part.get(part)
                    if group is None:
                        group = by_part[part] = []
                    group.append(rec)
            for part, group in by_part.items():
                for batch, n in _batches(producer, group):
                    futures.append(
                        (topic, await producer.send_batch(batch, topic, partition=part), n)
                    )
        return futures

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        parts = self._partition_counts.get(topic)
        if parts is None:
            parts = sorted(await producer.partitions_for(topic))
            self._partition_counts[topic] = parts
        return parts


def _batches(producer: AIOKafkaProducer, recs: list[Record]) -> Iterator[tuple[Any, int]]:
    """`recs` in order in as many of `producer`'s record batches as they need, with the
    number of records in each."""
    start, total = 0, len(recs)
    while start < total:
        batch = producer.create_batch()
        n = _fill(batch, recs, start)
        if n == 0:  # the first record of an empty batch always fits: only on misuse
            raise ValueError("a record does not fit in an empty record batch")
        start += n
        yield batch, n


def _fill(batch: Any, recs: list[Record], start: int) -> int:
    """Append `recs[start:]` to the empty `batch` until it is full; return how many went in.

    aiokafka's `BatchBuilder.append` costs more than the record encoding under it, so its
    record builder is called directly when the batch has the attributes that wrapper uses
    (aiokafka 0.14); otherwise through the wrapper."""
    builder = getattr(batch, "_builder", None)
    if builder is None or getattr(batch, "_relative_offset", None) != 0:
        n = 0
        for key, value, headers in recs[start:]:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                break
            n += 1
        return n
    append = builder.append
    offset = 0
    for i in range(start, len(recs)):
        key, value, headers = recs[i]
        if append(offset, None, key, value, headers) is None:
            batch.close()  # full: as aiokafka's own append leaves it
            break
        offset += 1
    batch._relative_offset = offset
    return offset


async def _acknowledged(
    futures: list[tuple[str, asyncio.Future[Any], int]],
) -> list[tuple[str, Any, int]]:
    """Wait for every send; raise the first failure once all have ended (none is left
    with an unretrieved error)."""
    done = await asyncio.gather(*(f for _t, f, _n in futures), return_exceptions=True)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise outcome
    return [(t, md, n) for (t, _f, n), md in zip(futures, done, strict=True)]


def source_of(r: SourceRecord, aliases: Mapping[str, str]) -> SourcePosition:
    """Where record `r` came from: its own position, or for a repartition record the input
    record that stage 1 read (its `weir.source` header)."""
    original = aliases.get(r.topic)
    if original is not None:
        for name, value in r.headers:
            if name == SOURCE_HEADER:
                p, offset, ts = value.split(b":")
                return SourcePosition(original, int(p), int(offset), int(ts))
    details = tuple((k, v) for k, v in r.headers if k in POSITION_HEADERS) if r.headers else ()
    return SourcePosition(r.topic, r.partition, r.offset, r.timestamp, details=details)


def batch_position(
    recs: Mapping[str, Sequence[SourceRecord]], partition: int, default_topic: str
) -> SourcePosition:
    """The source of a failure that belongs to no single record: the batch's range."""
    for topic, rs in recs.items():
        return SourcePosition(topic, partition, offsets=(rs[0].offset, rs[-1].offset))
    return SourcePosition(default_topic, partition)


def json_or_repr(row: Any) -> bytes:
    try:
        return orjson.dumps(row, default=str)
    except TypeError:
        return repr(row).encode()
