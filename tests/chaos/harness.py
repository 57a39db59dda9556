"""Broker and Kafka plumbing of the chaos suite: the suite's own broker (SIGKILLed and
restarted on the same folder and port), topics, exact reads up to the end offsets, and the
open-transaction check (last stable offset against high watermark)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord, TopicPartition

from weir.service.local import LocalKafka
from weir.service.local.proc import free_port, pid_alive

PARTITIONS = 4
"""Partitions of every input and output topic of the chaos runs."""
Isolation = Literal["read_committed", "read_uncommitted"]


class ChaosBroker:
    """A LocalKafka in `root` that the tests may SIGKILL and restart; `kills` counts the kills.

    Contract: `up` starts it (or finds it running) and returns the bootstrap address, which a
    restart keeps (the workers are configured with it); `kill` SIGKILLs the broker's process
    and returns once its port can be listened on again; `down` stops it."""

    def __init__(self, root: Path) -> None:
        self.kafka = LocalKafka(root)
        self.kills = 0
        self.address: str | None = None

    def up(self) -> str:
        address = self.kafka.up()
        if self.address is not None and address != self.address:
            raise AssertionError(f"the broker moved from {self.address} to {address}")
        self.address = address
        return address

    @property
    def bootstrap(self) -> str:
        assert self.address is not None, "the chaos broker was never started"
        return self.address

    def kill(self) -> None:
        pid = int(self.kafka.pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        self.kills += 1
        port = int(self.bootstrap.rsplit(":", 1)[1])
        # A SIGKILLed JVM's main thread shows as a zombie while its other threads still hold
        # the listening socket: wait for the port, or `up` would pick another one.
        deadline = time.monotonic() + 30
        while pid_alive(pid) or free_port(port) != port:
            if time.monotonic() > deadline:
                raise AssertionError(f"broker pid {pid} still holds port {port} after SIGKILL")
            time.sleep(0.05)

    def down(self) -> None:
        self.kafka.down()


async def create_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Create `names` with PARTITIONS partitions each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, rows: Sequence[dict[str, Any]]) -> None:
    """Send `rows` as JSON values without keys (spread over the partitions by the client, so
    rows of one key land on several partitions) and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value=orjson.dumps(r)) for r in rows]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _consumer(bootstrap: str, isolation: Isolation) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def read_all(bootstrap: str, topic: str, timeout: float = 60) -> list[ConsumerRecord]:
    """Every committed record of `topic` (PARTITIONS partitions) up to the end offsets a
    read_committed consumer sees at the start (the last stable offsets), in (partition,
    offset) order."""
    consumer = _consumer(bootstrap, "read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[ConsumerRecord] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            behind = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{topic}: could not read up to {ends} in {timeout}s")
            got = await consumer.getmany(*behind, timeout_ms=500)
            for recs in got.values():
                out.extend(r for r in recs if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def end_total(bootstrap: str, topic: str) -> int:
    """The sum of `topic`'s high watermarks: grows with every transaction (markers too)."""
    consumer = _consumer(bootstrap, "read_uncommitted")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def open_transactions(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """Per partition ("topic/p") of `topics` whose last stable offset (read_committed end
    offset) is below its high watermark (read_uncommitted end offset): the difference. Empty
    when no transaction is left open on any of them."""
    committed = _consumer(bootstrap, "read_committed")
    uncommitted = _consumer(bootstrap, "read_uncommitted")
    await committed.start()
    await uncommitted.start()
    try:
        await committed.topics()
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(committed.partitions_for_topic(t) or ())
        ]
        stable = await committed.end_offsets(tps)
        high = await uncommitted.end_offsets(tps)
        return {
            f"{tp.topic}/{tp.partition}": high[tp] - stable[tp]
            for tp in tps
            if stable[tp] != high[tp]
        }
    finally:
        await committed.stop()
        await uncommitted.stop()


async def topics_of(bootstrap: str, prefix: str) -> list[str]:
    """The topics whose names start with `prefix` (an app's changelog, repartition and
    dead-letter topics start with its name)."""
    consumer = _consumer(bootstrap, "read_uncommitted")
    await consumer.start()
    try:
        return sorted(t for t in await consumer.topics() if t.startswith(prefix))
    finally:
        await consumer.stop()
