"""Plain-Python models of course pipelines, written from the course and Spark's rules only,
to check what Weir emits: `mode`, section 3.1's stateless transform, and the clickstream
dashboard's final windows given how the input was cut into micro-batches."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Row = dict[str, Any]
MIN = 60_000


def brute_mode(values: Iterable[Any]) -> Any:
    """The most frequent non-null value; the smallest among those tied, numbers before
    strings (None when there is none)."""
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    return min((v for v, n in counts.items() if n == top), key=lambda v: (isinstance(v, str), v))


def parse_time(text: str) -> datetime:
    """An ISO-8601 time ("Z" or an offset) as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def epoch_ms(text: str) -> int:
    return int(parse_time(text).timestamp() * 1000)


def iso(text: str) -> str:
    """The ISO-8601 UTC text ("...Z", milliseconds only when there are some) of a time."""
    t = parse_time(text)
    ms = t.microsecond // 1000
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms:03d}Z" if ms else "Z")


def _iso_or_none(text: str) -> str | None:
    try:
        return iso(text)
    except ValueError:  # to_timestamp of text that is not a time is null, as in Spark
        return None


def stateless_ops(rows: Iterable[Row]) -> list[Row]:
    """Section 3.1: rows with amount > 0 (null is not), plus event_time (the timestamp as
    ISO-8601 UTC text, as written out; null when it is not a time) and action_upper, in
    input order."""
    return [
        {
            **r,
            "event_time": _iso_or_none(r["timestamp"]),
            "action_upper": None if r["action"] is None else r["action"].upper(),
        }
        for r in rows
        if r["amount"] is not None and r["amount"] > 0
    ]


@dataclass
class Window:
    """A dashboard window's final values."""

    page_views: int
    unique_users: int
    top_action: Any


def dashboard(
    rows: Sequence[Row], batch_sizes: Iterable[int], delay_ms: int = 2 * MIN, size_ms: int = 5 * MIN
) -> tuple[dict[tuple[str, int], Window], int]:
    """The clickstream dashboard's final value per (page, window start ms), and how many
    rows were dropped as late, when `rows` arrive in micro-batches of `batch_sizes` rows (0:
    a batch without data), by Spark's (3.4+) rules: batch k runs with the watermark W(k) =
    (latest timestamp of batches before k) - delay, none before any data; a row of batch k
    whose window ends at or before W(k-1) is late and dropped. A window's final value
    aggregates every row it kept (once W passes its end, any further row is late)."""
    kept: dict[tuple[str, int], list[Row]] = defaultdict(list)
    latest: int | None = None
    w_prev: int | None = None  # W(k-1)
    dropped = 0
    at = 0
    for size in batch_sizes:
        w = None if latest is None else latest - delay_ms  # W(k)
        for r in rows[at : at + size]:
            t = epoch_ms(r["timestamp"])
            start = t - t % size_ms
            if w_prev is not None and start + size_ms <= w_prev:
                dropped += 1
                continue
            kept[(r["page"], start)].append(r)
        for r in rows[at : at + size]:
            t = epoch_ms(r["timestamp"])
            latest = t if latest is None else max(latest, t)
        at += size
        w_prev = w
    assert at == len(rows), f"the batches hold {at} rows, not {len(rows)}"
    finals = {
        key: Window(
            len(group), len({r["user_id"] for r in group}), brute_mode(r["action"] for r in group)
        )
        for key, group in kept.items()
    }
    return finals, dropped


def last_per_window(rows: Iterable[Row]) -> dict[tuple[str, int], Window]:
    """Update-mode output (rows in the order written, `window_start` as ISO text or a
    datetime): the last row of each (page, window start ms)."""
    out: dict[tuple[str, int], Window] = {}
    for r in rows:
        start = r["window_start"]
        ms = epoch_ms(start) if isinstance(start, str) else int(start.timestamp() * 1000)
        out[(r["page"], ms)] = Window(r["page_views"], r["unique_users"], r["top_action"])
    return out
