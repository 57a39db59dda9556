"""When an agent's micro-batches run (`Trigger`), as Spark's triggers say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Trigger:
    """When micro-batches run, as in Spark: continuous micro-batches (default), a fixed
    processing-time interval, or available-now (process what is there, then stop)."""

    kind: Literal["continuous", "processing_time", "available_now"] = "continuous"
    interval_ms: int | None = None

    @staticmethod
    def processing_time(interval: str | int) -> Trigger:
        """A micro-batch every `interval` ("10 seconds")."""
        from weir.tables.timeutil import parse_duration

        return Trigger("processing_time", parse_duration(interval))

    @staticmethod
    def available_now() -> Trigger:
        """Process the input available at start, in micro-batches, then stop."""
        return Trigger("available_now")
