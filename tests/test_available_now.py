"""Available-now for a stage fed by another (stage 2 of a repartition): it stops only after
reading everything the upstream stage committed, even while the broker's end offsets do not
show the upstream's last transaction yet (its commit markers are written after the commit
returns)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from weir.service.runtime.triggers import AvailableNow

TP = TopicPartition("app-agent-repartition-in", 0)


class _Source:
    """A read_committed source whose end offset lags what the upstream committed."""

    def __init__(self) -> None:
        self.consumer = object()
        self.end = 100  # the last stable offset: the upstream's last transaction not in it
        self.at = 0

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.end)

    async def position(self, topic: str, partition: int) -> int:
        return self.at


@pytest.mark.asyncio
async def test_a_fed_stage_reads_all_its_upstream_committed_before_stopping() -> None:
    source = _Source()
    trigger = AvailableNow(source)  # type: ignore[arg-type]
    finished = asyncio.Event()
    written: dict[TopicPartition, Any] = {}
    trigger.upstream = [finished]
    trigger.upstream_written = [written]
    await trigger.note_assigned([TP])
    source.at = 100
    assert not await trigger.done({0}, wants_more=False)  # upstream still running
    written[TP] = 117  # its last transaction: offsets 100-116, committed
    finished.set()
    assert not await trigger.done({0}, wants_more=False)  # end offsets still say 100
    source.at = 117
    assert await trigger.done({0}, wants_more=False)


@pytest.mark.asyncio
async def test_a_stage_without_upstream_stops_at_the_end_offsets_it_found() -> None:
    source = _Source()
    trigger = AvailableNow(source)  # type: ignore[arg-type]
    await trigger.note_assigned([TP])
    source.at = 99
    assert not await trigger.done({0}, wants_more=False)
    source.at = 100
    assert not await trigger.done({0}, wants_more=True)  # a no-data batch is due
    assert await trigger.done({0}, wants_more=False)
