"""Progress of a query, as Spark's `StreamingQueryProgress`: one record per micro-batch round
of the query (every task that had work in the round, rolled up), with its internal
repartition stages counted in it, and the Prometheus metrics the same batches feed.

Why a roll-up per round rather than a record per task: a Spark user reads `lastProgress` as
the one description of the query (input rows, rates, state, sources); Weir runs a query as one
task per input partition, committed one after the other in a round, so the round is what a
Spark micro-batch is. Each task's own batch ids are kept in the record's `tasks`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition

from weir.service import metrics
from weir.service.listener import StreamingQueryListener
from weir.service.status import MAX_PROGRESS_RECORDS, public
from weir.tables.query import BatchResult
from weir.tables.timeutil import iso_utc

log = logging.getLogger("weir.worker")

_NAMESPACE = uuid.UUID("6f1d3c2a-5b8e-4e0f-9a51-3c7d2e8b9f40")


@dataclass(frozen=True)
class BatchTimes:
    """When the phases of a task's micro-batch ended (monotonic seconds)."""

    started: float
    planned: float
    """After the batch plan was written (= started when the query needs none)."""
    decoded: float
    processed: float
    """After the query ran and the sinks outside the checkpoint wrote."""
    committed: float


@dataclass(frozen=True)
class TaskBatch:
    """What one committed task batch reports to its query's progress."""

    partition: int
    result: BatchResult
    n_input: int
    ranges: Mapping[str, tuple[int, int]]
    """Per input topic, the first offset read and the offset after the last."""
    times: BatchTimes
    n_output: int
    """Rows written to the stage's sinks (0 without one)."""
    counts: Mapping[str, int]
    """Per input topic, the records read."""
    watermark: int | None
    """The task's watermark for its next batch (epoch ms)."""


@dataclass
class _Pending:
    """What the stage reading the user's topics did since the query's last record."""

    rows: dict[str, int] = field(default_factory=dict)
    starts: dict[TopicPartition, int] = field(default_factory=dict)
    ends: dict[TopicPartition, int] = field(default_factory=dict)


