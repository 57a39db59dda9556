"""Streaming aggregation: exact rows per output mode, late rows, no-data batches, sessions.

Driven through `Query.task(store).run_batch(...)` + `commit`, over both state stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.events import ev, ms, win
from weir.tables.operator import OutputMode, Row
from weir.tables.ops.functions import (
    approx_count_distinct,
    avg,
    collect_list,
    count,
    count_distinct,
    first,
    last,
    udaf,
)
from weir.tables.ops.functions import max as agg_max
from weir.tables.ops.functions import min as agg_min
from weir.tables.ops.functions import sum as agg_sum
from weir.tables.query import Query, QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.state.rocksdb import RocksDBStore
from weir.tables.state.store import Store
from weir.tables.stream import Stream, read
from weir.tables.window import session_window, window


class Driver:
    """Runs and commits batches; keeps what each batch emitted and dropped as late."""

    def __init__(self, query: Query, store: Store) -> None:
        self.task: QueryTask = query.task(store)

    def batch(self, *rows: Row) -> list[Row]:
        """Run a batch (no rows: a no-data batch), commit it, return its output rows."""
        result = self.task.run_batch({"events": list(rows)} if rows else {}, 0)
        self.task.commit(result)
        self.late = [row for _op, row in result.late_rows]
        self.errors = result.ctx.errors
        return result.rows


def tumbling(mode: OutputMode) -> Query:
    return (
        read("events")
        .with_watermark("event_time", "5 minutes")
        .group_by(window("event_time", "10 minutes"), "action")
        .agg(count("*").alias("n"), agg_sum("amount").alias("total"))
        .query(mode)
    )


def row(action: str, start: str, end: str, n: int, total: float) -> Row:
    return {"action": action, **win(start, end), "n": n, "total": total}


def test_tumbling_append_emits_each_window_once_when_the_watermark_passes(store: Store) -> None:
    d = Driver(tumbling("append"), store)
    assert (
        d.batch(ev("10:01", amount=1.0), ev("10:07", amount=2.0), ev("10:08", "view", amount=4.0))
        == []
    )
    assert d.task.wants_no_data_batch()  # W moved from None to 10:03
    assert d.batch(ev("10:12", amount=8.0), ev("10:04", amount=16.0)) == []
    assert d.batch(ev("10:16", "view", amount=32.0)) == []  # W = 10:07 < 10:10
    # no-data batch: W = 10:11 closes [10:00, 10:10)
    assert d.batch() == [
        row("click", "10:00", "10:10", 3, 19.0),
        row("view", "10:00", "10:10", 1, 4.0),
    ]
    # 10:05 belongs to the closed window: late, and it must not reopen it
    assert d.batch(ev("10:05", amount=64.0), ev("10:25", amount=128.0)) == []
    assert [r["amount"] for r in d.late] == [64.0]
    assert d.batch() == [
        row("click", "10:10", "10:20", 1, 8.0),
        row("view", "10:10", "10:20", 1, 32.0),
    ]
    assert d.late == []
    assert d.batch() == []  # W did not move: nothing more to close
    assert d.task.state_rows() == 1  # only [10:20, 10:30) click remains


def test_tumbling_update_emits_changed_windows_and_drops_closed_state(store: Store) -> None:
    d = Driver(tumbling("update"), store)
    assert d.batch(
        ev("10:01", amount=1.0), ev("10:07", amount=2.0), ev("10:08", "view", amount=4.0)
    ) == [
        row("click", "10:00", "10:10", 2, 3.0),
        row("view", "10:00", "10:10", 1, 4.0),
    ]
    assert d.batch(ev("10:12", amount=8.0), ev("10:04", amount=16.0)) == [
        row("click", "10:00", "10:10", 3, 19.0),
        row("click", "10:10", "10:20", 1, 8.0),
    ]
    assert d.batch(ev("10:16", "view", amount=32.0)) == [row("view", "10:10", "10:20", 1, 32.0)]
    assert d.batch() == []  # W = 10:11: [10:00, 10:10) dropped silently
    assert d.task.state_rows() == 2
    assert d.batch(ev("10:05", amount=64.0), ev("10:25", amount=128.0)) == [
        row("click", "10:20", "10:30", 1, 128.0)
    ]
    assert [r["amount"] for r in d.late] == [64.0]
    assert d.batch() == []
    assert d.task.state_rows() == 1


def test_update_emits_a_window_that_closes_in_the_same_batch(store: Store) -> None:
    d = Driver(tumbling("update"), store)
    d.batch(ev("10:01"))
    d.batch(ev("10:30"))  # W(next) = 10:25; L(next) = W(this) = None -> 10:04 still accepted
    assert d.batch(ev("10:04", amount=2.0)) == [row("click", "10:00", "10:10", 2, 3.0)]
    assert d.late == []
    assert d.task.state_rows() == 1  # emitted, then evicted by W = 10:25


def test_tumbling_complete_emits_the_whole_table_and_keeps_everything(store: Store) -> None:
    d = Driver(tumbling("complete"), store)
    d.batch(ev("10:01", amount=1.0), ev("10:07", amount=2.0), ev("10:08", "view", amount=4.0))
    d.batch(ev("10:12", amount=8.0), ev("10:04", amount=16.0))
    full = [
        row("click", "10:00", "10:10", 3, 19.0),
        row("view", "10:00", "10:10", 1, 4.0),
        row("click", "10:10", "10:20", 1, 8.0),
        row("view", "10:10", "10:20", 1, 32.0),
    ]
    assert d.batch(ev("10:16", "view", amount=32.0)) == full
    assert d.batch() == full
    # complete mode keeps every window: a "late" row still updates it (as in Spark)
    out = d.batch(ev("10:05", amount=64.0), ev("10:25", amount=128.0))
    assert d.late == []
    assert out == [
        row("click", "10:00", "10:10", 4, 83.0),
        *full[1:],
        row("click", "10:20", "10:30", 1, 128.0),
    ]
    assert d.task.state_rows() == 5


def test_sliding_window_row_is_late_for_one_window_and_counted_in_the_other(
    store: Store,
) -> None:
    q = (
        read("events")
        .with_watermark("event_time", "5 minutes")
        .group_by(window("event_time", "10 minutes", "5 minutes"), "user_id")
        .agg(count().alias("n"), agg_sum("amount").alias("total"))
        .query("update")
    )
    d = Driver(q, store)

    def srow(start: str, end: str, n: int, total: float) -> Row:
        return {"user_id": "u1", **win(start, end), "n": n, "total": total}

    assert d.batch(ev("10:07", amount=1.0)) == [
        srow("10:00", "10:10", 1, 1.0),
        srow("10:05", "10:15", 1, 1.0),
    ]
    assert d.batch(ev("10:21", amount=2.0)) == [
        srow("10:15", "10:25", 1, 2.0),
        srow("10:20", "10:30", 1, 2.0),
    ]
    assert d.batch() == []  # W = 10:16 evicts the windows ending 10:10 and 10:15
    assert d.task.state_rows() == 2
    late = ev("10:13", amount=4.0)
    assert d.batch(late) == [srow("10:10", "10:20", 1, 4.0)]
    assert d.late == [late]  # reported once, for [10:05, 10:15)


def test_sliding_append(store: Store) -> None:
    q = (
        read("events")
        .with_watermark("event_time", "0 minutes")
        .group_by(window("event_time", "10 minutes", "5 minutes"))
        .count()
        .query("append")
    )
    d = Driver(q, store)
    assert d.batch(ev("10:07"), ev("10:02")) == []
    # W = 10:07 closes [09:55, 10:05)
    assert d.batch(ev("10:16")) == [{**win("09:55", "10:05"), "count": 1}]
    assert d.batch() == [  # W = 10:16
        {**win("10:00", "10:10"), "count": 2},
        {**win("10:05", "10:15"), "count": 1},
    ]


def test_no_watermark_update_and_complete_keep_state_forever(store: Store) -> None:
    for mode in ("update", "complete"):
        q = read("events").group_by("action").count().query(mode)
        s: Store = MemoryStore() if mode == "complete" else store
        d = Driver(q, s)
        assert d.batch(ev("10:00"), ev("10:01", "view")) == [
            {"action": "click", "count": 1},
            {"action": "view", "count": 1},
        ]
        out = d.batch(ev("23:00"))
        expected = [{"action": "click", "count": 2}]
        if mode == "complete":
            expected.append({"action": "view", "count": 1})
        assert out == expected
        assert d.batch() == (expected if mode == "complete" else [])
        assert d.task.state_rows() == 2


def test_watermark_on_an_ungrouped_column_evicts_nothing(store: Store) -> None:
    q = (
        read("events")
        .with_watermark("event_time", "1 minute")
        .group_by("action")
        .count()
        .query("update")
    )
    d = Driver(q, store)
    d.batch(ev("10:00"))
    d.batch(ev("12:00"))
    assert d.batch(ev("10:00")) == [{"action": "click", "count": 3}]
    assert d.late == []


def test_group_by_the_watermarked_column_itself_supports_append(store: Store) -> None:
    q = (
        read("events")
        .with_watermark("event_time", "1 minute")
        .group_by("event_time", "user_id")
        .count()
        .query("append")
    )
    d = Driver(q, store)
    assert d.batch(ev("10:00"), ev("10:00"), ev("10:00", user="u2"), ev("10:05")) == []
    assert d.batch() == [
        {"event_time": ms("10:00"), "user_id": "u1", "count": 2},
        {"event_time": ms("10:00"), "user_id": "u2", "count": 1},
    ]
    assert d.batch(ev("10:04"), ev("10:06")) == []
    assert [r["event_time"] for r in d.late] == [ms("10:04")]
    assert d.batch() == [{"event_time": ms("10:05"), "user_id": "u1", "count": 1}]


def test_aggregate_functions_names_values_and_nulls(store: Store) -> None:
    class LongestName:
        """A user-defined aggregator over one column."""

        def init(self) -> str:
            return ""

        def add(self, acc: str, value: Any) -> str:
            return value if isinstance(value, str) and len(value) > len(acc) else acc

        def merge(self, a: str, b: str) -> str:
            return a if len(a) >= len(b) else b

        def result(self, acc: str) -> str:
            return acc

    class RowTotal:
        """A user-defined aggregator over whole rows."""

        name = "row_total"

        def init(self) -> float:
            return 0.0

        def add(self, acc: float, row: Row) -> float:
            return acc + (row.get("amount") or 0.0) * 2

        def merge(self, a: float, b: float) -> float:
            return a + b

        def result(self, acc: float) -> float:
            return acc

    q = (
        read("events")
        .group_by("action")
        .agg(
            count(),
            count("amount"),
            agg_sum("amount"),
            avg("amount"),
            agg_min("amount"),
            agg_max("amount"),
            count_distinct("user_id"),
            approx_count_distinct("user_id"),
            first("amount"),
            last("amount"),
            collect_list("amount"),
            udaf(LongestName(), "user_id"),
            RowTotal(),
        )
        .query("update")
    )
    d = Driver(q, store)
    out = d.batch(
        ev("10:00", user="ann", amount=None),
        ev("10:01", user="bob", amount=2.0),
        ev("10:02", user="ann", amount=5.0),
    )
    assert out == [
        {
            "action": "click",
            "count(1)": 3,
            "count(amount)": 2,
            "sum(amount)": 7.0,
            "avg(amount)": 3.5,
            "min(amount)": 2.0,
            "max(amount)": 5.0,
            "count(DISTINCT user_id)": 2,
            "approx_count_distinct(user_id)": 2,
            "first(amount)": None,
            "last(amount)": 5.0,
            "collect_list(amount)": [2.0, 5.0],
            "LongestName(user_id)": "ann",
            "row_total": 14.0,
        }
    ]
    out = d.batch(ev("10:03", user="carol", amount=1.0), ev("10:04", "view", amount=None))
    assert out[0]["count(1)"] == 4
    assert out[0]["min(amount)"] == 1.0
    assert out[0]["count(DISTINCT user_id)"] == 3
    assert out[0]["collect_list(amount)"] == [2.0, 5.0, 1.0]
    assert out[0]["LongestName(user_id)"] == "carol"
    assert out[1]["action"] == "view"
    assert out[1]["sum(amount)"] is None and out[1]["avg(amount)"] is None
    assert out[1]["min(amount)"] is None and out[1]["count(amount)"] == 0


def test_aliases_and_groupby_count_names() -> None:
    assert count().name == "count(1)"
    assert count("*").alias("event_count").name == "event_count"
    assert agg_sum("amount").name == "sum(amount)"
    q = read("events").group_by("action").count().query("update")
    assert q.node.op is not None
    assert q.node.op.output_columns == ["action", "count"]


def test_group_by_accepts_a_list_of_keys(store: Store) -> None:
    q = read("events").group_by(["action", "user_id"]).count().query("update")
    assert Driver(q, store).batch(ev("10:00"), ev("10:01", user="u2")) == [
        {"action": "click", "user_id": "u1", "count": 1},
        {"action": "click", "user_id": "u2", "count": 1},
    ]


def test_window_columns_are_declared_as_timestamps() -> None:
    q = tumbling("update")
    assert {"window_start", "window_end"} <= q.timestamp_columns
    q2 = read("events").group_by("action").count().query("update")
    assert "window_start" not in q2.timestamp_columns


def test_non_numeric_amounts_count_as_null(store: Store) -> None:
    q = read("events").group_by("action").agg(agg_sum("amount"), avg("amount")).query("complete")
    d = Driver(q, store)
    assert d.batch(ev("10:00", amount="12"), ev("10:01", amount=3), ev("10:02", amount=True)) == [
        {"action": "click", "sum(amount)": 3, "avg(amount)": 3.0}
    ]


def test_missing_key_groups_under_null_and_bad_time_is_dead_lettered(store: Store) -> None:
    q = (
        read("events")
        .group_by(window("event_time", "10 minutes"), "action")
        .count()
        .query("complete")
    )
    d = Driver(q, store)
    no_action = ev("10:01")
    del no_action["action"]
    bad_time = ev("10:02")
    bad_time["event_time"] = "yesterday"
    no_time = ev("10:03")
    del no_time["event_time"]
    out = d.batch(ev("10:00"), no_action, bad_time, no_time)
    assert out == [
        {"action": None, **win("10:00", "10:10"), "count": 1},
        {"action": "click", **win("10:00", "10:10"), "count": 1},
    ]
    assert [r for r, _why, _stage in d.errors] == [bad_time, no_time]
    assert "event_time" in d.errors[0][1] and "missing time column" in d.errors[1][1]


def test_restart_resumes_from_committed_state(tmp_path: Path) -> None:
    batches: list[list[Row]] = [
        [ev("10:01"), ev("10:08", "view")],
        [ev("10:12"), ev("10:04")],
        [],
        [ev("10:05"), ev("10:31")],
        [],
    ]

    def fresh() -> list[list[Row]]:
        return [[dict(r) for r in b] for b in batches]

    straight = Driver(tumbling("append"), MemoryStore())
    expected = [straight.batch(*b) for b in fresh()]

    path = tmp_path / "db"
    outs = []
    for b in fresh():
        db = RocksDBStore(path)  # a new process each batch: only the store survives
        outs.append(Driver(tumbling("append"), db).batch(*b))
        db.close()
    assert outs == expected
    assert any(expected)


def test_uncommitted_batch_is_recomputed_identically(store: Store) -> None:
    d = Driver(tumbling("update"), store)
    d.batch(ev("10:01"), ev("10:02"))
    first_try = d.task.run_batch({"events": [ev("10:03"), ev("10:30")]}, 0)
    d.task.abort()
    again = d.task.run_batch({"events": [ev("10:03"), ev("10:30")]}, 0)
    assert again.rows == first_try.rows
    assert again.batch_id == first_try.batch_id
    d.task.commit(again)
    assert d.batch(ev("10:04")) == [row("click", "10:00", "10:10", 4, 4.0)]


# -- session windows --------------------------------------------------------------------


def sessions(mode: OutputMode, delay: str | None = None) -> Query:
    s: Stream = read("events")
    if delay is not None:
        s = s.with_watermark("event_time", delay)
    return (
        s.group_by(session_window("event_time", "5 minutes"), "user_id")
        .agg(count().alias("n"), collect_list("amount").alias("amounts"))
        .query(mode)
    )


def srow(user: str, start: str, end: str, amounts: list[float]) -> Row:
    return {"user_id": user, **win(start, end), "n": len(amounts), "amounts": amounts}


def test_sessions_extend_merge_and_bridge(store: Store) -> None:
    d = Driver(sessions("complete"), store)
    assert d.batch(ev("10:00", amount=1.0), ev("10:03", amount=2.0), ev("10:20", amount=3.0)) == [
        srow("u1", "10:00", "10:08", [1.0, 2.0]),
        srow("u1", "10:20", "10:25", [3.0]),
    ]
    assert d.batch(ev("10:12", amount=4.0)) == [
        srow("u1", "10:00", "10:08", [1.0, 2.0]),
        srow("u1", "10:12", "10:17", [4.0]),
        srow("u1", "10:20", "10:25", [3.0]),
    ]
    # 10:08 is exactly one gap after 10:03: it joins (Spark merges touching sessions), and its
    # own session [10:08, 10:13) overlaps [10:12, 10:17): the two sessions become one
    assert d.batch(ev("10:08", amount=5.0), ev("10:01", user="u2", amount=6.0)) == [
        srow("u1", "10:00", "10:17", [1.0, 2.0, 4.0, 5.0]),
        srow("u2", "10:01", "10:06", [6.0]),
        srow("u1", "10:20", "10:25", [3.0]),
    ]
    # 10:16 bridges [10:00, 10:17) and [10:20, 10:25)
    assert d.batch(ev("10:16", amount=7.0)) == [
        srow("u1", "10:00", "10:25", [1.0, 2.0, 4.0, 5.0, 3.0, 7.0]),
        srow("u2", "10:01", "10:06", [6.0]),
    ]
    assert d.task.state_rows() == 2


def test_sessions_append_with_watermark(store: Store) -> None:
    d = Driver(sessions("append", "2 minutes"), store)
    assert d.batch(ev("10:00", amount=1.0), ev("10:03", amount=2.0)) == []
    assert d.batch(ev("10:20", amount=3.0)) == []  # W = 10:01
    assert d.batch() == [srow("u1", "10:00", "10:08", [1.0, 2.0])]  # W = 10:18
    # 10:02 + gap <= L = 10:18: late. 10:14 and 10:17 open a session that merges with 10:20's
    late = ev("10:02", amount=9.0)
    assert d.batch(late, ev("10:14", amount=4.0), ev("10:17", amount=5.0)) == []
    assert d.late == [late]
    assert d.batch(ev("10:40", amount=6.0)) == []
    assert d.batch() == [srow("u1", "10:14", "10:25", [3.0, 4.0, 5.0])]
    assert d.task.state_rows() == 1


# -- build-time checks ------------------------------------------------------------------

APPEND_REFUSED = (
    "Append output mode not supported when there are streaming aggregations on streaming "
    "DataFrames without watermark"
)


def test_append_without_watermark_is_refused() -> None:
    with pytest.raises(ValueError, match=APPEND_REFUSED):
        read("events").group_by("action").count().query("append")
    with pytest.raises(ValueError, match=APPEND_REFUSED):
        read("events").group_by(window("event_time", "1 minute")).count().query("append")
    # a watermark on another column than the window's does not make windows final
    with pytest.raises(ValueError, match="no watermark"):
        (
            read("events")
            .with_watermark("event_time", "1 minute")
            .group_by(window("other_time", "1 minute"))
            .count()
            .query("append")
        )


def test_allowed_modes() -> None:
    wm = read("events").with_watermark("event_time", "1 minute")
    for mode in ("append", "update", "complete"):
        wm.group_by(window("event_time", "1 minute")).count().query(mode)
    for mode in ("update", "complete"):
        read("events").group_by("action").count().query(mode)
    wm.group_by(session_window("event_time", "1 minute")).count().query("append")
    wm.group_by(session_window("event_time", "1 minute")).count().query("complete")


def test_refused_combinations() -> None:
    wm = read("events").with_watermark("event_time", "1 minute")
    with pytest.raises(ValueError, match="Update output mode not supported for session window"):
        wm.group_by(session_window("event_time", "1 minute")).count().query("update")
    with pytest.raises(ValueError, match="'correctness' issue due to global watermark"):
        wm.group_by("action").count().group_by("action").count().query("complete")
    with pytest.raises(ValueError, match="at most one window"):
        wm.group_by(window("event_time", "1 minute"), window("event_time", "2 minutes"))
    with pytest.raises(ValueError, match="duplicate output columns"):
        wm.group_by("action").agg(count(), count("*"))
    with pytest.raises(ValueError, match="at least one"):
        wm.group_by("action").agg()
    with pytest.raises(TypeError, match="not an aggregate"):
        wm.group_by("action").agg("count")
    with pytest.raises(ValueError, match="column names or a window"):
        wm.group_by(3)


def test_boundaries_end_at_late_watermark_is_late_end_at_watermark_is_closed(
    store: Store,
) -> None:
    d = Driver(tumbling("append"), store)
    assert d.batch(ev("10:09")) == []
    assert d.batch(ev("10:15")) == []  # W = 10:04
    # W = 10:10 == end of [10:00, 10:10): closed now
    assert d.batch() == [row("click", "10:00", "10:10", 1, 1.0)]
    # L = 10:10: a row of [10:00, 10:10) (end == L) is late; [10:10, 10:20) still open
    late = ev("10:00")
    assert d.batch(late, ev("10:10")) == []
    assert d.late == [late]


def test_session_boundary_end_at_late_watermark_is_late(store: Store) -> None:
    d = Driver(sessions("append", "0 minutes"), store)
    d.batch(ev("10:10"))
    d.batch()  # W = 10:10 = L of the next batch
    late, kept = ev("10:05"), ev("10:06")  # sessions ending 10:10 (== L) and 10:11
    assert d.batch(late, kept) == []
    assert d.late == [late]
    assert d.batch(ev("10:30")) == []
    assert d.batch() == [srow("u1", "10:06", "10:15", [1.0, 1.0])]
