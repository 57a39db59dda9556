"""`weir produce <pipeline>`: a pipeline's generated input (its module's `generate`, see
weir.service.traffic) written to its Kafka topics at a steady rate, with a copy in a JSON-lines
file that `weir replay` reads (a `"topic"` field on each line when the pipeline has several
inputs)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from weir.service.app import load_attribute
from weir.service.connection import KafkaConnection, check_access
from weir.service.runtime import topics
from weir.service.traffic import Event, Row, Traffic


@dataclass
class Produced:
    """What `produce` wrote."""

    events: int
    per_topic: dict[str, int]
    late: int
    duplicates: int
    seconds: float


async def produce(
    pipeline: str,
    kafka: KafkaConnection,
    *,
    rate: float,
    count: int,
    late_fraction: float = 0.0,
    duplicate_fraction: float = 0.0,
    copy: Path | None = None,
    seed: int = 7,
    partitions: int = 1,
    package: str | None = None,
) -> Produced:
    """Produce `count` generated events of `pipeline` (plus its duplicates) at `rate` per
    second of wall time, event times starting now; topics missing are created with
    `partitions`; `kafka` says where and how to connect (TLS, SASL). Raises ValueError (one
    line) when the pipeline has no generator, KafkaAccessError when a broker refuses the
    login or its certificate is not trusted, and aiokafka's errors when Kafka is unreachable
    or refuses otherwise."""
    traffic = Traffic(int(time.time() * 1000), rate, late_fraction, duplicate_fraction, seed=seed)
    events, routed = generated(pipeline, traffic, count, package)
    await check_access(kafka)
    await _create_topics(kafka, sorted({t for t, _row in events}), partitions)
    producer = kafka.producer(linger_ms=10, acks="all")
    await producer.start()
    per_topic: dict[str, int] = {}
    started = time.monotonic()
    out = open(copy, "wb") if copy is not None else None  # noqa: SIM115 - closed below
    try:
        futures: list[asyncio.Future[Any]] = []
        for i, (topic, row) in enumerate(events):
            futures.append(await producer.send(topic, orjson.dumps(row)))
            per_topic[topic] = per_topic.get(topic, 0) + 1
            if out is not None:
                out.write(copy_line(topic, row, routed))
            ahead = started + (i + 1) / rate - time.monotonic()
            if ahead > 0.005:
                await asyncio.sleep(ahead)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
        if out is not None:
            out.close()
    secs = time.monotonic() - started
    return Produced(len(events), per_topic, traffic.late, traffic.duplicates, secs)


def generated(
    pipeline: str, traffic: Traffic, count: int, package: str | None = None
) -> tuple[list[Event], bool]:
    """The first `count` events of `pipeline`'s `generate(traffic, n)` (plus its duplicates),
    and whether the pipeline has several inputs (then each line of a replay copy names its
    topic). `pipeline` is a module of `package` or a module (anything after ":" is ignored).
    Raises ValueError (one line) when the module cannot be imported or has no generator."""
    module = pipeline.partition(":")[0]
    module_name, generate = load_attribute(module, "generate", package)
    if not callable(generate):
        raise ValueError(f"{module_name} has no generate(traffic, n): nothing to produce")
    _name, query = load_attribute(module, "query", package)
    routed = query is not None and len(getattr(query, "inputs", ())) > 1
    return list(generate(traffic, count)), routed


def copy_line(topic: str, row: Row, routed: bool) -> bytes:
    """One line of the replay copy: the row as JSON, its `"topic"` first when `routed`."""
    return orjson.dumps({"topic": topic, **row} if routed else row) + b"\n"


async def _create_topics(kafka: KafkaConnection, names: list[str], partitions: int) -> None:
    admin = kafka.admin()
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        for name in missing:
            await topics.create(admin, name, partitions, {})
        await topics.wait_for_leaders(admin, missing)
    finally:
        await admin.close()
