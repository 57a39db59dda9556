"""What the funnel demo (`weir demo`, weir.agents.demo) keeps track of and shows: `Feed`, the
events produced and the outputs they should give, worked out here without the engine; `Seen`,
what the worker reported in its progress records and wrote to the Delta table; `check`, the
two compared; and the dashboard: a rich Live table on a terminal, plain lines elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from weir.agents import funnel
from weir.service.traffic import Traffic

WINDOW_MS = funnel.WINDOW_MS
TIME = {"clicks": "click_time", "cart_events": "cart_time", "purchases": "purchase_time"}
KINDS = tuple(TIME)
CATALOG = {p: (category, price) for p, _name, category, price in funnel.PRODUCTS}
"""product_id -> (category, price), from the sample catalog's own list."""


def to_ms(text: str) -> int:
    """Epoch ms of an ISO-8601 time (Python's own parser, not the engine's)."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def hhmm(ms: int) -> str:
    """ "HH:MM" (UTC) of epoch ms."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


@dataclass
class Feed:
    """What the demo produced, and its own account of it (no engine involved)."""

    per_topic: Counter[str] = field(default_factory=Counter)
    counts: dict[int, list[int]] = field(default_factory=dict)
    """Window start -> [clicks, carts, purchases] over the events that are not late."""
    purchases: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    """Every purchase produced, as its enriched row should be."""
    late_by_ms: int = 3 * 3_600_000
    """How far back the traffic stamps a late event."""
    late: int = 0
    """Events produced stamped late (duplicates of late events included)."""
    latest: int | None = None
    """The latest event time produced so far."""

    def add(self, topic: str, row: dict[str, Any]) -> None:
        """Account for one produced event: one more than `late_by_ms / 2` behind the latest
        produced is one the traffic stamped late, and late for the funnel (see weir.agents.demo
        for why the watermark is then sure to be past its window)."""
        self.per_topic[topic] += 1
        t = to_ms(row[TIME[topic]])
        if topic == "purchases":
            category, price = CATALOG.get(row["product_id"], (None, None))
            cols = ("purchase_id", "user_id", "product_id", "quantity")
            self.purchases[(*(row[c] for c in cols), t, category, price)] += 1
        if self.latest is not None and t < self.latest - self.late_by_ms // 2:
            self.late += 1
            return
        self.latest = t if self.latest is None else max(self.latest, t)
        start = t - t % WINDOW_MS
        self.counts.setdefault(start, [0, 0, 0])[KINDS.index(topic)] += 1


@dataclass
class Seen:
    """What the worker reported (progress records) and wrote (the Delta table)."""

    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per agent, its last progress record."""
    consumed: dict[tuple[str, str], int] = field(default_factory=dict)
    """(agent, topic) -> end offset of the last batch that read it."""
    batches: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    """The funnel's numRowsDroppedByWatermark, summed."""
    first_watermark_batch: int | None = None
    late_from: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once late events are sure to find a watermark: the batch after the one that
    first had one has committed, so anything produced now lands in a batch whose late-row
    watermark L(k) = W(k-1) exists."""
    windows: list[dict[str, Any]] = field(default_factory=list)

    def progress(self, p: dict[str, Any]) -> None:
        """The app's progress listener (`app.on_progress`): one committed batch's record."""
        name = p["name"]
        self.last[name] = p
        self.batches[name] += 1
        for src in p.get("sources", ()):
            for topic, parts in src.get("endOffset", {}).items():
                key = (name, topic)
                self.consumed[key] = max(self.consumed.get(key, 0), *map(int, parts.values()))
        if name != "funnel_metrics":
            return
        self.dropped += sum(op["numRowsDroppedByWatermark"] for op in p["stateOperators"])
        if p["eventTime"]["watermark"] is not None and self.first_watermark_batch is None:
            self.first_watermark_batch = p["batchId"]
        elif self.first_watermark_batch is not None and p["batchId"] > self.first_watermark_batch:
            self.late_from.set()

    def caught_up(self, feed: Feed) -> bool:
        """True once both queries have committed batches up to everything `feed` produced."""
        wanted = [("funnel_metrics", t) for t in KINDS] + [("enriched_purchases", "purchases")]
        return all(self.consumed.get(k, 0) >= feed.per_topic[k[1]] for k in wanted)


def read_windows(path: Path) -> list[dict[str, Any]]:
    """The Delta table's rows by window start, windows as epoch ms ([] before it exists)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        rows = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    except TableNotFoundError:
        return []
    for r in rows:
        r["window_start"] = int(r["window_start"].timestamp() * 1000)
        r["window_end"] = int(r["window_end"].timestamp() * 1000)
    return sorted(rows, key=lambda r: r["window_start"])


