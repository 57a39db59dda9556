"""Configuration, statistics, machine information and small Kafka helpers for the bench."""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MAX_BATCH_BYTES = 512 * 1024
DEFAULT_RECORDS = 1_000_000
"""The issue's size. The peers process all of it too, and they are 10-100x slower than Weir
here: with 3 runs, a full run takes several hours on 2 cores, most of it in faust."""
PEER_MIN_RATE = 500
"""Records/s below which a peer run is recorded as timed out: the default peer timeout is
records / PEER_MIN_RATE seconds (at least 120 s)."""


@dataclass(frozen=True)
class Config:
    """Sizes of one bench run, from the environment.

    BENCH_RECORDS (input records per throughput run, default DEFAULT_RECORDS; Weir and the
    peers process the same records), BENCH_RUNS (runs per figure, the median is reported),
    BENCH_QUICK=1 (20,000 records, 1 run, short latency phases),
    BENCH_RESTORE_KEYS (keys for the restore and memory figures, default BENCH_RECORDS),
    BENCH_LATENCY_SECONDS (measured seconds per latency rate), BENCH_PEER_TIMEOUT (seconds a
    peer may take for one run, default records / PEER_MIN_RATE; a run that takes longer is
    recorded as timed out, with the records it had reached), BENCH_PROFILE=1 or a
    pipeline's name (profile one exactly_once run of it; 1 is tumbling), BENCH_SKIP (comma
    list of sections to skip: raw, weir, peers, kstreams, replay, latency, restore, course;
    one peer: quixstreams, faust; or one of Weir's worker pipelines: stateless, join...),
    BENCH_COURSE_RECORDS (bench/course.py).
    """

    records: int
    runs: int
    quick: bool
    restore_keys: int
    latency_seconds: float
    peer_timeout: float
    profile: str
    """The pipeline to profile, or "" for none."""
    skip: frozenset[str] = field(default_factory=frozenset)

    @staticmethod
    def from_env() -> Config:
        """Read the configuration from BENCH_* environment variables."""
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        records = int(os.environ.get("BENCH_RECORDS", 20_000 if quick else DEFAULT_RECORDS))
        runs = int(os.environ.get("BENCH_RUNS", 1 if quick else 3))
        if "BENCH_PEER_RECORDS" in os.environ:
            raise ValueError("BENCH_PEER_RECORDS is gone: the peers process BENCH_RECORDS too")
        peer_timeout = os.environ.get("BENCH_PEER_TIMEOUT")
        return Config(
            records=records,
            runs=max(1, runs),
            quick=quick,
            restore_keys=int(os.environ.get("BENCH_RESTORE_KEYS", records)),
            latency_seconds=float(os.environ.get("BENCH_LATENCY_SECONDS", 6 if quick else 20)),
            peer_timeout=(
                float(peer_timeout) if peer_timeout else max(120.0, records / PEER_MIN_RATE)
            ),
            profile={"0": "", "1": "tumbling"}.get(p := os.environ.get("BENCH_PROFILE", ""), p),
            skip=frozenset(s for s in os.environ.get("BENCH_SKIP", "").split(",") if s),
        )


def median(values: Sequence[float]) -> float:
    """The median of `values` (0.0 when empty)."""
    return float(statistics.median(values)) if values else 0.0


def figure(counts: Sequence[int], seconds: Sequence[float], **extra: Any) -> dict[str, Any]:
    """A throughput figure: median records/s over the runs, with every run's numbers."""
    rates = [c / s for c, s in zip(counts, seconds, strict=True) if s > 0]
    return {
        "records_per_s": round(median(rates), 1),
        "runs_records_per_s": [round(r, 1) for r in rates],
        "runs_seconds": [round(s, 3) for s in seconds],
        "records": list(counts),
        **extra,
    }


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory, Python and OS versions of the machine running the bench."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "sched_affinity_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_total_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def dir_bytes(path: Path) -> int:
    """Total size of the files under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Kafka:
    """Topic creation, fast batched producing and offset queries against the bench broker."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def create_topic(self, name: str, partitions: int = 1, **config: str) -> str:
        """Create `name` (input topics keep their records forever: retention.ms=-1)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            cfg = {"retention.ms": "-1", **config}
            await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=cfg)])
        finally:
            await admin.close()
        return name

    async def delete_topics(self, names: list[str]) -> None:
        """Delete topics (scratch topics of the raw produce runs)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(names)
        finally:
            await admin.close()

    async def produce(
        self,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None] | None = None,
        timestamps: Sequence[int] | None = None,
        partition: int = 0,
    ) -> float:
        """Produce pre-encoded records to one partition with create_batch/send_batch and wait
        for every acknowledgement; return the seconds it took (producer start excluded)."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=5, max_batch_size=MAX_BATCH_BYTES
        )
        await producer.start()
        try:
            started = time.perf_counter()
            futures = []
            batch = producer.create_batch()
            for i, value in enumerate(values):
                key = keys[i] if keys is not None else None
                ts = timestamps[i] if timestamps is not None else None
                if batch.append(key=key, value=value, timestamp=ts) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=ts)
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*futures)
            return time.perf_counter() - started
        finally:
            await producer.stop()

    async def partitions(self, topic: str) -> list[int]:
        """The topic's partition numbers, from the broker (a consumer's cached metadata may
        not know the topic yet)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            (desc,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        return sorted(p["partition"] for p in desc["partitions"])

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """End offsets per partition (read_committed: the last stable offsets)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, isolation_level="read_committed"
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in await self.partitions(topic)]
            ends = await consumer.end_offsets(tps)
            return {tp.partition: off for tp, off in ends.items()}
        finally:
            await consumer.stop()

    async def committed(self, group: str, topic: str) -> int:
        """Sum of the group's committed offsets on `topic` (0 when none)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return sum(m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset > 0)

    async def read_values(self, topic: str) -> list[bytes]:
        """Every committed value of `topic` (see read_records)."""
        return [v for _, v in await self.read_records(topic)]

    async def read_records(self, topic: str) -> list[tuple[bytes | None, bytes]]:
        """Every committed (key, value) of `topic` with a value, in offset order per
        partition, read with a read_committed consumer up to the last stable offsets."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in await self.partitions(topic)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            out: list[tuple[bytes | None, bytes]] = []
            pending = {tp for tp in tps if ends[tp] > 0}
            for tp in tps:
                await consumer.seek_to_beginning(tp)
            while pending:
                got = await consumer.getmany(*pending, timeout_ms=500)
                for recs in got.values():
                    out.extend((r.key, r.value) for r in recs if r.value is not None)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            return out
        finally:
            await consumer.stop()


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """End a subprocess the bench started: SIGTERM if it still runs, SIGKILL after `grace`
    seconds; returns once it has exited."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
