"""The worker's logs: readable lines on a terminal, or one JSON object per line for a log
collector (`WEIR_LOG_FORMAT`: "auto", the default, is text on a terminal and JSON otherwise).

A JSON line holds `time` (ISO-8601 UTC), `level`, `logger` and `message`, plus the fields the
call gave in `extra` among LOG_FIELDS (`event` names a lifecycle event: assigned, restored,
first_batch, revoked, stopping, stopped; `app`, `query`, `partition`, `partitions`,
`batch_id`, `offsets`, `records`). A field that is not JSON is written as its text.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

LOG_FIELDS = (
    "event",
    "app",
    "query",
    "topic",
    "partition",
    "partitions",
    "batch_id",
    "offsets",
    "records",
    "seconds",
)
FORMATS = ("auto", "json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


ROUTINE_RETRIES = (
    "NotEnoughReplicas",
    "GroupCoordinatorNotAvailable",
    "Marking the coordinator dead",
    "NotCoordinatorForGroup",
    "LeaderNotAvailable",
    "NotLeaderForPartition",
)
"""What aiokafka logs as a warning or error while it retries what a broker answers routinely
on fresh topics and groups (a leader or coordinator still being elected): Weir says itself
when Kafka is really unreachable or a checkpoint fails."""


class RoutineRetries(logging.Filter):
    """Logs aiokafka's routine retries (ROUTINE_RETRIES) at debug level instead of as warnings
    and errors; everything else passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and record.name.startswith("aiokafka"):
            message = record.getMessage()
            if any(text in message for text in ROUTINE_RETRIES):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure(level: str, log_format: str | None = None) -> None:
    """Set up the root logger for a `weir` command: `log_format` (else `WEIR_LOG_FORMAT`) is
    "json", "text" or "auto" (an unknown value is "auto"; the settings refuse it with one line
    when the app loads)."""
    fmt = (log_format or os.environ.get("WEIR_LOG_FORMAT") or "auto").lower()
    if fmt not in ("json", "text"):
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RoutineRetries())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
