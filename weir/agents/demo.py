"""`weir demo`: exercise 5's e-commerce funnel (weir.agents.funnel) live on the local broker.

The demo resets the funnel's topics (`clicks`, `cart_events`, `purchases` and its agents'
internal topics), its state and its output folders under `$WEIR_HOME/funnel/`, writes the
product catalog, runs a Worker in-process and produces generated traffic at a steady rate:
WALL_RATE events per second of wall time, EVENT_RATE per second of event time, so the event
clock runs WALL_RATE / EVENT_RATE times faster and a 15-minute window fills in a few seconds.
DUPLICATE_FRACTION of the events are produced twice (the copy a few events later). The funnel
counts duplicates as events (it does not deduplicate, as the exercise's query does not); the
enrichment, stateless, writes every purchase, late or duplicated.

Late events: LATE_FRACTION of the events are stamped LATE_BY_MS (3 hours) back, but only once
the batch after the first one with a watermark has committed. Spark drops a row of batch k as
late when its window ends at or before L(k) = W(k-1), the watermark of the batch before; an
event produced after that commit lands in a batch whose L exists, and L trails the newest
event time by 5 minutes plus at most two batches, so a window that ended 2 h 45 min before the
newest event is behind it unless the worker lags by more than 2 h 40 min of event time (about
40 s of wall time here). The recomputation therefore excludes exactly the events stamped late,
without knowing where batches begin and end; a worker lagging that far would show up as a
disagreement, never pass unseen.

A terminal gets a live dashboard (rich): per window the counts and the conversion rate, the
rates, the watermark, late rows (dropped by the watermark, and made by the traffic),
duplicates, state rows. Anywhere else (CI) it prints a plain status line every few seconds.

At the end it checks the Delta table and the Parquet files against the generated input,
recomputed here without the engine (late events excluded from the funnel, every purchase
enriched), and returns 1 with one line saying what disagreed, else 0. Production stops a few
seconds before `seconds` are up, so the worker can drain what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from rich.console import Console

from weir.agents import funnel
from weir.agents.funnel_live import KINDS, Feed, Seen, check, display, final, read_windows
from weir.service.app import App
from weir.service.connection import KafkaConnection
from weir.service.endpoints import configured_bootstrap
from weir.service.runtime import topics
from weir.service.runtime.worker import Worker
from weir.service.sinks.parquet import read_parquet
from weir.service.traffic import Event, Traffic

WALL_RATE = 250.0
"""Events produced per second of wall time."""
EVENT_RATE = 1.0
"""Events per second of event time (so the event clock runs 250 times faster)."""
LATE_FRACTION = 0.04
DUPLICATE_FRACTION = 0.04
LATE_BY_MS = 3 * 3_600_000
"""How far back a late event is stamped: far behind any watermark the worker has reached."""
DRAIN_S = 6.0
"""Production stops this long before the end, for the worker to catch up."""


async def _reset(kafka: KafkaConnection, app: App) -> None:
    """Delete the input topics and every topic of the app's agents; create the inputs anew."""
    inputs = list(KINDS)
    prefixes = tuple(f"{a.group_id}-" for a in app.agents.values())
    admin = kafka.admin()
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await topics.delete(admin, [t for t in existing if t in inputs or t.startswith(prefixes)])
        for name in inputs:
            await topics.create(admin, name, 1, {})
        await topics.wait_for_leaders(admin, inputs)
    finally:
        await admin.close()


async def _produce(
    kafka: KafkaConnection,
    traffic: Traffic,
    events: Iterator[Event],
    feed: Feed,
    until: float,
    seen: Seen,
) -> None:
    """Produce `events` at WALL_RATE until `until` (monotonic); late ones once `seen` says."""
    producer = kafka.producer(linger_ms=10)
    await producer.start()
    try:
        started = time.monotonic()
        sent = 0
        while time.monotonic() < until:
            if seen.late_from.is_set():
                traffic.late_fraction = LATE_FRACTION
            due = int((time.monotonic() - started) * WALL_RATE)
            while sent < due:
                event = next(events, None)
                if event is None:
                    return
                topic, row = event
                await producer.send(topic, orjson.dumps(row))
                feed.add(topic, row)
                sent += 1
            await asyncio.sleep(0.02)
    finally:
        await producer.flush()
        await producer.stop()


