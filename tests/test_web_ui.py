"""The streaming page (GET /) in real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; `make browser` installs it): over a Status whose progress grows, every query gets
its status, summary, last progress record and six charts whose points are the values the
records imply; then over a real worker on the broker. A missing Chromium fails the tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import KafkaHelper
from tests.test_http import _free_port, _poll
from weir import col, count, window
from weir.service.app import App
from weir.service.http import WebServer
from weir.service.runtime.worker import Worker
from weir.tables.query import Query
from weir.tables.stream import Stream

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARTS = ["input", "processing", "duration", "watermarkDelay", "stateRows", "lag"]
BASE = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def windowed_record(batch: int) -> dict[str, Any]:
    """Batch `batch` of a stateful query on two partitions: watermark 30 + batch seconds behind
    the batch, 100 (batch + 1) state rows, partition 0 batch % 4 and partition 1 3 offsets
    behind the latest."""
    at = BASE + timedelta(seconds=2 * batch, milliseconds=123)
    end = {"0": 50 * (batch + 1), "1": 40 * (batch + 1)}
    latest = {"0": end["0"] + batch % 4, "1": end["1"] + 3}
    return {
        "id": "7d1c2f0e-0000-4000-8000-000000000001",
        "runId": "7d1c2f0e-0000-4000-8000-0000000000aa",
        "name": "clicks_per_minute",
        "timestamp": iso(at),
        "batchId": batch,
        "batchDuration": 100 + 4 * batch,
        "numInputRows": 90,
        "inputRowsPerSecond": 25.0 * (batch + 1),
        "processedRowsPerSecond": 400.0 + 10 * batch,
        "durationMs": {
            "getBatch": 10 + batch,
            "walCommit": 2,
            "addBatch": 60 + 2 * batch,
            "commitOffsets": 20,
            "triggerExecution": 100 + 4 * batch,
        },
        "eventTime": {
            "min": iso(at - timedelta(seconds=90)),
            "max": iso(at - timedelta(seconds=5)),
            "avg": iso(at - timedelta(seconds=40)),
            "watermark": iso(at - timedelta(seconds=30 + batch)),
        },
        "stateOperators": [
            {
                "operatorName": "stateStoreSave",
                "stateName": "window_count",
                "numRowsTotal": 100 * (batch + 1),
                "numRowsUpdated": 7,
                "numRowsRemoved": 1,
                "numRowsDroppedByWatermark": 0,
                "memoryUsedBytes": 4096,
            }
        ],
        "sources": [
            {
                "description": "KafkaV2[Subscribe[clicks]]",
                "startOffset": {"clicks": {"0": 50 * batch, "1": 40 * batch}},
                "endOffset": {"clicks": end},
                "latestOffset": {"clicks": latest},
                "numInputRows": 90,
                "inputRowsPerSecond": 25.0 * (batch + 1),
                "processedRowsPerSecond": 400.0 + 10 * batch,
            }
        ],
        "sink": {"description": "KafkaSink[click-counts]", "numOutputRows": 7},
    }


def stateless_record(batch: int) -> dict[str, Any]:
    """Batch `batch` of a stateless query: no watermark, no state, lag from the source's
    maxOffsetsBehindLatest metric (2 batch)."""
    at = BASE + timedelta(seconds=2 * batch, milliseconds=500)
    return {
        "id": "7d1c2f0e-0000-4000-8000-000000000002",
        "runId": "7d1c2f0e-0000-4000-8000-0000000000bb",
        "name": "enrich",
        "timestamp": iso(at),
        "batchId": batch,
        "batchDuration": 30,
        "numInputRows": 10,
        "inputRowsPerSecond": 5.0,
        "processedRowsPerSecond": 330.0,
        "durationMs": {"getBatch": 5, "addBatch": 20, "commitOffsets": 5, "triggerExecution": 30},
        "eventTime": {},
        "stateOperators": [],
        "sources": [
            {
                "description": "KafkaV2[Subscribe[orders]]",
                "startOffset": {"orders": {"0": 10 * batch}},
                "endOffset": {"orders": {"0": 10 * batch + 10}},
                "numInputRows": 10,
                "metrics": {
                    "maxOffsetsBehindLatest": str(2 * batch),
                    "avgOffsetsBehindLatest": f"{2 * batch}.0",
                    "minOffsetsBehindLatest": str(2 * batch),
                },
            }
        ],
        "sink": {"description": "DeltaSink[orders_enriched]", "numOutputRows": 10},
    }


class GrowingStatus:
    """Three queries: `batches` committed batches of a stateful and a stateless one, none of an
    idle one. The test raises `batches`; `asked` records each `n` requested."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.asked: list[int] = []

    def progress(self, n: int) -> dict[str, Any]:
        self.asked.append(n)
        queries = {}
        for make, partitions in ((windowed_record, [0, 1]), (stateless_record, [0])):
            records = [make(b) for b in range(self.batches)][-n:] if n > 0 else []
            first = make(0)
            queries[first["name"]] = {
                "id": first["id"],
                "runId": first["runId"],
                "name": first["name"],
                "partitions": partitions,
                "status": {
                    "message": "Processing new data",
                    "isDataAvailable": True,
                    "isTriggerActive": True,
                },
                "last_progress": records[-1] if records else None,
                "recent_progress": records,
            }
        queries["idle"] = {
            "id": "7d1c2f0e-0000-4000-8000-000000000003",
            "runId": "7d1c2f0e-0000-4000-8000-0000000000cc",
            "name": "idle",
            "partitions": [],
            "status": {
                "message": "Waiting for data to arrive",
                "isDataAvailable": False,
                "isTriggerActive": False,
            },
            "last_progress": None,
            "recent_progress": [],
        }
        return {"queries": queries}

    def readiness(self) -> tuple[bool, dict[str, str]]:
        return True, {"clicks_per_minute": "ready", "enrich": "ready", "idle": "ready"}


