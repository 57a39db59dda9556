"""The worker: runs each agent as a consumer group with per-partition tasks and checkpoints.

Checkpoint protocol for one task (input partition p) and one micro-batch:

1. decode the batch's records (bad ones go to the dead-letter topic), run the query;
2. exactly_once: begin a transaction on the task's own transactional producer
   (`<app>-<agent>-<p>`); produce outputs, dead letters, late rows and state changes to the
   changelog; `send_offsets_to_transaction`; commit. at_least_once: produce, wait for the
   acknowledgements, commit the offsets;
3. only then commit the state changes to the local store, with the changelog offset they reach.

Any failure aborts the whole checkpoint: the transaction is aborted, the task is rebuilt from its
local store plus the changelog tail and the consumer rewinds to the committed offsets, so no
output is duplicated (exactly_once) and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord, TopicPartition

from service import dead_letters, metrics, topics
from service.app import Agent, App, Topic
from service.codec import WHOLE_ROW, decode_values, encode_key, encode_rows, render_row
from service.dead_letters import SourcePosition
from service.plan import split
from service.settings import Settings
from tables.operator import ErrorStage, Row
from tables.query import BatchResult, Query, QueryTask
from tables.store import MemoryStore, RocksDBStore, Store

log = logging.getLogger("weir.worker")

_TXN_RETRY_BACKOFF_MS = 20
_MAX_BATCH_BYTES = 512 * 1024
_RESTORE_BATCH = 10_000


_DELETE_INTERVAL_S = 5.0
_MAX_BACKOFF_S = 10.0


class DataLossError(RuntimeError):
    """Committed offsets point before the start of the log (records were deleted by retention)
    and `fail_on_data_loss` is set."""


class BatchFailedError(RuntimeError):
    """A micro-batch failed more than `max_batch_retries` times and `on_batch_failure` is
    "fail": the worker stops with this one-line message."""


class SinkFailure(RuntimeError):
    """A sink (or a foreach-batch function) raised: the batch is retried, then the policy."""

    stage: ErrorStage = "sink"


class _Failure:
    """A task's batch that failed: its input range (the retry runs exactly it) and attempts."""

    def __init__(self, recs: dict[str, list[ConsumerRecord]]) -> None:
        self.last_offsets = {topic: rs[-1].offset for topic, rs in recs.items()}
        self.attempts = 0
        """Failures that count against `max_batch_retries`."""
        self.transient = 0
        """Failures Kafka may get over (broker away, leader moving): retried without limit."""
        self.error = ""
        self.stage: ErrorStage = "batch"

    def record(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self.stage = getattr(exc, "stage", "batch")
        if _transient(exc):
            self.transient += 1
        else:
            self.attempts += 1

    def backoff_s(self) -> float:
        n = self.attempts + self.transient
        return float(min(_MAX_BACKOFF_S, 0.25 * 2**n))

    def same_batch(self, recs: dict[str, list[ConsumerRecord]]) -> dict[str, list[ConsumerRecord]]:
        """The records of `recs` within the failed batch's range."""
        out = {}
        for topic, rs in recs.items():
            last = self.last_offsets.get(topic)
            if last is not None:
                taken = [r for r in rs if r.offset <= last]
                if taken:
                    out[topic] = taken
        return out


def _transient(exc: BaseException) -> bool:
    """True for failures that retrying may get over without anything changing (the broker
    unreachable, a leader moving, a request timing out)."""
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    return isinstance(exc, TimeoutError | ConnectionError)


async def _stop_client(client: AIOKafkaConsumer | AIOKafkaProducer | AIOKafkaAdminClient) -> None:
    """Stop a Kafka client whatever state its connections are in. A CancelledError from
    inside the client (its own tasks torn down by a lost broker) is not ours and is dropped;
    a cancellation of the calling task still propagates."""
    try:
        if isinstance(client, AIOKafkaAdminClient):
            await client.close()
        else:
            await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception as exc:
        log.debug("stopping a Kafka client failed: %r", exc)


@dataclass
class PartitionTask:
    """The state and the producer of one input partition of one agent."""

    partition: int
    store: Store
    query: QueryTask
    producer: AIOKafkaProducer | None
    changelog_offset: int = 0
    """Offset after the last changelog record that the local store reflects."""


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
"""(key, value, headers) of a record to produce."""


@dataclass
class _Outgoing:
    """Records of one checkpoint, per topic."""

    dead_letter_topic: str
    dead_letter_limit: int
    """The dead-letter topic's max.message.bytes: larger dead letters are truncated."""
    records: dict[str, list[Record]] = field(default_factory=dict)
    partitions: dict[str, int | None] = field(default_factory=dict)
    """Fixed partition per topic (changelog: the task's), or None for key hashing."""
    n_dead: int = 0

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

    def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        error: str,
        stage: ErrorStage,
        source: SourcePosition | None,
    ) -> None:
        """Add a dead letter (truncated to fit the topic; see service.dead_letters)."""
        hdrs = dead_letters.headers(error, stage, source)
        key, value, hdrs = dead_letters.fit(key, value, hdrs, self.dead_letter_limit)
        self.add(self.dead_letter_topic, key, value, hdrs)
        self.n_dead += 1

    def divert_oversized(
        self, limits: dict[str, topics.TopicLimits], keep: set[str], source: SourcePosition
    ) -> None:
        """Move records too large for their topic to the dead letters (stage "size"); topics
        in `keep` are left alone (their refusal fails the checkpoint)."""
        for topic, recs in list(self.records.items()):
            if topic in keep:
                continue
            limit = limits.get(topic, topics.TopicLimits()).max_message_bytes
            # Cheap bound first: no value near the limit means no record over it.
            if max((len(v) for _k, v, _h in recs if v is not None), default=0) < limit // 2:
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


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: AgentRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.runner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.runner.on_assigned(assigned)


