"""The runner of one agent (or stage): its consumer group membership and rebalances, a task
per input partition, the micro-batch loop and its triggers; each micro-batch is made durable
by one checkpoint (weir.service.runtime.checkpoint)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from weir.service import metrics
from weir.service.app import Agent
from weir.service.runtime import progress, topics
from weir.service.runtime.batch import run_batch
from weir.service.runtime.checkpoint import (
    Committer,
    Outgoing,
    source_of,
)
from weir.service.runtime.failures import (
    MAX_BACKOFF_S,
    BatchFailedError,
    DataLossError,
    Failure,
    stop_client,
    transient,
)
from weir.service.runtime.progress import BatchTimes, iso_or_none
from weir.service.runtime.restore import restore
from weir.service.settings import Settings
from weir.service.status import MAX_PROGRESS_RECORDS
from weir.tables.query import BatchResult, QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.state.rocksdb import RocksDBStore
from weir.tables.state.store import Store

log = logging.getLogger("weir.worker")

_TXN_RETRY_BACKOFF_MS = 20
_MAX_BATCH_BYTES = 512 * 1024
_DELETE_INTERVAL_S = 5.0


@dataclass
class PartitionTask:
    """The state and the producer of one input partition of one agent."""

    partition: int
    store: Store
    query: QueryTask
    producer: AIOKafkaProducer | None
    changelog_offset: int = 0
    """Offset after the last changelog record that the local store reflects."""


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
        self._committer = Committer(agent.group_id, agent.changelog_topic)
        self.recent_progress: deque[dict[str, Any]] = deque(maxlen=MAX_PROGRESS_RECORDS)
        self._available_now_targets: dict[TopicPartition, int] | None = None
        self.finished = asyncio.Event()
        self._eos = settings.processing_guarantee == "exactly_once"
        self.state_root = Path(settings.state_dir) / agent.app.name / agent.name
        self._fatal: BaseException | None = None
        self.upstream: list[AgentRunner] = []
        """Stage-1 runners feeding this one (available-now waits for them to finish)."""
        self._upstream_targets_taken = False
        self._failing: dict[int, Failure] = {}
        """Partitions whose last batch failed, until it commits."""
        self._limits: dict[str, topics.TopicLimits] = {}
        """Broker limits of the topics this agent writes."""
        self._admin: AIOKafkaAdminClient | None = None
        """Open while the agent reads repartition topics (to delete what it consumed)."""
        self._to_delete: dict[TopicPartition, int] = {}
        self._next_delete = 0.0

    def assigned(self) -> set[int] | None:
        """The input partitions the group assigned this agent (None before it started)."""
        if self.consumer is None:
            return None
        return {tp.partition for tp in self.consumer.assignment()}

    @property
    def last_progress(self) -> dict[str, Any] | None:
        """The progress record of the last committed micro-batch, or None."""
        return self.recent_progress[-1] if self.recent_progress else None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Create missing topics, join the consumer group."""
        self._limits = await topics.ensure_agent_topics(self.bootstrap, self.agent)
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
            await stop_client(self.consumer)  # revokes: tasks close in on_revoked
            self.consumer = None
        for p in list(self.tasks):
            await self._close_task(p)
        if self.shared_producer is not None:
            await stop_client(self.shared_producer)
            self.shared_producer = None
        if self._admin is not None:
            self._next_delete = 0.0
            await self._delete_consumed({})
            await stop_client(self._admin)
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
                if not transient(exc):
                    raise
                log.warning("%s: opening %s failed (%r); retrying", self.name, assigned, exc)
                await asyncio.sleep(delay)
                delay = min(MAX_BACKOFF_S, delay * 2)

    async def _position(self, tps: list[TopicPartition]) -> None:
        """Position each partition at its committed offset, read now: after the tasks'
        producers fenced the previous owners (an offset fetched earlier could predate the
        previous owner's last transaction). The position stored with the task's state wins
        when it is ahead: it commits in the same transaction as the offsets, and the group
        coordinator may still answer with the offset from before a transaction that has
        just completed (aiokafka cannot ask for stable offsets), which would process that
        batch twice. Without either the reset policy applies. An offset before the log start
        (records lost to retention) raises DataLossError, or with `fail_on_data_loss` off
        resets to the log start and counts it."""
        assert self.consumer is not None
        if not tps:
            return
        begin = await self.consumer.beginning_offsets(tps)
        for tp in tps:
            committed = await self.consumer.committed(tp)
            task = self.tasks.get(tp.partition)
            stored = task.query.positions().get(tp.topic) if task is not None else None
            if stored is not None and (committed is None or stored > committed):
                if committed is not None:
                    log.info(
                        "%s: %s[%d] resumes at %d, where its state is, not at the committed "
                        "offset %d (a transaction still completing)",
                        self.name,
                        tp.topic,
                        tp.partition,
                        stored,
                        committed,
                    )
                committed = stored
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
                await stop_client(producer)
                raise
        store: Store
        if self.settings.store == "memory":
            store = MemoryStore()
        else:
            store = RocksDBStore(self.state_root / str(p))
        offset = int(store.get_meta("changelog_offset") or 0)
        try:
            offset = await restore(
                self.bootstrap, self.name, self.agent.changelog_topic, store, p, offset
            )
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
            await stop_client(task.producer)
        task.store.close()

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
            failure = self._failing[p] = Failure(recs)
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
                if not transient(again):
                    raise
                failure.record(again)
                log.warning("%s[%d]: reopening failed (%r); retrying", self.name, p, again)
                await self._close_task(p)

    async def _dead_letter_batch(
        self, task: PartitionTask, recs: dict[str, list[ConsumerRecord]], failure: Failure
    ) -> None:
        """Commit a batch that kept failing as dead letters (state untouched)."""
        out = self._outgoing()
        offsets: dict[TopicPartition, int] = {}
        error = f"batch failed {failure.attempts} times, last with {failure.error}"
        for topic, rs in recs.items():
            for r in rs:
                out.dead_letter(
                    r.key, r.value, error, failure.stage, source_of(r, self.agent.aliases)
                )
            offsets[TopicPartition(topic, task.partition)] = rs[-1].offset + 1
        await self._produce_and_commit(task, out, offsets)
        metrics.DEAD_LETTERS.labels(self.name).inc(out.n_dead)
        log.error(
            "%s[%d]: %d records dead-lettered: %s", self.name, task.partition, out.n_dead, error
        )

    def _outgoing(self) -> Outgoing:
        limits = self._limits.get(self.agent.dead_letter_topic, topics.TopicLimits())
        return Outgoing(self.agent.dead_letter_topic, limits.max_message_bytes)

    async def _checkpoint(self, task: PartitionTask, recs: dict[str, list[ConsumerRecord]]) -> None:
        """One micro-batch of `task` through the checkpoint (weir.service.runtime.checkpoint)."""
        started = time.monotonic()
        now = int(time.time() * 1000)
        skew = self.settings.max_event_time_skew_ms
        batch = await run_batch(
            self.agent,
            task.query,
            task.partition,
            recs,
            self._outgoing(),
            self._limits,
            now,
            None if skew is None else now + skew,
        )
        t_processed = time.monotonic()
        result = batch.result
        self._check_watermark(task, result, now)
        changelog_end = await self._produce_and_commit(task, batch.out, batch.offsets)
        t_committed = time.monotonic()
        meta = {"changelog_offset": changelog_end} if changelog_end is not None else None
        task.query.commit(result, meta, batch.changes)
        if changelog_end is not None:
            task.changelog_offset = changelog_end
        self._report(
            task,
            result,
            batch.sources,
            batch.n_input,
            len(batch.changes),
            BatchTimes(started, batch.decoded_at, t_processed, t_committed),
        )
        if batch.out.n_dead:
            metrics.DEAD_LETTERS.labels(self.name).inc(batch.out.n_dead)
        if self.agent.aliases:
            await self._delete_consumed(batch.offsets)

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
                iso_or_none(wm),
            )
            metrics.WATERMARK_JUMPS.labels(self.name).inc()

    async def _produce_and_commit(
        self, task: PartitionTask, out: Outgoing, offsets: dict[TopicPartition, int]
    ) -> int | None:
        """Step 2 of the checkpoint (weir.service.runtime.checkpoint) with this task's producer."""
        if task.producer is not None:
            return await self._committer.commit(task.producer, task.partition, out, offsets)
        assert self.shared_producer is not None and self.consumer is not None
        return await self._committer.commit(
            self.shared_producer, task.partition, out, offsets, self.consumer
        )

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

    def _report(
        self,
        task: PartitionTask,
        result: BatchResult,
        sources: list[dict[str, Any]],
        n_input: int,
        n_changes: int,
        times: BatchTimes,
    ) -> None:
        state_rows = task.store.approximate_rows()
        wm = task.query.watermark
        record = progress.batch_progress(
            self.agent,
            task.partition,
            result,
            sources,
            n_input,
            n_changes,
            state_rows,
            wm,
            times,
            self.last_progress,
        )
        self.recent_progress.append(record)
        progress.count_batch(
            self.name, task.partition, n_input, len(result.rows), times.duration, state_rows, wm
        )
