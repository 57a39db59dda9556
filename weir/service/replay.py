"""Replay mode: run a pipeline over a JSON-lines file through the same operator code as the
worker, without a broker.

N input lines make one micro-batch (batch ids from 0). A pipeline with several inputs reads the
`"topic"` field of each line to route it (the field is removed from the row); a single-input
pipeline takes every line. Every emitted row is written as one JSON line: `batch_id`, then the
row's columns, timestamps (windows as `window_start`/`window_end`) in ISO-8601 UTC. Batches
without input run only with `no_data_batches`; nothing is flushed at the end of the input.
Processing time is deterministic: batch k runs at epoch ms k * 1000. The same input gives the
same output, byte for byte.

Lines that are not JSON objects, and rows the pipeline rejects, go to the dead-letter file with
the reason, the stage and the line number; they never stop the replay. A batch the query cannot
run at all stops it with one readable line, or with `on_batch_failure="dead_letter"` goes to
the dead-letter file whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Literal

import orjson

from weir.service.app import load_attribute
from weir.service.codec import decode_values, render_row
from weir.tables.operator import Row
from weir.tables.query import Query
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


def load_query(name: str, package: str | None = None) -> Query:
    """Return the query of pipeline `name`: a module of `package` (its `query`), or
    `module:attribute`. Raises ValueError with one readable line when there is none."""
    try:
        module_name, query = load_attribute(name, "query", package=package)
    except ValueError as exc:
        raise ValueError(f"no pipeline {name!r}: {exc}") from None
    if not isinstance(query, Query):
        raise ValueError(f"{module_name} has no Query named {name.partition(':')[2] or 'query'!r}")
    return query


def _batches(lines: IO[bytes], size: int) -> Iterator[tuple[int, list[bytes]]]:
    """Batches of up to `size` lines read from `lines`, each with the line number of its
    first line."""
    lineno = 1
    while True:
        chunk = list(islice(lines, size))
        if not chunk:
            return
        yield lineno, chunk
        lineno += len(chunk)


class ReplayBatchError(ValueError):
    """A batch failed in the query (not in a row it could isolate) and the policy is "fail"."""


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
) -> ReplayStats:
    """Replay `src` (JSON lines) through `query`, writing emitted rows to `out`.

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
    ts_cols = query.timestamp_columns
    stats = ReplayStats()
    dumps = orjson.dumps
    limit = None
    if max_event_time_skew_ms is not None:
        limit = int(time.time() * 1000) + max_event_time_skew_ms

    def dead_letter(lineno: int | None, raw: object, reason: str, stage: str) -> None:
        stats.dead_letters += 1
        if dead is not None:
            record = {"line": lineno, "error": reason, "stage": stage, "record": raw}
            dead.write(dumps(record, default=str))
            dead.write(b"\n")

    def run(rows_by_input: dict[str, list[Row]], linenos: dict[str, list[int]]) -> None:
        result = task.run_batch(rows_by_input, task.next_batch_id * 1000, limit)
        prefix = {"batch_id": result.batch_id}
        for row in result.rows:
            out.write(dumps(prefix | render_row(row, ts_cols) if ts_cols else prefix | row))
            out.write(b"\n")
        for (row, reason, stage), origin in zip(
            result.ctx.errors, result.error_origins, strict=True
        ):
            lineno = None if origin is None else linenos[origin[0]][origin[1]]
            dead_letter(lineno, row, reason, stage)
        stats.output_rows += len(result.rows)
        stats.late_rows += len(result.late_rows)
        stats.batches += 1
        task.commit(result)

    def run_or_apply_policy(
        rows_by_input: dict[str, list[Row]],
        linenos: dict[str, list[int]],
        lines: dict[int, bytes],
    ) -> bool:
        """Run a batch; False when it failed and its `lines` went to the dead letters."""
        try:
            run(rows_by_input, linenos)
            return True
        except Exception as exc:
            task.abort()
            reason = f"batch failed: {type(exc).__name__}: {exc}"
            if on_batch_failure == "fail":
                where = f"the batch from line {min(lines)}" if lines else "a batch without input"
                raise ReplayBatchError(
                    f"{where} failed: {type(exc).__name__}: {exc} (--on-batch-failure "
                    "dead_letter sends such batches to the dead letters)"
                ) from None
            for lineno in sorted(n for ns in linenos.values() for n in ns):
                dead_letter(
                    lineno, lines[lineno].decode(errors="replace").rstrip(), reason, "batch"
                )
            return False

    for first, chunk in _batches(src, batch_size):
        rows_by_input: dict[str, list[Row]] = {name: [] for name in inputs}
        rows, errors = decode_values(chunk)
        kept: list[int] = list(range(first, first + len(chunk)))
        blank = 0
        if errors:
            failed = {i for i, _reason in errors}
            kept = [first + i for i in range(len(chunk)) if i not in failed]
            for i, reason in errors:
                if chunk[i].isspace():  # blank lines are not input
                    blank += 1
                else:
                    text = chunk[i].decode(errors="replace").rstrip("\n")
                    dead_letter(first + i, text, reason, "decode")
        stats.input_lines += len(chunk) - blank
        if blank == len(chunk):
            continue
        linenos: dict[str, list[int]] = {name: [] for name in inputs}
        if single is not None:
            rows_by_input[single] = rows
            linenos[single] = kept
        else:
            for lineno, row in zip(kept, rows, strict=True):
                name = row.pop("topic", None)
                if name not in rows_by_input:
                    reason = f"topic must be one of {inputs}, got {name!r}"
                    dead_letter(lineno, row, reason, "schema")
                    continue
                rows_by_input[name].append(row)
                linenos[name].append(lineno)
        run_or_apply_policy(rows_by_input, linenos, dict(enumerate(chunk, first)))
        while task.wants_no_data_batch() and run_or_apply_policy({}, {}, {}):
            pass
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
) -> ReplayStats:
    """Replay a file into a file; dead letters go to `<output>.dead-letters.jsonl` if any.
    A bare pipeline name is a module of `package`.
    Without `max_event_time_skew_ms` the pipeline module's `max_event_time_skew` applies (the
    course pipelines set one); `max_event_time_skew_ms=-1` turns the guard off."""
    query = load_query(pipeline, package)
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
            query,
            src,
            out,
            batch_size=batch_size,
            no_data_batches=no_data_batches,
            dead=dead,
            store=store,
            on_batch_failure=on_batch_failure,
            max_event_time_skew_ms=max_event_time_skew_ms,
        )
    store.close()
    if stats.dead_letters == 0:
        dead_path.unlink(missing_ok=True)
    return stats
