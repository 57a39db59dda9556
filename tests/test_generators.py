"""Every pipeline of weir/agents generates its documented input (`generate(traffic, n)`, what
`weir produce` writes): the fields, the count plus duplicates, the late share, both sides of
a join meeting, the same rows for a seed; and `weir replay` runs each over a generated copy,
section 3.1 and the clickstream dashboard with exactly the rows a plain-Python model of the
input gives."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import orjson
import pytest

import weir.agents
from tests.models import MIN, dashboard, epoch_ms, last_per_window, stateless_ops
from weir.service.commands import PIPELINES
from weir.service.produce import copy_line, generated
from weir.service.replay import replay_files
from weir.service.traffic import Event, Traffic

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
HOUR = 60 * MIN
COURSE_EVENTS = {"events": ("event_id", "user_id", "action", "amount", "event_time")}
DOCUMENTED: dict[str, dict[str, tuple[str, ...]]] = {
    "word_count": {"lines": ("value",)},
    "tumbling_window": COURSE_EVENTS,
    "sliding_window": COURSE_EVENTS,
    "watermarked_append": COURSE_EVENTS,
    "event_summary": {"user_events": COURSE_EVENTS["events"]},
    "multi_sink": {"user_events": COURSE_EVENTS["events"]},
    "dedup": {"raw_events": ("event_id", "user_id", "amount", "event_ts")},
    "order_matching": {
        "orders": ("order_id", "user_id", "amount", "order_ts"),
        "payments": ("payment_id", "order_id", "payment_method", "pay_ts"),
    },
    "unmatched_orders": {
        "orders": ("order_id", "user_id", "amount", "order_ts"),
        "payments": ("payment_id", "order_id", "payment_method", "pay_ts"),
    },
    "sessionization": {"events": ("user_id", "action", "event_ts")},
    "ad_click_through": {
        "impressions": ("ad_id", "user_id", "impression_time"),
        "clicks": ("ad_id", "user_id", "click_time"),
    },
    "stateless_ops": {"events": ("user_id", "action", "amount", "timestamp")},
    "clickstream_dashboard": {"clickstream": ("user_id", "page", "action", "timestamp")},
    "funnel": {
        "clicks": ("click_id", "user_id", "product_id", "click_time"),
        "cart_events": ("cart_id", "user_id", "product_id", "cart_time"),
        "purchases": ("purchase_id", "user_id", "product_id", "quantity", "purchase_time"),
    },
}
"""Per pipeline, per input topic, the fields its docstring names, in order (the last one,
but for word_count, is the event time)."""
IDS = ("event_id", "order_id", "payment_id", "click_id", "cart_id", "purchase_id")
"""Fields that make a generated row unique (a copy is then a duplicate, never a look-alike)."""


def events_of(name: str, n: int, **kwargs: Any) -> tuple[list[Event], bool, Traffic]:
    traffic = Traffic(T0, **{"rate": 0.1, "seed": 11, **kwargs})
    events, routed = generated(name, traffic, n, PIPELINES)
    return events, routed, traffic


def test_every_pipeline_with_a_query_is_covered() -> None:
    found = set()
    for info in pkgutil.iter_modules(weir.agents.__path__):
        module = importlib.import_module(f"weir.agents.{info.name}")
        if hasattr(module, "query"):
            found.add(info.name)
            assert callable(getattr(module, "generate", None)), f"{info.name} has no generate"
    assert found == set(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_fields_count_duplicates_and_late_share(name: str) -> None:
    n = 3000
    events, routed, traffic = events_of(name, n, late_fraction=0.1, duplicate_fraction=0.05)
    assert routed == (len(DOCUMENTED[name]) > 1)
    assert len(events) == n + traffic.duplicates and traffic.duplicates > 100
    seen: set[bytes] = set()
    copies = late = 0
    latest = None
    for topic, row in events:
        fields = DOCUMENTED[name][topic]
        assert tuple(row) == fields, (topic, row)
        text = orjson.dumps([topic, row])
        if text in seen:
            copies += 1
            continue
        seen.add(text)
        if name != "word_count":
            t = epoch_ms(row[fields[-1]])
            # on time, events are 10 s apart; a late one is an hour behind the latest
            late += latest is not None and t <= latest - 30 * MIN
            latest = t if latest is None else max(latest, t)
    assert set(DOCUMENTED[name]) == {t for t, _r in events}
    if any(f in IDS for fields in DOCUMENTED[name].values() for f in fields):
        assert copies == traffic.duplicates
        assert late == traffic.late
    elif name == "word_count":  # no time; lines of a few frequent words often look alike
        assert copies >= traffic.duplicates
    else:  # a late event may look like the one an hour earlier (same user, page, action...)
        assert traffic.duplicates <= copies <= traffic.duplicates + n // 200
        assert traffic.late - n // 200 <= late <= traffic.late
    if name != "word_count":
        assert abs(late / n - 0.1) < 0.025


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_the_same_seed_gives_the_same_events(name: str) -> None:
    first, _, _ = events_of(name, 500, late_fraction=0.1, duplicate_fraction=0.1)
    again, _, _ = events_of(name, 500, late_fraction=0.1, duplicate_fraction=0.1)
    other, _, _ = events_of(name, 500, late_fraction=0.1, duplicate_fraction=0.1, seed=12)
    assert first == again
    assert first != other


def test_dedup_duplicates_repeat_the_event_id_with_the_same_event_ts() -> None:
    events, _, traffic = events_of("dedup", 2000, duplicate_fraction=0.1)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for _topic, row in events:
        by_id.setdefault(row["event_id"], []).append(row)
    repeated = [rows for rows in by_id.values() if len(rows) > 1]
    assert len(repeated) == traffic.duplicates
    assert all(rows[0] == r for rows in repeated for r in rows)


def test_joined_sides_mostly_match() -> None:
    """Most payments meet their order within 4 hours, most clicks an impression of their ad
    and user within 30 minutes (the joins' conditions); some orders are never paid."""
    events, _, _ = events_of("order_matching", 3000, late_fraction=0.02)
    orders = {r["order_id"]: epoch_ms(r["order_ts"]) for t, r in events if t == "orders"}
    payments = [r for t, r in events if t == "payments"]
    paid = [p for p in payments if 0 <= epoch_ms(p["pay_ts"]) - orders[p["order_id"]] <= 4 * HOUR]
    assert len(paid) >= 0.9 * len(payments) and len(payments) >= 0.4 * len(orders)
    assert len({p["order_id"] for p in payments}) <= 0.95 * len(orders)

    events, _, _ = events_of("ad_click_through", 3000, late_fraction=0.02)
    shown: dict[tuple[str, str], list[int]] = {}
    for t, r in events:
        if t == "impressions":
            shown.setdefault((r["ad_id"], r["user_id"]), []).append(epoch_ms(r["impression_time"]))
    clicks = [r for t, r in events if t == "clicks"]
    matched = [
        c
        for c in clicks
        if any(
            0 <= epoch_ms(c["click_time"]) - it <= 30 * MIN
            for it in shown.get((c["ad_id"], c["user_id"]), [])
        )
    ]
    assert len(matched) >= 0.9 * len(clicks) and len(clicks) >= 0.05 * len(events)


# -- weir replay over a generated copy ------------------------------------------------------


def replayed(name: str, tmp_path: Path, n: int, batch_size: int) -> tuple[list[Any], ...]:
    """Replay a generated copy of `name`'s input; return (input rows, output rows, stats)."""
    events, routed, _ = events_of(name, n, late_fraction=0.05, duplicate_fraction=0.03)
    copy = tmp_path / f"{name}.jsonl"
    copy.write_bytes(b"".join(copy_line(t, r, routed) for t, r in events))
    out = tmp_path / f"{name}.out.jsonl"
    stats = replay_files(name, copy, out, batch_size=batch_size, package=PIPELINES)
    assert stats.input_lines == len(events) and stats.dead_letters == 0
    assert not out.with_name(out.name + ".dead-letters.jsonl").exists()
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    return [r for _t, r in events], rows, [stats]


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_replay_runs_every_pipeline_over_its_generated_input(name: str, tmp_path: Path) -> None:
    _rows, out, _stats = replayed(name, tmp_path, 4000, 100)
    assert out, f"{name} emitted nothing over 11 hours of generated input"


def test_stateless_ops_replayed_gives_every_positive_row_transformed(tmp_path: Path) -> None:
    given, out, _stats = replayed("stateless_ops", tmp_path, 2000, 100)
    positions = [i for i, r in enumerate(given) if r["amount"] > 0]
    assert [r.pop("batch_id") for r in out] == [i // 100 for i in positions]
    assert out == stateless_ops(given)
    assert 0.7 * len(given) < len(out) < 0.9 * len(given)  # about a fifth are not > 0


def test_clickstream_dashboard_replayed_gives_the_final_windows_of_the_kept_rows(
    tmp_path: Path,
) -> None:
    given, out, (stats,) = replayed("clickstream_dashboard", tmp_path, 3000, 100)
    sizes = [100] * (len(given) // 100) + ([len(given) % 100] if len(given) % 100 else [])
    finals, dropped = dashboard(given, sizes)
    assert last_per_window(out) == finals
    assert stats.late_rows == dropped and dropped > 100
    assert len(finals) > 5 * 8 * 12  # 5 pages, 8+ hours of 5-minute windows
