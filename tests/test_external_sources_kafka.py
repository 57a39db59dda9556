"""Non-Kafka inputs in the worker (rate here; files in test_file_source_kafka): the agent runs
as one task, its source position is checkpointed with its state, and a stop and a restart
continue exactly where the last checkpoint ended: every value once, none missing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import KafkaHelper
from weir.service.app import App
from weir.service.runtime.worker import Worker
from weir.tables.query import Query
from weir.tables.stream import Stream

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


def rate_app(name: str, out: str, state_dir: Path, bootstrap: str) -> App:
    app = App(name, state_dir=state_dir, bootstrap_servers=bootstrap, commit_interval_ms=100)

    @app.agent(app.rate(rows_per_second=200), sink=app.topic(out))
    def evens(s: Stream) -> Query:
        return s.filter(lambda r: r["value"] % 2 == 0).query()

    return app


async def run_for(app: App, seconds: float) -> None:
    worker = Worker(app)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(seconds)
    worker.stop()
    await asyncio.wait_for(task, 60)


async def test_rate_source_restarts_where_it_stopped(kafka: KafkaHelper, state_dir: Path) -> None:
    out = await kafka.topic("rate-out")
    name = f"rate-{out[-6:]}"
    await run_for(rate_app(name, out, state_dir, kafka.bootstrap), 4)
    first = await kafka.read_json(out, idle_s=1.0)
    assert len(first) > 100, "the rate source made too few rows in 4 s"
    await run_for(rate_app(name, out, state_dir, kafka.bootstrap), 3)
    rows = await kafka.read_json(out, idle_s=1.0)
    values = [r["value"] for r in rows]
    assert values == list(range(0, 2 * len(values), 2)), "a value missing or repeated"
    assert len(values) > len(first)
    # the timestamps are the rate's: start + n * 5 ms, the same start after the restart
    t0 = rows[0]["timestamp"]
    assert all(isinstance(r["timestamp"], str) and r["timestamp"].endswith("Z") for r in rows)
    assert t0 <= rows[-1]["timestamp"]


async def test_socket_word_count_as_the_course_starts(kafka: KafkaHelper, state_dir: Path) -> None:
    """Section 1.2's first query: lines from a socket, words counted in update mode."""
    from weir.agents.word_count import build

    lines = [b"the stream is a table\n", b"a table that grows\n", b"The end\n"]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for line in lines:
            writer.write(line)
            await writer.drain()
            await asyncio.sleep(0.2)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out = await kafka.topic("socket-counts")
    app = App(f"sock-{out[-6:]}", state_dir=state_dir, bootstrap_servers=kafka.bootstrap)
    app.agent(app.socket(host="127.0.0.1", port=port), sink=app.topic(out), key="word")(build)
    try:
        await run_for(app, 5)
    finally:
        server.close()
    finals = {r["word"]: r["count"] for r in await kafka.read_json(out, idle_s=1.0)}
    assert finals == {  # split on " " as the course's query does: "The" is not "the"
        "the": 1,
        "The": 1,
        "stream": 1,
        "is": 1,
        "a": 2,
        "table": 2,
        "that": 1,
        "grows": 1,
        "end": 1,
    }
