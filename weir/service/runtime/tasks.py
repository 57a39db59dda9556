"""A task: the state and the producer of one input partition of one agent, opened by
fencing the partition's previous owner and restoring the state from the changelog."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from weir.service.app import Agent
from weir.service.connection import KafkaConnection
from weir.service.runtime.failures import stop_client
from weir.service.runtime.restore import restore
from weir.service.settings import Settings
from weir.tables.query import QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.state.rocksdb import RocksDBMemory, RocksDBStore
from weir.tables.state.store import Store

TXN_RETRY_BACKOFF_MS = 20
MAX_BATCH_BYTES = 512 * 1024


@dataclass
class PartitionTask:
    """The state and the producer of one input partition of one agent."""

    partition: int
    store: Store
    query: QueryTask
    producer: AIOKafkaProducer
    changelog_offset: int = 0
    """Offset after the last changelog record that the local store reflects."""


async def open_task(
    agent: Agent,
    settings: Settings,
    kafka: KafkaConnection,
    state_root: Path,
    p: int,
    labels: tuple[str, str, str],
) -> PartitionTask:
    """Open partition `p`'s task: fence the previous owner, then restore its state.

    The task's transactional producer starts first (under either guarantee: it carries the
    changelog and the offsets): its InitProducerId fences any previous owner of the
    partition and makes the broker finish (commit or abort) that owner's open transaction.
    Only then are the changelog and the committed offsets read, so neither can miss, nor
    later gain, the previous owner's last batch. `labels` (app, query, stage) label the
    restore's metrics.
    """
    producer = kafka.producer(
        transactional_id=f"{agent.group_id}-{p}",
        enable_idempotence=True,
        transaction_timeout_ms=settings.transaction_timeout_ms,
        max_batch_size=MAX_BATCH_BYTES,
        linger_ms=5,
        # A checkpoint that starts while the broker still writes the previous one's
        # commit markers is refused with CONCURRENT_TRANSACTIONS and retried after
        # this backoff; aiokafka's 100 ms default was most of the p99 latency.
        retry_backoff_ms=TXN_RETRY_BACKOFF_MS,
    )
    try:
        await producer.start()
    except BaseException:
        await stop_client(producer)
        raise
    in_memory = settings.store == "memory"
    store: Store = (
        MemoryStore()
        if in_memory
        else RocksDBStore(
            state_root / str(p),
            rocksdb_memory(settings),
            count_rows=settings.max_state_rows is not None,  # only the limit reads it
        )
    )
    offset = int(store.get_meta("changelog_offset") or 0)
    try:
        offset = await restore(kafka, agent.name, agent.changelog_topic, store, p, offset, labels)
    except BaseException:
        store.close()
        await producer.stop()
        raise
    qtask = agent.query.task(
        store,
        idle_timeout_ms=settings.idle_timeout_ms,
        no_data_batches=settings.no_data_batches,
    )
    return PartitionTask(p, store, qtask, producer, offset)


def rocksdb_memory(settings: Settings) -> RocksDBMemory:
    """The RocksDB memory bounds the settings give (shared by the worker's tasks)."""
    return RocksDBMemory(
        block_cache_bytes=int(settings.rocksdb_block_cache_bytes),
        write_buffer_bytes=int(settings.rocksdb_write_buffer_bytes),
    )


async def close_task(task: PartitionTask) -> None:
    """Stop the task's producer and close its store."""
    await stop_client(task.producer)
    task.store.close()
