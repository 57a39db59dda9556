"""The worker's HTTP endpoints over real HTTP on 127.0.0.1: real App, Worker and AgentRunner
objects (no broker for the unit tests; `Worker` does not connect before `run`), requests made
with urllib in a thread since the server shares the test's event loop. One broker test runs a
real worker with `web_port` set and watches it become ready and report progress."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

from tests.conftest import KafkaHelper
from weir.service import metrics
from weir.service.app import App
from weir.service.http import DEFAULT_HOST, HOST_ENV, WebServer, serve
from weir.service.runtime.worker import Worker
from weir.service.status import agent_state
from weir.tables.query import Query
from weir.tables.stream import Stream

# The names README.md's Metrics section promises, as exposed (counters with `_total`).
METRIC_NAMES = [
    "weir_input_records_total",
    "weir_output_records_total",
    "weir_batches_total",
    "weir_batch_duration_seconds",
    "weir_record_e2e_latency_seconds",
    "weir_transaction_commit_seconds",
    "weir_checkpoint_aborts_total",
    "weir_consumer_lag_records",
    "weir_watermark_seconds",
    "weir_watermark_delay_seconds",
    "weir_late_rows_total",
    "weir_state_rows",
    "weir_state_rows_updated_total",
    "weir_state_rows_removed_total",
    "weir_state_bytes",
    "weir_windows_closed_total",
    "weir_restored_changelog_records_total",
    "weir_restore_remaining_records",
    "weir_dead_letter_records_total",
    "weir_sink_write_seconds",
    "weir_sink_write_failures_total",
    "weir_sink_errors_total",
    "weir_rebalances_total",
    "weir_assigned_partitions",
    "weir_offset_resets_total",
    "weir_watermark_jumps_total",
]


class Reply:
    """Status, headers and body of one HTTP response."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return orjson.loads(self.body)


