"""Stable state names on the real broker: a redeploy that adds a `map` upstream of a keyed count
continues the counts exactly (restored from the changelog on a new machine); a redeploy that
changes a window size is refused with one line naming the operator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.conftest import KafkaHelper
from weir.service.app import App, Trigger
from weir.service.runtime.worker import Worker
from weir.tables.ops.functions import count
from weir.tables.query import Query
from weir.tables.state_names import IncompatibleStateError
from weir.tables.stream import Stream
from weir.tables.timeutil import iso_utc
from weir.tables.window import window

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

T0 = 1_700_000_400_000


def _rows(start: int, n: int) -> list[dict[str, object]]:
    return [{"k": f"k{i % 7}", "ts": iso_utc(T0 + i * 1000)} for i in range(start, start + n)]


async def _run(
    kafka: KafkaHelper,
    src: str,
    dst: str,
    state: Path,
    build: Callable[[Stream], Query],
) -> None:
    app = App(f"names-{src}", state_dir=state, bootstrap_servers=kafka.bootstrap)
    app.agent(
        app.topic(src),
        sink=app.topic(dst),
        key="k",
        trigger=Trigger.available_now(),
        name="counts",
    )(build)
    await Worker(app).run()


async def test_a_map_added_upstream_continues_the_counts(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    src = await kafka.topic("names-in", partitions=2)
    dst = await kafka.topic("names-out", partitions=1)
    await kafka.produce(src, _rows(0, 700), key="k")
    await _run(kafka, src, dst, tmp_path / "a", lambda s: s.group_by("k").count().query("update"))
    await kafka.produce(src, _rows(700, 700), key="k")
    # Redeployed on a new machine (state from the changelog) with a map in front.
    await _run(
        kafka,
        src,
        dst,
        tmp_path / "b",
        lambda s: s.map(lambda r: {**r, "seen": 1}).group_by("k").count().query("update"),
    )
    last: dict[str, int] = {}
    for r in await kafka.read(dst, idle_s=1.5):
        row = orjson.loads(r.value)
        assert row["count"] > last.get(row["k"], 0), "counts only grow"
        last[row["k"]] = row["count"]
    assert last == {f"k{i}": 200 for i in range(7)}


async def test_a_changed_window_size_is_refused(kafka: KafkaHelper, tmp_path: Path) -> None:
    src = await kafka.topic("names-win-in", partitions=1)
    dst = await kafka.topic("names-win-out", partitions=1)
    await kafka.produce(src, _rows(0, 100), key="k")

    def windowed(size: str) -> Callable[[Stream], Query]:
        return lambda s: (
            s.with_watermark("ts", "1 minute")
            .group_by(window("ts", size), "k")
            .agg(count().alias("n"))
            .query("update")
        )

    await _run(kafka, src, dst, tmp_path / "state", windowed("10 minutes"))
    with pytest.raises(IncompatibleStateError) as err:
        await _run(kafka, src, dst, tmp_path / "state", windowed("5 minutes"))
    message = str(err.value)
    assert "'aggregate(window(ts), k)'" in message and "size_ms" in message
    assert "\n" not in message