class Page:
    """An open page and what went wrong on it (console errors, uncaught exceptions)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    async def points(self, query: str) -> dict[str, int]:
        """Per chart of `query`, how many points its uPlot instance holds."""
        return dict(
            await self.page.evaluate(
                """(q) => Object.fromEntries(Object.entries(weirUI.charts[q] || {})
                    .map(([k, u]) => [k, u.data[0].length]))""",
                query,
            )
        )

    async def wait_points(self, query: str, n: int, timeout: float = 20) -> None:
        """Until every chart of `query` has `n` points."""
        deadline = asyncio.get_running_loop().time() + timeout
        got: dict[str, int] = {}
        while asyncio.get_running_loop().time() < deadline:
            got = await self.points(query)
            if got == dict.fromkeys(CHARTS, n):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{query}: charts have {got} points, want {n} each: {self.errors}")

    async def text(self, selector: str) -> str:
        return str(await self.page.locator(selector).inner_text())

    async def screenshot(self, path: Path) -> None:
        """A full-page PNG at `path`, copied to $WEIR_UI_SCREENSHOT when set."""
        await self.page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        stable = os.environ.get("WEIR_UI_SCREENSHOT")
        if stable:
            shutil.copyfile(path, stable)


@asynccontextmanager
async def open_page(url: str) -> AsyncIterator[Page]:
    """`url` in a fresh headless Chromium page, 1400x900, times shown in UTC."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian package chromium)")
    from playwright.async_api import async_playwright  # test dependency: playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page(
                viewport={"width": 1400, "height": 900}, timezone_id="UTC", locale="en-GB"
            )
            watched = Page(page)
            await page.goto(url)
            yield watched
        finally:
            await browser.close()


@pytest.mark.asyncio
async def test_page_draws_each_query_from_growing_progress(tmp_path: Path) -> None:
    status = GrowingStatus(batches=3)
    server = WebServer(status, 0)
    await server.start()
    try:
        async with open_page(server.url + "/") as page:
            assert await page.page.title() == "Weir · Structured Streaming"
            await page.wait_points("clicks_per_minute", 3)
            status.batches = 12  # the page polls: its charts follow
            await page.wait_points("clicks_per_minute", 12)
            await page.wait_points("enrich", 12)
            await page.wait_points("idle", 0)
            await asyncio.sleep(0.5)  # let the other sections catch up with the same poll
            assert set(status.asked) == {100}

            names = await page.page.locator("section.query h2").all_inner_texts()
            assert names == ["clicks_per_minute", "enrich", "idle"]
            clicks = 'section[data-query="clicks_per_minute"]'
            assert await page.text(f"{clicks} .status") == "Processing new data"
            assert await page.text('section[data-query="idle"] .status') == (
                "Waiting for data to arrive"
            )
            assert await page.text(f"{clicks} .summary") == (
                "Last batch #11 at 10:00:22 · batches shown 12 · avg input 162.5 rows/s"
                " · avg processing 455 rows/s · avg duration 122 ms"
            )
            assert await page.text('section[data-query="idle"] .summary') == (
                "No batch committed yet"
            )
            ids = await page.text(f"{clicks} .ids")
            assert ids.endswith("· partitions [0, 1]")

            # The last progress record, collapsed until opened, is the served one.
            pre = page.page.locator(f"{clicks} details pre")
            assert not await pre.is_visible()
            await page.page.locator(f"{clicks} details summary").click()
            assert await pre.is_visible()
            assert orjson.loads(await pre.inner_text()) == windowed_record(11)

            # Each chart's points are the values the records imply.
            data = await page.page.evaluate(
                """() => Object.fromEntries(Object.entries(weirUI.charts)
                    .map(([q, charts]) => [q, Object.fromEntries(Object.entries(charts)
                        .map(([k, u]) => [k, u.data]))]))"""
            )
            c = data["clicks_per_minute"]
            times = [
                (BASE + timedelta(seconds=2 * b, milliseconds=123)).timestamp() for b in range(12)
            ]
            assert c["input"] == [times, [25.0 * (b + 1) for b in range(12)]]
            assert c["processing"][1] == [400.0 + 10 * b for b in range(12)]
            assert c["watermarkDelay"][1] == [30 + b for b in range(12)]
            assert c["stateRows"][1] == [100 * (b + 1) for b in range(12)]
            assert c["lag"][1] == [b % 4 + 3 for b in range(12)]
            # stacked, top band first: other (8 + b ms beyond the phases) tops at
            # triggerExecution, walCommit (the batch plan's write) is the bottom band
            duration = c["duration"]
            assert len(duration) == 6
            assert duration[1] == [100 + 4 * b for b in range(12)]
            assert duration[-1] == [2] * 12
            assert duration[-2] == [12 + b for b in range(12)]
            e = data["enrich"]
            assert e["watermarkDelay"][1] == [None] * 12
            assert e["stateRows"][1] == [None] * 12
            assert e["lag"][1] == [2 * b for b in range(12)]
            assert e["duration"][1] == [30] * 12
            assert data["idle"]["input"] == [[], []]

            cells = page.page.locator(f"{clicks} .chart")
            assert await cells.count() == 6
            assert await page.text(f'{clicks} .chart[data-chart="stateRows"] .latest') == (
                "now 1200"
            )
            await page.screenshot(tmp_path / "weir-ui.png")
            assert page.errors == []
    finally:
        await server.stop()


