"""The runner of one agent (or stage): its consumer group membership and rebalances, a task
per input partition, the micro-batch loop and its triggers; each micro-batch is made durable
by one checkpoint (weir.service.runtime.checkpoint)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from weir.service import metrics
from weir.service.connection import KafkaConnection
from weir.service.runtime import progress, topics
from weir.service.runtime.batch import KafkaRejects, run_batch
from weir.service.runtime.checkpoint import (
    Committer,
    Outgoing,
)
from weir.service.runtime.external import ExternalSource
from weir.service.runtime.failures import (
    MAX_BACKOFF_S,
    BatchFailedError,
    DataLossError,
    Failure,
    StateLimitError,
    check_state_limit,
    stop_client,
    transient,
)
from weir.service.runtime.plans import PlannedRuns, ranges_of
from weir.service.runtime.progress import BatchTimes, QueryProgress, TaskBatch
from weir.service.runtime.reporting import StageReport
from weir.service.runtime.tasks import MAX_BATCH_BYTES, PartitionTask, close_task, open_task
from weir.service.runtime.topology import Stage
from weir.service.runtime.triggers import AvailableNow
from weir.service.settings import Settings
from weir.service.sources.base import Records, TopicRecords
from weir.service.sources.kafka import KafkaSource

log = logging.getLogger("weir.worker")


CRASH_AFTER_SINKS_ENV = "WEIR_TEST_CRASH_AFTER_SINKS"
"""Fault hook for tests: N makes the worker exit abruptly after the N-th batch with output
rows has written its sinks and before its checkpoint commits (never set it in production)."""
CRASH_EXIT_CODE = 86


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
    each round of committed batches is reported to `progress`, the query's (shared by its
    stages). Revoked partitions finish their in-flight checkpoint first.
    """

    def __init__(
        self, stage: Stage, settings: Settings, kafka: KafkaConnection, progress: QueryProgress
    ) -> None:
        agent = stage.agent
        self.stage = stage
        self.agent = agent
        self.settings = settings
        self.kafka = kafka
        self.name = agent.name
        self.progress = progress
        self.labels = (agent.app.name, stage.query_name, stage.kind)
        """(app, query, stage): the labels of this stage's metrics."""
        self.report = StageReport(
            progress, self.labels, reads_user_topics=not stage.aliases, name=self.name
        )
        self.tasks: dict[int, PartitionTask] = {}
        self.state_root = Path(settings.state_dir) / agent.app.name / agent.name
        self.source = self._make_source()
        self.source.metric_labels = self.labels
        self.sinks = stage.sinks()
        self._plans = any(s.delivery != "transactional" for s in self.sinks)
        """Some sink writes outside the checkpoint: each batch records its input first."""
        self._planned = PlannedRuns()
        crash = os.environ.get(CRASH_AFTER_SINKS_ENV)
        self._crash_after_sinks = int(crash) if crash else None
        self.available_now = AvailableNow(self.source)
        self.shared_producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._committer = Committer(agent.group_id, agent.changelog_topic)
        self.written = self._committer.written
        """Per topic partition, the offset after the last record this stage committed."""
        self.finished = asyncio.Event()
        self._eos = settings.processing_guarantee == "exactly_once"
        self._fatal: BaseException | None = None
        self._failing: dict[int, Failure] = {}
        """Partitions whose last batch failed, until it commits."""
        self._limits: dict[str, topics.TopicLimits] = {}
        """Broker limits of the topics this agent writes."""
        self._purger = topics.Purger(kafka, agent.name) if stage.aliases else None
        """Deletes what this stage consumed of repartition topics."""

    def _make_source(self) -> KafkaSource:
        agent = self.agent
        ext = agent.external
        if ext is not None and ext.make is not None:
            src = ext.make(self.state_root / "sources" / ext.name)
            return ExternalSource(
                self.kafka, agent.group_id, agent.changelog_topic, agent.name, src, ext.name
            )
        return KafkaSource(
            self.kafka,
            agent.group_id,
            [t.name for t in agent.inputs],
            agent.name,
            self._reset_policy(),
            self.settings.fail_on_data_loss,
        )

    def assigned(self) -> set[int] | None:
        """The input partitions the group assigned this agent (None before it started)."""
        return self.source.partitions()

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Create missing topics, join the consumer group."""
        self._limits = await topics.ensure_agent_topics(
            self.kafka, self.agent, self.stage.dead_letter_topic, self.stage.internal_sink
        )
        if isinstance(self.agent.starting_offsets, dict):
            await self.source.commit_starting_offsets(self.agent.starting_offsets)
        for sink in self.sinks:
            await sink.open()
        if not self._eos:
            self.shared_producer = self.kafka.producer(
                enable_idempotence=True,
                max_batch_size=MAX_BATCH_BYTES,
                linger_ms=5,
            )
            await self.shared_producer.start()
        await self.source.start(_Listener(self))
        if self._purger is not None:
            await self._purger.start()

    async def stop(self) -> None:
        """Leave the group (closing every task after its last checkpoint) and stop producers."""
        if self.source.consumer is not None:
            async with self._lock:
                pass
            await self.source.stop()  # revokes: tasks close in on_revoked
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await sink.close()
        for p in list(self.tasks):
            await self._close_task(p)
        if self.shared_producer is not None:
            await stop_client(self.shared_producer)
            self.shared_producer = None
        if self._purger is not None:
            await self._purger.stop()

    async def abort_in_flight(self) -> None:
        """Abort every task's open transaction (a batch cut short by the shutdown bound):
        nothing of it becomes visible, and its input is read again by the next owner."""
        for task in self.tasks.values():
            with contextlib.suppress(Exception):
                await task.producer.abort_transaction()

    async def run(self, stop: asyncio.Event) -> None:
        """Process micro-batches until `stop` is set (or, for available-now, the input ends)."""
        trig = self.agent.trigger
        interval = trig.interval_ms if trig.kind == "processing_time" else None
        metrics.set_current(*self.labels[:2])  # for what sinks and the driver count
        main = self.stage.kind == "main"
        while not stop.is_set():
            if main:
                self.progress.set_status("Waiting for data to arrive", False, False)
            # What is available now (continuous), or what arrives within the trigger interval.
            records = await self.source.next_batch(
                self.settings.max_records_per_trigger,
                interval or self.settings.commit_interval_ms,
                fill=interval is not None,
                stop=stop,
            )
            if self._fatal is not None:
                raise self._fatal
            if main and records:
                self.progress.set_status("Processing new data", True, True)
            async with self._lock:
                await self._run_tasks(records)
            if self.agent.trigger.kind == "available_now" and await self._caught_up():
                log.info(
                    "%s: available-now input processed; stopping",
                    self.name,
                    extra=self._fields("stopping"),
                )
                break
        if main:
            self.progress.set_status("Stopped", False, False)
        if stop.is_set():
            log.info(
                "%s: stop requested: the batch in flight is committed; stopping",
                self.name,
                extra=self._fields("stopping"),
            )
        self.finished.set()

    def _fields(self, event: str, **more: Any) -> dict[str, Any]:
        """The structured fields of a lifecycle log line (weir.service.logs)."""
        return {"event": event, "app": self.agent.app.name, "query": self.name, **more}

    def _reset_policy(self) -> str:
        so = self.agent.starting_offsets
        return so if isinstance(so, str) else self.settings.starting_offsets

    # -- rebalance -----------------------------------------------------------------------
    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Close the tasks of revoked partitions after their in-flight checkpoint."""
        parts = sorted({tp.partition for tp in revoked})
        if parts:
            log.info(
                "%s: revoked partitions %s",
                self.name,
                parts,
                extra=self._fields("revoked", partitions=parts),
            )
        async with self._lock:
            for p in parts:
                await self._close_task(p)
                self._failing.pop(p, None)
        self.report.assignment(len(self.tasks), rebalanced=False)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Restore the state of newly assigned partitions, then position the consumer.

        The partitions stay paused until their state is restored and their committed offsets
        are checked, so no record of them is processed before that.
        """
        parts = sorted({tp.partition for tp in assigned})
        log.info(
            "%s: assigned partitions %s",
            self.name,
            parts,
            extra=self._fields("assigned", partitions=parts),
        )
        self.source.pause(assigned)
        try:
            async with self._lock:
                await self._open_assigned(assigned)
        except Exception as exc:
            # aiokafka only logs listener errors; the run loop stops the worker with this one
            # rather than leaving the partitions paused forever.
            self._fatal = exc
            return
        self.report.assignment(len(self.tasks), rebalanced=True)
        self.source.resume(assigned)

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
                    await self.available_now.note_assigned(assigned)
                return
            except Exception as exc:
                if not transient(exc):
                    raise
                log.warning("%s: opening %s failed (%r); retrying", self.name, assigned, exc)
                await asyncio.sleep(delay)
                delay = min(MAX_BACKOFF_S, delay * 2)

    async def _position(self, tps: list[TopicPartition]) -> None:
        """Position `tps` where their last checkpoint ended (see
        `KafkaSource.resume_at_committed`): the committed offset, or the position stored
        with the task's state when that is ahead."""

        def stored(tp: TopicPartition) -> int | None:
            task = self.tasks.get(tp.partition)
            return task.query.positions().get(tp.topic) if task is not None else None

        for p in {tp.partition for tp in tps} & set(self.tasks):
            self.source.restore_state(self.tasks[p].query.source_state())

        await self.source.resume_at_committed(tps, stored)

    async def _caught_up(self) -> bool:
        wants_more = any(t.query.wants_no_data_batch() for t in self.tasks.values())
        if isinstance(self.source, ExternalSource):
            return 0 in self.tasks and self.source.drained and not wants_more
        return await self.available_now.done(self.tasks, wants_more)

    # -- tasks ---------------------------------------------------------------------------
    async def _open_task(self, p: int) -> PartitionTask:
        """Open partition `p`'s task (see `tasks.open_task`); StateLimitError when its
        restored state is already over `max_state_rows`."""
        task = await open_task(
            self.agent, self.settings, self.kafka, self.state_root, p, self.labels
        )
        try:
            check_state_limit(self.name, p, task.store, self.settings.max_state_rows)
        except StateLimitError:
            await close_task(task)
            raise
        return task

    async def _close_task(self, p: int) -> None:
        self._planned.forget(p)
        self.report.forget(p)
        task = self.tasks.pop(p, None)
        if task is not None:
            await close_task(task)

    # -- micro-batches -------------------------------------------------------------------
    async def _run_tasks(self, by_partition: Records) -> None:
        started = time.monotonic()
        done: list[TaskBatch] = []
        for p in sorted(self.tasks):
            task = self.tasks[p]
            task_recs: TopicRecords = by_partition.get(p, {})
            failure = self._failing.get(p)
            if failure is not None:
                same = failure.same_batch(task_recs)
                if task_recs and not same:  # the failed batch was committed since (rebalance)
                    del self._failing[p]
                    failure = None
                else:
                    task_recs = same
            planned = task.query.planned() if self._plans else None
            if planned is not None:  # a batch cut short by a crash: again, exactly
                exact = self._planned.take(p, task_recs, planned)
                if exact is None:  # more fetches to come
                    continue
                task_recs = exact
            elif not task_recs and not task.query.wants_no_data_batch(int(time.time() * 1000)):
                continue
            try:
                if failure is not None and failure.attempts > self.settings.max_batch_retries:
                    await self._dead_letter_batch(task, task_recs, failure)
                else:
                    done.append(await self._checkpoint(task, task_recs))
            except Exception as exc:
                if isinstance(exc, DataLossError | BatchFailedError | StateLimitError):
                    raise
                await self._recover(task, task_recs, exc)
                continue
            if failure is not None:
                del self._failing[p]
            if failure is not None or planned is not None:
                await self._position(self._assigned(p))  # records after the retried batch
        if done:
            sinks = [] if self.stage.internal_sink else self.sinks
            stores = [t.store for t in self.tasks.values()]
            stateful = bool(self.agent.query.stateful)
            self.report.round(done, started, self.source, stores, sinks, stateful)

    def _assigned(self, p: int) -> list[TopicPartition]:
        return self.source.assignment(p)

    async def _recover(self, task: PartitionTask, recs: TopicRecords, exc: BaseException) -> None:
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
        metrics.ABORTS.labels(*self.labels).inc()
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
        self, task: PartitionTask, recs: TopicRecords, failure: Failure
    ) -> None:
        """Commit a batch that kept failing as dead letters (state untouched)."""
        out = self._outgoing()
        rejects = KafkaRejects(self.stage, out, None)
        error = f"batch failed {failure.attempts} times, last with {failure.error}"
        for rs in recs.values():
            for r in rs:
                rejects.record(r, error, failure.stage)
        # Its end positions go with the state too, as a processed batch's do: a restart, or
        # the rewind after this, resumes after it even when the coordinator still answers the
        # offset from before (and a plan for it is dropped).
        ends = {topic: end for topic, (_first, end) in ranges_of(recs).items()}
        txn = task.query.skip_batch(ends, self.source.state_for(recs))
        for key, value in txn.changes().items():
            out.add(self.agent.changelog_topic, key, value, partition=task.partition)
        await self._produce_and_commit(task, out, self.source.offsets_after(recs, task.partition))
        txn.commit()
        self.report.dead_letters(out)
        log.error(
            "%s[%d]: %d records dead-lettered: %s", self.name, task.partition, out.n_dead, error
        )

    def _outgoing(self) -> Outgoing:
        limits = self._limits.get(self.stage.dead_letter_topic, topics.TopicLimits())
        return Outgoing(self.stage.dead_letter_topic, limits.max_message_bytes)

    async def _checkpoint(self, task: PartitionTask, recs: TopicRecords) -> TaskBatch:
        """One micro-batch of `task` through the checkpoint (weir.service.runtime.checkpoint)."""
        started = time.monotonic()
        now = int(time.time() * 1000)
        skew = self.settings.max_event_time_skew_ms
        if self._plans:
            await self._write_plan(task, recs)
        planned = time.monotonic()
        batch = await run_batch(
            self.stage,
            self.sinks,
            task.query,
            task.partition,
            recs,
            self.source.offsets_after(recs, task.partition),
            self._outgoing(),
            self._limits,
            now,
            None if skew is None else now + skew,
            self.source.state_for(recs),
        )
        t_processed = time.monotonic()
        result = batch.result
        if self._crash_after_sinks is not None and result.rows:
            self._crash_after_sinks -= 1
            if self._crash_after_sinks <= 0:  # fault hook for tests: sinks written, no commit
                log.error("%s[%d]: crashing on purpose after the sinks", self.name, task.partition)
                os._exit(CRASH_EXIT_CODE)
        jump = self.settings.watermark_jump_warn_ms
        progress.check_watermark(self.name, task.partition, result, task.query.watermark, now, jump)
        changelog_end = await self._produce_and_commit(task, batch.out, batch.offsets)
        t_committed = time.monotonic()
        meta = {"changelog_offset": changelog_end} if changelog_end is not None else None
        task.query.commit(result, meta, batch.changes)
        if changelog_end is not None:
            task.changelog_offset = changelog_end
        times = BatchTimes(started, planned, batch.decoded_at, t_processed, t_committed)
        n_output = len(result.rows) if self.sinks else 0
        counts = {topic: len(rs) for topic, rs in recs.items() if rs}
        done = TaskBatch(
            task.partition,
            result,
            batch.n_input,
            ranges_of(recs),
            times,
            n_output,
            counts,
            task.query.watermark,
        )
        self.report.batch(done, recs, batch.out)
        if self._purger is not None:
            await self._purger.consumed(batch.offsets)
        check_state_limit(self.name, task.partition, task.store, self.settings.max_state_rows)
        return done

    async def _write_plan(self, task: PartitionTask, recs: TopicRecords) -> None:
        """Record durably which input the next batch covers (weir.service.runtime.plans),
        before any sink writes outside the checkpoint."""
        key, value = task.query.plan(ranges_of(recs))
        out = self._outgoing()
        out.add(self.agent.changelog_topic, key, value, partition=task.partition)
        # the files (say) the plan covers: a rerun elsewhere reads the same ones
        state = task.query.encode_source_state(self.source.state_for(recs))
        for k, v in state.items():
            out.add(self.agent.changelog_topic, k, v, partition=task.partition)
        await self._produce_and_commit(task, out, {})

    async def _produce_and_commit(
        self, task: PartitionTask, out: Outgoing, offsets: dict[TopicPartition, int]
    ) -> int | None:
        """Step 2 of the checkpoint (weir.service.runtime.checkpoint) with this task's producer
        (and under at_least_once the shared producer for the outputs)."""
        outputs = None if self._eos else self.shared_producer
        return await self._committer.commit(task.producer, task.partition, out, offsets, outputs)
