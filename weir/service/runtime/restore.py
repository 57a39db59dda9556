"""Restore: a task's state store brought up to the end of its compacted changelog topic."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from weir.service import metrics
from weir.service.connection import KafkaConnection
from weir.service.runtime.failures import MAX_BACKOFF_S, stop_client, transient
from weir.tables.state.store import LOCAL_STALE, Store

log = logging.getLogger("weir.worker")

_RESTORE_BATCH = 10_000


async def restore(
    kafka: KafkaConnection,
    name: str,
    changelog: str,
    store: Store,
    p: int,
    offset: int,
    labels: tuple[str, str, str],
) -> int:
    """Bring `store` (partition `p` of agent `name`) up to the end of its changelog from
    `offset` (the changelog offset it reflects); return the offset it reflects then.
    Retries while the broker is unreachable without limit, other Kafka errors (metadata
    of a fresh changelog lagging) 5 times. A store whose recorded offset is past the
    changelog's end (the changelog was recreated) is wiped and restored from the start.
    `labels` (app, query, stage) label its metrics."""
    attempt = 0
    while True:
        try:
            return await _restore_once(kafka, name, changelog, store, p, offset, labels)
        except (KafkaError, TimeoutError) as exc:
            if not transient(exc):
                attempt += 1
                if attempt == 5:
                    raise
            log.warning("%s[%d]: restore failed (%r); retrying", name, p, exc)
            offset = int(store.get_meta("changelog_offset") or 0)
            await asyncio.sleep(min(MAX_BACKOFF_S, 0.5 * (attempt + 1)))


async def _restore_once(
    kafka: KafkaConnection,
    name: str,
    changelog: str,
    store: Store,
    p: int,
    offset: int,
    labels: tuple[str, str, str],
) -> int:
    tp = TopicPartition(changelog, p)
    reader = kafka.consumer(
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await reader.start()
    try:
        reader.assign([tp])
        end = (await asyncio.wait_for(reader.end_offsets([tp]), 10))[tp]
        begin = (await reader.beginning_offsets([tp]))[tp]
        if offset > end:
            log.warning("%s[%d]: local state is ahead of the changelog; rebuilding", name, p)
            store.clear()
            offset = 0
        offset = max(offset, begin)
        if offset >= end:
            return offset
        total = end - offset
        started = time.monotonic()
        log.info("%s[%d]: restoring %d changelog records", name, p, total)
        reader.seek(tp, offset)
        gauge = metrics.RESTORE_REMAINING.labels(*labels, str(p))
        bar = _ProgressBar(f"restore {name}[{p}]", total)
        position = offset
        while position < end:
            batch = await reader.getmany(tp, timeout_ms=1000, max_records=_RESTORE_BATCH)
            recs = batch.get(tp, [])
            if not recs:
                position = await reader.position(tp)
                continue
            changes: dict[bytes, bytes | None] = {}
            for r in recs:
                if r.key is not None:
                    changes[r.key] = r.value
            # Past the transaction markers the fetch already skipped, so the last batch is
            # not followed by a poll that waits for records that cannot come.
            position = max(recs[-1].offset + 1, await reader.position(tp))
            meta_key, meta_value = Store.meta_change("changelog_offset", position)
            changes[meta_key] = meta_value
            stale_key, stale = Store.meta_change(LOCAL_STALE, True)  # rebuilt when the task opens
            changes[stale_key] = stale
            store.write(changes)
            metrics.RESTORED_RECORDS.labels(*labels).inc(len(recs))
            gauge.set(max(0, end - position))
            bar.update(min(total, position - offset))
        gauge.set(0)
        bar.close()
        took = round(time.monotonic() - started, 3)
        fields = {"event": "restored", "query": name, "partition": p, "records": total}
        log.info(
            "%s[%d]: restored %d records in %.2fs",
            name,
            p,
            total,
            took,
            extra={**fields, "seconds": took},
        )
        return position
    finally:
        await stop_client(reader)


class _ProgressBar:
    """A one-line progress bar on a terminal; silent otherwise (logs carry the progress)."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 1)
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, done: int) -> None:
        if not self.tty or time.monotonic() - self._last < 0.2:
            return
        self._last = time.monotonic()
        frac = done / self.total
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
