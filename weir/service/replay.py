"""Replay mode: run a pipeline over a JSON-lines file through the same operator code as the
worker, without a broker.

N input lines make one micro-batch (batch ids from 0). A pipeline with several inputs reads the
`"topic"` field of each line to route it (the field is removed from the row); a single-input
pipeline takes every line. Every emitted row is written as one JSON line: `batch_id`, then the
row's columns, timestamps (windows as `window_start`/`window_end`) in ISO-8601 UTC. Batches
without input run only with `no_data_batches`; nothing is flushed at the end of the input.
Processing time is deterministic: batch k runs at epoch ms k * 1000, which is also what
`current_timestamp()` gives every row of that batch. The same input gives the same output, byte
for byte.

Lines that are not JSON objects, and rows the pipeline rejects, go to the dead-letter file with
the reason, the stage and the line number; they never stop the replay. A batch the query cannot
run at all stops it with one readable line, or with `on_batch_failure="dead_letter"` goes to
the dead-letter file whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Literal

import orjson

from weir.service import driver
from weir.service.app import Agent, App, load_agent_spec, load_attribute
from weir.service.runtime.topology import Stage
from weir.service.sinks.base import BatchIdentity, Sink
from weir.service.sinks.jsonlines import JsonLinesSink
from weir.service.sources.base import SourceRecord
from weir.service.sources.files import JsonLinesSource
from weir.tables.operator import ErrorStage, Row
from weir.tables.query import Query
from weir.tables.schema import Schema
from weir.tables.state.memory import MemoryStore
from weir.tables.state.rocksdb import RocksDBStore
from weir.tables.state.store import Store
from weir.tables.timeutil import parse_duration


@dataclass
class ReplayStats:
    """What a replay did."""

    input_lines: int = 0
    batches: int = 0
    output_rows: int = 0
    dead_letters: int = 0
    late_rows: int = 0


@dataclass
class Pipeline:
    """What replay runs: a query, and when it comes from an agent, the agent's input schemas,
    record columns and sinks."""

    query: Query
    schemas: Mapping[str, Schema] = field(default_factory=dict)
    record_columns: Mapping[str, str] = field(default_factory=dict)
    sinks: Sequence[Sink] = ()
    """The agent's sinks other than its Kafka topic (foreach-batch, files, tables)."""

    @staticmethod
    def of(agent: Agent) -> Pipeline:
        sinks = [s for s in Stage(agent).sinks() if s.delivery != "transactional"]
        return Pipeline(agent.query, agent.schemas, agent.record_columns, sinks)


def load_pipeline(name: str, package: str | None = None) -> Pipeline:
    """Return pipeline `name`: a module of `package` (its `query`), or
    `module:attribute` where the attribute is a Query, an App with one agent, `app.<agent>`,
    or the function an agent was declared with (what `weir worker` takes works here too).
    Raises ValueError with one readable line when there is none."""
    try:
        module_name, attr, found, agent_name = load_agent_spec(name, "query", package)
    except ValueError as exc:
        raise ValueError(f"no pipeline {name!r}: {exc}") from None
    what = attr or "query"
    if isinstance(found, App) and agent_name:
        agent = found.agents.get(agent_name)
        if agent is None:
            raise ValueError(f"{module_name}:{attr} has no agent {agent_name!r}: {_agents(found)}")
        return Pipeline.of(agent)
    if isinstance(found, App):
        if len(found.agents) != 1:
            raise ValueError(
                f"{module_name}:{what} has {len(found.agents)} agents: name one as "
                f"{module_name}:{what}.<agent> ({_agents(found)})"
            )
        return Pipeline.of(next(iter(found.agents.values())))
    if isinstance(found, Query):
        return Pipeline(found)
    raise ValueError(f"{module_name} has no Query, App or agent named {what!r}")


def load_query(name: str, package: str | None = None) -> Query:
    """The query of pipeline `name` (see `load_pipeline`)."""
    return load_pipeline(name, package).query


def _agents(app: App) -> str:
    return "agents: " + ", ".join(sorted(app.agents)) if app.agents else "no agents"


class ReplayBatchError(ValueError):
    """A batch failed in the query (not in a row it could isolate) and the policy is "fail"."""


class _FileRejects:
    """Failures as JSON lines: line number, reason, stage and the record."""

    def __init__(self, dead: IO[bytes] | None, stats: ReplayStats) -> None:
        self.dead = dead
        self.stats = stats
        self.rejected: set[int] = set()
        """Lines of the current batch already written as dead letters."""

    def write(self, lineno: int | None, raw: object, reason: str, stage: str) -> None:
        self.stats.dead_letters += 1
        if self.dead is not None:
            letter = {"line": lineno, "error": reason, "stage": stage, "record": raw}
            self.dead.write(orjson.dumps(letter, default=str))
            self.dead.write(b"\n")

    def record(self, rec: SourceRecord, reason: str, stage: ErrorStage) -> None:
        self.rejected.add(rec.offset)
        if stage == "decode" and (rec.value or b"").isspace():  # a blank line is no input
            self.stats.input_lines -= 1
            return
        raw: object
        try:  # a JSON object as itself, anything else as its text
            raw = orjson.loads(rec.value or b"")
        except orjson.JSONDecodeError:
            raw = None
        if not isinstance(raw, dict):
            raw = (rec.value or b"").decode(errors="replace").rstrip("\n")
        self.write(rec.offset, raw, reason, stage)

    def row(self, row: Row, reason: str, stage: ErrorStage) -> None:
        self.write(None, row, reason, stage)

    def late(self, rows: list[tuple[str, Row]]) -> None:
        self.stats.late_rows += len(rows)


