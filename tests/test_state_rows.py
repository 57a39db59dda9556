"""Spark's `stateOperators` counts: after every committed batch, each stateful operator's
`numRowsTotal` equals a full count of the state it holds (counted once, then moved by what
each batch adds and removes), on random batches for every stateful operator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weir.tables.query import Query, QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import StateTxn
from weir.tables.stream import GroupState, flat_map_groups_with_state, read
from weir.tables.window import session_window, window

MIN = 60_000
Row = dict[str, Any]


def _last_seen(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
    if state.has_timed_out:
        state.remove()
        return [{"k": key[0]}]
    last = max([v["ts"] for v in values] + ([state.get()] if state.exists else []))
    state.update(last)
    state.set_timeout_timestamp(last, "3 minutes")
    return []


def _events() -> Any:
    return read("ev").with_watermark("ts", "2 minutes")


QUERIES: dict[str, Callable[[], Query]] = {
    "tumbling": lambda: _events().group_by(window("ts", "2 minutes"), "k").count().query(),
    "sliding": lambda: (
        _events().group_by(window("ts", "4 minutes", "2 minutes"), "k").count().query()
    ),
    "session": lambda: _events().group_by(session_window("ts", "1 minute"), "k").count().query(),
    "groups_forever": lambda: read("ev").group_by("k").count().query("update"),
    "dedup_event_time": lambda: _events().drop_duplicates(["k", "ts"]).query(),
    "dedup_forever": lambda: read("ev").drop_duplicates(["k"]).query(),
    "dedup_within": lambda: _events().drop_duplicates_within_watermark(["k"]).query(),
    "group_state": lambda: flat_map_groups_with_state(
        _events(), ["k"], _last_seen, timeout="event"
    ).query(),
}

rows = st.lists(
    st.fixed_dictionaries(
        {"k": st.sampled_from("abcd"), "ts": st.integers(0, 30).map(MIN.__mul__)}
    ),
    max_size=8,
)


def _scanned(task: QueryTask) -> dict[str, int]:
    """Per state name, the operator's rows counted from the store."""
    txn = StateTxn(task.store)
    return {
        task._names[id(n)]: n.op.state_rows(txn.view(task._prefixes[id(n)]))
        for n in task.query.nodes
        if n.op is not None and n.op.stateful
    }


def _check(task: QueryTask, batches: list[dict[str, list[Row]]]) -> None:
    for i, batch in enumerate(batches):
        result = task.run_batch(batch, i)
        task.commit(result)
        totals = {op.state_name: op.rows_total for op in result.operators}
        assert totals == _scanned(task), f"after batch {i}"
        assert all(op.rows_removed >= 0 and op.rows_updated >= 0 for op in result.operators)


@pytest.mark.filterwarnings("ignore:drop_duplicates")
@pytest.mark.parametrize("name", sorted(QUERIES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(rows, min_size=1, max_size=6))
def test_rows_total_equals_a_count_of_the_state(name: str, batches: list[list[Row]]) -> None:
    _check(QUERIES[name]().task(MemoryStore()), [{"ev": b} if b else {} for b in batches])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    left=st.lists(rows, min_size=1, max_size=5),
    right=st.lists(rows, min_size=1, max_size=5),
    how=st.sampled_from(["inner", "left_outer"]),
)
def test_join_rows_total_counts_rows_on_both_sides(
    left: list[list[Row]], right: list[list[Row]], how: str
) -> None:
    a = read("a").with_watermark("ts", "2 minutes")
    b = read("b").with_watermark("ts2", "2 minutes")
    q = a.join(b, on=["k"], how=how, between=("ts2", "ts - 1 minute", "ts + 1 minute"))
    task = q.query("append").task(MemoryStore())
    pairs = zip(left, right + [[]] * (len(left) - len(right)), strict=False)
    _check(task, [{"a": la, "b": [{"k": r["k"], "ts2": r["ts"]} for r in rb]} for la, rb in pairs])


def test_after_eviction_the_total_is_the_groups_left() -> None:
    """The issue's case: 9 groups, then eviction leaves 2 (and no metadata key counts)."""
    task = QUERIES["tumbling"]().task(MemoryStore())
    batch = [{"k": k, "ts": m * MIN} for k in "abc" for m in (0, 2, 4)]
    first = task.run_batch({"ev": batch}, 0)
    task.commit(first)
    (op,) = first.operators
    assert (op.rows_total, op.rows_updated, op.rows_removed) == (9, 9, 0)
    # W = 4 - 2 = 2 min: the windows ending at 2 min close; a and b open [8, 10)
    second = task.run_batch({"ev": [{"k": "a", "ts": 8 * MIN}, {"k": "b", "ts": 8 * MIN}]}, 1)
    task.commit(second)
    (op,) = second.operators
    assert (op.rows_total, op.rows_updated, op.rows_removed) == (8, 2, 3)
    # W = 6 min, in a no-data batch: the windows ending at 4 and 6 min close
    third = task.run_batch({}, 2)
    task.commit(third)
    (op,) = third.operators
    assert (op.rows_total, op.rows_updated, op.rows_removed) == (2, 0, 6)
    assert list(_scanned(task).values()) == [2]
