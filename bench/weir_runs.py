"""Weir through the real worker: throughput per pipeline and guarantee, latency at a steady
rate, restore time and state memory; plus the raw aiokafka limit."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from bench.common import MAX_BATCH_BYTES, Kafka, dir_bytes, stop_process
from weir.service.app import App, Trigger
from weir.service.runtime.worker import Worker
from weir.tables.query import Query

log = logging.getLogger("bench")


# -- raw limit ------------------------------------------------------------------------------
async def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    """Seconds to consume `n` records of `topic` with getmany and orjson.loads each value."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        loads = orjson.loads
        seen = 0
        started = time.perf_counter()
        while seen < n:
            got = await consumer.getmany(timeout_ms=1000)
            for recs in got.values():
                for r in recs:
                    loads(r.value)
                seen += sum(len(v) for v in got.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def raw_produce(kafka: Kafka, values: list[bytes], keys: list[bytes | None]) -> float:
    """Seconds to produce `values` to a fresh topic with create_batch/send_batch (linger 5 ms,
    512 KiB batches, acks=1), every acknowledgement awaited; the topic is deleted after."""
    topic = await kafka.create_topic(f"bench-raw-produce-{uuid.uuid4().hex[:8]}")
    try:
        return await kafka.produce(topic, values, keys)
    finally:
        await kafka.delete_topics([topic])


# -- worker runs ----------------------------------------------------------------------------
@dataclass
class WorkerRun:
    """Timings of one available-now worker run."""

    first_batch_wall: float
    """Wall time the first micro-batch started (its records were being decoded)."""
    started_wall: float
    """Wall time `Worker.run` was called (topic creation and group join follow)."""
    finished_wall: float
    """Wall time `Worker.run` returned (the last checkpoint committed, the group left)."""
    batches: int
    input_records: int

    @property
    def seconds(self) -> float:
        """From the first input taken to the worker finishing."""
        return self.finished_wall - self.first_batch_wall

    @property
    def seconds_with_startup(self) -> float:
        """From `Worker.run` to the worker finishing (group join and task start included)."""
        return self.finished_wall - self.started_wall


async def run_worker(
    bootstrap: str,
    build: Callable[..., Query],
    inputs: list[str],
    sink: str | None,
    guarantee: str,
    state_dir: Path,
    *,
    app_name: str | None = None,
    store: str = "rocksdb",
    key: str | tuple[str, ...] = (),
) -> WorkerRun:
    """Run `build`'s query over `inputs` with an available-now trigger through
    `weir.service.runtime.worker.Worker` and return its timings."""
    app = App(
        app_name or f"bench-{uuid.uuid4().hex[:8]}",
        processing_guarantee=guarantee,
        state_dir=state_dir,
        store=store,
        bootstrap_servers=bootstrap,
    )
    topics = [app.topic(t) for t in inputs]
    app.agent(
        *topics,
        sink=app.topic(sink) if sink else None,
        key=key,
        trigger=Trigger.available_now(),
        name="pipeline",
    )(build)
    first: list[float] = []
    progress: list[dict[str, Any]] = []

    @app.on_progress
    def heard(p: dict[str, Any]) -> None:  # called as the round commits
        progress.append(p)
        first.append(time.time() - p["durationMs"]["triggerExecution"] / 1000)

    worker = Worker(app, bootstrap)
    started = time.time()
    try:
        await worker.run()
    finally:
        finished = time.time()
    n_in = sum(p["numInputRows"] for p in progress)
    return WorkerRun(min(first, default=started), started, finished, len(progress), n_in)


# -- latency --------------------------------------------------------------------------------
LATENCY_WORKER = """
import asyncio, sys
from weir.service.app import App
from weir.service.commands import run_worker, tune_gc
from bench.pipelines import latency

bootstrap, topic, sink, state, name = sys.argv[1:6]
app = App(name, processing_guarantee="exactly_once", state_dir=state, bootstrap_servers=bootstrap)
app.agent(app.topic(topic), sink=app.topic(sink), name="pipeline")(latency)
tune_gc()
asyncio.run(run_worker(app))  # what `weir worker` runs
"""


async def latency_at_rate(
    kafka: Kafka, rate: int, seconds: float, warmup: float, workdir: Path
) -> dict[str, Any]:
    """Produce at `rate` records/s for warmup + seconds into a stateless exactly_once worker
    (a subprocess, default commit interval) and measure producer timestamp -> visible to a
    read_committed reader, for records produced after the warm-up."""
    tag = uuid.uuid4().hex[:8]
    topic = await kafka.create_topic(f"bench-lat-in-{tag}")
    sink = f"bench-lat-out-{tag}"
    await kafka.create_topic(sink)
    log_path = workdir / f"latency-worker-{tag}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                LATENCY_WORKER,
                kafka.bootstrap,
                topic,
                sink,
                str(workdir / f"lat-state-{tag}"),
                f"bench-lat-{tag}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        try:
            return await _latency_measure(kafka, proc, topic, sink, rate, seconds, warmup)
        finally:
            stop_process(proc, 30)


async def _latency_measure(
    kafka: Kafka,
    proc: subprocess.Popen[bytes],
    topic: str,
    sink: str,
    rate: int,
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, linger_ms=2, max_batch_size=MAX_BATCH_BYTES
    )
    reader = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await producer.start()
    await reader.start()
    reader.assign([TopicPartition(sink, 0)])
    # wait for the worker to join its group: one probe record must come through
    probe_deadline = time.time() + 60
    await producer.send_and_wait(
        topic, orjson.dumps({"event_id": "probe", "amount": 1.0, "pts": time.time() * 1000})
    )
    ready = False
    while not ready and time.time() < probe_deadline:
        got = await reader.getmany(timeout_ms=200)
        ready = any(got.values())
        if proc.poll() is not None:
            raise RuntimeError("latency worker exited early")
    if not ready:
        raise RuntimeError("latency worker produced nothing within 60 s")
    latencies: list[float] = []
    sent = 0
    sent_measured = 0
    received_measured = 0
    stop_produce = asyncio.Event()
    measure_from = time.time() * 1000 + warmup * 1000

    async def produce() -> None:
        nonlocal sent, sent_measured
        t0 = time.monotonic()
        end = t0 + warmup + seconds
        i = 0
        while time.monotonic() < end:
            due = int((time.monotonic() - t0) * rate)
            now_ms = time.time() * 1000
            # One batch per tick keeps the load generator's own CPU use small on 2 cores.
            batch = producer.create_batch()
            while sent < due:
                value = orjson.dumps({"event_id": f"l{i}", "amount": 1.0, "pts": now_ms})
                if batch.append(key=None, value=value, timestamp=None) is None:
                    await producer.send_batch(batch, topic, partition=0)
                    batch = producer.create_batch()
                    batch.append(key=None, value=value, timestamp=None)
                i += 1
                sent += 1
                sent_measured += now_ms >= measure_from
            if batch.record_count():
                await producer.send_batch(batch, topic, partition=0)
            await asyncio.sleep(0.005)
        stop_produce.set()

    async def read() -> None:
        nonlocal received_measured
        quiet_until: float | None = None
        while True:
            got = await reader.getmany(timeout_ms=100)
            now_ms = time.time() * 1000
            for recs in got.values():
                for r in recs:
                    pts = orjson.loads(r.value)["pts"]
                    if pts >= measure_from:
                        latencies.append(now_ms - pts)
                        received_measured += 1
            if stop_produce.is_set():
                if quiet_until is None:
                    quiet_until = time.monotonic() + 5.0
                if any(got.values()):
                    quiet_until = time.monotonic() + 2.0
                if time.monotonic() > quiet_until:
                    return

    started = time.monotonic()
    await asyncio.gather(produce(), read())
    produced_s = warmup + seconds
    await producer.stop()
    await reader.stop()
    achieved = sent / max(produced_s, 1e-9)
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return math.nan
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    return {
        "target_rate": rate,
        "achieved_produce_rate": round(achieved, 1),
        "measured_records": received_measured,
        "sent_measured_records": sent_measured,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 1) if latencies else math.nan,
        "wall_s": round(time.monotonic() - started, 1),
    }