def rate_text(r: dict[str, Any]) -> str:
    """A row's conversion rate as a percentage, or "null" (a window without clicks)."""
    rate = r["conversion_rate"]
    return "null" if rate is None else f"{rate:.1%}"


def dashboard(feed: Feed, seen: Seen, traffic: Traffic, elapsed: float) -> Group:
    """The live view: the last 10 windows of the Delta table, then `status`."""
    p = seen.last.get("funnel_metrics", {})
    wm = (p.get("eventTime") or {}).get("watermark")
    wm_ms = to_ms(wm) if wm else None
    windows = Table(title=f"funnel per 15-minute window (weir demo, {elapsed:.0f}s)")
    for col in ("window (UTC)", "clicks", "carts", "purchases", "conversion", ""):
        windows.add_column(col, justify="right")
    for r in seen.windows[-10:]:
        closed = wm_ms is not None and r["window_end"] <= wm_ms
        windows.add_row(
            f"{hhmm(r['window_start'])}-{hhmm(r['window_end'])}",
            str(r["click_count"]),
            str(r["cart_count"]),
            str(r["purchase_count"]),
            rate_text(r),
            "closed" if closed else "open",
        )
    stats = Table.grid(padding=(0, 2))
    for line in status(feed, seen, traffic):
        stats.add_row(*line)
    return Group(windows, stats)


def status(feed: Feed, seen: Seen, traffic: Traffic) -> list[tuple[str, str]]:
    """(label, text) lines: production, batches, rates, watermark, late rows, duplicates,
    state rows."""
    p = seen.last.get("funnel_metrics", {})
    e = seen.last.get("enriched_purchases", {})
    ops = p.get("stateOperators") or [{}]
    produced = ", ".join(f"{t} {feed.per_topic[t]}" for t in KINDS)
    return [
        ("produced", f"{sum(feed.per_topic.values())} events ({produced})"),
        ("batches", f"funnel {seen.batches['funnel_metrics']}, enrichment "
                    f"{seen.batches['enriched_purchases']}"),
        ("input rate", f"{p.get('inputRowsPerSecond', 0):,.0f} rows/s (funnel), "
                       f"{e.get('inputRowsPerSecond', 0):,.0f} rows/s (enrichment)"),
        ("processing", f"{p.get('processedRowsPerSecond', 0):,.0f} rows/s (funnel), "
                       f"{e.get('processedRowsPerSecond', 0):,.0f} rows/s (enrichment)"),
        ("watermark", str((p.get("eventTime") or {}).get("watermark") or "none yet")),
        ("late rows", f"{seen.dropped} dropped by the watermark; the traffic stamped "
                      f"{traffic.late} late ({feed.late} rows with their duplicates)"),
        ("duplicates", f"{traffic.duplicates} produced twice: counted as events (no dedup)"),
        ("state rows", f"{ops[0].get('numRowsTotal', 0)}; "
                       f"{open_windows(seen)} windows open"),
    ]  # fmt: skip


