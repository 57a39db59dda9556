"""Restore from a transactional changelog on the real broker: committed records only, and a
store brought to the end of the changelog, commit markers included, so that opening the task
again restores nothing (it used to re-read the last record and wait a poll for the marker
behind it at every open)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import KafkaHelper
from weir.service import metrics
from weir.service.connection import KafkaConnection
from weir.service.runtime.restore import restore
from weir.tables.state.rocksdb import RocksDBStore

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

LABELS = ("restore-test", "q", "main")


async def _transactions(
    bootstrap: str, topic: str, batches: list[dict[bytes, bytes | None]], abort_last: bool
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"{topic}-0", enable_idempotence=True
    )
    await producer.start()
    try:
        for i, batch in enumerate(batches):
            await producer.begin_transaction()
            for key, value in batch.items():
                await producer.send(topic, key=key, value=value, partition=0)
            if abort_last and i == len(batches) - 1:
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()
    finally:
        await producer.stop()


def _restored() -> float:
    return metrics.RESTORED_RECORDS.labels(*LABELS)._value.get()  # type: ignore[attr-defined]


async def test_restore_reads_committed_records_to_the_end_and_a_reopen_reads_nothing(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    topic = await kafka.topic("restore-changelog", **{"cleanup.policy": "compact"})
    batches: list[dict[bytes, bytes | None]] = [
        {f"k{i}".encode(): f"{i}".encode() for i in range(25)},
        {b"k3": b"33", b"k4": None},
        {f"k{i}".encode(): b"-1" for i in range(20, 30)},
        {b"k0": b"aborted", b"z": b"aborted"},  # aborted: never restored
    ]
    await _transactions(kafka.bootstrap, topic, batches, abort_last=True)
    expected = {**batches[0], **batches[1], **batches[2]}
    conn = KafkaConnection(bootstrap_servers=kafka.bootstrap)

    store = RocksDBStore(tmp_path / "db")
    try:
        before = _restored()
        offset = await restore(conn, "q", topic, store, 0, 0, LABELS)
        held = {k: v for k, v in store.items(b"k") if not k.startswith(b"\x00")}
        held.update({k: v for k, v in store.items(b"z")})
        assert held == {k: v for k, v in expected.items() if v is not None}
        # 25 + 2 + 10 records and 4 markers (3 commits, 1 abort) plus the aborted 2 records.
        assert offset == 25 + 2 + 10 + 2 + 4
        assert store.get_meta("changelog_offset") == offset
        assert _restored() - before == 37

        again = await restore(
            conn, "q", topic, store, 0, store.get_meta("changelog_offset"), LABELS
        )
        assert again == offset
        assert _restored() - before == 37, "the reopen read changelog records again"
    finally:
        store.close()
