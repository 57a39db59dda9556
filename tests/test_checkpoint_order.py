"""at_least_once checkpoints send the outputs on the shared producer and wait for every
acknowledgement; only then does the task's transaction take the changelog (which carries the
input positions a task resumes at) and the offsets, and commit. An output that fails begins no
transaction, writes no changelog record and commits no offset.

Found by tests/chaos: outputs and changelog went out together, so a broker SIGKILLed
mid-checkpoint could keep the changelog's positions without the outputs (the restored task
skipped them); and with the changelog outside any transaction a member the group had already
dropped (sessions expired while the broker was away) kept writing state for partitions a new
owner had restored, so a later restore lost join rows."""

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
            md = SimpleNamespace(topic=topic, partition=partition, offset=len(self.sent))
            loop.call_soon(fut.set_result, md)
        return fut


class _TxnProducer(_Producer):
    """A transactional producer: notes when its transaction begins and what it commits."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log
        self.committed: dict[TopicPartition, int] | None = None

    async def begin_transaction(self) -> None:
        self.log.append("begin")

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None:
        self.pending = offsets

    async def commit_transaction(self) -> None:
        self.committed = self.pending
        self.log.append("commit")

    async def abort_transaction(self) -> None:
        self.log.append("abort")


class _Outputs(_Producer):
    def __init__(self, log: list[str], failing: str | None = None) -> None:
        super().__init__(failing)
        self.log = log

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        self.log.append(f"send {topic}")
        return await super().send_batch(batch, topic, partition)


def _outgoing() -> Outgoing:
    out = Outgoing("dead", 1 << 20)
    positions = QUERY_PREFIX + b"positions"
    for key in (positions, b"op0/a", b"op0/b"):
        out.add("log", key, b"{}", partition=1)
    out.add("out", b"a", b"1")
    out.add("out", b"b", b"2")
    out.dead_letter(b"x", b"bad", "why", "decode", None)
    return out


async def test_outputs_acknowledged_then_changelog_and_offsets_in_one_transaction() -> None:
    log: list[str] = []
    outputs, task = _Outputs(log), _TxnProducer(log)
    offsets = {TopicPartition("in", 1): 10}
    end = await Committer("g", "log").commit(task, 1, _outgoing(), offsets, outputs)
    assert {t for t, _k, _d in outputs.sent} == {"out", "dead"}
    assert all(f.done() for f in outputs.futures), "outputs not all acknowledged"
    assert log.index("begin") > max(i for i, e in enumerate(log) if e.startswith("send"))
    assert [t for t, _k, _d in task.sent] == ["log"]
    assert task.committed == offsets and log[-1] == "commit" and end is not None


async def test_a_failed_output_writes_no_changelog_and_commits_nothing() -> None:
    log: list[str] = []
    outputs, task = _Outputs(log, failing="out"), _TxnProducer(log)
    with pytest.raises(RuntimeError, match="refused"):
        await Committer("g", "log").commit(
            task,
            1,
            _outgoing(),
            {TopicPartition("in", 1): 10},
            outputs,
        )
    assert "begin" not in log and task.sent == [] and task.committed is None