@pytest.mark.broker
@pytest.mark.asyncio
async def test_page_shows_a_real_workers_windowed_count(
    kafka: KafkaHelper, state_dir: Path, tmp_path: Path
) -> None:
    port = _free_port()
    src = await kafka.topic("ui-in", partitions=2)
    dst = await kafka.topic("ui-out", partitions=2)
    app = App(
        f"ui-{uuid.uuid4().hex[:8]}",
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
        web_port=port,
    )

    @app.agent(app.topic(src), sink=app.topic(dst), key="user")
    def clicks_per_minute(s: Stream) -> Query:
        return (
            s.with_watermark("event_time", "1 minute")
            .group_by(window(col("event_time"), "1 minute"), "user")
            .agg(count("*").alias("clicks"))
            .query("update")
        )

    worker = Worker(app)
    run = asyncio.create_task(worker.run())
    try:
        base = f"http://127.0.0.1:{port}"
        await _poll(base + "/readyz", lambda r: r.status == 200, 60, "worker not ready")
        async with open_page(base + "/") as page:
            start = datetime.now(UTC) - timedelta(minutes=30)
            rows = [
                {"user": f"u{i % 5}", "event_time": iso(start + timedelta(seconds=7 * i))}
                for i in range(200)
            ]
            for wave in range(0, len(rows), 25):  # several rounds: lines, not one point
                await kafka.produce(src, rows[wave : wave + 25], key="user")
                await asyncio.sleep(0.8)
            served, drawn = await _drawn(page, "clicks_per_minute", 200)
            recent = served["recent_progress"]
            assert drawn["input"][1] == [r["inputRowsPerSecond"] for r in recent]
            assert drawn["processing"][1] == [r["processedRowsPerSecond"] for r in recent]
            # the stack tops at triggerExecution (up to the rounding of each phase's ms)
            trigger = [r["durationMs"]["triggerExecution"] for r in recent]
            assert drawn["duration"][1] == pytest.approx(trigger, abs=0.01)
            state_rows = sum(op["numRowsTotal"] for op in recent[-1]["stateOperators"])
            assert drawn["stateRows"][1][-1] == state_rows > 0
            section = 'section[data-query="clicks_per_minute"]'
            summary = await page.text(f"{section} .summary")
            assert summary.startswith(f"Last batch #{recent[-1]['batchId']} at ")
            ids = f"id {served.get('id', '–')} · run {served.get('runId', '–')}"
            assert await page.text(f"{section} .ids") == f"{ids} · partitions [0, 1]"
            await page.screenshot(tmp_path / "weir-ui-worker.png")
            assert page.errors == []
    finally:
        worker.stop()
        await asyncio.wait_for(run, 60)


async def _drawn(
    page: Page, query: str, rows: int, timeout: float = 90
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Once the page draws every record /progress serves of `query` and those add up to
    `rows` input rows: (the served query, per chart its uPlot data)."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen = None
    while asyncio.get_running_loop().time() < deadline:
        seen = await page.page.evaluate(
            """async (q) => {
                const p = await (await fetch('/progress?n=100')).json();
                const served = (p.queries || {})[q] || null;
                const charts = Object.entries(weirUI.charts[q] || {});
                const drawn = Object.fromEntries(charts.map(([k, u]) => [k, u.data]));
                return {served, drawn};
            }""",
            query,
        )
        served, drawn = seen["served"], seen["drawn"]
        if served is not None and drawn:
            recent = served["recent_progress"]
            if sum(r["numInputRows"] for r in recent) == rows and len(drawn["input"][0]) == len(
                recent
            ):
                return served, drawn
        await asyncio.sleep(0.5)
    raise AssertionError(f"{query}: not all {rows} input rows drawn: {seen}, {page.errors}")
