"""Progress of committed micro-batches: Spark-style `StreamingQueryProgress` records and the
Prometheus metrics they feed."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from weir.service import metrics
from weir.service.app import Agent
from weir.tables.query import QUERY_PREFIX, BatchResult
from weir.tables.timeutil import iso_utc

log = logging.getLogger("weir.worker")


@dataclass(frozen=True)
class BatchTimes:
    """When the phases of a micro-batch ended (monotonic seconds)."""

    started: float
    decoded: float
    processed: float
    committed: float

    @property
    def duration(self) -> float:
        """Seconds from the start of the batch to its committed checkpoint."""
        return max(self.committed - self.started, 1e-9)


def iso_or_none(ms: int | None) -> str | None:
    """ISO-8601 UTC of epoch ms, or None."""
    return None if ms is None else iso_utc(ms)


def batch_progress(
    agent: Agent,
    partition: int,
    result: BatchResult,
    sources: list[dict[str, Any]],
    n_input: int,
    changes: Mapping[bytes, bytes | None],
    state_rows: int,
    watermark: int | None,
    times: BatchTimes,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """The progress record of one committed batch of one task (`previous`: the task's last,
    for the input rate). Keys starting with "_" are internal."""
    duration = times.duration
    wall = time.time()
    elapsed = wall - previous["_wall"] if previous else duration
    return {
        "id": agent.group_id,
        "name": agent.name,
        "partition": partition,
        "batchId": result.batch_id,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + "Z",
        "numInputRows": n_input,
        "inputRowsPerSecond": round(n_input / max(elapsed, 1e-9), 1),
        "processedRowsPerSecond": round(n_input / duration, 1),
        "durationMs": {
            "getBatch": round((times.decoded - times.started) * 1000, 3),
            "addBatch": round((times.processed - times.decoded) * 1000, 3),
            "commitOffsets": round((times.committed - times.processed) * 1000, 3),
            "triggerExecution": round(duration * 1000, 3),
        },
        "eventTime": {"watermark": iso_or_none(watermark)},
        "stateOperators": state_operators(result, changes, state_rows),
        "sources": sources,
        "sink": {
            "description": agent.sink.name if agent.sink else None,
            "numOutputRows": len(result.rows),
        },
        "_wall": wall,
    }


def state_operators(
    result: BatchResult, changes: Mapping[bytes, bytes | None], state_rows: int
) -> list[dict[str, Any]]:
    """Spark's `stateOperators`, one entry per stateful operator in plan order, with the
    operator's own input watermark. `numRowsTotal` is the exact number of state keys the
    task holds (groups, rows and their index entries), given only when the task has a single
    stateful operator (None otherwise)."""
    ops = result.operators
    out = []
    for op in ops:
        if len(ops) == 1:  # all but the query's own keys
            updated = sum(1 for k in changes if not k.startswith(QUERY_PREFIX))
        else:
            updated = sum(1 for k in changes if k.startswith(op.prefix))
        out.append(
            {
                "operatorName": op.operator,
                "stateName": op.state_name,
                "numRowsTotal": state_rows if len(ops) == 1 else None,
                "numRowsUpdated": updated,
                "numRowsDroppedByWatermark": op.late_rows,
                "eventTimeWatermark": iso_or_none(op.watermark),
            }
        )
    return out


def count_batch(
    name: str,
    partition: int,
    n_input: int,
    n_output: int,
    duration: float,
    state_rows: int,
    watermark: int | None,
) -> None:
    """Feed a committed batch into the Prometheus metrics."""
    metrics.INPUT_RECORDS.labels(name).inc(n_input)
    metrics.OUTPUT_RECORDS.labels(name).inc(n_output)
    metrics.BATCHES.labels(name).inc()
    metrics.BATCH_SECONDS.labels(name).observe(duration)
    metrics.STATE_ROWS.labels(name, str(partition)).set(state_rows)
    if watermark is not None:
        metrics.WATERMARK.labels(name, str(partition)).set(watermark / 1000)


def check_watermark(
    name: str, partition: int, result: BatchResult, wm: int | None, now: int, jump: int | None
) -> None:
    """Log and count a watermark that jumped more than `jump` ms in one batch, or to more than
    `jump` ahead of processing time `now` (an event time far ahead, most likely)."""
    if jump is None or wm is None or not result.watermark_moved:
        return
    if result.watermark_advance > jump or wm > now + jump:
        log.warning(
            "%s[%d]: batch %d moved the watermark %.0f s ahead, to %s (an event time far "
            "ahead? max_event_time_skew dead-letters those)",
            name,
            partition,
            result.batch_id,
            result.watermark_advance / 1000,
            iso_or_none(wm),
        )
        metrics.WATERMARK_JUMPS.labels(name).inc()