def iso_or_none(ms: int | None) -> str | None:
    """ISO-8601 UTC of epoch ms, or None."""
    return None if ms is None else iso_utc(ms)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class QueryProgress:
    """The progress of one query (a user's agent) across its stages and tasks.

    Contract: `read_input` is called by the stage that reads the query's own input topics
    after each round with committed batches, `complete_round` by the query's main stage; each
    `complete_round` with committed batches appends exactly one record, whose `numInputRows`
    counts every input record read since the previous record once (so the records' input rows
    add up to the records read), and calls the listeners with it. A failing listener is logged
    and never stops the query.
    """

    def __init__(
        self,
        app: str,
        name: str,
        group_id: str,
        sink: str | None,
        listeners: list[StreamingQueryListener],
        run_id: str,
    ) -> None:
        self.app = app
        self.name = name
        self.id = str(uuid.uuid5(_NAMESPACE, group_id))
        self.run_id = run_id
        self.sink = sink
        self.listeners = listeners
        self.recent: deque[dict[str, Any]] = deque(maxlen=MAX_PROGRESS_RECORDS)
        self.status: dict[str, Any] = {
            "message": "Initializing",
            "isDataAvailable": False,
            "isTriggerActive": False,
        }
        self._pending = _Pending()
        self._ends: dict[TopicPartition, int] = {}
        """Per partition of the user's topics, the position after the last committed batch."""
        self._latest: dict[TopicPartition, int] = {}
        self._next_batch_id = 0
        self._last_started: float | None = None

    @property
    def last(self) -> dict[str, Any] | None:
        """The last record as kept (internal keys included), or None before any."""
        return self.recent[-1] if self.recent else None

    @property
    def last_progress(self) -> dict[str, Any] | None:
        """Spark's `lastProgress`: the query's last progress record, or None before any."""
        return public(self.recent[-1]) if self.recent else None

    @property
    def recent_progress(self) -> list[dict[str, Any]]:
        """Spark's `recentProgress`: the last records, oldest first (at most
        `MAX_PROGRESS_RECORDS`)."""
        return [public(r) for r in self.recent]

    lastProgress = last_progress
    recentProgress = recent_progress

    def set_status(self, message: str, data: bool, active: bool) -> None:
        """Spark's `StreamingQueryStatus`: what the query does now."""
        self.status = {"message": message, "isDataAvailable": data, "isTriggerActive": active}

    def read_input(
        self, batches: list[TaskBatch], lag: Mapping[TopicPartition, tuple[int, int]]
    ) -> None:
        """Count the user's input records of a round's committed `batches` (per input topic in
        the metrics); `lag`: the source's positions and ends, per partition."""
        pending = self._pending
        for b in batches:
            for topic, (first, end) in b.ranges.items():
                tp = TopicPartition(topic, b.partition)
                pending.starts.setdefault(tp, first)
                pending.ends[tp] = end
                pending.rows[topic] = pending.rows.get(topic, 0) + b.counts[topic]
                metrics.INPUT_RECORDS.labels(self.app, self.name, topic).inc(b.counts[topic])
        for tp, (position, _end) in lag.items():
            pending.ends.setdefault(tp, position)
        self._ends.update(pending.ends)
        self.note_lag(lag)

    def note_lag(self, lag: Mapping[TopicPartition, tuple[int, int]]) -> None:
        """Set the lag gauges from a stage's source positions and ends, per partition."""
        for tp, (position, end) in lag.items():
            self._latest[tp] = end
            metrics.CONSUMER_LAG.labels(self.app, self.name, tp.topic, str(tp.partition)).set(
                max(0, end - position)
            )

    def complete_round(
        self,
        batches: list[TaskBatch],
        operators: list[dict[str, Any]],
        started: float,
        ended: float,
    ) -> dict[str, Any] | None:
        """Append the record of a main-stage round (`operators`: `state_operators` of the
        stage's tasks after it) and call the listeners; None when no batch committed."""
        if not batches:
            return None
        wall = time.time()
        pending, self._pending = self._pending, _Pending()
        n_input = sum(pending.rows.values())
        trigger = max(ended - started, 1e-9)
        since = started - self._last_started if self._last_started is not None else trigger
        self._last_started = started
        phases = {"walCommit": 0.0, "getBatch": 0.0, "addBatch": 0.0, "commitOffsets": 0.0}
        for b in batches:
            t = b.times
            phases["walCommit"] += t.planned - t.started
            phases["getBatch"] += t.decoded - t.planned
            phases["addBatch"] += t.processed - t.decoded
            phases["commitOffsets"] += t.committed - t.processed
        record: dict[str, Any] = {
            "id": self.id,
            "runId": self.run_id,
            "name": self.name,
            "timestamp": iso_utc(int(wall * 1000)),
            "batchId": self._next_batch_id,
            "batchDuration": int(trigger * 1000),
            "numInputRows": n_input,
            "inputRowsPerSecond": round(n_input / max(since, 1e-9), 1),
            "processedRowsPerSecond": round(n_input / trigger, 1),
            "durationMs": {
                **{k: _ms(v) for k, v in phases.items()},
                "triggerExecution": _ms(trigger),
            },
            "eventTime": _event_time(batches, operators),
            "stateOperators": operators,
            "sources": self._sources(pending, since, trigger),
            "sink": {
                "description": self.sink,
                "numOutputRows": sum(b.n_output for b in batches) if self.sink else -1,
            },
            "tasks": [
                {
                    "partition": b.partition,
                    "batchId": b.result.batch_id,
                    "watermark": iso_or_none(b.watermark),
                }
                for b in batches
            ],
        }
        self._next_batch_id += 1
        self.recent.append(record)
        self._tell("on_query_progress", public(record))
        return record

    def started(self) -> None:
        """Tell the listeners the query started."""
        self._tell("on_query_started", self._event())

    def terminated(self, error: BaseException | None) -> None:
        """Tell the listeners the query stopped (`error`: why, None on request)."""
        line = None if error is None else f"{type(error).__name__}: {error}"
        self._tell("on_query_terminated", {**self._event(), "exception": line})

    def _event(self) -> dict[str, Any]:
        return {"id": self.id, "runId": self.run_id, "name": self.name, "timestamp": _now()}

    def _tell(self, method: str, event: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, method)(event)
            except Exception as exc:
                log.warning("%s: listener %r failed in %s: %r", self.name, listener, method, exc)

    def _sources(self, pending: _Pending, since: float, trigger: float) -> list[dict[str, Any]]:
        """Every partition of the user's topics known so far: those without input since the
        last record start and end at the same offset, as in Spark."""
        known = self._ends
        out = []
        for topic in sorted({tp.topic for tp in known}):
            tps = sorted((tp for tp in known if tp.topic == topic), key=_partition)
            ends = {str(tp.partition): known[tp] for tp in tps}
            starts = {str(tp.partition): pending.starts.get(tp, known[tp]) for tp in tps}
            latest = {str(tp.partition): self._latest.get(tp, known[tp]) for tp in tps}
            behind = [max(0, latest[p] - ends[p]) for p in ends]
            rows = pending.rows.get(topic, 0)
            out.append(
                {
                    "description": f"KafkaV2[Subscribe[{topic}]]",
                    "startOffset": {topic: starts},
                    "endOffset": {topic: ends},
                    "latestOffset": {topic: latest},
                    "numInputRows": rows,
                    "inputRowsPerSecond": round(rows / max(since, 1e-9), 1),
                    "processedRowsPerSecond": round(rows / trigger, 1),
                    "metrics": {
                        "minOffsetsBehindLatest": str(min(behind, default=0)),
                        "maxOffsetsBehindLatest": str(max(behind, default=0)),
                        "avgOffsetsBehindLatest": str(
                            round(sum(behind) / len(behind), 1) if behind else 0.0
                        ),
                    },
                }
            )
        return out


def _now() -> str:
    return iso_utc(int(time.time() * 1000))


def _partition(tp: TopicPartition) -> int:
    return tp.partition


def _event_time(batches: list[TaskBatch], operators: list[dict[str, Any]]) -> dict[str, Any]:
    """Spark's `eventTime`: min, max and avg of the watermarked event times the round read,
    and the watermark the round ran with (the global one, as ISO-8601: an operator after a join
    or a window gets a lower one of its own, in its `stateOperators` entry)."""
    stats = [b.result.ctx.event_times for b in batches if b.result.ctx.event_times]
    out: dict[str, Any] = {}
    if stats:
        count = sum(s[3] for s in stats)
        out = {
            "min": iso_utc(min(s[0] for s in stats)),
            "max": iso_utc(max(s[1] for s in stats)),
            "avg": iso_utc(sum(s[2] for s in stats) // count),
        }
    marks = [op["_watermark"] for op in operators if op.get("_watermark") is not None]
    out["watermark"] = iso_utc(max(marks)) if marks else None
    return out


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
        app, query = metrics.current()
        metrics.WATERMARK_JUMPS.labels(app, query).inc()
