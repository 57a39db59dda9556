"""Event-time watermarks with Spark's micro-batch semantics.

The global watermark. At the start of batch k the eviction watermark is W(k) = max over
earlier batches of (largest event time seen on an input minus that input's delay), taking the
minimum over the watermarked inputs, and never going back. As in Spark, an input that has not
seen data yet holds W back: there is no watermark until every watermarked input has had a row.
The late-row watermark is L(k) = W(k-1). The tracker's state is stored with the operator
state, so a restart resumes it.

Per-operator watermarks (Spark 3.4+, `WatermarkPropagator`): W and L pass up the plan. A
`with_watermark` outputs the global value; any other node takes the minimum of its parents'
outputs (parents without a watermark do not count); that minimum is a stateful operator's own
input watermark, for its late filter and its eviction, and the operator's `output_watermark`
decides what it passes on (a stream-stream join holds it back by its time range).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from weir.tables.plan import Node
from weir.tables.timeutil import to_millis


@dataclass
class WatermarkTracker:
    """Tracks per-input maximum event times and derives W(k) and L(k).

    Contract: `start_batch` fixes W and L for the batch; `observe` may be called any number of
    times during it; `end_batch` folds the observations into the watermark of the next batch.
    With `idle_timeout_ms` set, an input without data for longer than that (processing time,
    counted from its last data or, for an input that never had any, from the first batch)
    stops holding the minimum back, as Flink's idleness does; Spark has no such option.
    """

    delays: dict[str, int]
    """Watermark delay in ms, per input name that has a watermark."""
    idle_timeout_ms: int | None = None
    """After this long without data, an input no longer holds back the minimum (None: never)."""
    max_event_time: dict[str, int] = field(default_factory=dict)
    """Largest event time seen per input, over committed batches."""
    last_data_at: dict[str, int] = field(default_factory=dict)
    """Processing time of the last batch in which each input had data."""
    first_batch_at: int | None = None
    """Processing time of the first batch (idleness of inputs that never had data)."""
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
        if self.first_batch_at is None:
            self.first_batch_at = processing_time_ms
        for name, ts in self._batch_max.items():
            if ts > self.max_event_time.get(name, ts - 1):
                self.max_event_time[name] = ts
            self.last_data_at[name] = processing_time_ms
        self._batch_max = {}
        self.previous = self.watermark
        new = self._candidate(processing_time_ms)
        if new is not None and (self.watermark is None or new > self.watermark):
            self.watermark = new
        return self.watermark != self.previous

    def _candidate(self, now: int) -> int | None:
        """min over the watermarked inputs of (max event time - delay); None while one that
        counts has no data yet."""
        timeout = self.idle_timeout_ms
        values: list[int] = []
        idle: list[int] = []
        for name, delay in self.delays.items():
            ts = self.max_event_time.get(name)
            since = self.last_data_at.get(name, self.first_batch_at)
            if timeout is not None and since is not None and now - since > timeout:
                if ts is not None:
                    idle.append(ts - delay)
                continue
            if ts is None:
                return None
            values.append(ts - delay)
        # every input idle: the ones that had data still give the watermark
        candidates = values or idle
        return min(candidates) if candidates else None

    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-able state to store with the operator state."""
        return {
            "max": self.max_event_time,
            "seen": self.last_data_at,
            "first": self.first_batch_at,
            "wm": self.watermark,
            "prev": self.previous,
        }

    def restore(self, snap: dict[str, Any] | None) -> None:
        """Resume from a `snapshot` (None: start fresh)."""
        if not snap:
            return
        self.max_event_time = dict(snap["max"])
        self.last_data_at = dict(snap["seen"])
        self.first_batch_at = snap.get("first")
        self.watermark = snap["wm"]
        self.previous = snap["prev"]


class WatermarkPlan:
    """Per-node watermarks of a plan for a given global watermark (Spark's propagation).

    Contract: `inputs(W)` maps `id(node)` of every operator node to its input watermark (None:
    no watermark reaches it, so it filters nothing as late and evicts nothing). It depends
    only on the plan and W, so the late-row watermarks are `inputs(L)`.
    """

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = [n for n in nodes if n.op is not None]
        self._cache: dict[int | None, dict[int, int | None]] = {}

    def inputs(self, global_wm: int | None) -> dict[int, int | None]:
        found = self._cache.get(global_wm)
        if found is not None:
            return found
        out: dict[int, int | None] = {}
        if global_wm is None:
            out = dict.fromkeys(map(id, self.nodes))
        else:
            produced: dict[int, int | None] = {}
            for n in self.nodes:
                op = n.op
                assert op is not None
                present = [w for p in n.parents if (w := produced.get(id(p))) is not None]
                wm = min(present) if present else None
                out[id(n)] = wm
                if op.declares_watermark:
                    produced[id(n)] = global_wm
                elif wm is None:
                    produced[id(n)] = None
                else:
                    produced[id(n)] = op.output_watermark(wm)
        if len(self._cache) > 4:
            self._cache.clear()
        self._cache[global_wm] = out
        return out


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
