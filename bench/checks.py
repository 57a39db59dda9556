"""Output checks: Weir's window and count outputs, and the quixstreams tumbling window's
`.current()` and `.final()` outputs against the exact windows of the input data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from bench.data import Dataset

TUMBLING_WINDOW_MS = 10 * 60_000
"""The tumbling window of `bench/pipelines.py:tumbling` (Weir) and of the quixstreams peer."""
TUMBLING_GRACE_MS = 5 * 60_000
"""Its watermark delay (Weir) and grace period (quixstreams)."""


def _sum_ok(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-3)


def check_windows(values: list[bytes], expect_count: int, expect_sum: float | None) -> str:
    """The last update per (key, window) must add up to the expected count (and sum)."""
    final: dict[tuple[Any, ...], dict[str, Any]] = {}
    for v in values:
        row = orjson.loads(v)
        key = (row.get("action"), row.get("user_id"), row["window_start"])
        final[key] = row
    total = sum(r["event_count"] for r in final.values())
    if total != expect_count:
        return f"FAIL: final window counts add up to {total}, expected {expect_count}"
    if expect_sum is not None:
        s = sum(r["total_amount"] for r in final.values())
        if not _sum_ok(s, expect_sum):
            return f"FAIL: final window sums add up to {s}, expected {expect_sum}"
    return f"ok ({len(final)} windows, {len(values)} updates)"


def check_count(values: list[bytes], expect: int) -> str:
    """The output must hold exactly `expect` records."""
    return "ok" if len(values) == expect else f"FAIL: {len(values)} records, expected {expect}"


@dataclass
class TumblingTruth:
    """The exact tumbling windows of an input: (key, window start) -> [count, sum], and the
    windows a per-key `.final()` closes by the end of the input."""

    windows: dict[tuple[str, int], list[float]]
    closed: set[tuple[str, int]]


def tumbling_truth(
    ds: Dataset, window_ms: int = TUMBLING_WINDOW_MS, grace_ms: int = TUMBLING_GRACE_MS
) -> TumblingTruth:
    """Count and sum of `amount` per (Kafka key, window of the Kafka timestamp), summed in
    offset order as a peer does. A window is closed when its start <= the key's latest
    timestamp - grace - window, the rule of quixstreams' default ("key") closing strategy;
    windows still open at the end of the input are not in `closed`."""
    windows: dict[tuple[str, int], list[float]] = {}
    latest: dict[str, int] = {}
    for key, value, ts in zip(ds.keys, ds.values, ds.timestamps, strict=True):
        k = (key or b"").decode()
        acc = windows.setdefault((k, ts - ts % window_ms), [0, 0.0])
        acc[0] += 1
        acc[1] += orjson.loads(value)["amount"]
        latest[k] = max(ts, latest.get(k, ts))
    closed = {(k, s) for k, s in windows if s <= latest[k] - grace_ms - window_ms}
    return TumblingTruth(windows, closed)


def _quix_rows(
    records: list[tuple[bytes | None, bytes]], start: str = "start"
) -> list[tuple[tuple[str, int], dict[str, Any]]]:
    out = []
    for key, value in records:
        row = orjson.loads(value)
        out.append((((key or b"").decode(), int(row[start])), row))
    return out


def _window_error(got: dict[str, Any], want: list[float], where: tuple[str, int]) -> str | None:
    if got["event_count"] != want[0]:
        return f"FAIL: window {where} count {got['event_count']}, expected {want[0]}"
    if not _sum_ok(float(got["total_amount"]), want[1]):
        return f"FAIL: window {where} sum {got['total_amount']}, expected {want[1]}"
    return None


def check_quix_current(
    records: list[tuple[bytes | None, bytes]], truth: TumblingTruth, start: str = "start"
) -> str:
    """`.current()` (and Kafka Streams' window updates, whose window start is the field
    `start`): the last update of every (key, window) must carry the window's exact count and
    sum, and every window of the input must be there."""
    last = dict(_quix_rows(records, start))
    if set(last) != set(truth.windows):
        missing, extra = len(set(truth.windows) - set(last)), len(set(last) - set(truth.windows))
        return f"FAIL: {missing} windows missing, {extra} unexpected"
    for where, row in last.items():
        if err := _window_error(row, truth.windows[where], where):
            return err
    return f"ok ({len(last)} windows, {len(records)} updates)"


def check_quix_final(records: list[tuple[bytes | None, bytes]], truth: TumblingTruth) -> str:
    """`.final()`: each closed window exactly once with its exact count and sum, and no
    window that was still open at the end of the input."""
    seen: set[tuple[str, int]] = set()
    for where, row in _quix_rows(records):
        if where in seen:
            return f"FAIL: window {where} emitted twice"
        if where not in truth.closed:
            return f"FAIL: window {where} emitted but not closed by the input"
        seen.add(where)
        if err := _window_error(row, truth.windows[where], where):
            return err
    if len(seen) != len(truth.closed):
        return f"FAIL: {len(seen)} closed windows emitted, expected {len(truth.closed)}"
    still_open = len(truth.windows) - len(truth.closed)
    return f"ok ({len(seen)} closed windows; {still_open} still open at the end, not emitted)"


def check_distinct(values: list[bytes], expect: int) -> str:
    """Exactly `expect` records, no two alike (a deduplication's output)."""
    if len(values) != expect:
        return f"FAIL: {len(values)} records, expected {expect}"
    distinct = len(set(values))
    return "ok" if distinct == expect else f"FAIL: {expect - distinct} records repeated"


def check_join_pairs(values: list[bytes], payments: Dataset) -> str:
    """Each payment joined with its order exactly once, and nothing else: the output's
    (order_id, payment_id) pairs equal those of the payments data set."""
    want = {(p["order_id"], p["payment_id"]) for p in map(orjson.loads, payments.values)}
    got = [(r["order_id"], r["payment_id"]) for r in map(orjson.loads, values)]
    if len(got) != len(set(got)):
        return f"FAIL: {len(got) - len(set(got))} pairs repeated"
    if set(got) != want:
        return f"FAIL: {len(want - set(got))} pairs missing, {len(set(got) - want)} unexpected"
    return f"ok ({len(got)} pairs)"