def _request(url: str, method: str = "GET") -> Reply:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Reply(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Reply(err.code, dict(err.headers.items()), err.read())


async def fetch(url: str, method: str = "GET") -> Reply:
    """One real HTTP request, off the event loop (the server runs on it)."""
    return await asyncio.to_thread(_request, url, method)


async def raw_request(port: int, data: bytes) -> bytes:
    """Send raw bytes to 127.0.0.1:port and return everything the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def make_app(**settings: Any) -> App:
    app = App(f"http-{uuid.uuid4().hex[:8]}", store="memory", **settings)
    src = app.topic("http-in")
    out = app.topic("http-out")

    @app.agent(src, sink=out, key="k")
    def counts(s: Stream) -> Query:
        return s.group_by("k").count().query("update")

    return app


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[Worker, WebServer]]:
    """A Worker that never ran (no broker) and its endpoints on a free loopback port."""
    worker = Worker(make_app(), bootstrap="127.0.0.1:1")
    server = WebServer(worker, 0)
    await server.start()
    try:
        yield worker, server
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_binds_loopback_on_a_free_port(served: tuple[Worker, WebServer]) -> None:
    _, server = served
    assert server.host == DEFAULT_HOST == "127.0.0.1"
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


@pytest.mark.asyncio
async def test_healthz(served: tuple[Worker, WebServer]) -> None:
    _, server = served
    r = await fetch(server.url + "/healthz")
    assert r.status == 200
    assert r.text == "ok\n"
    assert r.headers["Content-Type"].startswith("text/plain")


@pytest.mark.asyncio
async def test_metrics_exposes_every_metric(served: tuple[Worker, WebServer]) -> None:
    _, server = served
    label = f"http-test-{uuid.uuid4().hex[:6]}"
    metrics.INPUT_RECORDS.labels("app", label, "clicks").inc(3)
    metrics.STATE_ROWS.labels("app", label, "counts").set(42)
    r = await fetch(server.url + "/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
    names = set(re.findall(r"^# TYPE (\S+) ", r.text, re.M))
    # Every metric object of service/metrics.py is exposed, and the README's list is complete.
    declared = [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]
    assert len(declared) == len(METRIC_NAMES)
    for metric in declared:
        assert any(n == metric._name or n == metric._name + "_total" for n in names), metric
    for name in METRIC_NAMES:
        assert f"# HELP {name} " in r.text, name
    assert f'weir_input_records_total{{app="app",query="{label}",topic="clicks"}} 3.0' in r.text
    assert f'weir_state_rows{{app="app",operator="counts",query="{label}"}} 42.0' in r.text


@pytest.mark.asyncio
async def test_progress_shows_appended_records(served: tuple[Worker, WebServer]) -> None:
    worker, server = served
    query = worker.queries["counts"]
    empty = (await fetch(server.url + "/progress")).json()["queries"]["counts"]
    assert empty == {
        "id": query.id,
        "runId": query.run_id,
        "name": "counts",
        "status": {"message": "Initializing", "isDataAvailable": False, "isTriggerActive": False},
        "last_progress": None,
        "recent_progress": [],
        "partitions": [],
    }
    for batch in range(15):
        query.recent.append(
            {
                "id": query.id,
                "name": "counts",
                "batchId": batch,
                "numInputRows": 10 * batch,
                "stateOperators": [{"stateName": "s", "numRowsTotal": 3, "_watermark": 7}],
            }
        )
    r = await fetch(server.url + "/progress")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/json"
    shown = r.json()["queries"]["counts"]
    assert shown["last_progress"] == {
        "id": query.id,
        "name": "counts",
        "batchId": 14,
        "numInputRows": 140,
        "stateOperators": [{"stateName": "s", "numRowsTotal": 3}],
    }
    assert [p["batchId"] for p in shown["recent_progress"]] == list(range(5, 15))
    three = (await fetch(server.url + "/progress?n=3")).json()["queries"]["counts"]
    assert [p["batchId"] for p in three["recent_progress"]] == [12, 13, 14]
    many = (await fetch(server.url + "/progress?n=1000")).json()["queries"]["counts"]
    assert len(many["recent_progress"]) == 15
    bad = await fetch(server.url + "/progress?n=ten")
    assert bad.status == 400


def test_agent_state_follows_start_assignment_and_restore() -> None:
    assert agent_state(None, []) == "not started"
    assert agent_state(set(), []) == "no assignment"
    assert agent_state({0, 1}, []) == "restoring partitions [0, 1]"
    assert agent_state({0, 1}, [1]) == "restoring partitions [0]"
    assert agent_state({0, 1}, [0, 1]) == "ready"


class _FixedStatus:
    """A Status whose answers the test sets."""

    def __init__(self) -> None:
        self.ready: tuple[bool, dict[str, str]] = (False, {"counts": "not started"})
        self.partitions: list[int] = []

    def progress(self, n: int) -> dict[str, Any]:
        query = {"last_progress": None, "recent_progress": [], "partitions": self.partitions}
        return {"queries": {"counts": query}}

    def readiness(self) -> tuple[bool, dict[str, str]]:
        return self.ready


@pytest.mark.asyncio
async def test_readyz_follows_the_worker_from_start_to_stop(
    served: tuple[Worker, WebServer],
) -> None:
    worker, server = served
    r = await fetch(server.url + "/readyz")
    assert (r.status, r.text) == (503, "not ready\ncounts: not started\n")
    worker.stop()
    r = await fetch(server.url + "/readyz")
    assert (r.status, r.text) == (503, "not ready\ncounts: stopping\n")
    # Stopping is orderly, not a failure: liveness stays green until the server stops.
    assert (await fetch(server.url + "/healthz")).status == 200


@pytest.mark.asyncio
async def test_readyz_and_progress_serve_what_the_status_says() -> None:
    status = _FixedStatus()
    server = WebServer(status, 0)
    await server.start()
    try:
        r = await fetch(server.url + "/readyz")
        assert (r.status, r.text) == (503, "not ready\ncounts: not started\n")
        status.ready = (False, {"counts": "restoring partitions [0, 1]"})
        r = await fetch(server.url + "/readyz")
        assert (r.status, r.text) == (503, "not ready\ncounts: restoring partitions [0, 1]\n")
        status.ready, status.partitions = (True, {"counts": "ready"}), [0, 1]
        r = await fetch(server.url + "/readyz")
        assert (r.status, r.text) == (200, "ready\ncounts: ready\n")
        progress = (await fetch(server.url + "/progress")).json()
        assert progress["queries"]["counts"]["partitions"] == [0, 1]
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_errors_and_head(served: tuple[Worker, WebServer]) -> None:
    _, server = served
    assert (await fetch(server.url + "/nope")).status == 404
    assert (await fetch(server.url + "/metrics", method="POST")).status == 405
    head = await fetch(server.url + "/healthz", method="HEAD")
    assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", "3")
    garbage = await raw_request(server.port, b"hello\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    # An overlong request line is refused (400, or a reset when the server closes with the
    # unread rest of the line pending) and the server goes on serving.
    try:
        long_line = await raw_request(server.port, b"GET /" + b"x" * 200_000 + b" HTTP/1.1\r\n")
        assert long_line.startswith(b"HTTP/1.1 400 ")
    except ConnectionResetError:
        pass
    assert (await fetch(server.url + "/healthz")).status == 200


@pytest.mark.asyncio
async def test_stop_closes_the_port() -> None:
    server = WebServer(Worker(make_app(), bootstrap="127.0.0.1:1"), 0)
    await server.start()
    port = server.port
    assert (await fetch(f"http://127.0.0.1:{port}/healthz")).status == 200
    await server.stop()
    await server.stop()  # idempotent
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    with pytest.raises(RuntimeError):
        _ = server.port


@pytest.mark.asyncio
async def test_serve_follows_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOST_ENV, raising=False)
    assert await serve(Worker(make_app(), bootstrap="127.0.0.1:1"), None) is None
    worker = Worker(make_app(web_port=0), bootstrap="127.0.0.1:1")
    server = await serve(worker, 0, worker.app.settings.web_host)
    assert server is not None
    try:
        assert server.host == "127.0.0.1"
        assert (await fetch(server.url + "/healthz")).status == 200
    finally:
        await server.stop()
    monkeypatch.setenv(HOST_ENV, "0.0.0.0")
    worker = Worker(make_app(web_port=0), bootstrap="127.0.0.1:1")
    server = await serve(worker, 0, worker.app.settings.web_host)
    assert server is not None
    try:
        assert server.host == "0.0.0.0"
        assert (await fetch(f"http://127.0.0.1:{server.port}/healthz")).status == 200
    finally:
        await server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _poll(url: str, ok: Any, timeout: float, what: str) -> Reply:
    deadline = asyncio.get_running_loop().time() + timeout
    last: Reply | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            last = await fetch(url)
            if ok(last):
                return last
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s; last: {last and (last.status, last.text)}")


@pytest.mark.broker
@pytest.mark.asyncio
async def test_worker_serves_endpoints_while_it_runs(kafka: KafkaHelper, state_dir: Path) -> None:
    src = await kafka.topic("http-in", partitions=2)
    dst = await kafka.topic("http-out", partitions=2)
    port = _free_port()
    app = App(
        f"http-{uuid.uuid4().hex[:8]}",
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
        web_port=port,
    )

    @app.agent(app.topic(src), sink=app.topic(dst), key="k")
    def counts(s: Stream) -> Query:
        return s.group_by("k").count().query("update")

    worker = Worker(app)
    run = asyncio.create_task(worker.run())
    base = f"http://127.0.0.1:{port}"
    try:
        await _poll(base + "/healthz", lambda r: r.status == 200, 30, "healthz not 200")
        ready = await _poll(base + "/readyz", lambda r: r.status == 200, 60, "not ready")
        # Every runner of the worker is listed (a keyed agent may have a repartition stage).
        lines = ready.text.splitlines()
        assert lines[0] == "ready" and "counts: ready" in lines[1:]
        assert all(line.endswith(": ready") for line in lines[1:])
        await kafka.produce(src, [{"k": str(i % 5)} for i in range(100)], key="k")

        def all_counted(r: Reply) -> bool:
            recent = r.json()["queries"]["counts"]["recent_progress"]
            return sum(p["numInputRows"] for p in recent) == 100

        progress = await _poll(base + "/progress?n=100", all_counted, 60, "progress incomplete")
        query = progress.json()["queries"]["counts"]
        assert query["partitions"] == [0, 1]
        assert query["last_progress"]["name"] == "counts"
        text = (await fetch(base + "/metrics")).text
        assert (
            f'weir_input_records_total{{app="{app.name}",query="counts",topic="{src}"}} 100.0'
            in text
        )
        assert not run.done()
    finally:
        worker.stop()
        await asyncio.wait_for(run, 60)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
