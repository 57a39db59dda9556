"""`weir demo`: the word count agent over generated text on the local broker, with live counts.

The demo resets its own topics, consumer group and state first, so every run starts from zero
and can check itself: at the end the counts read back from the output topic must add up to
the words it produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from weir.service.endpoints import configured_bootstrap
from weir.service.runtime.worker import Worker


async def _reset(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
            for _ in range(100):
                if not set(await admin.list_topics()) & set(doomed):
                    break
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def run_demo(seconds: float) -> int:
    """Run the demo for about `seconds`; return 0 when the counts add up, 1 otherwise."""
    from weir.agents import word_count

    bootstrap = configured_bootstrap()
    app = word_count.app
    agent = app.agents["word_count"]
    await _reset(
        bootstrap,
        ["lines", "word-counts", agent.changelog_topic, agent.dead_letter_topic],
    )
    shutil.rmtree(app.settings.state_dir / app.name, ignore_errors=True)
    worker = Worker(app, bootstrap)
    worker_task = asyncio.create_task(worker.run())
    produced = 0
    counts: dict[str, int] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await producer.start()
    await reader.start()
    rng = random.Random(7)
    start = time.monotonic()
    produce_until = start + max(seconds - 5, 2)
    last_print = start
    try:
        while not worker_task.done() and "word-counts" not in await reader.topics():
            await asyncio.sleep(0.2)
        reader.assign([TopicPartition("word-counts", 0)])
        await reader.seek_to_beginning()
        print(f"weir demo: word count on {bootstrap} for {seconds:.0f}s (Ctrl-C stops)")
        while time.monotonic() - start < seconds and not worker_task.done():
            if time.monotonic() < produce_until:
                for _ in range(200):
                    line = word_count.line(rng)
                    produced += len(line.split())
                    await producer.send("lines", orjson.dumps({"value": line}))
            got = await reader.getmany(timeout_ms=100)
            for recs in got.values():
                for r in recs:
                    row = orjson.loads(r.value)
                    counts[row["word"]] = row["count"]
            if time.monotonic() - last_print >= 2 and time.monotonic() < produce_until + 2:
                last_print = time.monotonic()
                _print_counts(counts, produced, worker)
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await worker_task
        await producer.stop()
        await reader.stop()
    if worker_task.done() and worker_task.exception() is not None:
        print(f"weir demo: the worker failed: {worker_task.exception()}")
        return 1
    counted = sum(counts.values())
    _print_counts(counts, produced, worker)
    ok = counted == produced
    verdict = "add up" if ok else "DO NOT add up"
    print(f"weir demo: produced {produced} words, counts {verdict} to {counted}")
    return 0 if ok else 1


def _print_counts(counts: dict[str, int], produced: int, worker: Worker) -> None:
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    progress = worker.runners["word_count"].last_progress or {}
    print(
        f"-- batch {progress.get('batchId', '-')}: {produced} words produced, "
        f"{sum(counts.values())} counted, {len(counts)} distinct"
    )
    for word, n in top:
        print(f"   {word:<12} {n:>8}")
