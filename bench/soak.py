"""`python -m bench.soak` (`make soak`): a constant-rate soak of the tumbling, dedup and join
pipelines, each in its own exactly_once worker process on the project's own local broker.

Contract: produces SOAK_RATE records/s (default 5,000) into each pipeline for SOAK_SECONDS
(default 600), samples each worker's resident memory (VmRSS) and state rows (`weir_state_rows`
from its /metrics) every SOAK_SAMPLE_S seconds, then checks every output exactly: dedup emits
each distinct event once, the join matches every order once, and the tumbling counts add up
to every event. Prints one table and writes bench/soak.json; exit 1 when a check fails or a
worker dies. Event time runs faster than wall time (the bench data's spacing), so windows
close and watermarks evict state within seconds: memory must stay flat after the first minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from bench.common import BENCH_DIR, Kafka, stop_process
from bench.data import ACTIONS, BASE_MS, JITTER_MS, STEP_MS, USERS
from weir.service.local import LocalKafka
from weir.service.local.proc import free_port
from weir.tables.timeutil import iso_utc

KINDS = ("tumbling", "dedup", "join")
ORDER_STEP_MS = 1_000
"""Event-time step between orders: the join's 4-hour range and 2-hour watermark span ~22,000
orders, so its state settles within ~10 s at 2,500 orders/s."""
DUP_FRACTION = 0.1


def say(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Truth:
    """What a correct run of each pipeline emits, kept while producing."""

    def __init__(self) -> None:
        self.events = 0
        self.distinct = 0
        self.orders = 0
        self.sent = {"tumbling": 0, "dedup": 0, "join": 0}


def _records(
    kind: str, start: int, n: int, rng: random.Random, truth: Truth
) -> Iterator[tuple[str, bytes, bytes | None]]:
    """`n` records for `kind` from index `start`: (topic role, value, key)."""
    for i in range(start, start + n):
        if kind == "tumbling":
            ts = BASE_MS + i * STEP_MS + rng.randint(-JITTER_MS, JITTER_MS)
            action = ACTIONS[rng.randrange(len(ACTIONS))]
            row = {
                "event_id": f"e{i:09d}",
                "user_id": f"u{rng.randrange(USERS)}",
                "action": action,
                "amount": round(rng.uniform(1.0, 100.0), 2),
                "event_time": iso_utc(ts),
            }
            truth.events += 1
            yield "in", orjson.dumps(row), action.encode()
        elif kind == "dedup":
            # a retry repeats one of the last 100 first sends (same id and event time)
            j = i
            if _is_retry(i):
                j = i - 1 - rng.randrange(100)
                while _is_retry(j):
                    j -= 1
            ts = BASE_MS + j * STEP_MS + (j * 7919) % (2 * JITTER_MS) - JITTER_MS
            row = {"event_id": f"e{j:09d}", "user_id": f"u{j % USERS}", "event_ts": iso_utc(ts)}
            truth.distinct += j == i
            yield "in", orjson.dumps(row), None
        else:
            o_ts = BASE_MS + i * ORDER_STEP_MS
            oid = f"o{i:09d}"
            order = {"order_id": oid, "amount": float(i % 500), "order_ts": iso_utc(o_ts)}
            pay = {
                "payment_id": f"p{i:09d}",
                "order_id": oid,
                "pay_ts": iso_utc(o_ts + rng.randint(0, 30 * 60_000)),
            }
            truth.orders += 1
            yield "orders", orjson.dumps(order), oid.encode()
            yield "payments", orjson.dumps(pay), oid.encode()


def _is_retry(i: int) -> bool:
    """Whether dedup record `i` repeats an earlier event (about DUP_FRACTION of them)."""
    return i > 100 and (i * 2_654_435_761) % 1000 < DUP_FRACTION * 1000


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _state_rows(port: int) -> int:
    """Sum of the worker's `weir_state_rows` gauges (-1 when its endpoint does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return -1
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("weir_state_rows{")
        )
    )


