"""Inputs other than Kafka in the worker: files, rate and socket sources.

An agent reading one runs as a single task (partition 0). Its consumer group still decides
who runs it: the group subscribes to the agent's changelog topic (one partition, never
fetched), so of several workers exactly one holds the task, and a worker that dies hands it
over as with Kafka inputs. The source's position is stored with the task's state, in the
checkpoint's transaction with its outputs; a restart (or the rewind after a failed batch)
seeks the source there, so a replayable source gives the same records again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from weir.service.connection import KafkaConnection
from weir.service.sources.base import Records, Source, TopicRecords
from weir.service.sources.kafka import KafkaSource


class ExternalSource(KafkaSource):
    """`source` read as the one task of the member holding `membership_topic`'s partition.

    Contract: records come from `source` only while this member holds the task; positions
    are `source`'s; `drained` is true once a batch came back empty (an available-now run
    ends there). Kafka offsets are never committed for it (there are none)."""

    def __init__(
        self,
        kafka: KafkaConnection,
        group_id: str,
        membership_topic: str,
        name: str,
        source: Source,
        input_topic: str,
    ) -> None:
        super().__init__(kafka, group_id, [membership_topic], name, "earliest", True)
        self.source = source
        self.input_topic = input_topic
        """The query input the source feeds (its records' topic)."""
        self.drained = False
        self._paused = True
        self._seeks = 0
        """Seeks so far: records read across one belong to no position and are dropped."""

    @property
    def description(self) -> str:
        return self.source.description

    async def start(self, listener: ConsumerRebalanceListener | None = None) -> None:
        await self.source.start()
        await super().start(listener)

    async def stop(self) -> None:
        await super().stop()
        await self.source.stop()

    def pause(self, tps: list[TopicPartition]) -> None:
        """No records until `resume` (the task is being opened and positioned)."""
        super().pause(tps)
        self._paused = True

    def resume(self, tps: list[TopicPartition]) -> None:
        """Records again; the membership partition itself stays paused (never read)."""
        self._paused = False

    async def next_batch(
        self,
        max_records: int,
        wait_ms: int,
        *,
        fill: bool = False,
        stop: asyncio.Event | None = None,
    ) -> Records:
        assert self.consumer is not None
        await self.consumer.getmany(timeout_ms=0)  # a poll: keeps the membership alive
        if self._paused or 0 not in (self.partitions() or set()):
            await asyncio.sleep(min(wait_ms, 100) / 1000)
            return {}
        seeks = self._seeks
        started = time.monotonic()
        got = await self.source.next_batch(max_records, wait_ms)
        if self._paused or seeks != self._seeks:
            return {}  # read before a rebalance or a rewind repositioned the source
        self.drained = not any(rs for by_topic in got.values() for rs in by_topic.values())
        if self.drained:  # a source that answers at once (one that ended) must not spin the loop
            left = wait_ms / 1000 - (time.monotonic() - started)
            await asyncio.sleep(max(left, 0.001))
        return got

    def offsets_after(self, recs: TopicRecords, partition: int) -> dict[TopicPartition, int]:
        """None: the position is in the task's state only."""
        return {}

    def state_for(self, recs: TopicRecords) -> dict[bytes, Any]:
        """The source's own state for the positions `recs` cover (`Source.checkpoint_state`)."""
        rs = recs.get(self.input_topic)
        return self.source.checkpoint_state(rs[0].offset, rs[-1].offset + 1) if rs else {}

    def restore_state(self, state: Mapping[bytes, Any]) -> None:
        self.source.restore_state(state)

    async def resume_at_committed(
        self, tps: list[TopicPartition], stored: Callable[[TopicPartition], int | None]
    ) -> None:
        """Seek the source to the position stored with the task's state (0 without one)."""
        if not tps:
            return
        mine = stored(TopicPartition(self.input_topic, 0))
        position = 0 if mine is None else mine
        self._seeks += 1
        self.source.seek(self.input_topic, 0, position)
