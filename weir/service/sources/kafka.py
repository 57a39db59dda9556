"""The Kafka source: an agent's input topics, read as one consumer group member.

Records come from aiokafka (`ConsumerRecord` is a `SourceRecord`), `read_committed`, and the
group decides which partitions this member holds; the runner is told through a rebalance
listener. Positions are Kafka offsets: committed in the checkpoint's transaction (or after
its acknowledgements under at_least_once), and stored with the task's state as well.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from weir.service import metrics
from weir.service.connection import KafkaConnection
from weir.service.runtime.failures import DataLossError, stop_client
from weir.service.sources.base import Records, Source, TopicRecords

log = logging.getLogger("weir.worker")


STOP_CHECK_MS = 200
"""How often a waiting trigger looks at the stop request (SIGTERM takes effect within it)."""


class KafkaSource(Source):
    """The input topics of one agent, for one member of its consumer group.

    Contract: between `start` and `stop` the member holds the partitions the group assigns
    (`partitions`); `next_batch` returns records of the partitions not paused, in offset
    order; `resume_at_committed` positions assigned partitions where the last checkpoint
    ended. Unreachable brokers raise aiokafka's errors (the runner decides to retry).
    """

    def __init__(
        self,
        kafka: KafkaConnection,
        group_id: str,
        topics: Sequence[str],
        name: str,
        reset_policy: str,
        fail_on_data_loss: bool,
    ) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.topics = list(topics)
        self.name = name
        self.metric_labels: tuple[str, str, str] = ("", name, "main")
        """(app, query, stage) of the metrics it counts (its runner sets them)."""
        """Whose source it is (the agent), for logs and metrics."""
        self.reset_policy = reset_policy
        """"earliest" or "latest": where a partition without a committed offset starts."""
        self.fail_on_data_loss = fail_on_data_loss
        self.consumer: AIOKafkaConsumer | None = None

    @property
    def description(self) -> str:
        return f"kafka[{','.join(self.topics)}]"

    async def start(self, listener: ConsumerRebalanceListener | None = None) -> None:
        """Join the group; `listener` hears of partitions revoked and assigned."""
        self.consumer = self.kafka.consumer(
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset=self.reset_policy,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self.consumer.start()
        self.consumer.subscribe(self.topics, listener=listener or ConsumerRebalanceListener())

    async def stop(self) -> None:
        """Leave the group (the listener hears the revocation first)."""
        if self.consumer is not None:
            await stop_client(self.consumer)
            self.consumer = None

    def lag_view(self) -> dict[TopicPartition, tuple[int, int]]:
        """Per assigned partition whose position and end are known: (the position after what
        was read, the last stable offset: the end a read_committed reader can reach). Read
        from what the fetches reported, without a request ({} before the first fetch)."""
        consumer = self.consumer
        if consumer is None:
            return {}
        out: dict[TopicPartition, tuple[int, int]] = {}
        assignment = consumer._subscription.subscription  # as aiokafka's highwater() reads it
        if assignment is None or assignment.assignment is None:
            return {}
        for tp in consumer.assignment():
            state = assignment.assignment.state_value(tp)
            end = state.lso if state.lso is not None and state.lso >= 0 else state.highwater
            if state.has_valid_position and end is not None:
                out[tp] = (state.position, end)
        return out

    def partitions(self) -> set[int] | None:
        if self.consumer is None:
            return None
        return {tp.partition for tp in self.consumer.assignment()}

    def assignment(self, partition: int | None = None) -> list[TopicPartition]:
        """The topic-partitions this member holds (of one partition number, if given)."""
        assert self.consumer is not None
        return [
            tp
            for tp in self.consumer.assignment()
            if partition is None or tp.partition == partition
        ]

    async def next_batch(
        self,
        max_records: int,
        wait_ms: int,
        *,
        fill: bool = False,
        stop: asyncio.Event | None = None,
    ) -> Records:
        """What is available now (waiting at most `wait_ms` for a first record), or with
        `fill` everything that arrives within `wait_ms` (a processing-time trigger), up to
        `max_records`. When `stop` is set meanwhile the wait ends within STOP_CHECK_MS, with
        what arrived so far (which the caller still processes and commits)."""
        assert self.consumer is not None
        deadline = time.monotonic() + wait_ms / 1000
        got_by: dict[int, dict[str, list[Any]]] = {}
        n = 0
        while n < max_records and not (stop is not None and stop.is_set()):
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            wait = 0 if (n and not fill) else remaining
            if stop is not None:  # a long trigger interval must not delay a SIGTERM
                wait = min(wait, STOP_CHECK_MS)
            got = await self.consumer.getmany(timeout_ms=wait, max_records=max_records - n)
            for tp, recs in got.items():
                if recs:
                    got_by.setdefault(tp.partition, {}).setdefault(tp.topic, []).extend(recs)
                    n += len(recs)
            if not got and (remaining == 0 or (n and not fill)):
                break
            if time.monotonic() >= deadline and (n or fill):
                break
        out: Records = dict(got_by)
        return out

    def seek(self, topic: str, partition: int, position: int) -> None:
        assert self.consumer is not None
        self.consumer.seek(TopicPartition(topic, partition), position)

    async def resume_at_committed(
        self, tps: list[TopicPartition], stored: Callable[[TopicPartition], int | None]
    ) -> None:
        """Position each partition at its committed offset, read now (after the tasks'
        producers fenced the previous owners: an offset fetched earlier could predate the
        previous owner's last transaction). `stored(tp)`, the position committed with the
        task's state, wins when it is ahead: the group coordinator may still answer with the
        offset from before a transaction that has just completed (aiokafka cannot ask for
        stable offsets), which would process that batch twice. Without either the reset
        policy applies. An offset before the log start (records lost to retention) raises
        DataLossError, or with `fail_on_data_loss` off resets to the log start and counts
        it."""
        assert self.consumer is not None
        if not tps:
            return
        begin = await self.consumer.beginning_offsets(tps)
        for tp in tps:
            committed = await self.consumer.committed(tp)
            mine = stored(tp)
            if mine is not None and (committed is None or mine > committed):
                if committed is not None:
                    log.info(
                        "%s: %s[%d] resumes at %d, where its state is, not at the committed "
                        "offset %d (a transaction still completing)",
                        self.name,
                        tp.topic,
                        tp.partition,
                        mine,
                        committed,
                    )
                committed = mine
            if committed is None:
                if self.reset_policy == "earliest":
                    await self.consumer.seek_to_beginning(tp)
                else:
                    await self.consumer.seek_to_end(tp)
                continue
            if committed < begin[tp]:
                msg = (
                    f"{self.name}: committed offset {committed} of {tp.topic}[{tp.partition}] "
                    f"is before the log start {begin[tp]}: records were lost to retention"
                )
                if self.fail_on_data_loss:
                    raise DataLossError(msg + " (set fail_on_data_loss=False to reset and go on)")
                log.warning("%s; resetting to %d", msg, begin[tp])
                metrics.OFFSET_RESETS.labels(*self.metric_labels).inc()
                committed = begin[tp]
            self.consumer.seek(tp, committed)

    async def commit_starting_offsets(self, wanted: dict[str, dict[int, int]]) -> None:
        """Per-partition starting offsets on the first start: commit them for the group where
        it has no committed offset yet, so they take effect exactly once and committed
        offsets win afterwards (seeking in the rebalance listener would race the consumer's
        own reset). -2 is the earliest offset, -1 the latest."""
        consumer = self.kafka.consumer(group_id=self.group_id, enable_auto_commit=False)
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

    def offsets_after(self, recs: TopicRecords, partition: int) -> dict[TopicPartition, int]:
        """The input offsets to commit once `recs` (of task `partition`) are processed."""
        return {TopicPartition(t, partition): rs[-1].offset + 1 for t, rs in recs.items()}

    def state_for(self, recs: TopicRecords) -> dict[bytes, Any]:
        """What the batch `recs` keeps with its checkpoint beyond its offsets: nothing here
        (a file source has some: `Source.checkpoint_state`)."""
        return {}

    def pause(self, tps: list[TopicPartition]) -> None:
        """Fetch nothing of `tps` until `resume`."""
        assert self.consumer is not None
        self.consumer.pause(*tps)

    def resume(self, tps: list[TopicPartition]) -> None:
        assert self.consumer is not None
        self.consumer.resume(*tps)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The offsets after the last committed record of `tps` now."""
        assert self.consumer is not None
        ends: dict[TopicPartition, int] = await self.consumer.end_offsets(tps)
        return ends

    async def position(self, topic: str, partition: int) -> int:
        assert self.consumer is not None
        return int(await self.consumer.position(TopicPartition(topic, partition)))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit `offsets` for the group (at_least_once; exactly_once commits them in the
        checkpoint's transaction instead)."""
        assert self.consumer is not None
        await self.consumer.commit(offsets)