async def run_demo(seconds: float) -> int:
    """Run the funnel demo for about `seconds` (see the module docstring); 0 when its outputs
    agree with the recomputation, 1 otherwise (or when the worker fails)."""
    console = Console()
    bootstrap = configured_bootstrap()
    paths = funnel.default_paths()
    for folder in (paths["delta"], paths["parquet"]):
        shutil.rmtree(folder, ignore_errors=True)
    funnel.write_catalog(paths["catalog"])
    app = funnel.build_app()
    kafka = KafkaConnection.from_settings(app.settings, bootstrap)
    await _reset(kafka, app)
    shutil.rmtree(app.settings.state_dir / app.name, ignore_errors=True)
    seen = Seen()
    app.on_progress(seen.progress)
    worker = Worker(app, bootstrap)  # the same connection: the app's settings
    worker_task = asyncio.create_task(worker.run())
    start = time.monotonic()
    produce_s = max(seconds - DRAIN_S, 2.0)
    n = int(produce_s * WALL_RATE) + 1000
    span_ms = int(n * 1000 / EVENT_RATE)
    now_ms = int(time.time() * 1000)
    first = (now_ms - span_ms) // funnel.WINDOW_MS * funnel.WINDOW_MS  # event times end about now
    traffic = Traffic(first, EVENT_RATE, 0.0, DUPLICATE_FRACTION, LATE_BY_MS, seed=7)
    feed = Feed(late_by_ms=LATE_BY_MS)
    print(
        f"weir demo: exercise 5's funnel on {bootstrap} for {seconds:.0f}s: {WALL_RATE:.0f} "
        f"events/s, event time x{WALL_RATE / EVENT_RATE:.0f} (Ctrl-C stops)",
        flush=True,
    )
    producing = asyncio.create_task(
        _produce(kafka, traffic, funnel.generate(traffic, n), feed, start + produce_s, seen)
    )
    failure: str | None = None
    next_read = 0.0
    try:
        with display(console) as show:
            while True:
                now = time.monotonic()
                if worker_task.done():
                    break
                if producing.done() and producing.exception() is not None:
                    failure = f"producing failed: {producing.exception()!r}"
                    break
                if now >= next_read:
                    next_read = now + 1.0
                    # only the view: a read that fails (racing a commit) keeps the last one
                    with contextlib.suppress(Exception):
                        seen.windows = await asyncio.to_thread(read_windows, paths["delta"])
                show(feed, seen, traffic, now - start)
                if producing.done() and seen.caught_up(feed):
                    break
                if now - start > seconds + 60:
                    failure = "the worker did not process all input within a minute"
                    break
                await asyncio.sleep(0.25)
    finally:
        worker.stop()
        producing.cancel()
        with contextlib.suppress(BaseException):
            await producing
        with contextlib.suppress(BaseException):
            await worker_task
    if worker_task.done() and not worker_task.cancelled() and worker_task.exception():
        failure = f"the worker failed: {worker_task.exception()!r}"
    if failure is not None:
        print(f"weir demo: FAILED: {failure}", flush=True)
        return 1
    windows = read_windows(paths["delta"])
    enriched = read_parquet(paths["parquet"]).to_pylist()
    seen.windows = windows
    final(console, feed, seen, traffic, time.monotonic() - start)
    problem = check(feed, windows, enriched, seen.dropped)
    _where(paths)
    if problem is not None:
        print(f"weir demo: FAILED: outputs disagree with the input: {problem}", flush=True)
        return 1
    print(
        f"weir demo: OK: {len(windows)} windows in the Delta table and {len(enriched)} enriched "
        f"purchases in Parquet, exactly as recomputed from the {sum(feed.per_topic.values())} "
        f"events produced; {seen.dropped} late rows dropped, as produced",
        flush=True,
    )
    return 0


def _where(paths: dict[str, Path]) -> None:
    py = sys.executable
    d, p = str(paths["delta"]), str(paths["parquet"])
    print(f"outputs: Delta table {d}")
    print(f"         Parquet     {p}")
    print(f"         catalog     {paths['catalog']}")
    print("open them (deltalake, pyarrow, duckdb):")
    print(
        f'  {py} -c "import duckdb; from deltalake import DeltaTable; '
        f"t = DeltaTable({d!r}).to_pyarrow_table(); "
        f"duckdb.sql('SELECT * FROM t ORDER BY window_start').show()\""
    )
    print(
        f'  {py} -c "import duckdb; from weir import read_parquet; t = read_parquet({p!r}); '
        f"duckdb.sql('SELECT category, count(*) AS purchases, round(sum(quantity * price), 2) "
        f"AS revenue FROM t GROUP BY 1 ORDER BY 3 DESC').show()\""
    )
