"""Spark's `Trigger.AvailableNow` for one runner: process what the inputs hold when the run
starts (the end offsets then), then stop."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping

from aiokafka.structs import TopicPartition

from weir.service.sources.kafka import KafkaSource


class AvailableNow:
    """When an available-now runner is done.

    Contract: `done` is true once every assigned partition is processed up to the end offset
    it had when first assigned, every task is open, and no task wants a no-data batch; for a
    stage fed by others (stage 2 of a repartition), only after those have finished, and then
    up to the end of what they wrote (their committed writes, even before the end offsets
    show them). Never during a rebalance or a restore.
    """

    def __init__(self, source: KafkaSource) -> None:
        self.source = source
        self.targets: dict[TopicPartition, int] | None = None
        self.upstream: list[asyncio.Event] = []
        """Set when each stage feeding this one has finished."""
        self.upstream_written: list[Mapping[TopicPartition, int]] = []
        """What each stage feeding this one wrote (`Committer.written`): a transaction's
        records become visible to read_committed end offsets only once the broker has
        written its commit markers, which can be after the commit returned."""
        self._upstream_taken = False

    async def note_assigned(self, assigned: list[TopicPartition]) -> None:
        """Take the end offsets of newly assigned partitions as their targets."""
        if self.targets is None:
            self.targets = {}
        ends = await self.source.end_offsets(assigned)
        for tp, end in ends.items():
            self.targets.setdefault(tp, end)

    async def done(self, open_partitions: Collection[int], wants_more: bool) -> bool:
        """See the class contract; `wants_more`: a task wants a no-data batch."""
        if self.source.consumer is None or self.targets is None:
            return False
        if self.upstream:
            if not all(u.is_set() for u in self.upstream):
                return False
            if not self._upstream_taken:
                # Upstream is done: its output is now complete; take the end offsets again.
                self._upstream_taken = True
                self.targets = {}
        assigned = self.source.assignment()
        if not assigned or any(tp.partition not in open_partitions for tp in assigned):
            return False
        targets = self.targets
        missing = [tp for tp in assigned if tp not in targets]
        if missing:
            for tp, end in (await self.source.end_offsets(missing)).items():
                targets[tp] = max([end, *(w.get(tp, 0) for w in self.upstream_written)])
        for tp in assigned:
            if await self.source.position(tp.topic, tp.partition) < targets[tp]:
                return False
        return not wants_more
