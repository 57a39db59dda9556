"""Stable state names: an operator's state stays its own when the plan around it changes, an
incompatible change is refused with one line naming the operator and what changed, and state
written under the old positional layout is moved on the first batch."""

from __future__ import annotations

import pytest

from tests.events import ev
from weir.tables.operator import Row
from weir.tables.ops.functions import count
from weir.tables.ops.functions import sum as agg_sum
from weir.tables.query import Query, QueryTask
from weir.tables.state.store import Store
from weir.tables.state_names import IncompatibleStateError, prefix_for, state_names
from weir.tables.stream import Stream, read
from weir.tables.window import window


def _counts(stream: Stream, size: str = "10 minutes") -> Query:
    return (
        stream.with_watermark("event_time", "5 minutes")
        .group_by(window("event_time", size), "action")
        .agg(count().alias("n"), agg_sum("amount").alias("total"))
        .query("update")
    )


def _run(task: QueryTask, *rows: Row) -> list[Row]:
    result = task.run_batch({"events": list(rows)}, 0)
    task.commit(result)
    return result.rows


def _n(rows: list[Row]) -> list[tuple[str, int]]:
    return [(r["action"], r["n"]) for r in rows]


def test_a_map_added_upstream_keeps_the_state(store: Store) -> None:
    first = _counts(read("events")).task(store)
    assert _n(_run(first, ev("10:01", "click", 1), ev("10:02", "click", 2))) == [("click", 2)]
    # Redeployed with a map (and a filter) upstream: the aggregation's plan position moved.
    changed = _counts(read("events").map(lambda r: {**r, "seen": True}).filter(lambda r: True))
    second = changed.task(store)
    assert _n(_run(second, ev("10:03", "click", 3))) == [("click", 3)]


def test_an_incompatible_change_is_refused_with_what_changed(store: Store) -> None:
    _run(_counts(read("events")).task(store), ev("10:01", "click", 1))
    with pytest.raises(IncompatibleStateError) as err:
        _counts(read("events"), size="5 minutes").task(store)
    message = str(err.value)
    assert "'aggregate(window(event_time), action)'" in message
    assert "'size_ms': 600000" in message and "'size_ms': 300000" in message
    assert "\n" not in message


def test_user_names_and_duplicates_are_unique_and_stable() -> None:
    a = read("events").group_by("action").count().name("by_action")
    b = read("events").group_by("action").count()
    c = read("events").group_by("action").count()
    ops = [s.node.op for s in (a, b, c) if s.node.op is not None]
    assert state_names(ops) == [
        "by_action",
        "aggregate(action)",
        "aggregate(action)#2",
    ]
    assert len({prefix_for(n) for n in state_names(ops)}) == 3
    with pytest.raises(ValueError, match="must follow a stateful operator"):
        read("events").map(lambda r: r).name("x")


def test_positional_state_of_an_older_weir_is_moved(store: Store) -> None:
    query = _counts(read("events"))
    old = query.task(store)
    # What an older Weir did: operator state under its plan position, no fingerprints.
    old._prefixes = dict(old._positional)
    old._write_fingerprints = False
    _run(old, ev("10:01", "click", 1), ev("10:02", "view", 1))
    assert any(k.startswith(b"op") for k, _v in store.items())
    new = query.task(store)
    assert _n(_run(new, ev("10:03", "click", 1))) == [("click", 2)]
    assert not any(k.startswith(b"op") for k, _v in store.items())