class Soak:
    def __init__(self, bootstrap: str, workdir: Path, rate: int, seconds: float) -> None:
        self.kafka = Kafka(bootstrap)
        self.workdir = workdir
        self.rate = rate
        self.seconds = seconds
        self.tag = uuid.uuid4().hex[:8]
        self.topics: dict[str, dict[str, str]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.samples: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
        self.truth = Truth()
        self.elapsed = 0.0

    async def setup(self) -> None:
        for kind in KINDS:
            roles = ["orders", "payments"] if kind == "join" else ["in"]
            names = {r: f"soak-{kind}-{r}-{self.tag}" for r in roles + ["out"]}
            for name in names.values():
                await self.kafka.create_topic(name, partitions=2)
            self.topics[kind] = names
            env = {
                **os.environ,
                "PYTHONPATH": str(BENCH_DIR.parent),
                "SOAK_KIND": kind,
                "SOAK_TAG": self.tag,
                "SOAK_OUT": names["out"],
                "SOAK_IN": names.get("in", ""),
                "SOAK_ORDERS": names.get("orders", ""),
                "SOAK_PAYMENTS": names.get("payments", ""),
                "WEIR_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
                "WEIR_STATE_DIR": str(self.workdir / f"state-{kind}"),
                "WEIR_WEB_PORT": str(port := free_port()),
            }
            self.ports[kind] = port
            log = open(self.workdir / f"worker-{kind}.log", "wb")  # noqa: SIM115 - child owns it
            self.procs[kind] = subprocess.Popen(
                [sys.executable, "-m", "weir.service.cli", "worker", "bench.soak_app:app"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def produce(self) -> None:
        """SOAK_RATE records/s into each pipeline in 100 ms ticks (record batches per
        partition, keys placed by Kafka's default partitioner), sampling as it goes."""
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka.bootstrap, linger_ms=5)
        await producer.start()
        rng = random.Random(7)
        place = DefaultPartitioner()
        parts = [0, 1]
        per_tick = max(1, self.rate // 10)
        started = time.monotonic()
        next_sample = started
        tick = 0
        try:
            while (elapsed := time.monotonic() - started) < self.seconds:
                batches: dict[tuple[str, int], Any] = {}
                futures = []
                for kind in KINDS:
                    n = per_tick // 2 if kind == "join" else per_tick
                    start = self.truth.sent[kind]
                    for role, value, key in _records(kind, start, n, rng, self.truth):
                        where = (self.topics[kind][role], place(key, parts, parts))
                        batch = batches.get(where) or batches.setdefault(
                            where, producer.create_batch()
                        )
                        if batch.append(key=key, value=value, timestamp=None) is None:
                            futures.append(
                                await producer.send_batch(batch, where[0], partition=where[1])
                            )
                            batches[where] = batch = producer.create_batch()
                            batch.append(key=key, value=value, timestamp=None)
                    self.truth.sent[kind] += n
                for (topic, partition), batch in batches.items():
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                await asyncio.gather(*futures)
                if time.monotonic() >= next_sample:
                    self.sample(elapsed)
                    next_sample += float(os.environ.get("SOAK_SAMPLE_S", "10"))
                tick += 1
                lag = started + tick * 0.1 - time.monotonic()
                if lag > 0:
                    await asyncio.sleep(lag)
            self.elapsed = time.monotonic() - started
            self.sample(self.elapsed)
        finally:
            await producer.stop()

    def sample(self, elapsed: float) -> None:
        for kind, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"the {kind} worker exited with {proc.returncode}")
            s = {"t": round(elapsed, 1), "rss_mib": round(_rss_mib(proc.pid), 1)}
            s["state_rows"] = _state_rows(self.ports[kind])
            self.samples[kind].append(s)
        say(
            f"t={elapsed:5.0f}s "
            + " ".join(
                f"{k}: rss {self.samples[k][-1]['rss_mib']:.0f} MiB "
                f"state {self.samples[k][-1]['state_rows']}"
                for k in KINDS
            )
        )

    async def check(self, deadline_s: float = 180) -> dict[str, str]:
        """Read every output until it is exact or the deadline passes; verdict per pipeline."""
        want = {
            "dedup": self.truth.distinct,
            "join": self.truth.orders,
            "tumbling": self.truth.events,
        }
        verdicts: dict[str, str] = {}
        end = time.monotonic() + deadline_s
        for kind in KINDS:
            while True:
                values = await self.kafka.read_values(self.topics[kind]["out"])
                got = _output_total(kind, values)
                if got == want[kind]:
                    verdicts[kind] = f"ok ({got:,} {'rows' if kind != 'tumbling' else 'events'})"
                    break
                if time.monotonic() > end or got > want[kind]:
                    verdicts[kind] = f"FAILED: {got:,} where {want[kind]:,} were due"
                    break
                await asyncio.sleep(5)
        return verdicts

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc, 30)


def _output_total(kind: str, values: list[bytes]) -> int:
    if kind != "tumbling":
        ids = [orjson.loads(v)["event_id" if kind == "dedup" else "order_id"] for v in values]
        return len(ids) if len(set(ids)) == len(ids) else -len(ids)
    last: dict[tuple[Any, ...], int] = {}
    for v in values:
        r = orjson.loads(v)
        last[(r["window_start"], r["action"])] = r["event_count"]
    return sum(last.values())


def _at(samples: list[dict[str, float]], t: float) -> dict[str, float]:
    return min(samples, key=lambda s: abs(s["t"] - t))


async def main_async(bootstrap: str, workdir: Path, rate: int, seconds: float) -> int:
    soak = Soak(bootstrap, workdir, rate, seconds)
    await soak.setup()
    try:
        await soak.produce()
        verdicts = await soak.check()
    finally:
        soak.stop()
    result: dict[str, Any] = {"rate_per_pipeline": rate, "seconds": seconds, "pipelines": {}}
    achieved = {k: round(n / soak.elapsed) for k, n in soak.truth.sent.items()}
    result["achieved_rate"] = achieved
    print(f"\nsoak: {rate:,} records/s into each pipeline for {seconds:.0f} s, exactly_once")
    print(
        "achieved input rate (records/s; join: orders, each with a payment): "
        + ", ".join(f"{k} {v:,}" for k, v in achieved.items())
    )
    print(
        f"{'pipeline':10} {'rss@1min':>9} {'rss@end':>9} {'rss max':>9} {'state@1min':>11} "
        f"{'state@end':>10}  check"
    )
    for kind in KINDS:
        s = soak.samples[kind]
        one, last = _at(s, 60), s[-1]
        peak = max(x["rss_mib"] for x in s)
        result["pipelines"][kind] = {
            "rss_mib_1min": one["rss_mib"],
            "rss_mib_end": last["rss_mib"],
            "rss_mib_max": peak,
            "state_rows_1min": one["state_rows"],
            "state_rows_end": last["state_rows"],
            "check": verdicts[kind],
            "samples": s,
        }
        print(
            f"{kind:10} {one['rss_mib']:>8.0f}M {last['rss_mib']:>8.0f}M {peak:>8.0f}M "
            f"{one['state_rows']:>11,.0f} {last['state_rows']:>10,.0f}  {verdicts[kind]}"
        )
    (BENCH_DIR / "soak.json").write_text(json.dumps(result, indent=1))
    return 0 if all(v.startswith("ok") for v in verdicts.values()) else 1


def main() -> int:
    rate = int(os.environ.get("SOAK_RATE", "5000"))
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    keep = os.environ.get("SOAK_KEEP")  # a folder to keep the worker logs and state in
    with tempfile.TemporaryDirectory(prefix="weir-soak-") as scratch:
        tmp = keep or scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        broker = LocalKafka(Path(tmp) / "kafka")
        bootstrap = broker.up()
        try:
            return asyncio.run(main_async(bootstrap, Path(tmp), rate, seconds))
        finally:
            broker.down()


if __name__ == "__main__":
    sys.exit(main())
