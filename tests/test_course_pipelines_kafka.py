"""The course pipelines without a broker test of their own, each on the real broker over its
generated input (duplicates included, no late events), as `weir run` runs it: the rows in the
output topic, last row per key, equal the results recomputed in plain Python from the input
(word_count, tumbling_window, sliding_window, watermarked_append), or for sessionization
those of a replay of the same input (checked against its model in test_join_pipelines).
An event a day later closes every window, so append-mode pipelines emit them all."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import KafkaHelper
from weir.agents import (
    sessionization,
    sliding_window,
    tumbling_window,
    watermarked_append,
    word_count,
)
from weir.service.app import App, Trigger
from weir.service.produce import generated
from weir.service.replay import replay
from weir.service.runtime import topics
from weir.service.runtime.worker import Worker
from weir.service.traffic import Traffic
from weir.tables.query import Query
from weir.tables.timeutil import iso_utc, to_millis

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
MIN = 60_000
N = 1500
Row = dict[str, Any]


async def recreate(bootstrap: str, names: list[str]) -> None:
    """Delete the topics of `names` that exist (another pipeline's input) and wait."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await topics.delete(admin, names)
    finally:
        await admin.close()


async def on_worker(
    kafka: KafkaHelper, state_dir: Path, name: str, query: Query, rows: list[Row]
) -> list[Row]:
    """Run `query` as one agent over `rows` on the input topic its query names; its output."""
    (topic,) = query.inputs
    await recreate(kafka.bootstrap, [topic])
    await kafka.produce(topic, rows)
    out = await kafka.topic(f"{name}-out")
    app = App(
        f"{name}-{uuid.uuid4().hex[:6]}", state_dir=state_dir, bootstrap_servers=kafka.bootstrap
    )
    app.agent(app.topic(topic), sink=app.topic(out), trigger=Trigger.available_now(), name=name)(
        lambda _s: query
    )
    await Worker(app).run()
    result = await kafka.read_json(out, idle_s=1.0)
    await recreate(kafka.bootstrap, [topic])
    return result


def inputs(name: str) -> list[Row]:
    """The pipeline's generated input and, for event-time pipelines, an event a day later."""
    traffic = Traffic(T0, rate=5.0, duplicate_fraction=0.03, seed=5)
    events, _routed = generated(name, traffic, N, "weir.agents")
    rows = [r for _t, r in events]
    assert len(rows) > N  # duplicates are in
    for field in ("event_time", "event_ts"):
        if field in rows[-1]:
            rows.append({**rows[-1], field: iso_utc(to_millis(rows[-1][field]) + 24 * 60 * MIN)})
    return rows


def last_per(rows: list[Row], key: Callable[[Row], tuple[Any, ...]]) -> dict[tuple[Any, ...], Row]:
    out: dict[tuple[Any, ...], Row] = {}
    for r in rows:
        out[key(r)] = r
    return out


def windows_of(ms: int, size: int, slide: int) -> list[int]:
    """Starts of the windows of `size` sliding by `slide` that hold `ms`."""
    first = ms - size + slide - (ms - size + slide) % slide
    return [s for s in range(first, ms + 1, slide) if s <= ms < s + size]


def windowed(
    rows: list[Row], by: str, size: int, slide: int
) -> dict[tuple[Any, ...], tuple[int, float]]:
    agg: dict[tuple[Any, ...], tuple[int, float]] = {}
    for r in rows:
        for s in windows_of(to_millis(r["event_time"]), size, slide):
            k = (r[by], iso_utc(s), iso_utc(s + size))
            n, total = agg.get(k, (0, 0.0))
            agg[k] = (n + 1, total + r["amount"])
    return agg


async def test_word_count(kafka: KafkaHelper, state_dir: Path) -> None:
    rows = inputs("word_count")
    got = last_per(
        await on_worker(kafka, state_dir, "wc", word_count.query, rows), lambda r: (r["word"],)
    )
    want = Counter(w for r in rows for w in r["value"].split(" "))  # split(value, " ")
    assert {k[0]: r["count"] for k, r in got.items()} == dict(want)


async def test_tumbling_window(kafka: KafkaHelper, state_dir: Path) -> None:
    rows = inputs("tumbling_window")
    out = await on_worker(kafka, state_dir, "tumbling", tumbling_window.query, rows)
    got = last_per(out, lambda r: (r["action"], r["window_start"], r["window_end"]))
    want = windowed(rows, "action", 10 * MIN, 10 * MIN)
    assert set(got) == set(want)
    for k, (n, total) in want.items():
        r = got[k]
        assert (r["event_count"], r["total_amount"]) == (n, pytest.approx(total)), k
        assert r["avg_amount"] == pytest.approx(total / n), k


async def test_sliding_window(kafka: KafkaHelper, state_dir: Path) -> None:
    rows = inputs("sliding_window")
    out = await on_worker(kafka, state_dir, "sliding", sliding_window.query, rows)
    got = last_per(out, lambda r: (r["user_id"], r["window_start"], r["window_end"]))
    want = windowed(rows, "user_id", 10 * MIN, 5 * MIN)
    assert set(got) == set(want)
    for k, (n, total) in want.items():
        assert (got[k]["event_count"], got[k]["total_amount"]) == (n, pytest.approx(total)), k


async def test_watermarked_append(kafka: KafkaHelper, state_dir: Path) -> None:
    rows = inputs("watermarked_append")
    out = await on_worker(kafka, state_dir, "wm-append", watermarked_append.query, rows)
    want = {k: n for k, (n, _t) in windowed(rows[:-1], "user_id", 5 * MIN, 5 * MIN).items()}
    emitted = [(r["user_id"], r["window_start"], r["window_end"]) for r in out]
    assert len(emitted) == len(set(emitted)), "append mode emitted a window twice"
    assert {(r["user_id"], r["window_start"], r["window_end"]): r["count"] for r in out} == want


async def test_sessionization(kafka: KafkaHelper, state_dir: Path) -> None:
    rows = inputs("sessionization")
    out = await on_worker(kafka, state_dir, "sessions", sessionization.query, rows)
    import io

    src = io.BytesIO(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    ref = io.BytesIO()
    stats = replay(sessionization.query, src, ref, batch_size=len(rows) - 1, no_data_batches=True)
    assert stats.dead_letters == 0
    want = [orjson.loads(line) for line in ref.getvalue().splitlines()]
    for r in want:
        del r["batch_id"]
    key = lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)  # noqa: E731
    assert sorted(map(key, out)) == sorted(map(key, want))
    assert len(out) >= 10
