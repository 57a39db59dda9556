"""Batch plans (weir.service.runtime.plans): a planned batch is run again only over exactly
its records, once all of them are fetched."""

from __future__ import annotations

from weir.service.runtime.plans import ranges_of, take_planned, within_plan
from weir.service.sources.files import LineRecord


def recs(topic: str, offsets: range) -> list[LineRecord]:
    return [LineRecord(topic, o, b"{}") for o in offsets]


def test_a_planned_batch_takes_exactly_its_range_once_complete() -> None:
    batch = {"a": recs("a", range(10, 20)), "b": recs("b", range(5, 8))}
    plan = ranges_of(batch)
    assert plan == {"a": (10, 20), "b": (5, 8)}
    # fetched in pieces, with records of later batches and of a topic the plan does not name
    first = {"a": recs("a", range(10, 14)), "c": recs("c", range(0, 3))}
    assert take_planned(first, plan) is None
    held = within_plan(first, plan)
    assert [r.offset for r in held["a"]] == [10, 11, 12, 13] and "c" not in held
    more = {"a": held["a"] + recs("a", range(12, 25)), "b": recs("b", range(5, 9))}
    got = take_planned(more, plan)
    assert got is not None
    assert {t: [r.offset for r in rs] for t, rs in got.items()} == {
        "a": list(range(10, 20)),
        "b": [5, 6, 7],
    }
    assert take_planned({}, {}) == {}  # a planned no-data batch runs as one
