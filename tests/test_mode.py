"""`mode(col)` (weir.tables.ops.mode): the most frequent value, ties to the smallest, nulls
ignored; its state folds in any batch split, merges exactly (session windows) and survives a
restart on RocksDB. Expected values come from a brute-force count of the rows."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.batches import run, run_restarting
from tests.events import ev, win
from tests.models import brute_mode
from weir.tables.ops.functions import count
from weir.tables.ops.mode import mode
from weir.tables.query import Query
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import Store
from weir.tables.stream import read
from weir.tables.timeutil import to_millis
from weir.tables.window import session_window, window


def windowed() -> Query:
    return (
        read("events")
        .with_watermark("event_time", "5 minutes")
        .group_by(window("event_time", "10 minutes"))
        .agg(count().alias("n"), mode("action").alias("top_action"))
        .query("update")
    )


def test_most_frequent_value_ties_to_the_smallest_and_nulls_are_ignored(store: Store) -> None:
    outs = run(
        windowed(),
        store,
        [
            [ev("10:01", "view"), ev("10:02", "click"), ev("10:03", None)],  # type: ignore[arg-type]
            [ev("10:04", "view"), ev("10:05", "buy"), ev("10:06", "buy")],
            [ev("10:07", "click"), ev("10:08", "click")],
            [ev("10:11", None)],  # type: ignore[arg-type]
        ],
    )
    assert outs == [
        [{**win("10:00", "10:10"), "n": 3, "top_action": "click"}],  # 1-1 tie: "click" < "view"
        [{**win("10:00", "10:10"), "n": 6, "top_action": "buy"}],  # buy 2, view 2, click 1
        [{**win("10:00", "10:10"), "n": 8, "top_action": "click"}],  # click 3
        [{**win("10:10", "10:20"), "n": 1, "top_action": None}],  # only a null
    ]
    assert mode("action").name == "mode(action)"


def test_numbers_strings_and_lists_are_counted_apart() -> None:
    m = mode("x")
    state = m.update(m.init(), [1, 1.0, True, "1", [1], [1], None])
    assert m.result(state) == [1]
    assert orjson.loads(orjson.dumps(state)) == state  # JSON, as the state store keeps it
    assert m.result(m.update(m.init(), [3, 2.5, 3, 2.5])) == 2.5


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from("abcde"), st.integers(0, 4)), max_size=40),
    st.lists(st.integers(0, 40), max_size=5),
    st.integers(0, 40),
)
def test_any_batch_split_and_any_merge_give_the_brute_force_mode(
    values: list[Any], cuts: list[int], split: int
) -> None:
    m = mode("x")
    state = m.init()
    bounds = [0, *sorted(c for c in cuts if c <= len(values)), len(values)]
    for lo, hi in pairwise(bounds):
        state = m.update(state, values[lo:hi])
    assert m.result(state) == brute_mode(values)
    left = m.update(m.init(), values[:split])
    right = m.update(m.init(), values[split:])
    before = orjson.dumps(left)
    assert m.merge(left, right) == state
    assert orjson.dumps(left) == before  # merge leaves its inputs alone


def test_session_windows_merge_their_counts(store: Store) -> None:
    query = (
        read("events")
        .group_by(session_window("event_time", "5 minutes"), "user_id")
        .agg(mode("action").alias("top_action"))
        .query("complete")
    )
    outs = run(
        query,
        store,
        [
            [ev("10:00", "view"), ev("10:01", "view")],
            [ev("10:10", "buy"), ev("10:11", "buy"), ev("10:12", "buy")],
            [ev("10:05", "click")],  # bridges the two sessions: view 2, buy 3, click 1
        ],
    )
    assert outs[-1] == [{"user_id": "u1", **win("10:00", "10:17"), "top_action": "buy"}]
    assert outs[1] == [
        {"user_id": "u1", **win("10:00", "10:06"), "top_action": "view"},
        {"user_id": "u1", **win("10:10", "10:17"), "top_action": "buy"},
    ]


def test_state_survives_a_restart_on_rocksdb(tmp_path: Path) -> None:
    actions = ["view", "click", "buy"]
    batches = [
        [ev(f"10:{(3 * b + i) % 60:02d}", actions[(b * i) % 3]) for i in range(3)]
        for b in range(12)
    ]
    straight = run(windowed(), MemoryStore(), batches)
    assert run_restarting(windowed, tmp_path / "db", batches) == straight
    last = {r["window_start"]: r["top_action"] for rows in straight for r in rows}
    by_window: dict[int, list[str]] = {}
    for r in (r for batch in batches for r in batch):  # in time order: nothing is late
        start = to_millis(r["event_time"]) // (10 * 60_000) * (10 * 60_000)
        by_window.setdefault(start, []).append(r["action"])
    assert last == {start: brute_mode(acts) for start, acts in by_window.items()}