class AgentRunner:
    """Runs one agent: its consumer group membership, tasks, micro-batches and checkpoints.

    Contract: between `start` and `stop`, every record of the input topics is processed into
    exactly one committed checkpoint under exactly_once (at least one under at_least_once);
    `last_progress` and `recent_progress` describe committed batches like Spark's
    `StreamingQueryProgress`. Revoked partitions finish their in-flight checkpoint first.
    """

    def __init__(self, agent: Agent, settings: Settings, bootstrap: str) -> None:
        self.agent = agent
        self.settings = settings
        self.bootstrap = bootstrap
        self.name = agent.name
        self.tasks: dict[int, PartitionTask] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.shared_producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._partitioner = DefaultPartitioner()
        self._partition_counts: dict[str, list[int]] = {}
        self.recent_progress: deque[dict[str, Any]] = deque(maxlen=100)
        self._available_now_targets: dict[TopicPartition, int] | None = None
        self.finished = asyncio.Event()
        self._eos = settings.processing_guarantee == "exactly_once"
        self.state_root = Path(settings.state_dir) / agent.app.name / agent.name
        self._fatal: BaseException | None = None
        self.upstream: list[AgentRunner] = []
        """Stage-1 runners feeding this one (available-now waits for them to finish)."""
        self._upstream_targets_taken = False
        self._failing: dict[int, _Failure] = {}
        """Partitions whose last batch failed, until it commits."""
        self._limits: dict[str, topics.TopicLimits] = {}
        """Broker limits of the topics this agent writes."""
        self._admin: AIOKafkaAdminClient | None = None
        """Open while the agent reads repartition topics (to delete what it consumed)."""
        self._to_delete: dict[TopicPartition, int] = {}
        self._next_delete = 0.0

    @property
    def last_progress(self) -> dict[str, Any] | None:
        """The progress record of the last committed micro-batch, or None."""
        return self.recent_progress[-1] if self.recent_progress else None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Create missing topics, join the consumer group."""
        await self._ensure_topics()
        await self._init_starting_offsets()
        if not self._eos:
            self.shared_producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                enable_idempotence=True,
                max_batch_size=_MAX_BATCH_BYTES,
                linger_ms=5,
            )
            await self.shared_producer.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.agent.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset=self._reset_policy(),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self.consumer.start()
        self.consumer.subscribe([t.name for t in self.agent.inputs], listener=_Listener(self))
        if self.agent.aliases:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await self._admin.start()

    async def stop(self) -> None:
        """Leave the group (closing every task after its last checkpoint) and stop producers."""
        if self.consumer is not None:
            async with self._lock:
                pass
            await _stop_client(self.consumer)  # revokes: tasks close in on_revoked
            self.consumer = None
        for p in list(self.tasks):
            await self._close_task(p)
        if self.shared_producer is not None:
            await _stop_client(self.shared_producer)
            self.shared_producer = None
        if self._admin is not None:
            self._next_delete = 0.0
            await self._delete_consumed({})
            await _stop_client(self._admin)
            self._admin = None

    async def run(self, stop: asyncio.Event) -> None:
        """Process micro-batches until `stop` is set (or, for available-now, the input ends)."""
        assert self.consumer is not None
        while not stop.is_set():
            records = await self._gather(stop)
            if self._fatal is not None:
                raise self._fatal
            async with self._lock:
                await self._run_tasks(records)
            if self.agent.trigger.kind == "available_now" and await self._caught_up():
                log.info("%s: available-now input processed; stopping", self.name)
                break
        self.finished.set()

    async def _init_starting_offsets(self) -> None:
        """Per-partition starting offsets on the first start: commit them for the group where it
        has no committed offset yet, so they take effect exactly once and committed offsets win
        afterwards (seeking in the rebalance listener would race the consumer's own reset)."""
        wanted = self.agent.starting_offsets
        if not isinstance(wanted, dict):
            return
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.agent.group_id,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            tps = {
                TopicPartition(topic, int(p)): int(offset)
                for topic, parts in wanted.items()
                for p, offset in parts.items()
            }
            consumer.assign(list(tps))
            begin = await consumer.beginning_offsets(list(tps))
            end = await consumer.end_offsets(list(tps))
            to_commit = {}
            for tp, offset in tps.items():
                if await consumer.committed(tp) is not None:
                    continue
                if offset == -2:
                    to_commit[tp] = begin[tp]
                elif offset == -1:
                    to_commit[tp] = end[tp]
                else:
                    to_commit[tp] = min(max(offset, begin[tp]), end[tp])
            if to_commit:
                await consumer.commit(to_commit)
                log.info("%s: starting offsets %s", self.name, to_commit)
        finally:
            await consumer.stop()

    def _reset_policy(self) -> str:
        so = self.agent.starting_offsets
        return so if isinstance(so, str) else self.settings.starting_offsets

    # -- rebalance -----------------------------------------------------------------------
    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Close the tasks of revoked partitions after their in-flight checkpoint."""
        async with self._lock:
            for p in sorted({tp.partition for tp in revoked}):
                await self._close_task(p)
                self._failing.pop(p, None)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Restore the state of newly assigned partitions, then position the consumer.

        The partitions stay paused until their state is restored and their committed offsets
        are checked, so no record of them is processed before that.
        """
        log.info("%s: assigned partitions %s", self.name, sorted({tp.partition for tp in assigned}))
        assert self.consumer is not None
        self.consumer.pause(*assigned)
        try:
            async with self._lock:
                await self._open_assigned(assigned)
        except Exception as exc:
            # aiokafka only logs listener errors; the run loop stops the worker with this one
            # rather than leaving the partitions paused forever.
            self._fatal = exc
            return
        self.consumer.resume(*assigned)

    async def _open_assigned(self, assigned: list[TopicPartition]) -> None:
        """Open the tasks of `assigned` and position them; while the broker is unreachable,
        retry with backoff (a cancelled rebalance stops it)."""
        delay = 0.5
        while True:
            try:
                for p in sorted({tp.partition for tp in assigned}):
                    if p not in self.tasks:
                        self.tasks[p] = await self._open_task(p)
                await self._position(assigned)
                if self.agent.trigger.kind == "available_now":
                    await self._set_available_now_targets(assigned)
                return
            except Exception as exc:
                if not _transient(exc):
                    raise
                log.warning("%s: opening %s failed (%r); retrying", self.name, assigned, exc)
                await asyncio.sleep(delay)
                delay = min(_MAX_BACKOFF_S, delay * 2)

    async def _position(self, tps: list[TopicPartition]) -> None:
        """Position each partition at its committed offset, read now: after the tasks'
        producers fenced the previous owners (an offset fetched earlier could predate the
        previous owner's last transaction). Without a committed offset the reset policy
        applies. A committed offset before the log start (records lost to retention) raises
        DataLossError, or with `fail_on_data_loss` off resets to the log start and counts it."""
        assert self.consumer is not None
        if not tps:
            return
        begin = await self.consumer.beginning_offsets(tps)
        for tp in tps:
            committed = await self.consumer.committed(tp)
            if committed is None:
                if self._reset_policy() == "earliest":
                    await self.consumer.seek_to_beginning(tp)
                else:
                    await self.consumer.seek_to_end(tp)
                continue
            if committed < begin[tp]:
                msg = (
                    f"{self.name}: committed offset {committed} of {tp.topic}[{tp.partition}] "
                    f"is before the log start {begin[tp]}: records were lost to retention"
                )
                if self.settings.fail_on_data_loss:
                    raise DataLossError(msg + " (set fail_on_data_loss=False to reset and go on)")
                log.warning("%s; resetting to %d", msg, begin[tp])
                metrics.OFFSET_RESETS.labels(self.name).inc()
                committed = begin[tp]
            self.consumer.seek(tp, committed)

    async def _set_available_now_targets(self, assigned: list[TopicPartition]) -> None:
        assert self.consumer is not None
        if self._available_now_targets is None:
            self._available_now_targets = {}
        ends = await self.consumer.end_offsets(assigned)
        for tp, end in ends.items():
            self._available_now_targets.setdefault(tp, end)

    async def _caught_up(self) -> bool:
        """True once every partition assigned to this worker is processed up to its
        available-now target (stage 2: the end of the repartition topic once stage 1 is done).
        Never during a rebalance or a restore, when the assignment is not all in hand."""
        if self.consumer is None or self._available_now_targets is None:
            return False
        if self.upstream:
            if not all(u.finished.is_set() for u in self.upstream):
                return False
            if not self._upstream_targets_taken:
                # Upstream is done: its output is now complete; take the end offsets again.
                self._upstream_targets_taken = True
                self._available_now_targets = {}
        assigned = list(self.consumer.assignment())
        if not assigned or any(tp.partition not in self.tasks for tp in assigned):
            return False
        targets = self._available_now_targets
        missing = [tp for tp in assigned if tp not in targets]
        if missing:
            targets.update(await self.consumer.end_offsets(missing))
        for tp in assigned:
            if await self.consumer.position(tp) < targets[tp]:
                return False
        return not any(t.query.wants_no_data_batch() for t in self.tasks.values())

    # -- tasks ---------------------------------------------------------------------------
    async def _open_task(self, p: int) -> PartitionTask:
        """Open partition `p`'s task: fence the previous owner, then restore its state.

        Under exactly_once the task's transactional producer starts first: its InitProducerId
        fences any previous owner of the partition and makes the broker finish (commit or
        abort) that owner's open transaction. Only then are the changelog and the committed
        offsets read, so neither can miss, nor later gain, the previous owner's last batch.
        """
        producer = None
        if self._eos:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                transactional_id=f"{self.agent.group_id}-{p}",
                enable_idempotence=True,
                transaction_timeout_ms=self.settings.transaction_timeout_ms,
                max_batch_size=_MAX_BATCH_BYTES,
                linger_ms=5,
                # A checkpoint that starts while the broker still writes the previous one's
                # commit markers is refused with CONCURRENT_TRANSACTIONS and retried after
                # this backoff; aiokafka's 100 ms default was most of the p99 latency.
                retry_backoff_ms=_TXN_RETRY_BACKOFF_MS,
            )
            try:
                await producer.start()
            except BaseException:
                await _stop_client(producer)
                raise
        store: Store
        if self.settings.store == "memory":
            store = MemoryStore()
        else:
            store = RocksDBStore(self.state_root / str(p))
        offset = int(store.get_meta("changelog_offset") or 0)
        try:
            offset = await self._restore(store, p, offset)
        except BaseException:
            store.close()
            if producer is not None:
                await producer.stop()
            raise
        qtask = self.agent.query.task(
            store,
            idle_timeout_ms=self.settings.idle_timeout_ms,
            no_data_batches=self.settings.no_data_batches,
        )
        metrics.STATE_ROWS.labels(self.name, str(p)).set(store.approximate_rows())
        return PartitionTask(p, store, qtask, producer, offset)

    async def _close_task(self, p: int) -> None:
        task = self.tasks.pop(p, None)
        if task is None:
            return
        if task.producer is not None:
            await _stop_client(task.producer)
        task.store.close()

    async def _restore(self, store: Store, p: int, offset: int) -> int:
        """Restore with retries (see `_restore_once`): while the broker is unreachable without
        limit, other Kafka errors (metadata of a fresh changelog lagging) 5 times."""
        attempt = 0
        while True:
            try:
                return await self._restore_once(store, p, offset)
            except (KafkaError, TimeoutError) as exc:
                if not _transient(exc):
                    attempt += 1
                    if attempt == 5:
                        raise
                log.warning("%s[%d]: restore failed (%r); retrying", self.name, p, exc)
                offset = int(store.get_meta("changelog_offset") or 0)
                await asyncio.sleep(min(_MAX_BACKOFF_S, 0.5 * (attempt + 1)))

    async def _restore_once(self, store: Store, p: int, offset: int) -> int:
        """Apply the changelog of partition `p` from `offset` to its end; return the new offset.

        A store whose recorded offset is past the changelog's end (the changelog was recreated)
        is wiped and restored from the beginning.
        """
        tp = TopicPartition(self.agent.changelog_topic, p)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        await reader.start()
        try:
            reader.assign([tp])
            end = (await asyncio.wait_for(reader.end_offsets([tp]), 10))[tp]
            begin = (await reader.beginning_offsets([tp]))[tp]
            if offset > end:
                log.warning(
                    "%s[%d]: local state is ahead of the changelog; rebuilding", self.name, p
                )
                store.clear()
                offset = 0
            offset = max(offset, begin)
            if offset >= end:
                return offset
            total = end - offset
            started = time.monotonic()
            log.info("%s[%d]: restoring %d changelog records", self.name, p, total)
            reader.seek(tp, offset)
            gauge = metrics.RESTORE_REMAINING.labels(self.name, str(p))
            bar = _ProgressBar(f"restore {self.name}[{p}]", total)
            position = offset
            while position < end:
                batch = await reader.getmany(tp, timeout_ms=1000, max_records=_RESTORE_BATCH)
                recs = batch.get(tp, [])
                if not recs:
                    position = await reader.position(tp)
                    continue
                changes: dict[bytes, bytes | None] = {}
                for r in recs:
                    if r.key is not None:
                        changes[r.key] = r.value
                position = recs[-1].offset + 1
                meta_key, meta_value = Store.meta_change("changelog_offset", position)
                changes[meta_key] = meta_value
                store.write(changes)
                metrics.RESTORED_RECORDS.labels(self.name).inc(len(recs))
                gauge.set(max(0, end - position))
                bar.update(min(total, position - offset))
            gauge.set(0)
            bar.close()
            log.info(
                "%s[%d]: restored %d records in %.2fs",
                self.name,
                p,
                total,
                time.monotonic() - started,
            )
            return position
        finally:
            await _stop_client(reader)

    # -- micro-batches -------------------------------------------------------------------
    async def _gather(self, stop: asyncio.Event) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Take the next micro-batch's records: what is available now (continuous) or what
        arrives within the trigger interval, bounded by max_records_per_trigger."""
        assert self.consumer is not None
        trig = self.agent.trigger
        interval = trig.interval_ms if trig.kind == "processing_time" else None
        wait_ms = interval or self.settings.commit_interval_ms
        limit = self.settings.max_records_per_trigger
        deadline = time.monotonic() + wait_ms / 1000
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        n = 0
        while n < limit and not stop.is_set():
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            got = await self.consumer.getmany(
                timeout_ms=0 if (n and interval is None) else remaining, max_records=limit - n
            )
            for tp, recs in got.items():
                out.setdefault(tp, []).extend(recs)
                n += len(recs)
            if not got and (n or remaining == 0):
                break
            if interval is None and n and not got:
                break
            if time.monotonic() >= deadline and (n or interval is not None):
                break
        return out

    async def _run_tasks(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        by_partition: dict[int, dict[str, list[ConsumerRecord]]] = {}
        for tp, recs in records.items():
            if recs:
                by_partition.setdefault(tp.partition, {})[tp.topic] = recs
        for p in sorted(self.tasks):
            task = self.tasks[p]
            task_recs = by_partition.get(p, {})
            failure = self._failing.get(p)
            if failure is not None:
                same = failure.same_batch(task_recs)
                if task_recs and not same:  # the failed batch was committed since (rebalance)
                    del self._failing[p]
                    failure = None
                else:
                    task_recs = same
            if not task_recs and not task.query.wants_no_data_batch(int(time.time() * 1000)):
                continue
            try:
                if failure is not None and failure.attempts > self.settings.max_batch_retries:
                    await self._dead_letter_batch(task, task_recs, failure)
                else:
                    await self._checkpoint(task, task_recs)
            except Exception as exc:
                if isinstance(exc, DataLossError | BatchFailedError):
                    raise
                await self._recover(task, task_recs, exc)
                continue
            if failure is not None:
                del self._failing[p]
                await self._position(self._assigned(p))  # records after the retried batch

    def _assigned(self, p: int) -> list[TopicPartition]:
        assert self.consumer is not None
        return [tp for tp in self.consumer.assignment() if tp.partition == p]

    async def _recover(
        self, task: PartitionTask, recs: dict[str, list[ConsumerRecord]], exc: BaseException
    ) -> None:
        """Abort a failed checkpoint: rebuild the task from its store and the changelog, and
        rewind the consumer to the committed offsets of the partition, after a backoff.

        The next attempt runs the same batch (no record beyond it). A failure Kafka may get
        over (a broker away, a leader moving) is retried without limit; any other is retried
        `max_batch_retries` times, then `on_batch_failure` decides: "fail" stops the worker
        with BatchFailedError, "dead_letter" sends the batch's records to the dead letters."""
        p = task.partition
        failure = self._failing.get(p)
        if failure is None:
            failure = self._failing[p] = _Failure(recs)
        failure.record(exc)
        log.warning(
            "%s[%d]: checkpoint failed (%s: %s); aborting and rewinding (attempt %d)",
            self.name,
            p,
            type(exc).__name__,
            exc,
            failure.attempts + failure.transient,
        )
        metrics.ABORTS.labels(self.name).inc()
        if task.producer is not None:
            with contextlib.suppress(Exception):
                await task.producer.abort_transaction()
        exhausted = failure.attempts > self.settings.max_batch_retries
        if exhausted and self.settings.on_batch_failure == "fail":
            raise BatchFailedError(
                f"{self.name}[{p}]: a batch failed {failure.attempts} times, last with "
                f"{type(exc).__name__}: {exc} (on_batch_failure='dead_letter' sends such "
                "batches to the dead letters instead)"
            ) from exc
        await self._close_task(p)
        while tps := self._assigned(p):
            await asyncio.sleep(failure.backoff_s())
            try:
                self.tasks[p] = await self._open_task(p)
                await self._position(tps)
                return
            except Exception as again:
                if not _transient(again):
                    raise
                failure.record(again)
                log.warning("%s[%d]: reopening failed (%r); retrying", self.name, p, again)
                await self._close_task(p)

    async def _dead_letter_batch(
        self, task: PartitionTask, recs: dict[str, list[ConsumerRecord]], failure: _Failure
    ) -> None:
        """Commit a batch that kept failing as dead letters (state untouched)."""
        out = self._outgoing()
        offsets: dict[TopicPartition, int] = {}
        error = f"batch failed {failure.attempts} times, last with {failure.error}"
        for topic, rs in recs.items():
            for r in rs:
                out.dead_letter(
                    r.key, r.value, error, failure.stage, _source_of(r, self.agent.aliases)
                )
            offsets[TopicPartition(topic, task.partition)] = rs[-1].offset + 1
        await self._produce_and_commit(task, out, offsets)
        metrics.DEAD_LETTERS.labels(self.name).inc(out.n_dead)
        log.error(
            "%s[%d]: %d records dead-lettered: %s", self.name, task.partition, out.n_dead, error
        )

    def _outgoing(self) -> _Outgoing:
        limits = self._limits.get(self.agent.dead_letter_topic, topics.TopicLimits())
        return _Outgoing(self.agent.dead_letter_topic, limits.max_message_bytes)

    async def _checkpoint(self, task: PartitionTask, recs: dict[str, list[ConsumerRecord]]) -> None:
        started = time.monotonic()
        agent = self.agent
        out = self._outgoing()
        rows_by_input: dict[str, list[Row]] = {}
        kept: dict[str, tuple[list[ConsumerRecord], list[int] | None]] = {}
        offsets: dict[TopicPartition, int] = {}
        sources = []
        n_input = 0
        for topic, rs in recs.items():
            rows, errors = decode_values([r.value for r in rs])
            alias = agent.aliases.get(topic, topic)
            kept[alias] = (rs, None)
            if errors:
                for i, reason in errors:
                    r = rs[i]
                    out.dead_letter(r.key, r.value, reason, "decode", _source_of(r, agent.aliases))
                failed = {i for i, _ in errors}
                kept[alias] = (rs, [i for i in range(len(rs)) if i not in failed])
            rows_by_input[alias] = rows
            n_input += len(rs)
            offsets[TopicPartition(topic, task.partition)] = rs[-1].offset + 1
            sources.append(
                {
                    "description": f"kafka[{topic}]",
                    "startOffset": {topic: {str(task.partition): rs[0].offset}},
                    "endOffset": {topic: {str(task.partition): rs[-1].offset + 1}},
                    "numInputRows": len(rs),
                }
            )
        batch_source = _batch_position(recs, task.partition, agent.inputs[0].name)
        t_decoded = time.monotonic()
        now = int(time.time() * 1000)
        skew = self.settings.max_event_time_skew_ms
        result = task.query.run_batch(rows_by_input, now, None if skew is None else now + skew)
        t_processed = time.monotonic()
        ctx = result.ctx
        self._check_watermark(task, result, now)

        def record_of(origin: tuple[str, int] | None) -> ConsumerRecord | None:
            if origin is None:
                return None
            rs, positions = kept[origin[0]]
            return rs[origin[1] if positions is None else positions[origin[1]]]

        for (row, reason, stage), origin in zip(ctx.errors, result.error_origins, strict=True):
            record = record_of(origin)
            if record is not None:
                source = _source_of(record, agent.aliases)
                out.dead_letter(record.key, record.value, reason, stage, source)
            else:
                out.dead_letter(None, _json_or_repr(row), reason, stage, batch_source)
        if ctx.late_rows:
            metrics.LATE_ROWS.labels(self.name).inc(len(ctx.late_rows))
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
            ts_cols = agent.query.timestamp_columns
            try:
                res = agent.foreach_batch(
                    [render_row(r, ts_cols) for r in result.rows], result.batch_id
                )
                if asyncio.iscoroutine(res):
                    await res
            except Exception as exc:
                raise SinkFailure(f"foreach_batch failed: {type(exc).__name__}: {exc}") from exc
        if agent.sink is not None and result.rows:
            sink = agent.sink.name
            if agent.raw_output:  # a repartition stage: each row names its input record
                for row, origin in zip(result.rows, result.row_origins(), strict=True):
                    r = record_of(origin)
                    hdrs = [] if r is None else [(SOURCE_HEADER, _source_value(r))]
                    out.add(sink, encode_key(row, agent.key), orjson.dumps(row), hdrs)
            else:
                values = encode_rows(result.rows, agent.query.timestamp_columns)
                if agent.key:
                    for row, value in zip(result.rows, values, strict=True):
                        out.add(sink, encode_key(row, agent.key), value)
                else:
                    for value in values:
                        out.add(sink, None, value)
        changes = result.txn.changes()
        for state_key, state_value in changes.items():
            out.add(agent.changelog_topic, state_key, state_value, partition=task.partition)
        out.divert_oversized(
            self._limits, {agent.changelog_topic, agent.dead_letter_topic}, batch_source
        )
        changelog_end = await self._produce_and_commit(task, out, offsets)
        t_committed = time.monotonic()
        meta = {"changelog_offset": changelog_end} if changelog_end is not None else None
        task.query.commit(result, meta, changes)
        if changelog_end is not None:
            task.changelog_offset = changelog_end
        self._report(
            task,
            result,
            sources,
            n_input,
            len(changes),
            started,
            t_decoded,
            t_processed,
            t_committed,
        )
        if out.n_dead:
            metrics.DEAD_LETTERS.labels(self.name).inc(out.n_dead)
        if agent.aliases:
            await self._delete_consumed(offsets)

    def _check_watermark(self, task: PartitionTask, result: BatchResult, now: int) -> None:
        """Log and count a watermark that jumped (an event time far ahead, most likely)."""
        jump, wm = self.settings.watermark_jump_warn_ms, task.query.watermark
        if jump is None or wm is None or not result.watermark_moved:
            return
        if result.watermark_advance > jump or wm > now + jump:
            log.warning(
                "%s[%d]: batch %d moved the watermark %.0f s ahead, to %s (an event time far "
                "ahead? max_event_time_skew dead-letters those)",
                self.name,
                task.partition,
                result.batch_id,
                result.watermark_advance / 1000,
                _iso(wm),
            )
            metrics.WATERMARK_JUMPS.labels(self.name).inc()

    async def _produce_and_commit(
        self, task: PartitionTask, out: _Outgoing, offsets: dict[TopicPartition, int]
    ) -> int | None:
        """Produce the checkpoint's records and commit the offsets, atomically under
        exactly_once. Every record is acknowledged before the offsets are committed, so a
        refused record fails the checkpoint instead of being skipped. Return the changelog
        offset after this checkpoint's records (None when it wrote none)."""
        changelog = self.agent.changelog_topic
        if task.producer is not None:
            producer = task.producer
            await producer.begin_transaction()
            try:
                results = await self._acknowledged(
                    await self._send_all(producer, task.partition, out)
                )
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.agent.group_id)
                await producer.commit_transaction()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.abort_transaction()
                raise
        else:
            assert self.shared_producer is not None and self.consumer is not None
            results = await self._acknowledged(
                await self._send_all(self.shared_producer, task.partition, out)
            )
            if offsets:
                await self.consumer.commit(offsets)
        end = None
        for topic, md, n in results:
            if topic == changelog:
                end = max(end or 0, md.offset + n)
        return end

    @staticmethod
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

    async def _delete_consumed(self, offsets: dict[TopicPartition, int]) -> None:
        """Delete committed records of the repartition topics this stage reads, at most every
        few seconds (Kafka Streams' purge of repartition topics)."""
        self._to_delete.update(offsets)
        now = time.monotonic()
        if now < self._next_delete or self._admin is None:
            return
        self._next_delete = now + _DELETE_INTERVAL_S
        pending, self._to_delete = self._to_delete, {}
        try:
            await topics.delete_before(self._admin, pending)
        except (KafkaError, OSError) as exc:
            log.warning("%s: deleting consumed repartition records failed: %r", self.name, exc)

    async def _send_all(
        self, producer: AIOKafkaProducer, task_partition: int, out: _Outgoing
    ) -> list[tuple[str, asyncio.Future[Any], int]]:
        futures: list[tuple[str, asyncio.Future[Any], int]] = []
        for topic, recs in out.records.items():
            fixed = out.partitions.get(topic)
            parts = await self._partitions(producer, topic)
            builders: dict[int, Any] = {}
            counts: dict[int, int] = {}
            for key, value, headers in recs:
                if fixed is not None:
                    part = fixed
                elif key is None:
                    part = parts[task_partition % len(parts)]
                else:
                    part = self._partitioner(key, parts, parts)
                b = builders.get(part)
                if b is None:
                    b = builders[part] = producer.create_batch()
                    counts[part] = 0
                if b.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    futures.append(
                        (topic, await producer.send_batch(b, topic, partition=part), counts[part])
                    )
                    b = builders[part] = producer.create_batch()
                    counts[part] = 0
                    b.append(key=key, value=value, timestamp=None, headers=headers)  # first fits
                counts[part] += 1
            for part, b in builders.items():
                if counts[part]:
                    futures.append(
                        (topic, await producer.send_batch(b, topic, partition=part), counts[part])
                    )
        return futures

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        parts = self._partition_counts.get(topic)
        if parts is None:
            parts = sorted(await producer.partitions_for(topic))
            self._partition_counts[topic] = parts
        return parts

    def _report(
        self,
        task: PartitionTask,
        result: BatchResult,
        sources: list[dict[str, Any]],
        n_input: int,
        n_changes: int,
        started: float,
        t_decoded: float,
        t_processed: float,
        t_committed: float,
    ) -> None:
        duration = max(t_committed - started, 1e-9)
        prev = self.last_progress
        wall = time.time()
        elapsed = wall - prev["_wall"] if prev else duration
        wm = task.query.watermark
        state_rows = task.store.approximate_rows()
        progress = {
            "id": self.agent.group_id,
            "name": self.name,
            "partition": task.partition,
            "batchId": result.batch_id,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + "Z",
            "numInputRows": n_input,
            "inputRowsPerSecond": round(n_input / max(elapsed, 1e-9), 1),
            "processedRowsPerSecond": round(n_input / duration, 1),
            "durationMs": {
                "getBatch": round((t_decoded - started) * 1000, 3),
                "addBatch": round((t_processed - t_decoded) * 1000, 3),
                "commitOffsets": round((t_committed - t_processed) * 1000, 3),
                "triggerExecution": round(duration * 1000, 3),
            },
            "eventTime": {"watermark": _iso(wm)},
            "stateOperators": [{"numRowsTotal": state_rows, "numRowsUpdated": n_changes}],
            "sources": sources,
            "sink": {
                "description": self.agent.sink.name if self.agent.sink else None,
                "numOutputRows": len(result.rows),
            },
            "_wall": wall,
        }
        self.recent_progress.append(progress)
        metrics.INPUT_RECORDS.labels(self.name).inc(n_input)
        metrics.OUTPUT_RECORDS.labels(self.name).inc(len(result.rows))
        metrics.BATCHES.labels(self.name).inc()
        metrics.BATCH_SECONDS.labels(self.name).observe(duration)
        metrics.STATE_ROWS.labels(self.name, str(task.partition)).set(state_rows)
        if wm is not None:
            metrics.WATERMARK.labels(self.name, str(task.partition)).set(wm / 1000)

    # -- topics --------------------------------------------------------------------------
    async def _ensure_topics(self) -> None:
        """Create the inputs, sink, changelog and dead-letter topics that do not exist, give
        an internal (repartition) sink its configs, and read the limits of what it writes."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            agent = self.agent
            created: list[str] = []
            for t in agent.inputs:
                if t.name not in existing:
                    await topics.create(admin, t.name, t.partitions or 1, t.config)
                    existing.add(t.name)
                    created.append(t.name)
            await topics.wait_for_leaders(admin, created)
            desc = await admin.describe_topics([t.name for t in agent.inputs])
            counts = {d["topic"]: len(d["partitions"]) for d in desc}
            n_in = max(counts.values())
            if len(set(counts.values())) > 1 and len(agent.inputs) > 1:
                raise ValueError(
                    f"agent {agent.name}: input topics must be co-partitioned, got {counts}"
                )
            wanted = [
                (agent.changelog_topic, n_in, {"cleanup.policy": "compact"}),
                (agent.dead_letter_topic, 1, {}),
            ]
            if agent.sink is not None:
                wanted.append((agent.sink.name, agent.sink.partitions or n_in, agent.sink.config))
            if agent.late_topic is not None:
                wanted.append((agent.late_topic.name, agent.late_topic.partitions or 1, {}))
            for name, parts, config in wanted:
                if name not in existing:
                    await topics.create(admin, name, parts, config)
                    created.append(name)
            await topics.wait_for_leaders(admin, created)
            configs = await topics.describe_configs(admin, [name for name, _p, _c in wanted])
            if agent.raw_output and agent.sink is not None:  # stage 1: the sink is internal
                await topics.ensure_config(
                    admin, agent.sink.name, configs[agent.sink.name], agent.sink.config
                )
            self._limits = {name: topics.limits_of(c) for name, c in configs.items()}
        finally:
            await admin.close()


SOURCE_HEADER = "weir.source"
"""Header of a repartition record: "partition:offset:timestamp" of the input record stage 1
made it from, so stage 2's dead letters name the input record."""


