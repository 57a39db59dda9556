"""Checks shared by the keyed running-count tests (tests/apps/counting.py)."""

from __future__ import annotations

import asyncio
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from weir.tables.state.rocksdb import RocksDBStore
from weir.tables.state.store import Store

if TYPE_CHECKING:
    from tests.conftest import KafkaHelper
    from tests.workers import WorkerProcess

KEYS = 40


def rows(start: int, n: int) -> list[dict[str, object]]:
    return [{"k": f"k{i % KEYS}", "v": i} for i in range(start, start + n)]


def check_exact(records: list[Any], produced: list[dict[str, object]]) -> None:
    """Per key, emitted counts strictly increase in offset order (no duplicate, no rollback),
    and the last count and sum equal what was produced (no loss)."""
    by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        row = orjson.loads(r.value)
        assert r.key.decode() == row["k"]
        by_key[row["k"]].append((row["n"], row["total"]))
    expected_n: dict[str, int] = defaultdict(int)
    expected_total: dict[str, int] = defaultdict(int)
    for row in produced:
        expected_n[str(row["k"])] += 1
        expected_total[str(row["k"])] += int(row["v"])  # type: ignore[call-overload]
    assert set(by_key) == set(expected_n)
    for k, seq in by_key.items():
        counts = [n for n, _ in seq]
        assert counts == sorted(set(counts)), f"{k}: counts repeat or go back: {counts}"
        assert seq[-1] == (expected_n[k], expected_total[k]), (
            f"{k}: last (count, sum) {seq[-1]} != expected {(expected_n[k], expected_total[k])}"
        )


def on_rocksdb(check: Callable[[Any, Store], None], scenario: Any) -> None:
    """Run `check(scenario, store)` on a fresh RocksDB store in a temporary folder."""
    with tempfile.TemporaryDirectory() as d:
        store = RocksDBStore(Path(d) / "db")
        try:
            check(scenario, store)
        finally:
            store.close()


async def until_exact(
    kafka: KafkaHelper,
    topic: str,
    produced: list[dict[str, object]],
    timeout: float,
    workers: Sequence[WorkerProcess] = (),
) -> None:
    """Poll `topic` until `check_exact` holds (the workers caught up), or fail with its error
    and what each of `workers` logged; fail at once when one of them has exited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            check_exact(await kafka.read(topic, idle_s=1.0), produced)
            return
        except AssertionError as exc:
            ended = [w for w in workers if w.proc.poll() is not None]
            if ended or loop.time() > deadline:
                stories = "\n".join(w.story() for w in workers)
                raise AssertionError(f"{exc}\n{stories}") from None
            await asyncio.sleep(1)


def counting_env(
    kafka: KafkaHelper, src: str, dst: str, prefix: str, max_records: int
) -> dict[str, str]:
    """Environment for a `tests.apps.counting` worker under exactly_once on the test broker."""
    import uuid

    return {
        "WEIR_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WEIR_PROCESSING_GUARANTEE": "exactly_once",
        "WEIR_MAX_RECORDS_PER_TRIGGER": str(max_records),
        "WEIR_TEST_APP": f"{prefix}-{uuid.uuid4().hex[:8]}",
        "WEIR_TEST_INPUT": src,
        "WEIR_TEST_OUTPUT": dst,
    }