def replay(
    query: Query,
    src: IO[bytes],
    out: IO[bytes],
    *,
    batch_size: int,
    no_data_batches: bool = False,
    dead: IO[bytes] | None = None,
    store: Store | None = None,
    on_batch_failure: Literal["fail", "dead_letter"] = "fail",
    max_event_time_skew_ms: int | None = None,
    schemas: Mapping[str, Schema] | None = None,
    record_columns: Mapping[str, str] | None = None,
    sinks: Sequence[Sink] = (),
) -> ReplayStats:
    """Replay `src` (JSON lines) through `query`, writing emitted rows to `out`: the worker's
    driver over a file source and a JSON-lines sink. `schemas` (per input) conform the rows
    as an agent's schema does; a misfit goes to `dead`. `sinks` (an agent's Parquet, Delta,
    PostgreSQL, foreach-batch... sinks) get each batch too, before `out`, with the batch
    identity ("replay", 0, batch id); a sink that fails fails the batch.

    Bad lines and rows the pipeline rejects go to `dead` with their line number, reason and
    stage. A batch the query cannot run raises ReplayBatchError (one readable line) or, with
    `on_batch_failure="dead_letter"`, sends its lines to `dead` and goes on. With
    `max_event_time_skew_ms`, rows more than that ahead of the wall clock at the start of the
    replay are dead-lettered."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    task = query.task(store or MemoryStore(), no_data_batches=no_data_batches)
    inputs = query.inputs
    single = inputs[0] if len(inputs) == 1 else None
    source = JsonLinesSource(src, single or "")
    sink = JsonLinesSink(out)
    stats = ReplayStats()
    rejects = _FileRejects(dead, stats)
    limit = None
    if max_event_time_skew_ms is not None:
        limit = int(time.time() * 1000) + max_event_time_skew_ms
    loop = asyncio.new_event_loop() if sinks else None

    def run(records: Mapping[str, Sequence[SourceRecord]]) -> bool:
        """Run a batch; False when it failed and its lines went to the dead letters."""
        rejects.rejected.clear()
        try:
            driven = driver.process(
                task,
                records,
                now=task.next_batch_id * 1000,
                rejects=rejects,
                identity=BatchIdentity("replay", 0, task.next_batch_id),
                event_time_limit=limit,
                route=None if single else "topic",
                schemas=schemas,
                record_columns=record_columns,
            )
            if driven.output is not None:
                for other in sinks:
                    assert loop is not None
                    loop.run_until_complete(other.write(driven.output))
                sink.write_now(driven.output)
        except Exception as exc:
            task.abort()
            lines = [r for rs in records.values() for r in rs]
            if on_batch_failure == "fail":
                where = (
                    f"the batch from line {lines[0].offset}" if lines else "a batch without input"
                )
                raise ReplayBatchError(
                    f"{where} failed: {type(exc).__name__}: {exc} (--on-batch-failure "
                    "dead_letter sends such batches to the dead letters)"
                ) from None
            for r in lines:
                if r.offset not in rejects.rejected:  # not already a dead letter (decode)
                    rejects.record(r, f"batch failed: {type(exc).__name__}: {exc}", "batch")
            return False
        stats.output_rows += len(driven.result.rows)
        stats.batches += 1
        task.commit(driven.result)
        return True

    try:
        for other in sinks:
            assert loop is not None
            loop.run_until_complete(other.open())
        while not source.exhausted:
            batch = source.read(batch_size).get(0)
            if not batch:  # the end, or only blank lines
                continue
            stats.input_lines += sum(len(rs) for rs in batch.values())
            run(batch)
            while task.wants_no_data_batch() and run({}):
                pass
    finally:
        if loop is not None:
            for other in sinks:
                loop.run_until_complete(other.close())
            loop.close()
    return stats


def replay_files(
    pipeline: str,
    input_path: Path,
    output_path: Path,
    *,
    batch_size: int,
    no_data_batches: bool = False,
    state_dir: Path | None = None,
    on_batch_failure: Literal["fail", "dead_letter"] = "fail",
    max_event_time_skew_ms: int | None = None,
    package: str | None = None,
    run_sinks: bool = True,
) -> ReplayStats:
    """Replay a file into a file; dead letters go to `<output>.dead-letters.jsonl` if any.
    A bare pipeline name is a module of `package`. An agent's own sinks (files, tables,
    foreach-batch) run too unless `run_sinks` is False.
    Without `max_event_time_skew_ms` the pipeline module's `max_event_time_skew` applies (the
    course pipelines set one); `max_event_time_skew_ms=-1` turns the guard off."""
    found = load_pipeline(pipeline, package)
    if max_event_time_skew_ms is None:
        module = pipeline.partition(":")[0]
        _name, own = load_attribute(module, "max_event_time_skew", package=package)
        if isinstance(own, str | int | timedelta):
            max_event_time_skew_ms = parse_duration(own)
    elif max_event_time_skew_ms < 0:
        max_event_time_skew_ms = None
    dead_path = output_path.with_name(output_path.name + ".dead-letters.jsonl")
    store: Store = RocksDBStore(state_dir) if state_dir else MemoryStore()
    with (
        open(input_path, "rb") as src,
        open(output_path, "wb") as out,
        open(dead_path, "wb") as dead,
    ):
        stats = replay(
            found.query,
            src,
            out,
            batch_size=batch_size,
            no_data_batches=no_data_batches,
            dead=dead,
            store=store,
            on_batch_failure=on_batch_failure,
            max_event_time_skew_ms=max_event_time_skew_ms,
            schemas=found.schemas,
            record_columns=found.record_columns,
            sinks=found.sinks if run_sinks else (),
        )
    store.close()
    if stats.dead_letters == 0:
        dead_path.unlink(missing_ok=True)
    return stats