def steady(result: dict[str, Any]) -> bool:
    """A rate counts as sustained when the producer kept >= 95% of it, every measured record
    came out, and p99 stayed under 5 s (no growing backlog)."""
    return (
        result["achieved_produce_rate"] >= 0.95 * result["target_rate"]
        and result["measured_records"] >= result["sent_measured_records"]
        and result["p99_ms"] < 5000
    )


# -- restore and memory ---------------------------------------------------------------------
class _RestoreLog(logging.Handler):
    """Collects the worker's "restored %d records in %.2fs" lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.restored: list[tuple[int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r"restored (\d+) records in ([\d.]+)s", record.getMessage())
        if m:
            self.restored.append((int(m.group(1)), float(m.group(2))))


async def restore_figures(
    bootstrap: str, topic: str, n_keys: int, runs: int, workdir: Path
) -> dict[str, Any]:
    """Fill N keys of state through the worker (exactly_once, RocksDB), then `runs` times: wipe
    the state folder and time the restore from the changelog (the worker's log line), with the
    RocksDB folder's size after it; then once into the memory store for the RSS delta."""
    from bench.pipelines import key_count

    state = workdir / "restore-state"
    name = f"bench-restore-{uuid.uuid4().hex[:6]}"
    fill = await run_worker(
        bootstrap, key_count, [topic], None, "exactly_once", state, app_name=name
    )
    handler = _RestoreLog()
    wlog = logging.getLogger("weir.worker")
    old_level = wlog.level
    wlog.addHandler(handler)
    wlog.setLevel(logging.INFO)
    wlog.propagate = False
    times: list[float] = []
    disk: list[int] = []
    try:
        for _ in range(runs):
            shutil.rmtree(state, ignore_errors=True)
            handler.restored.clear()
            await run_worker(
                bootstrap, key_count, [topic], None, "exactly_once", state, app_name=name
            )
            if handler.restored:
                times.append(sum(t for _, t in handler.restored))
            disk.append(dir_bytes(state))
    finally:
        wlog.removeHandler(handler)
        wlog.setLevel(old_level)
        wlog.propagate = True
    # each store, in a fresh process: peak RSS while a worker restores the N keys
    rss = {store: await _restore_rss(bootstrap, topic, name, workdir, store) for store in STORES}
    from bench.common import median

    per_m = 1_000_000 / max(n_keys, 1)
    t = median(times)
    return {
        "keys": n_keys,
        "fill_records_per_s": round(fill.input_records / max(fill.seconds, 1e-9), 1),
        "restore_seconds": round(t, 3),
        "restore_runs_seconds": times,
        "restore_records_per_s": round(n_keys / t, 1) if t else None,
        "rocksdb_disk_bytes_per_1m_keys": round(median(disk) * per_m),
        "memory_store_rss_delta_bytes_per_1m_keys": round(
            (rss["memory"]["peak"] - rss["memory"]["base"]) * per_m
        ),
        "rocksdb_worker_peak_rss_bytes": rss["rocksdb"]["peak"],
        "memory_worker_peak_rss_bytes": rss["memory"]["peak"],
        "how": (
            "restore: the worker's 'restored N records in Ts' log line after wiping the state "
            "folder (RocksDB store); disk: size of the RocksDB folder after restore; RSS: a "
            "fresh worker process restoring the N keys into each store, its peak resident "
            "memory (the whole process) and, for the memory store, that peak minus the RSS "
            "before the restore, per 1M keys"
        ),
    }


STORES = ("memory", "rocksdb")


async def _restore_rss(
    bootstrap: str, topic: str, name: str, workdir: Path, store: str
) -> dict[str, int]:
    """A fresh worker process restores app `name`'s keys into `store`: its RSS before (after
    imports) and at its peak."""
    state = workdir / f"probe-{store}-state"
    shutil.rmtree(state, ignore_errors=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MEMORY_PROBE, bootstrap, topic, name, str(state), store,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    shutil.rmtree(state, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe ({store}) failed: {stderr.decode()[-1500:]}")
    return dict(json.loads(stdout.decode().strip().splitlines()[-1]))


MEMORY_PROBE = """
import asyncio, json, sys, threading, time
from bench.common import rss_bytes
from bench.pipelines import key_count
from bench.weir_runs import run_worker
from pathlib import Path

bootstrap, topic, name, state, store = sys.argv[1:6]
peak = [0]
stop = threading.Event()

def sample() -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_bytes())
        time.sleep(0.01)

base = rss_bytes()
threading.Thread(target=sample, daemon=True).start()
asyncio.run(run_worker(bootstrap, key_count, [topic], None, "exactly_once", Path(state),
                       app_name=name, store=store))
stop.set()
print(json.dumps({"base": base, "peak": max(peak[0], rss_bytes())}))
"""


def tempdir(prefix: str) -> Path:
    """A fresh temporary folder."""
    return Path(tempfile.mkdtemp(prefix=prefix))
