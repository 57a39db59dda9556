"""The course's pipelines (weir/agents), each with its own generated input (its `generate`):
replay and worker throughput, events/s, on the same events. Section `course` of the bench;
BENCH_COURSE_RECORDS (default 50,000 generated events per pipeline, plus its duplicates).

Each pipeline's module-level `query` runs as one agent under exactly_once with a Kafka sink,
on one-partition topics named as its inputs (recreated per pipeline), available-now; replay
runs the same query over the same events as JSON lines (memory store)."""

from __future__ import annotations

import os
import pkgutil
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient

import weir.agents
from bench.common import Kafka
from bench.replay_runs import replay_seconds
from bench.weir_runs import run_worker
from weir.service.app import load_attribute
from weir.service.produce import copy_line, generated
from weir.service.runtime import topics
from weir.service.traffic import Traffic
from weir.tables.query import Query

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
PACKAGE = "weir.agents"


def pipelines() -> list[str]:
    """The modules of weir/agents with a `query` and a `generate`."""
    out = []
    for mod in pkgutil.iter_modules(weir.agents.__path__):
        _n, query = load_attribute(mod.name, "query", PACKAGE)
        _n, gen = load_attribute(mod.name, "generate", PACKAGE)
        if isinstance(query, Query) and callable(gen):
            out.append(mod.name)
    return sorted(out)


async def course(kafka: Kafka, workdir: Path, say: Any) -> dict[str, Any]:
    """Per pipeline: events, replay events/s, worker events/s and output rows."""
    n = int(os.environ.get("BENCH_COURSE_RECORDS", 50_000))
    results: dict[str, Any] = {}
    for name in pipelines():
        traffic = Traffic(T0, rate=50.0, late_fraction=0.02, duplicate_fraction=0.02, seed=3)
        events, routed = generated(name, traffic, n, PACKAGE)
        _n, query = load_attribute(name, "query", PACKAGE)
        lines = [copy_line(t, r, routed) for t, r in events]
        replay_s, replay_rows = replay_seconds(lambda q=query: q, lines)
        inputs = list(query.inputs)
        await _delete(kafka, inputs)
        for t in inputs:
            await kafka.create_topic(t)
            values = [orjson.dumps(r) for topic, r in events if topic == t]
            await kafka.produce(t, values)
        sink = f"course-{name}-out-{uuid.uuid4().hex[:6]}"
        await kafka.create_topic(sink)
        run = await run_worker(
            kafka.bootstrap,
            lambda *_streams, q=query: q,
            inputs,
            sink,
            "exactly_once",
            workdir / f"course-{name}",
            app_name=f"course-{name}-{uuid.uuid4().hex[:6]}",
        )
        results[name] = {
            "events": len(events),
            "replay_events_per_s": round(len(events) / replay_s),
            "replay_rows": replay_rows,
            "worker_events_per_s": round(run.input_records / max(run.seconds, 1e-9)),
            "worker_input_records": run.input_records,
        }
        got = results[name]
        say(
            f"course {name}: {len(events):,} events, replay {got['replay_events_per_s']:,}/s, "
            f"worker {got['worker_events_per_s']:,}/s"
        )
        await _delete(kafka, [*inputs, sink])
    return results


async def _delete(kafka: Kafka, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await topics.delete(admin, names)
    finally:
        await admin.close()
