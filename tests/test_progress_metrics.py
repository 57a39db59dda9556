"""What an operator sees of a running query, on the real broker: `/progress` and
`query.last_progress` describe the query (its repartition stage included) as Spark's
`StreamingQueryProgress` does, with the user's topic as its source and exact state rows after
eviction; `/metrics` has every family the README lists, with values that add up to what was
produced, read and left in state."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import KafkaHelper
from tests.test_http import METRIC_NAMES, Reply, _free_port, _poll
from weir.service.app import App
from weir.service.listener import StreamingQueryListener
from weir.service.runtime.worker import Worker
from weir.service.status_command import rows
from weir.tables.query import Query
from weir.tables.stream import Stream
from weir.tables.timeutil import iso_utc
from weir.tables.window import window

MIN = 60_000
T0 = 1_780_000_000_000 // (10 * MIN) * (10 * MIN)
PAGES = ["home", "cart", "pay"]
N = 120


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **want: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if want.items() <= labels.items())


@pytest.mark.broker
@pytest.mark.asyncio
async def test_progress_and_metrics_describe_the_query(kafka: KafkaHelper, state_dir: Path) -> None:
    src = await kafka.topic("pm-clicks", partitions=2)
    dst = await kafka.topic("pm-out")
    port = _free_port()
    name = f"pm-{uuid.uuid4().hex[:8]}"
    app = App(name, state_dir=state_dir, bootstrap_servers=kafka.bootstrap, web_port=port)
    heard: list[dict[str, Any]] = []
    app.on_progress(heard.append)
    told = app.add_listener(Recorder())
    assert isinstance(told, Recorder)

    @app.agent(app.topic(src), sink=app.topic(dst))
    def per_page(s: Stream) -> Query:  # the input is keyed by user: a repartition by page
        return (
            s.with_watermark("ts", "0 seconds")
            .group_by(window("ts", "10 minutes"), "page")
            .count()
            .query("append")
        )

    # N clicks over 6 windows, one poison record, then one click per page far ahead, which
    # closes every earlier window in whichever task holds the page.
    clicks = [{"user": f"u{i % 7}", "page": PAGES[i % 3], "ts": T0 + i * 30_000} for i in range(N)]
    ahead = T0 + 24 * 60 * MIN
    await kafka.produce(src, clicks, key="user")
    await kafka.produce(src, [b"{not json"], partition=0)
    await kafka.produce(src, [{"user": "z", "page": p, "ts": ahead} for p in PAGES], key="user")
    n_input = N + 1 + len(PAGES)

    worker = Worker(app)
    run = asyncio.create_task(worker.run())
    base = f"http://127.0.0.1:{port}"
    try:

        def settled(r: Reply) -> bool:
            last = r.json()["queries"]["per_page"]["last_progress"]
            if last is None or sum(p["numInputRows"] for p in heard) < n_input:
                return False
            (op,) = last["stateOperators"]
            return bool(op["numRowsTotal"] == len(PAGES))

        progress = (await _poll(base + "/progress", settled, 90, "state not settled")).json()
        assert set(progress["queries"]) == {"per_page"}  # the repartition stage is internal
        query = progress["queries"]["per_page"]
        assert query["id"] == worker.queries["per_page"].id and query["runId"]
        last = query["last_progress"]
        assert last == worker.queries["per_page"].last_progress
        assert {"id", "runId", "name", "timestamp", "batchId", "numInputRows"} <= set(last)
        assert {"inputRowsPerSecond", "processedRowsPerSecond", "batchDuration"} <= set(last)
        assert set(last["durationMs"]) == {
            "walCommit",
            "getBatch",
            "addBatch",
            "commitOffsets",
            "triggerExecution",
        }
        (op,) = last["stateOperators"]
        assert op["numRowsTotal"] == len(PAGES)  # exact after eviction, no metadata keys
        # sums over the records: every input record once, every window closed once
        assert sum(p["numInputRows"] for p in heard) == n_input
        assert [p["batchId"] for p in heard] == list(range(len(heard)))
        out = await kafka.read_json(dst, expect=6 * len(PAGES), idle_s=1)
        assert sum(o["count"] for o in out) == N
        closed = sum(o["numWindowsClosed"] for p in heard for o in p["stateOperators"])
        assert closed == len(out) == 6 * len(PAGES)
        assert sum(p["sink"]["numOutputRows"] for p in heard) == len(out)
        assert last["sink"]["description"] == f"kafka[{dst}]"
        sources = [s for p in heard for s in p["sources"]]
        assert {s["description"] for s in sources} == {f"KafkaV2[Subscribe[{src}]]"}
        ends: dict[str, int] = {}
        for s in sources:
            ends.update(s["endOffset"][src])
        assert sorted(ends) == ["0", "1"] and sum(ends.values()) == n_input
        assert heard[-1]["eventTime"]["watermark"] == iso_utc(ahead)

        def lag_zero(r: Reply) -> bool:
            s = _samples(r.text)
            return _value(s, "weir_consumer_lag_records", app=name, topic=src) == 0 and bool(
                s.get("weir_consumer_lag_records")
            )

        text = (await _poll(base + "/metrics", lag_zero, 30, "lag not 0")).text
        samples = _samples(text)
        for family in METRIC_NAMES:
            assert f"# HELP {family} " in text, family
        q = {"app": name, "query": "per_page"}
        assert _value(samples, "weir_input_records_total", **q, topic=src) == n_input
        assert _value(samples, "weir_input_records_total", **q) == n_input  # no internal topic
        assert _value(samples, "weir_output_records_total", **q) == len(out)
        assert _value(samples, "weir_state_rows", **q) == len(PAGES)
        assert _value(samples, "weir_windows_closed_total", **q) == len(out)
        assert _value(samples, "weir_dead_letter_records_total", **q, reason="decode") == 1
        assert _value(samples, "weir_watermark_seconds", **q) == ahead / 1000
        assert _value(samples, "weir_watermark_delay_seconds", **q) > 0
        assert _value(samples, "weir_batches_total", **q, stage="repartition") > 0
        assert _value(samples, "weir_batches_total", **q, stage="main") > 0
        assert _value(samples, "weir_assigned_partitions", **q, stage="main") == 2
        assert _value(samples, "weir_rebalances_total", **q, stage="main") >= 1
        assert _value(samples, "weir_record_e2e_latency_seconds_count", **q) > 0
        assert _value(samples, "weir_transaction_commit_seconds_count", **q, stage="main") > 0
        assert _value(samples, "weir_batch_duration_seconds_count", **q, phase="total") > 0
        assert _value(samples, "weir_state_bytes", **q, stage="main") > 0
        agent_labels = {labels.get("query") for series in samples.values() for labels, _ in series}
        assert not any("repartition" in (v or "") for v in agent_labels)
        # `weir status` reads the same: one line for the query, lag 0, the exact state rows
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "weir", "status", "--url", base,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out_b, err_b = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err_b.decode()
        head, line = out_b.decode().splitlines()
        assert head.split()[:3] == ["QUERY", "STATUS", "BATCH"]
        cells = line.split("  ")
        cells = [c.strip() for c in cells if c.strip()]
        assert cells[0] == "per_page" and cells[5:7] == ["0", str(len(PAGES))], cells
        assert cells[7] == iso_utc(ahead)
        assert not run.done()
    finally:
        worker.stop()
        await asyncio.wait_for(run, 60)
    # the listener heard the start, every progress record and the end, in that order
    kinds = [kind for kind, _event in told.events]
    assert kinds == ["started"] + ["progress"] * len(heard) + ["terminated"]
    started, ended = told.events[0][1], told.events[-1][1]
    assert started["name"] == ended["name"] == "per_page"
    assert started["id"] == query["id"] and ended["exception"] is None
    assert [e for _k, e in told.events[1:-1]] == heard


class Recorder(StreamingQueryListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_query_started(self, event: dict[str, Any]) -> None:
        self.events.append(("started", event))

    def on_query_progress(self, progress: dict[str, Any]) -> None:
        self.events.append(("progress", progress))

    def on_query_terminated(self, event: dict[str, Any]) -> None:
        self.events.append(("terminated", event))


def test_weir_status_without_a_worker_says_so_in_one_line() -> None:
    port = _free_port()  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "weir", "status", "--url", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"weir status: no worker answers at http://127.0.0.1:{port} (")
    unset = subprocess.run(
        [sys.executable, "-m", "weir", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "WEIR_WEB_PORT"},
    )
    assert (unset.returncode, unset.stderr) == (
        2,
        "weir status: no worker port: pass --url or set WEIR_WEB_PORT\n",
    )


def test_status_lines_of_a_query_before_and_after_its_first_batch() -> None:
    progress = {
        "queries": {
            "b": {"status": {"message": "Initializing"}, "last_progress": None},
            "a": {
                "status": {"message": "Waiting for data to arrive"},
                "last_progress": {
                    "batchId": 7,
                    "inputRowsPerSecond": 1234.5,
                    "processedRowsPerSecond": 99.0,
                    "eventTime": {"watermark": "2026-11-30T10:00:00.000Z"},
                    "stateOperators": [{"numRowsTotal": 4}, {"numRowsTotal": 5}],
                    "sources": [
                        {"metrics": {"maxOffsetsBehindLatest": "3"}},
                        {"metrics": {"maxOffsetsBehindLatest": "2"}},
                    ],
                },
            },
        }
    }
    assert rows(progress) == [
        ("a", "Waiting for data to arrive", "7", "1,234.5", "99.0", "5", "9",
         "2026-11-30T10:00:00.000Z"),
        ("b", "Initializing", "-", "-", "-", "-", "-", "-"),
    ]  # fmt: skip


def test_each_query_names_its_sinks_and_only_agents_are_queries(tmp_path: Path) -> None:
    """Found: a foreach-batch agent's progress had a null sink description, and internal
    stages showed as agents. Sinks are named (the foreach function, the topic); a query
    without a sink has none."""
    app = App("sinks", state_dir=tmp_path, bootstrap_servers="127.0.0.1:1")
    src = app.topic("clicks")

    def save_rows(rows: list[dict[str, Any]], batch_id: Any) -> None:
        pass

    @app.agent(src, foreach_batch=save_rows)
    def saved(s: Stream) -> Query:
        return s.query("append")

    @app.agent(src, sink=app.topic("copies"))
    def copied(s: Stream) -> Query:
        return s.query("append")

    @app.agent(src)
    def counted(s: Stream) -> Query:
        return s.group_by("page").count().query("update")

    worker = Worker(app)
    assert {name: q.sink for name, q in worker.queries.items()} == {
        "saved": "foreach_batch[save_rows]",
        "copied": "kafka[copies]",
        "counted": None,
    }
    assert set(worker.progress(10)["queries"]) == {"saved", "copied", "counted"}