def _source_of(r: ConsumerRecord, aliases: dict[str, str]) -> SourcePosition:
    """Where record `r` came from: its own position, or for a repartition record the input
    record that stage 1 read (its `weir.source` header)."""
    original = aliases.get(r.topic)
    if original is not None:
        for name, value in r.headers:
            if name == SOURCE_HEADER:
                p, offset, ts = value.split(b":")
                return SourcePosition(original, int(p), int(offset), int(ts))
    return SourcePosition(r.topic, r.partition, r.offset, r.timestamp)


def _source_value(r: ConsumerRecord) -> bytes:
    return b"%d:%d:%d" % (r.partition, r.offset, r.timestamp)


def _batch_position(
    recs: dict[str, list[ConsumerRecord]], partition: int, default_topic: str
) -> SourcePosition:
    """The source of a failure that belongs to no single record: the batch's range."""
    for topic, rs in recs.items():
        return SourcePosition(topic, partition, offsets=(rs[0].offset, rs[-1].offset))
    return SourcePosition(default_topic, partition)


def _json_or_repr(row: Any) -> bytes:
    try:
        return orjson.dumps(row, default=str)
    except TypeError:
        return repr(row).encode()


def _iso(ms: int | None) -> str | None:
    from tables.timeutil import iso_utc

    return None if ms is None else iso_utc(ms)


