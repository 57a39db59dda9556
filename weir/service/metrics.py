"""Prometheus metrics of the worker. Names follow Prometheus conventions: base units (seconds),
counters end in `_total` (added by the client), labels are bounded (agent and partition, or a
sink's description: one per configured sink)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

INPUT_RECORDS = Counter(
    "weir_input_records", "Records consumed from input topics.", ["agent"], registry=REGISTRY
)
OUTPUT_RECORDS = Counter(
    "weir_output_records", "Rows produced to the sink.", ["agent"], registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "weir_dead_letter_records",
    "Records that could not be decoded or processed, sent to the dead-letter topic.",
    ["agent"],
    registry=REGISTRY,
)
LATE_ROWS = Counter(
    "weir_late_rows", "Rows dropped as later than the watermark.", ["agent"], registry=REGISTRY
)
BATCHES = Counter("weir_batches", "Micro-batches committed.", ["agent"], registry=REGISTRY)
ABORTS = Counter(
    "weir_checkpoint_aborts", "Checkpoints aborted and retried.", ["agent"], registry=REGISTRY
)
OFFSET_RESETS = Counter(
    "weir_offset_resets",
    "Committed offsets found outside the log (data loss) and reset.",
    ["agent"],
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "weir_batch_duration_seconds",
    "Wall time of a micro-batch from start to committed checkpoint.",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
STATE_ROWS = Gauge(
    "weir_state_rows",
    "State keys held by the operators of a task (exact).",
    ["agent", "partition"],
    registry=REGISTRY,
)
WATERMARK = Gauge(
    "weir_watermark_seconds",
    "Eviction watermark as Unix time in seconds.",
    ["agent", "partition"],
    registry=REGISTRY,
)
RESTORED_RECORDS = Counter(
    "weir_restored_changelog_records",
    "Changelog records applied while restoring state.",
    ["agent"],
    registry=REGISTRY,
)
RESTORE_REMAINING = Gauge(
    "weir_restore_remaining_records",
    "Changelog records still to apply in restores under way.",
    ["agent", "partition"],
    registry=REGISTRY,
)
WATERMARK_JUMPS = Counter(
    "weir_watermark_jumps",
    "Batches that moved the watermark by more than watermark_jump_warn_ms.",
    ["agent"],
    registry=REGISTRY,
)
SINK_ERRORS = Counter(
    "weir_sink_errors",
    "Batches a sink still failed to write after its retries, kept in its error file and skipped.",
    ["sink"],
    registry=REGISTRY,
)
SINK_WRITE_FAILURES = Counter(
    "weir_sink_write_failures",
    "Batch writes a sink failed, each attempt (the batch is retried, or given up on).",
    ["sink"],
    registry=REGISTRY,
)
