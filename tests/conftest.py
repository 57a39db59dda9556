"""Shared fixtures. Broker and PostgreSQL tests use one real local Kafka and one real PostgreSQL
per test session, started by the same code as `weir local up`; when they cannot start, the
tests that need them fail with the reason (never skip)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord, TopicPartition

from weir.service.local import Endpoints, LocalStack, LocalStartError
from weir.tables.state.memory import MemoryStore
from weir.tables.state.rocksdb import RocksDBStore
from weir.tables.state.store import Store


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """A real local Kafka broker and PostgreSQL server for the whole test session."""
    stack = LocalStack(tmp_path_factory.mktemp("weir-local"))
    try:
        endpoints = stack.up()
    except LocalStartError as exc:
        stack.down()
        pytest.fail(f"local Kafka/PostgreSQL did not start: {exc}", pytrace=False)
    yield endpoints
    stack.down()


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each state-store implementation in turn: operator tests run over both."""
    s: Store = MemoryStore() if request.param == "memory" else RocksDBStore(tmp_path / "db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def postgres_dsn(local_stack: Endpoints) -> str:
    """The DSN of the session's real PostgreSQL server."""
    return local_stack.postgres_dsn


class KafkaHelper:
    """Unique topics, JSON producing and read_committed reading against the test broker.
    `options` (security_protocol, ssl_context, sasl_*) go to every client it makes."""

    def __init__(self, bootstrap: str, **options: Any) -> None:
        self.bootstrap = bootstrap
        self.options = options
        self.producer: AIOKafkaProducer | None = None

    async def topic(self, prefix: str, partitions: int = 1, **config: str) -> str:
        """Create a topic with a unique name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.options)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
        finally:
            await admin.close()
        return name

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            self.producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, linger_ms=5, **self.options
            )
            await self.producer.start()
        return self.producer

    async def produce(
        self,
        topic: str,
        rows: Sequence[Any],
        *,
        key: str | None = None,
        partition: int | None = None,
    ) -> None:
        """Produce rows as JSON values (bytes values are sent as they are), keyed by the
        `key` column when given, and wait for every acknowledgement."""
        producer = await self._producer()
        futures = []
        for row in rows:
            value = row if isinstance(row, bytes) else orjson.dumps(row)
            k = None
            if key is not None and isinstance(row, dict):
                k = str(row[key]).encode()
            futures.append(await producer.send(topic, value=value, key=k, partition=partition))
        await asyncio.gather(*futures)

    async def read(
        self, topic: str, *, idle_s: float = 3.0, expect: int | None = None, max_s: float = 60
    ) -> list[ConsumerRecord]:
        """Read a topic from the start with a read_committed consumer until `expect` records
        arrived (then `idle_s` more to catch extras) or nothing came for `idle_s` seconds."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **self.options,
        )
        await consumer.start()
        try:
            parts = sorted(await (await self._producer()).partitions_for(topic))
            consumer.assign([TopicPartition(topic, p) for p in parts])
            out: list[ConsumerRecord] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_s
            idle_until = loop.time() + idle_s
            while loop.time() < deadline:
                got = await consumer.getmany(timeout_ms=200)
                n = sum(len(v) for v in got.values())
                for recs in got.values():
                    out.extend(recs)
                now = loop.time()
                if n:
                    idle_until = now + idle_s
                waiting = expect is not None and len(out) < expect
                if now >= idle_until and not waiting:
                    break
            return sorted(out, key=lambda r: (r.partition, r.offset))
        finally:
            await consumer.stop()

    async def end_offset_total(self, topic: str) -> int:
        """Sum of the topic's end offsets (transaction markers included): grows with commits."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.options
        )
        await consumer.start()
        try:
            parts = sorted(await (await self._producer()).partitions_for(topic))
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            return sum(ends.values())
        finally:
            await consumer.stop()

    async def read_json(self, topic: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Read a topic's values as JSON objects."""
        return [orjson.loads(r.value) for r in await self.read(topic, **kwargs)]

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


@pytest_asyncio.fixture(scope="session")
async def kafka(local_stack: Endpoints) -> AsyncIterator[KafkaHelper]:
    """Helpers bound to the session's real broker."""
    helper = KafkaHelper(local_stack.bootstrap_servers)
    yield helper
    await helper.close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A fresh folder for a test's worker state."""
    path = tmp_path / "state"
    path.mkdir()
    return path