class _ProgressBar:
    """A one-line progress bar on a terminal; silent otherwise (logs carry the progress)."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 1)
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, done: int) -> None:
        if not self.tty or time.monotonic() - self._last < 0.2:
            return
        self._last = time.monotonic()
        frac = done / self.total
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


class Worker:
    """Runs every agent of an app until SIGTERM/SIGINT or until available-now agents finish.

    Contract: on a stop signal each agent finishes its in-flight checkpoint, closes its tasks
    and leaves the group; a failed agent stops the worker with its error.
    """

    def __init__(self, app: App, bootstrap: str | None = None) -> None:
        from service.local import configured_bootstrap

        self.app = app
        self.bootstrap = bootstrap or app.settings.bootstrap_servers or configured_bootstrap()
        self.runners = {
            name: AgentRunner(agent, app.settings, self.bootstrap)
            for name, agent in app.agents.items()
        }
        self.stop_event = asyncio.Event()
        self.waiting_for_kafka: str | None = None
        """Why the worker is not running yet, while Kafka is unreachable at start."""

    async def _expand(self) -> None:
        """Split agents whose keyed state needs a repartition topic into their two stages."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            for name, agent in list(self.app.agents.items()):
                if agent.repartition is False:
                    continue
                new_inputs = [t for t in agent.inputs if t.name not in existing]
                for t in new_inputs:
                    await topics.create(admin, t.name, t.partitions or 1, t.config)
                    existing.add(t.name)
                await topics.wait_for_leaders(admin, [t.name for t in new_inputs])
                desc = await admin.describe_topics([t.name for t in agent.inputs])
                n = max(len(d["partitions"]) for d in desc)
                if agent.repartition is None and n == 1:
                    continue
                plan = split(agent.query)
                if plan is None:
                    continue
                stage2_query, cuts = plan
                upstream: list[AgentRunner] = []
                aliases: dict[str, str] = {}
                inputs: list[Topic] = []
                by_name = {t.name: t for t in agent.inputs}
                input_configs = await topics.describe_configs(admin, list(by_name))
                for cut in cuts:
                    # Whatever the input accepts, its repartition topic accepts too.
                    limit = topics.limits_of(input_configs[cut.input_name]).max_message_bytes
                    config = {**topics.REPARTITION_CONFIG, "max.message.bytes": str(limit)}
                    topic = Topic(f"{agent.group_id}-repartition-{cut.input_name}", n, config)
                    stage1 = Agent(
                        app=self.app,
                        name=f"{agent.name}-repartition-{cut.input_name}",
                        inputs=(by_name[cut.input_name],),
                        query=Query(cut.stage1, "append"),
                        sink=topic,
                        key=cut.key if cut.key is not None else WHOLE_ROW,
                        trigger=agent.trigger,
                        raw_output=True,
                        dead_letters=agent.dead_letter_topic,
                        repartition=False,
                        starting_offsets=agent.starting_offsets,
                    )
                    runner = AgentRunner(stage1, self.app.settings, self.bootstrap)
                    self.runners[stage1.name] = runner
                    upstream.append(runner)
                    aliases[topic.name] = cut.input_name
                    inputs.append(topic)
                stage2 = dataclasses.replace(
                    agent,
                    inputs=tuple(inputs),
                    query=stage2_query,
                    aliases=aliases,
                    repartition=False,
                    starting_offsets="earliest",
                )
                runner2 = AgentRunner(stage2, self.app.settings, self.bootstrap)
                runner2.upstream = upstream
                self.runners[name] = runner2
                log.info(
                    "%s: repartitioning %s by %s through %s",
                    name,
                    [c.input_name for c in cuts],
                    [c.key for c in cuts],
                    [t.name for t in inputs],
                )
        finally:
            await admin.close()

    async def run(self) -> None:
        """Start all agents and run them until stopped."""
        from service.http import start_for_worker

        started: list[AgentRunner] = []
        web = await start_for_worker(self)  # None unless settings.web_port is set
        try:
            if not await self._until_connected(self._expand, "starting"):
                return
            for runner in self.runners.values():
                if not await self._until_connected(runner.start, runner.name, runner.stop):
                    return
                started.append(runner)
            runs = [asyncio.create_task(r.run(self.stop_event)) for r in started]
            stopper = asyncio.create_task(self.stop_event.wait())
            pending = set(runs)
            while pending:
                done, _ = await asyncio.wait(
                    pending | {stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                for d in done:
                    if d is stopper:
                        continue
                    pending.discard(d)
                    if d.exception() is not None:
                        self.stop_event.set()
                        raise d.exception()  # type: ignore[misc]
                if stopper.done():
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
            stopper.cancel()
        finally:
            for runner in started:
                with contextlib.suppress(Exception):
                    await runner.stop()
            if web is not None:
                await web.stop()

    async def _until_connected(
        self,
        step: Callable[[], Awaitable[None]],
        what: str,
        undo: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Run `step`, retrying with backoff while Kafka is unreachable (`waiting_for_kafka`
        says so meanwhile, and /readyz reports it). False when a stop came first."""
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                await step()
                self.waiting_for_kafka = None
                return True
            except Exception as exc:
                if not _transient(exc):
                    raise
                self.waiting_for_kafka = f"waiting for Kafka at {self.bootstrap}: {exc}"
                log.warning("%s: Kafka unreachable (%s); retrying in %.1fs", what, exc, delay)
                if undo is not None:
                    await undo()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), delay)
            delay = min(_MAX_BACKOFF_S, delay * 2)
        return False

    def stop(self) -> None:
        """Ask every agent to stop after its current checkpoint."""
        self.stop_event.set()
