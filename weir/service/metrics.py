"""Prometheus metrics of the worker, by Prometheus conventions: the `weir_` prefix, base units
(seconds, bytes), counters exposed with `_total`, and bounded labels only: app, query (the
user's agent; its internal repartition stages report under it with `stage="repartition"`, the
agent's own runner with `stage="main"`), topic, partition, operator (a state name), sink (a
sink's description), phase and reason (a fixed set each). Never a record key.

Code that runs inside a query's batch without knowing the query (sinks, the driver) labels
what it counts with `current()`, which the runner sets for the batch it runs.
"""

from __future__ import annotations

from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_Q = ["app", "query"]
_STAGE = [*_Q, "stage"]
_OP = [*_Q, "operator"]
_SINK = [*_Q, "sink"]
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_current: ContextVar[tuple[str, str]] = ContextVar("weir_query", default=("", ""))


def current() -> tuple[str, str]:
    """(app, query) of the batch being run in this asyncio context ("" outside a worker)."""
    return _current.get()


def set_current(app: str, query: str) -> None:
    """Label what code called from here on counts (in this context) with `app` and `query`."""
    _current.set((app, query))


INPUT_RECORDS = Counter(
    "weir_input_records",
    "Records read from the query's input topics (internal repartition topics not counted).",
    [*_Q, "topic"],
    registry=REGISTRY,
)
OUTPUT_RECORDS = Counter(
    "weir_output_records", "Rows a query wrote to a sink.", _SINK, registry=REGISTRY
)
BATCHES = Counter("weir_batches", "Micro-batches committed.", _STAGE, registry=REGISTRY)
BATCH_SECONDS = Histogram(
    "weir_batch_duration_seconds",
    "Time of a micro-batch by phase: get_batch (fetch and decode), add_batch (the query and "
    "its sinks), commit (the checkpoint), total.",
    [*_STAGE, "phase"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
E2E_LATENCY = Histogram(
    "weir_record_e2e_latency_seconds",
    "From a record's timestamp to the commit of the batch that processed it (sampled: the "
    "oldest and newest record of each batch).",
    _Q,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "weir_transaction_commit_seconds",
    "Time to make a checkpoint durable (the Kafka transaction, or its at-least-once writes).",
    _STAGE,
    buckets=_SECONDS,
    registry=REGISTRY,
)
ABORTS = Counter(
    "weir_checkpoint_aborts", "Checkpoints aborted and retried.", _STAGE, registry=REGISTRY
)
CONSUMER_LAG = Gauge(
    "weir_consumer_lag_records",
    "Records in an input partition after the last committed batch.",
    [*_Q, "topic", "partition"],
    registry=REGISTRY,
)
WATERMARK = Gauge(
    "weir_watermark_seconds",
    "A stateful operator's eviction watermark, as Unix time.",
    _OP,
    registry=REGISTRY,
)
WATERMARK_DELAY = Gauge(
    "weir_watermark_delay_seconds",
    "How far an operator's watermark is behind the wall clock at its last batch.",
    _OP,
    registry=REGISTRY,
)
LATE_ROWS = Counter(
    "weir_late_rows",
    "Rows an operator dropped as later than its watermark.",
    _OP,
    registry=REGISTRY,
)
STATE_ROWS = Gauge(
    "weir_state_rows",
    "Rows an operator holds in state (exact; Spark's numRowsTotal).",
    _OP,
    registry=REGISTRY,
)
STATE_ROWS_UPDATED = Counter(
    "weir_state_rows_updated", "State rows written, new or changed.", _OP, registry=REGISTRY
)
STATE_ROWS_REMOVED = Counter(
    "weir_state_rows_removed",
    "State rows removed (evicted, expired, merged).",
    _OP,
    registry=REGISTRY,
)
STATE_BYTES = Gauge(
    "weir_state_bytes",
    "Size of the state the worker holds for a query stage (RocksDB's live data estimate plus "
    "memtables; the memory store's keys and values).",
    _STAGE,
    registry=REGISTRY,
)
WINDOWS_CLOSED = Counter(
    "weir_windows_closed",
    "Windows (or sessions) a windowed aggregation closed and evicted.",
    _OP,
    registry=REGISTRY,
)
RESTORED_RECORDS = Counter(
    "weir_restored_changelog_records",
    "Changelog records applied while restoring state.",
    _STAGE,
    registry=REGISTRY,
)
RESTORE_REMAINING = Gauge(
    "weir_restore_remaining_records",
    "Changelog records still to apply in a restore under way (0 when done).",
    [*_STAGE, "partition"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "weir_dead_letter_records",
    "Records sent to the dead-letter topic, by reason (decode, schema, event_time, "
    "user_function, sink, size, batch).",
    [*_Q, "reason"],
    registry=REGISTRY,
)
SINK_SECONDS = Histogram(
    "weir_sink_write_seconds",
    "Time a sink took to write one batch (successful writes).",
    _SINK,
    buckets=_SECONDS,
    registry=REGISTRY,
)
SINK_WRITE_FAILURES = Counter(
    "weir_sink_write_failures",
    "Batch writes a sink failed, each attempt (the batch is retried, or given up on).",
    _SINK,
    registry=REGISTRY,
)
SINK_ERRORS = Counter(
    "weir_sink_errors",
    "Batches a sink still failed to write after its retries, kept in its error file and skipped.",
    _SINK,
    registry=REGISTRY,
)
REBALANCES = Counter(
    "weir_rebalances",
    "Partition assignments the consumer group gave a query stage.",
    _STAGE,
    registry=REGISTRY,
)
ASSIGNED_PARTITIONS = Gauge(
    "weir_assigned_partitions",
    "Input partitions a query stage holds.",
    _STAGE,
    registry=REGISTRY,
)
OFFSET_RESETS = Counter(
    "weir_offset_resets",
    "Committed offsets found outside the log (data loss) and reset.",
    _STAGE,
    registry=REGISTRY,
)
WATERMARK_JUMPS = Counter(
    "weir_watermark_jumps",
    "Batches that moved the watermark by more than watermark_jump_warn_ms.",
    _Q,
    registry=REGISTRY,
)
