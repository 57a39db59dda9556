"""The README's side-by-side course snippets (the blocks after `<!-- weir:NAME -->`) run as
written and give exactly the rows of the same pipeline written with Python functions."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from weir import count, read, window
from weir import sum as spark_sum
from weir.service.replay import replay
from weir.tables.query import Query
from weir.tables.stream import Stream
from weir.tables.timeutil import to_millis

README = Path(__file__).resolve().parent.parent / "README.md"
T0 = "2024-05-01T00:00:00Z"


def snippets() -> dict[str, str]:
    """NAME -> the Python code of the block after `<!-- weir:NAME -->`."""
    text = README.read_text()
    found = re.findall(r"<!-- weir:(\w+) -->\s*```python\n(.*?)```", text, flags=re.S)
    return dict(found)


def run_snippet(name: str, inputs: dict[str, Stream]) -> Query:
    namespace: dict[str, Any] = dict(inputs)
    exec(compile(snippets()[name], f"README.md:{name}", "exec"), namespace)
    query = namespace["query"]
    assert isinstance(query, Query)
    return query


def replayed(query: Query, rows: list[dict[str, Any]], batch_size: int = 5) -> list[dict]:
    src = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    out, dead = io.BytesIO(), io.BytesIO()
    replay(query, io.BytesIO(src), out, batch_size=batch_size, dead=dead)
    assert dead.getvalue() == b""
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def at(minutes: float) -> str:
    ms = to_millis(T0) + round(minutes * 60_000)
    from weir.tables.timeutil import iso_utc

    return iso_utc(ms)


LINES = [{"value": v} for v in ["the stream is a table", "a table that grows", "The end", "a"]]
EVENTS = [
    {"user_id": u, "action": a, "amount": amt, "event_time": at(m), "timestamp": at(m)}
    for u, a, amt, m in [
        ("u1", "click", 3.0, 1),
        ("u2", "purchase", 20.5, 4),
        ("u1", "purchase", 7.25, 9),
        ("u3", "click", -1.0, 12),
        ("u2", "click", 0.0, 13),
        ("u1", "view", None, 14),
        ("u3", "purchase", 5.0, 31),
        ("u2", "click", 1.5, 2),  # late but within the watermark
        ("u1", "click", 2.0, 58),
    ]
]


def time_or_none(text: str) -> int | None:
    try:
        return to_millis(text)
    except ValueError:  # to_timestamp of text that is not a time is null
        return None


def lambda_word_count(lines: Stream) -> Query:
    split = lines.flat_map(lambda r: [{"word": w} for w in r["value"].split(" ")])
    return split.group_by("word").count().query("update")


def lambda_stateless(raw: Stream) -> Query:
    def parse(r: dict[str, Any]) -> dict[str, Any]:
        data = orjson.loads(r["value"])
        amount = data.get("amount")
        return {
            "user_id": data.get("user_id"),
            "action": data.get("action"),
            "amount": float(amount) if isinstance(amount, int | float) else None,
            "timestamp": data.get("timestamp"),
        }

    return (
        raw.map(parse)
        .filter(lambda r: r["amount"] is not None and r["amount"] > 0)
        .with_column("event_time", lambda r: time_or_none(r["timestamp"]), timestamp=True)
        .with_column("action_upper", lambda r: r["action"] and r["action"].upper())
        .query("append")
    )


def lambda_tumbling(events: Stream) -> Query:
    from weir import avg

    return (
        events.with_watermark("event_time", "5 minutes")
        .group_by(window("event_time", "10 minutes"), "action")
        .agg(
            count().alias("event_count"),
            spark_sum("amount").alias("total_amount"),
            avg("amount").alias("avg_amount"),
        )
        .query("update")
    )


def lambda_join(orders: Stream, shipments: Stream) -> Query:
    o = orders.with_column("order_time", lambda r: r["timestamp"], timestamp=True)
    s = shipments.with_column("ship_time", lambda r: r["timestamp"], timestamp=True)
    return (
        o.with_watermark("order_time", "2 hours")
        .join(
            s.with_watermark("ship_time", "3 hours"),
            on="order_id",
            between=("ship_time", "order_time", "order_time + 24 hours"),
        )
        .query("append")
    )


def lambda_conditional(events: Stream) -> Query:
    from weir import count_distinct

    def tag(r: dict[str, Any]) -> dict[str, Any]:
        purchase = r["action"] == "purchase"
        return {**r, "click": int(r["action"] == "click"), "paid": r["amount"] if purchase else 0}

    positive = events.filter(lambda r: r["amount"] is not None and r["amount"] > 0)
    return (
        positive.map(tag)
        .group_by("user_id")
        .agg(
            spark_sum("click").alias("clicks"),
            spark_sum("paid").alias("spent"),
            count_distinct("action").alias("actions"),
        )
        .query("complete")
    )


def tagged(topic: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "topic": topic} for r in rows]


ORDERS = [{"order_id": f"o{i}", "timestamp": at(60 * i)} for i in range(6)]
SHIPMENTS = [
    {"order_id": "o0", "timestamp": at(60 * 23)},  # within 24 hours
    {"order_id": "o1", "timestamp": at(60 * 26)},  # 25 hours after: no match
    {"order_id": "o2", "timestamp": at(60 * 2)},  # at the order time: matches
    {"order_id": "o3", "timestamp": at(60 * 2)},  # before the order: no match
    {"order_id": "o9", "timestamp": at(60 * 3)},  # no such order
    {"order_id": "o5", "timestamp": at(60 * 29)},  # exactly 24 hours after: matches
]

CASES: dict[str, tuple[dict[str, Stream], Callable[..., Query], list[dict[str, Any]]]] = {
    "word_count": ({"lines": read("lines")}, lambda_word_count, LINES),
    "stateless": (
        {"raw": read("raw")},
        lambda_stateless,
        [{"value": orjson.dumps(e).decode()} for e in EVENTS]
        + [{"value": '{"user_id": "u9", "amount": 1, "timestamp": "yesterday"}'}],
    ),
    "tumbling": ({"events": read("events")}, lambda_tumbling, EVENTS),
    "join": (
        {"orders": read("orders"), "shipments": read("shipments")},
        lambda_join,
        [
            r
            for pair in zip(tagged("orders", ORDERS), tagged("shipments", SHIPMENTS), strict=True)
            for r in pair
        ],
    ),
    "conditional": ({"events": read("events")}, lambda_conditional, EVENTS),
}


def test_every_side_by_side_snippet_has_a_case() -> None:
    assert sorted(snippets()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_readme_snippet_gives_the_rows_of_the_lambda_version(name: str) -> None:
    inputs, lambda_version, rows = CASES[name]
    got = replayed(run_snippet(name, inputs), rows)
    want = replayed(lambda_version(*inputs.values()), rows)
    assert got == want
    assert len(got) >= 3  # every case emits rows
