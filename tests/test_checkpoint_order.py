"""at_least_once checkpoints send the changelog (which carries the input positions a task
resumes at) only after every output is acknowledged, the query's own keys last; an output that
fails leaves no changelog record and commits no offset. Before, outputs and changelog went out
together: a broker SIGKILLed mid-checkpoint (found by tests/chaos) could keep the changelog's
positions without the outputs, and the restored task skipped them: lost rows."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from weir.service.runtime.checkpoint import Committer, Outgoing
from weir.tables.query import QUERY_PREFIX

pytestmark = pytest.mark.asyncio


class _Batch:
    def __init__(self) -> None:
        self.keys: list[bytes | None] = []

    def append(self, *, key: bytes | None, value: Any, timestamp: Any, headers: Any) -> object:
        self.keys.append(key)
        return object()


class _Producer:
    """Acknowledges each batch on the next loop turn, or fails those of `failing` topics."""

    def __init__(self, failing: str | None = None) -> None:
        self.failing = failing
        self.sent: list[tuple[str, list[bytes | None], bool]] = []
        self.futures: list[asyncio.Future[Any]] = []

    def create_batch(self) -> _Batch:
        return _Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self.sent.append((topic, batch.keys, all(f.done() for f in self.futures)))
        self.futures.append(fut)
        if topic == self.failing:
            loop.call_soon(fut.set_exception, RuntimeError("refused"))
        else:
            loop.call_soon(fut.set_result, SimpleNamespace(offset=len(self.sent)))
        return fut


class _Consumer:
    def __init__(self) -> None:
        self.committed: dict[TopicPartition, int] | None = None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed = offsets


def _outgoing() -> Outgoing:
    out = Outgoing("dead", 1 << 20)
    positions = QUERY_PREFIX + b"positions"
    for key in (positions, b"op0/a", b"op0/b"):
        out.add("log", key, b"{}", partition=1)
    out.add("out", b"a", b"1")
    out.add("out", b"b", b"2")
    out.dead_letter(b"x", b"bad", "why", "decode", None)
    return out


async def test_changelog_after_outputs_positions_last() -> None:
    producer, consumer = _Producer(), _Consumer()
    offsets = {TopicPartition("in", 1): 10}
    end = await Committer("g", "log").commit(producer, 1, _outgoing(), offsets, consumer)
    topics = [t for t, _k, _d in producer.sent]
    assert topics.index("log") > max(topics.index("out"), topics.index("dead"))
    (log_keys, after_acks) = next((k, d) for t, k, d in producer.sent if t == "log")
    assert after_acks, "the changelog went out before every output was acknowledged"
    assert log_keys == [b"op0/a", b"op0/b", QUERY_PREFIX + b"positions"]
    assert consumer.committed == offsets and end is not None


async def test_a_failed_output_writes_no_changelog_and_commits_nothing() -> None:
    producer, consumer = _Producer(failing="out"), _Consumer()
    with pytest.raises(RuntimeError, match="refused"):
        await Committer("g", "log").commit(
            producer,
            1,
            _outgoing(),
            {TopicPartition("in", 1): 10},
            consumer,
        )
    assert "log" not in [t for t, _k, _d in producer.sent]
    assert consumer.committed is None
