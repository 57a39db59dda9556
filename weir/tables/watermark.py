"""Event-time watermarks with Spark's micro-batch semantics.

At the start of batch k the eviction watermark is W(k) = max over earlier batches of
(largest event time seen on an input minus that input's delay), taking the minimum over the
inputs that have seen data, and never going back. The late-row watermark is L(k) = W(k-1).
The tracker's state is stored with the operator state, so a restart resumes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from weir.tables.timeutil import to_millis


@dataclass
class WatermarkTracker:
    """Tracks per-input maximum event times and derives W(k) and L(k).

    Contract: `start_batch` fixes W and L for the batch; `observe` may be called any number of
    times during it; `end_batch` folds the observations into the watermark of the next batch.
    An input idle longer than `idle_timeout_ms` (processing time) stops holding the minimum back.
    """

    delays: dict[str, int]
    """Watermark delay in ms, per input name that has a watermark."""
    idle_timeout_ms: int | None = None
    """After this long without data, an input no longer holds back the minimum (None: never)."""
    max_event_time: dict[str, int] = field(default_factory=dict)
    """Largest event time seen per input, over committed batches."""
    last_data_at: dict[str, int] = field(default_factory=dict)
    """Processing time of the last batch in which each input had data."""
    watermark: int | None = None
    """W(k) of the current (or next) batch; None before any watermarked data."""
    previous: int | None = None
    """W(k-1), the late-row watermark L(k)."""
    _batch_max: dict[str, int] = field(default_factory=dict)

    def start_batch(self) -> tuple[int | None, int | None]:
        """Return (W(k), L(k)) for the batch now starting."""
        self._batch_max = {}
        return self.watermark, self.previous

    def observe(self, input_name: str, event_time_ms: int) -> None:
        """Record an event time seen on `input_name` in the current batch."""
        cur = self._batch_max.get(input_name)
        if cur is None or event_time_ms > cur:
            self._batch_max[input_name] = event_time_ms

    def end_batch(self, processing_time_ms: int) -> bool:
        """Fold the batch in; return True when W moves for the next batch."""
        for name, ts in self._batch_max.items():
            if ts > self.max_event_time.get(name, ts - 1):
                self.max_event_time[name] = ts
            self.last_data_at[name] = processing_time_ms
        self._batch_max = {}
        candidates = []
        for name, ts in self.max_event_time.items():
            if name not in self.delays:
                continue
            idle_since = self.last_data_at.get(name, processing_time_ms)
            if (
                self.idle_timeout_ms is not None
                and len(self.max_event_time) > 1
                and processing_time_ms - idle_since > self.idle_timeout_ms
            ):
                continue
            candidates.append(ts - self.delays[name])
        self.previous = self.watermark
        if candidates:
            new = min(candidates)
            if self.watermark is None or new > self.watermark:
                self.watermark = new
        return self.watermark != self.previous

    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-able state to store with the operator state."""
        return {
            "max": self.max_event_time,
            "seen": self.last_data_at,
            "wm": self.watermark,
            "prev": self.previous,
        }

    def restore(self, snap: dict[str, Any] | None) -> None:
        """Resume from a `snapshot` (None: start fresh)."""
        if not snap:
            return
        self.max_event_time = dict(snap["max"])
        self.last_data_at = dict(snap["seen"])
        self.watermark = snap["wm"]
        self.previous = snap["prev"]


def event_time_columns(watermarks: Iterable[tuple[str, str, int]]) -> dict[str, int]:
    """The watermarked columns of a plan node's `watermarks` (input, column, delay), each
    with its largest delay in ms."""
    out: dict[str, int] = {}
    for _name, col, delay in watermarks:
        out[col] = max(delay, out.get(col, delay))
    return out


def event_time(row: dict[str, Any], col: str) -> int:
    """Return `row[col]` as epoch ms (parsing it in place if needed); raise ValueError."""
    value = row.get(col)
    if type(value) is int:
        return value
    ms = to_millis(value)
    row[col] = ms
    return ms
