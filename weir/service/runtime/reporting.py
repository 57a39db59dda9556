"""What a stage reports of its batches: its part of the query's progress (per task, the
state its operators hold), and the Prometheus metrics of its batches, rounds, dead letters
and rebalances, labelled (app, query, stage)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from weir.service import metrics
from weir.service.runtime.checkpoint import Outgoing
from weir.service.runtime.progress import QueryProgress, TaskBatch, iso_or_none
from weir.service.sinks.base import Sink
from weir.service.sources.kafka import KafkaSource
from weir.tables.query import BatchResult, OperatorBatch
from weir.tables.state.store import Store

log = logging.getLogger("weir.worker")


class StageReport:
    """The reporting of one stage (an agent's runner, or its repartition stage).

    Contract: `batch` is called once per committed task batch, `round` once per round with
    at least one; the main stage's `round` appends the query's progress record. `forget` a
    task when it closes: its state stops counting in `numRowsTotal`.
    """

    def __init__(
        self,
        progress: QueryProgress,
        labels: tuple[str, str, str],
        reads_user_topics: bool,
        name: str,
    ) -> None:
        """`name` is the stage's own name in readable log lines (the agent's, or its
        repartition stage's)."""
        self.progress = progress
        self.name = name
        self.labels = labels
        self.reads_user_topics = reads_user_topics
        self.totals = OperatorTotals()
        self._committed_once: set[int] = set()

    @property
    def main(self) -> bool:
        """True for the agent's own stage (the one that reports the query's progress)."""
        return self.labels[2] == "main"

    def batch(self, batch: TaskBatch, records: Mapping[str, Sequence[Any]], out: Outgoing) -> None:
        """A task's batch committed: its metrics, its operators' state, its dead letters, and
        the first_batch lifecycle line of a task's first commit."""
        count_batch(self.labels, batch, records)
        self.totals.update(batch.partition, batch.result)
        self.dead_letters(out)
        app, query, _stage = self.labels
        if batch.partition not in self._committed_once:
            self._committed_once.add(batch.partition)
            fields = {
                "event": "first_batch", "app": app, "query": query,
                "partition": batch.partition, "batch_id": batch.result.batch_id,
                "records": batch.n_input,
            }  # fmt: skip
            log.info("%s[%d]: first batch committed", self.name, batch.partition, extra=fields)

    def dead_letters(self, out: Outgoing) -> None:
        """Count the dead letters of a batch committed as dead letters only."""
        app, query, _stage = self.labels
        for reason, n in out.dead_by_reason.items():
            metrics.DEAD_LETTERS.labels(app, query, reason).inc(n)

    def forget(self, partition: int) -> None:
        """Task `partition` closed."""
        self._committed_once.discard(partition)
        self.totals.forget(partition)

    def assignment(self, n_partitions: int, rebalanced: bool) -> None:
        """The stage holds `n_partitions` now (`rebalanced`: after an assignment)."""
        if rebalanced:
            metrics.REBALANCES.labels(*self.labels).inc()
        metrics.ASSIGNED_PARTITIONS.labels(*self.labels).set(n_partitions)

    def round(
        self,
        done: list[TaskBatch],
        started: float,
        source: KafkaSource,
        stores: list[Store],
        sinks: list[Sink],
        stateful: bool,
    ) -> None:
        """A round of committed batches (`done`): lag, state size, the sinks' output rows and,
        for the main stage, the query's progress record."""
        lag = source.lag_view()
        if self.reads_user_topics:
            self.progress.read_input(done, lag)
        else:
            self.progress.note_lag(lag)
        size = sum(store.size_bytes() for store in stores)
        metrics.STATE_BYTES.labels(*self.labels).set(size)
        if not self.main:
            return
        app, query, _stage = self.labels
        for sink in sinks:
            metrics.OUTPUT_RECORDS.labels(app, query, sink.description).inc(
                sum(b.n_output for b in done)
            )
        operators = self.totals.state_operators(done, size if stateful else None)
        count_operators(app, query, operators)
        self.progress.complete_round(done, operators, started, time.monotonic())


class OperatorTotals:
    """Per task and stateful operator of a stage, what its last batch left (rows held and
    watermark), for the stage's `stateOperators` across all its tasks."""

    def __init__(self) -> None:
        self._by_task: dict[int, dict[str, OperatorBatch]] = {}

    def update(self, partition: int, result: BatchResult) -> None:
        """Note task `partition`'s committed batch."""
        held = self._by_task.setdefault(partition, {})
        for op in result.operators:
            held[op.state_name] = op

    def forget(self, partition: int) -> None:
        """Task `partition` closed: its state is no longer this worker's."""
        self._by_task.pop(partition, None)

    def state_operators(
        self, batches: list[TaskBatch], state_bytes: int | None
    ) -> list[dict[str, Any]]:
        """Spark's `stateOperators` for the stage after a round: `numRowsTotal` summed over
        every open task (exact), the other counts over the round's `batches`, the watermark
        the least of the tasks' ("_watermark": epoch ms, internal). `memoryUsedBytes`: the
        stage's store size when it has a single stateful operator (None otherwise)."""
        names: dict[str, OperatorBatch] = {}
        for held in self._by_task.values():
            for name, op in held.items():
                names.setdefault(name, op)
        out = []
        for name, op in names.items():
            in_round = [o for b in batches for o in b.result.operators if o.state_name == name]
            marks = [
                wm
                for held in self._by_task.values()
                if name in held and (wm := held[name].watermark) is not None
            ]
            least = min(marks) if marks else None
            out.append(
                {
                    "operatorName": op.operator,
                    "stateName": name,
                    "numRowsTotal": sum(
                        h[name].rows_total for h in self._by_task.values() if name in h
                    ),
                    "numRowsUpdated": sum(o.rows_updated for o in in_round),
                    "numRowsRemoved": sum(o.rows_removed for o in in_round),
                    "numRowsDroppedByWatermark": sum(o.late_rows for o in in_round),
                    "numWindowsClosed": sum(o.windows_closed for o in in_round),
                    "memoryUsedBytes": state_bytes if len(names) == 1 else None,
                    "eventTimeWatermark": iso_or_none(least),
                    "_watermark": least,
                }
            )
        return out


def count_batch(
    labels: tuple[str, str, str], batch: TaskBatch, records: Mapping[str, Sequence[Any]]
) -> None:
    """Feed a committed task batch into the batch metrics (`labels`: app, query, stage) and
    the end-to-end latency from its oldest and newest record's timestamp to now."""
    t = batch.times
    metrics.BATCHES.labels(*labels).inc()
    for phase, seconds in (
        ("get_batch", t.decoded - t.started),
        ("add_batch", t.processed - t.decoded),
        ("commit", t.committed - t.processed),
        ("total", t.committed - t.started),
    ):
        metrics.BATCH_SECONDS.labels(*labels, phase).observe(seconds)
    metrics.COMMIT_SECONDS.labels(*labels).observe(t.committed - t.processed)
    now_ms = time.time() * 1000
    e2e = metrics.E2E_LATENCY.labels(labels[0], labels[1])
    for recs in records.values():
        for rec in (recs[0], recs[-1]) if recs else ():
            if rec.timestamp is not None and rec.timestamp > 0:
                e2e.observe(max(0.0, (now_ms - rec.timestamp) / 1000))


def count_operators(app: str, query: str, operators: list[dict[str, Any]]) -> None:
    """Feed a round's `stateOperators` into the per-operator metrics."""
    now = time.time()
    for op in operators:
        labels = (app, query, op["stateName"])
        metrics.STATE_ROWS.labels(*labels).set(op["numRowsTotal"])
        metrics.STATE_ROWS_UPDATED.labels(*labels).inc(op["numRowsUpdated"])
        metrics.STATE_ROWS_REMOVED.labels(*labels).inc(op["numRowsRemoved"])
        metrics.LATE_ROWS.labels(*labels).inc(op["numRowsDroppedByWatermark"])
        metrics.WINDOWS_CLOSED.labels(*labels).inc(op["numWindowsClosed"])
        wm = op["_watermark"]
        if wm is not None:
            metrics.WATERMARK.labels(*labels).set(wm / 1000)
            metrics.WATERMARK_DELAY.labels(*labels).set(max(0.0, now - wm / 1000))