def open_windows(seen: Seen) -> int:
    """Windows of the Delta table whose end the funnel's watermark has not passed yet."""
    wm = (seen.last.get("funnel_metrics", {}).get("eventTime") or {}).get("watermark")
    end = to_ms(wm) if wm else None
    return sum(1 for r in seen.windows if end is None or r["window_end"] > end)


@contextlib.contextmanager
def display(console: Console) -> Iterator[Any]:
    """Yield show(feed, seen, traffic, elapsed): a Live dashboard on a terminal (log lines
    printed above it), else a plain status line every 5 seconds."""
    if not console.is_terminal:
        last = [0.0]

        def plain(feed: Feed, seen: Seen, traffic: Traffic, elapsed: float) -> None:
            if elapsed - last[0] < 5:
                return
            last[0] = elapsed
            line = "; ".join(f"{k} {v}" for k, v in status(feed, seen, traffic)[:5])
            print(f"[{elapsed:4.0f}s] {line}", flush=True)
            for r in seen.windows[-2:]:
                print(
                    f"       {hhmm(r['window_start'])}-{hhmm(r['window_end'])}: "
                    f"clicks {r['click_count']}, carts {r['cart_count']}, purchases "
                    f"{r['purchase_count']}, conversion {rate_text(r)}",
                    flush=True,
                )

        yield plain
        return
    from rich.logging import RichHandler

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [RichHandler(console=console, show_path=False)]
    try:
        with Live(console=console, auto_refresh=False, transient=True) as live:

            def show(feed: Feed, seen: Seen, traffic: Traffic, elapsed: float) -> None:
                live.update(dashboard(feed, seen, traffic, elapsed), refresh=True)

            yield show
    finally:
        root.handlers = saved


def check(
    feed: Feed, windows: list[dict[str, Any]], enriched: list[dict[str, Any]], dropped: int
) -> str | None:
    """None when the outputs are what the input says, else one line saying what is not."""
    problems: list[str] = []
    expected = {
        s: (s + WINDOW_MS, c, k, p, p / c if c else None) for s, (c, k, p) in feed.counts.items()
    }
    got = {
        r["window_start"]: (
            r["window_end"], r["click_count"], r["cart_count"], r["purchase_count"],
            r["conversion_rate"],
        )
        for r in windows
    }  # fmt: skip
    wrong = sorted(s for s in expected.keys() | got.keys() if expected.get(s) != got.get(s))
    if wrong:
        s = wrong[0]
        problems.append(
            f"Delta table: {len(wrong)} of {len(expected)} windows differ, first "
            f"{hhmm(s)}: (window_end, clicks, carts, purchases, rate) = {got.get(s)}, "
            f"expected {expected.get(s)}"
        )
    cols = ("purchase_id", "user_id", "product_id", "quantity")
    written = Counter(
        (*(r[c] for c in cols), int(r["purchase_time"].timestamp() * 1000), r["category"],
         r["price"])
        for r in enriched
    )  # fmt: skip
    if written != feed.purchases:
        missing = sum((feed.purchases - written).values())
        extra = sum((written - feed.purchases).values())
        problems.append(
            f"Parquet: {missing} of {sum(feed.purchases.values())} enriched purchases missing, "
            f"{extra} unexpected"
        )
    if dropped != feed.late:
        problems.append(f"late rows: the funnel dropped {dropped}, the traffic made {feed.late}")
    return "; ".join(problems) or None


def final(console: Console, feed: Feed, seen: Seen, traffic: Traffic, elapsed: float) -> None:
    """Print the final view once: the dashboard on a terminal, plain lines elsewhere."""
    if console.is_terminal:
        console.print(dashboard(feed, seen, traffic, elapsed))
        return
    for r in seen.windows:
        print(
            f"  {hhmm(r['window_start'])}-{hhmm(r['window_end'])}  clicks {r['click_count']:>5}"
            f"  carts {r['cart_count']:>5}  purchases {r['purchase_count']:>5}  conversion "
            f"{rate_text(r)}"
        )
    for k, v in status(feed, seen, traffic):
        print(f"  {k}: {v}")
