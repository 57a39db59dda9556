"""Exercise 5 (weir.agents.funnel) without a broker: the funnel through `weir replay` checked
against a plain-Python model of Spark's micro-batch watermark rules over the same input,
windows without clicks, the catalog enrichment, the generator and the app's two queries."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from weir.agents import funnel
from weir.agents.funnel_live import Feed, check
from weir.service.replay import replay_files
from weir.service.traffic import Traffic
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import read

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
MIN = 60_000
WINDOW = 15 * MIN
DELAY = 5 * MIN
TIME = {"clicks": "click_time", "cart_events": "cart_time", "purchases": "purchase_time"}
SLOT = {"clicks": 0, "cart_events": 1, "purchases": 2}


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def iso(t: int) -> str:
    """Whole seconds, as replay writes them."""
    assert t % 1000 == 0
    return datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spark_model(
    events: list[tuple[str, dict[str, Any]]], batch_size: int
) -> tuple[dict[int, list[int]], int]:
    """Spark's rules, written out for batches of `batch_size` events in order: the watermark
    W is min over the three inputs of (their latest event time in earlier batches - 5 min),
    none until each input had a row, never going back; a row of batch k is late when its
    window ends at or before L(k) = W(k-1). Returns ({window start: [clicks, carts,
    purchases]} over the rows kept, the number of late rows)."""
    latest: dict[str, int] = {}
    w: int | None = None  # W(k) of the batch about to run
    late_wm: int | None = None  # L(k)
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    late = 0
    for k in range(0, len(events), batch_size):
        batch = events[k : k + batch_size]
        for topic, row in batch:
            t = ms(row[TIME[topic]])
            start = t - t % WINDOW
            if late_wm is not None and start + WINDOW <= late_wm:
                late += 1
                continue
            counts[start][SLOT[topic]] += 1
        for topic, row in batch:
            latest[topic] = max(latest.get(topic, ms(row[TIME[topic]])), ms(row[TIME[topic]]))
        late_wm = w
        if len(latest) == 3:
            candidate = min(latest.values()) - DELAY
            w = candidate if w is None else max(w, candidate)
    return counts, late


def expected_rows(counts: dict[int, list[int]]) -> list[dict[str, Any]]:
    return [
        {
            "window_start": iso(start),
            "window_end": iso(start + WINDOW),
            "click_count": c,
            "cart_count": k,
            "purchase_count": p,
            "conversion_rate": p / c if c else None,
        }
        for start, (c, k, p) in sorted(counts.items())
    ]


def replay_lines(
    tmp_path: Path, lines: list[bytes], batch_size: int
) -> tuple[list[dict[str, Any]], Any]:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b"".join(line + b"\n" for line in lines))
    stats = replay_files("funnel", src, out, batch_size=batch_size, package="weir.agents")
    return [orjson.loads(x) for x in out.read_bytes().splitlines()], stats


def last_per_window(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    batch_ids = [r.pop("batch_id") for r in rows]
    assert batch_ids == sorted(batch_ids)
    for r in rows:
        last[r["window_start"]] = r
    return [last[k] for k in sorted(last)]


@pytest.mark.parametrize("batch_size", [50, 333])
def test_replay_last_row_per_window_is_the_spark_model(tmp_path: Path, batch_size: int) -> None:
    traffic = Traffic(T0, rate=1.0, duplicate_fraction=0.05, late_by_ms=3 * 3_600_000, seed=3)
    generated = funnel.generate(traffic, 4600)
    events = list(islice(generated, 600))  # 10 minutes without late events...
    traffic.late_fraction = 0.05
    events += generated  # ...then ~67 minutes with 5% stamped 3 hours back
    lines = [orjson.dumps({"topic": topic, **row}) for topic, row in events]

    rows, stats = replay_lines(tmp_path, lines, batch_size)

    counts, late = spark_model(events, batch_size)
    assert late > 100 and stats.late_rows == late
    assert stats.dead_letters == 0
    assert last_per_window(rows) == expected_rows(counts)
    # 77 minutes from T0: six windows, plus, with the larger batches, windows 3 hours back
    # for late-stamped events of a batch before the watermark existed (Spark counts those)
    assert {start for start in counts if start >= T0} == {T0 + j * WINDOW for j in range(6)}
    assert (min(counts) < T0) == (batch_size == 333)


def test_windows_without_clicks_have_null_conversion(tmp_path: Path) -> None:
    def ev(topic: str, hhmm: str, **extra: Any) -> bytes:
        row = {"topic": topic, "user_id": "u1", "product_id": "P001", **extra}
        return orjson.dumps({**row, TIME[topic]: f"2024-05-01T{hhmm}:00Z"})

    lines = [
        ev("clicks", "10:01", click_id="c1"),
        ev("clicks", "10:02", click_id="c2"),
        ev("purchases", "10:05", purchase_id="p1", quantity=1),
        ev("cart_events", "10:16", cart_id="k1"),  # 10:15-10:30: no click
        ev("purchases", "10:20", purchase_id="p2", quantity=2),
        ev("clicks", "10:31", click_id="c3"),  # 10:30-10:45: no purchase
        b"not json",
        orjson.dumps({"topic": "clicks", "click_id": "c4", "click_time": "soon"}),
    ]
    rows, stats = replay_lines(tmp_path, lines, 100)
    assert stats.dead_letters == 2  # one not JSON, one without a usable event time
    assert last_per_window(rows) == [
        {
            "window_start": f"2024-05-01T{start}:00Z",
            "window_end": f"2024-05-01T{end}:00Z",
            "click_count": c,
            "cart_count": k,
            "purchase_count": p,
            "conversion_rate": rate,
        }
        for start, end, c, k, p, rate in [
            ("10:00", "10:15", 2, 0, 1, 0.5),
            ("10:15", "10:30", 0, 1, 1, None),  # Spark: purchase_count / 0 is null
            ("10:30", "10:45", 1, 0, 0, 0.0),
        ]
    ]


def test_enrichment_adds_category_and_price_and_keeps_unknown_products(tmp_path: Path) -> None:
    path = funnel.write_catalog(tmp_path / "catalog.parquet")
    table = pq.read_table(path).to_pylist()
    assert [r["product_id"] for r in table] == [p[0] for p in funnel.PRODUCTS]
    task = funnel.enrich(read("purchases"), path).query("append").task(MemoryStore())
    base = {"user_id": "u1", "quantity": 2, "purchase_time": "2024-05-01T10:00:00Z"}
    rows = [
        {"purchase_id": "p1", "product_id": "P008", **base},
        {"purchase_id": "p2", "product_id": "nope", **base},
        {"purchase_id": "p3", "product_id": None, **base},
    ]
    result = task.run_batch({"purchases": rows}, 0)
    t = ms(base["purchase_time"])
    common = {"user_id": "u1", "quantity": 2, "purchase_time": t}
    assert result.rows == [
        {
            "purchase_id": "p1",
            "product_id": "P008",
            **common,
            "category": "electronics",
            "price": 249.0,
        },
        {"purchase_id": "p2", "product_id": "nope", **common, "category": None, "price": None},
        {"purchase_id": "p3", "product_id": None, **common, "category": None, "price": None},
    ]


def test_generated_traffic_is_a_funnel_over_the_catalog() -> None:
    def run() -> list[tuple[str, dict[str, Any]]]:
        return list(funnel.generate(Traffic(T0, rate=2.0, duplicate_fraction=0.03, seed=9), 3000))

    events = run()
    assert events == run()  # the same seed, the same events
    by_topic = Counter(t for t, _ in events)
    assert by_topic["clicks"] > 2 * by_topic["cart_events"] > 2 * by_topic["purchases"] > 0
    catalog = {p[0] for p in funnel.PRODUCTS}
    assert {r["product_id"] for _, r in events} <= catalog
    clicked: set[tuple[str, str]] = set()
    carted: set[tuple[str, str]] = set()
    for topic, r in events:  # every cart follows a click, every purchase a cart
        pair = (r["user_id"], r["product_id"])
        if topic == "clicks":
            clicked.add(pair)
        elif topic == "cart_events":
            assert pair in clicked
            carted.add(pair)
        else:
            assert pair in carted and r["quantity"] in (1, 2, 3)
    firsts = {orjson.dumps(r): ms(r[TIME[t]]) for t, r in events}  # a duplicate: the same row
    assert list(firsts.values()) == sorted(firsts.values())  # no late fraction: in time order
    assert len(firsts) < len(events)
    renamed = funnel.generate(Traffic(T0, seed=9), 50, {"clicks": "c-1"})
    assert {t for t, _ in renamed} <= {"c-1", "cart_events", "purchases"}


def test_app_has_two_queries_with_their_own_checkpoints(tmp_path: Path) -> None:
    app = funnel.build_app(
        "fx",
        clicks_topic="a",
        carts_topic="b",
        purchases_topic="c",
        delta_path=tmp_path / "d",
        parquet_path=tmp_path / "p",
        catalog_path=tmp_path / "cat" / "catalog.parquet",
    )
    assert (tmp_path / "cat" / "catalog.parquet").exists()  # written when missing
    m, e = app.agents["funnel_metrics"], app.agents["enriched_purchases"]
    assert [t.name for t in m.inputs] == ["a", "b", "c"] and [t.name for t in e.inputs] == ["c"]
    assert m.group_id != e.group_id and m.changelog_topic != e.changelog_topic
    assert m.query.output_mode == "update" and e.query.output_mode == "append"
    assert m.schemas["c"] is funnel.PURCHASES and e.schemas["c"] is funnel.PURCHASES
    sink = m.sinks[0]
    assert (sink.mode, sink.keys) == ("merge", ("window_start", "window_end"))  # type: ignore[attr-defined]


def test_importing_writes_nothing_and_app_lives_under_weir_home(tmp_path: Path) -> None:
    code = (
        "import os, weir.agents.funnel as f\n"
        "assert not os.listdir('.')\n"
        "app = f.app\n"
        "assert f.app is app and sorted(app.agents) == ['enriched_purchases', 'funnel_metrics']\n"
        "print(sorted(os.listdir(os.environ['WEIR_HOME'] + '/funnel')))\n"
    )
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=work,
        env={**_env(), "WEIR_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['product_catalog.parquet']"


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}


def test_demo_check_says_in_one_line_what_disagrees() -> None:
    feed = Feed(late_by_ms=3 * 3_600_000)
    who = {"user_id": "u1", "product_id": "P001"}
    at = "2024-05-01T10:02:00Z"
    rows = [
        ("clicks", {"click_id": "c0", **who, "click_time": "2024-05-01T10:01:00Z"}),
        ("purchases", {"purchase_id": "p1", **who, "quantity": 2, "purchase_time": at}),
        ("clicks", {"click_id": "c2", **who, "click_time": "2024-05-01T06:00:00Z"}),
    ]
    for topic, row in rows:
        feed.add(topic, row)
    assert feed.late == 1  # four hours behind the latest
    start = ms("2024-05-01T10:00:00Z")
    window = {"window_start": start, "window_end": start + WINDOW, "click_count": 1}
    good = [{**window, "cart_count": 0, "purchase_count": 1, "conversion_rate": 1.0}]
    t = datetime(2024, 5, 1, 10, 2, tzinfo=UTC)
    purchase = {"purchase_id": "p1", "user_id": "u1", "product_id": "P001", "quantity": 2}
    enriched = [{**purchase, "purchase_time": t, "category": "shoes", "price": 89.9}]
    assert check(feed, good, enriched, dropped=1) is None
    bad = [{**good[0], "purchase_count": 2, "conversion_rate": 2.0}]
    problem = check(feed, bad, [], dropped=0)
    assert problem is not None and "\n" not in problem
    assert problem.startswith("Delta table: 1 of 1 windows differ, first 10:00")
    assert "Parquet: 1 of 1 enriched purchases missing, 0 unexpected" in problem
    assert problem.endswith("late rows: the funnel dropped 0, the traffic made 1")
