"""Chains of stateful operators: what Spark (3.4+) refuses, with its reason, what it runs, and
each operator's own watermark in the batch result; the global watermark's rules for inputs
that have not had data (and the idle timeout that is Weir's own option)."""

from __future__ import annotations

from typing import Any

import pytest

from weir.service.runtime.progress import BatchTimes, TaskBatch
from weir.service.runtime.reporting import OperatorTotals
from weir.tables.operator import Row
from weir.tables.ops.arbitrary import GroupState
from weir.tables.ops.functions import count
from weir.tables.ops.functions import sum as spark_sum
from weir.tables.plan import split
from weir.tables.query import QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import flat_map_groups_with_state, map_groups_with_state, read
from weir.tables.timeutil import iso_utc
from weir.tables.watermark import WatermarkTracker
from weir.tables.window import window

MIN = 60_000
CORRECTNESS = "'correctness' issue due to global watermark"


def run(task: QueryTask, batch: dict[str, list[Row]], pt: int) -> list[Row]:
    result = task.run_batch(batch, pt)
    task.commit(result)
    return result.rows


def keep(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
    return values


def test_chains_spark_refuses_are_refused_with_its_reason() -> None:
    ev = read("ev").with_watermark("ts", "5 minutes")
    per_user = ev.group_by("user").count()
    # an aggregation outside append mode re-emits groups: late for the next stateful operator
    for mode in ("update", "complete"):
        with pytest.raises(ValueError, match=CORRECTNESS):
            per_user.group_by("count").agg(count().alias("users")).query(mode)
    windowed = ev.group_by(window("ts", "10 minutes"), "user").count()
    with pytest.raises(ValueError, match=CORRECTNESS):
        windowed.group_by("window_start", "window_end").agg(spark_sum("count")).query("update")
    # arbitrary state with an event-time timeout, then an aggregation
    timed = flat_map_groups_with_state(ev, "user", keep, "event")
    with pytest.raises(ValueError, match=CORRECTNESS):
        timed.group_by("user").count().query("update")
    # a stream-stream join runs only in append mode, so after an aggregation too
    other = read("o").with_watermark("ts2", "5 minutes")
    joined = ev.join(other, on="user", between=("ts2", "ts", "ts + 10 minutes"))
    with pytest.raises(ValueError, match="only in Append output mode"):
        joined.group_by(window("ts", "1 hour"), "user").count().query("update")
    # a watermark declared again after a stateful operator that passes one on
    with pytest.raises(ValueError, match="Redefining watermark is disallowed"):
        windowed.with_watermark("window_end", "1 minute").group_by("user").count().query()


def test_chains_spark_runs_are_built() -> None:
    ev = read("ev").with_watermark("ts", "5 minutes")
    windowed = ev.group_by(window("ts", "10 minutes"), "user").count()
    windowed.group_by("window_start", "window_end").agg(spark_sum("count")).query("append")
    ev.drop_duplicates(["id", "ts"]).group_by(window("ts", "10 minutes")).count().query("append")
    # arbitrary state passes no watermark on: an append-mode aggregation after it has none
    plain = flat_map_groups_with_state(ev, "user", keep, "none", output_mode="append")
    with pytest.raises(ValueError, match="without watermark"):
        plain.group_by(window("ts", "10 minutes")).count().query("append")


def test_aggregation_after_aggregation_uses_the_first_ones_output_watermark() -> None:
    """Per-user 10-minute counts, then per-window totals over users (append, Spark 3.4+):
    the second closes a window when its own input watermark (the first's output, W) passes
    its end, and takes the first's output of the same batch before that."""
    ev = read("ev").with_watermark("ts", "5 minutes")
    per_user = ev.group_by(window("ts", "10 minutes"), "user").count()
    totals = per_user.group_by("window_start", "window_end").agg(
        spark_sum("count").alias("events"), count().alias("users")
    )
    task = totals.query("append").task(MemoryStore())

    def e(user: str, minute: int) -> Row:
        return {"user": user, "ts": minute * MIN}

    assert run(task, {"ev": [e("a", 1), e("b", 2), e("a", 3), e("c", 12)]}, 1) == []
    assert task.watermark == 7 * MIN
    assert run(task, {"ev": [e("b", 9), e("c", 20)]}, 2) == []  # W(2) = 7: nothing closed
    assert task.watermark == 15 * MIN
    # W = 15: [0, 10) closes in the first aggregation and, in the same batch, in the second
    out = run(task, {}, 3)
    assert out == [{"window_start": 0, "window_end": 10 * MIN, "events": 4, "users": 2}]
    result = task.run_batch({"ev": [e("a", 4)]}, 4)  # [0, 10) ended before L = 15: late
    task.commit(result)
    assert result.rows == [] and [n for n, _ in result.late_rows] == ["aggregate(window(ts), user)"]
    assert [(o.state_name, o.watermark, o.late_rows) for o in result.operators] == [
        ("aggregate(window(ts), user)", 15 * MIN, 1),
        ("aggregate(window_start, window_end)", 15 * MIN, 0),
    ]


def test_join_holds_the_next_operators_watermark_back_by_its_range() -> None:
    """Impressions (10 min) and clicks (15 min), a click 0..30 minutes after its impression:
    the aggregation after the join gets W - 30 minutes - 1 ms; the join itself gets W."""
    imps = read("imp").with_watermark("imp_ts", "10 minutes")
    clicks = read("clk").with_watermark("click_ts", "15 minutes")
    joined = imps.join(clicks, on="ad", between=("click_ts", "imp_ts", "imp_ts + 30 minutes"))
    q = joined.group_by(window("imp_ts", "1 hour"), "ad").count().query("append")
    task = q.task(MemoryStore())
    hour = 60 * MIN
    run(task, {"imp": [{"ad": "a", "imp_ts": 2 * hour}]}, 1)
    assert task.watermark is None  # the clicks have not had a row: no watermark yet
    run(task, {"clk": [{"ad": "a", "click_ts": 2 * hour + 20 * MIN}]}, 2)
    assert task.watermark == 2 * hour - 10 * MIN  # min(2:00 - 10 min, 2:20 - 15 min)
    result = task.run_batch({"imp": [{"ad": "a", "imp_ts": 2 * hour + 5 * MIN}]}, 3)
    task.commit(result)
    assert [o.watermark for o in result.operators] == [
        2 * hour - 10 * MIN,
        2 * hour - 40 * MIN - 1,
    ]
    assert result.rows == []  # [2:00, 3:00) ends after both
    # the progress record's stateOperators: each operator with its own watermark
    totals = OperatorTotals()
    totals.update(0, result)
    times = BatchTimes(0, 0, 0, 0, 0)
    entries = totals.state_operators([TaskBatch(0, result, 1, {}, times, 0, {}, None)], None)
    assert [(e["operatorName"], e["eventTimeWatermark"]) for e in entries] == [
        ("join(inner)", iso_utc(2 * hour - 10 * MIN)),
        ("aggregate(window(imp_ts), ad)", iso_utc(2 * hour - 40 * MIN - 1)),
    ]
    # the join stores the impression (it holds both impressions and the click); it meets the
    # click, and the joined row updates the window the first pair opened
    assert [e["numRowsUpdated"] for e in entries] == [1, 1]
    assert [e["numRowsTotal"] for e in entries] == [3, 1]
    assert [e["numRowsDroppedByWatermark"] for e in entries] == [0, 0]


def test_an_input_without_data_holds_the_watermark_back() -> None:
    tracker = WatermarkTracker({"a": 0, "b": 0})
    tracker.observe("a", 100)
    tracker.end_batch(1)
    assert tracker.watermark is None  # Spark: b counts as 0 until its first row
    tracker.observe("b", 50)
    tracker.end_batch(2)
    assert tracker.watermark == 50
    tracker.observe("a", 200)
    tracker.end_batch(3)
    assert tracker.watermark == 50  # b, quiet, still holds it back (no idle timeout)


def test_the_idle_timeout_releases_a_quiet_or_silent_input() -> None:
    tracker = WatermarkTracker({"a": 0, "b": 0}, idle_timeout_ms=1000)
    tracker.observe("a", 100)
    tracker.end_batch(0)
    assert tracker.watermark is None
    tracker.observe("a", 150)
    tracker.end_batch(1500)  # b has had no data for 1.5 s since the first batch: idle
    assert tracker.watermark == 150
    tracker.observe("b", 400)
    tracker.end_batch(1600)  # b is back: the minimum again
    assert tracker.watermark == 150
    tracker.observe("b", 500)
    tracker.end_batch(3000)  # a quiet for 1.5 s: b alone
    assert tracker.watermark == 500
    snap = tracker.snapshot()
    again = WatermarkTracker({"a": 0, "b": 0}, idle_timeout_ms=1000)
    again.restore(snap)
    assert again.snapshot() == snap
    legacy = {k: v for k, v in snap.items() if k != "first"}  # stored by an older Weir
    again.restore(legacy)
    assert again.watermark == 500 and again.first_batch_at is None


def test_progress_of_a_single_stateful_operator() -> None:
    q = read("ev").with_watermark("ts", "5 minutes")
    task = (
        q.group_by(window("ts", "10 minutes"), "user").count().query("update").task(MemoryStore())
    )
    rows = [{"user": u, "ts": m * MIN} for u, m in (("a", 1), ("b", 2), ("a", 12), ("a", 3))]
    result = task.run_batch({"ev": rows}, 1)
    task.commit(result)
    totals = OperatorTotals()
    totals.update(0, result)
    batch = TaskBatch(0, result, 4, {}, BatchTimes(0, 0, 0, 0, 0), 3, {}, None)
    (entry,) = totals.state_operators([batch], 42)
    assert entry == {
        "operatorName": "aggregate(window(ts), user)",
        "stateName": "aggregate(window(ts), user)",
        "numRowsTotal": 3,
        "numRowsUpdated": 3,  # three groups: (a, 0-10), (b, 0-10), (a, 10-20)
        "numRowsRemoved": 0,
        "numRowsDroppedByWatermark": 0,
        "numWindowsClosed": 0,
        "memoryUsedBytes": 42,
        "eventTimeWatermark": None,
        "_watermark": None,
    }


def test_chained_stateful_operators_are_co_located_by_the_keys_they_share() -> None:
    """On a multi-partition input the stage-1 key decides which task sees a row: for a chain
    it is narrowed to the columns every stateful operator groups by, so none sees one of its
    keys spread over tasks (which would give partial results per task)."""
    imps = read("imp").with_watermark("imp_ts", "10 minutes")
    clicks = read("clk").with_watermark("click_ts", "15 minutes")
    between = ("click_ts", "imp_ts", "imp_ts + 30 minutes")
    hourly = window("imp_ts", "1 hour")

    def keys(stream: Any) -> dict[str, Any]:
        plan = split(stream.query().node)
        assert plan is not None
        return {cut.input_name: cut.key for cut in plan[1]}

    by_user = imps.join(clicks, on=["ad", "user"], between=between)
    assert keys(by_user) == {"imp": ("ad", "user"), "clk": ("ad", "user")}
    assert keys(by_user.group_by(hourly, "ad").count()) == {"imp": ("ad",), "clk": ("ad",)}
    paired = imps.join(clicks, on=[("ad", "ad_id"), "user"], between=between)
    assert keys(paired.group_by(hourly, "ad_id").count()) == {"imp": ("ad",), "clk": ("ad_id",)}
    # nothing in common: one partition
    assert keys(by_user.group_by(hourly, "country").count()) == {"imp": (), "clk": ()}
    ev = read("ev").with_watermark("ts", "5 minutes")
    per_user = ev.group_by(window("ts", "10 minutes"), "user", "page").count()
    totals = per_user.group_by("window_start", "window_end", "user").agg(spark_sum("count"))
    assert keys(totals) == {"ev": ("user",)}
    assert keys(per_user) == {"ev": ("user", "page")}
    deduped = ev.drop_duplicates().group_by(window("ts", "10 minutes"), "user").count()
    assert keys(deduped) == {"ev": ("user",)}  # whole-row dedup: by the count's key


def test_spark_rules_for_several_group_state_operators() -> None:
    ev = read("ev").with_watermark("ts", "5 minutes")

    def one(key: tuple[Any, ...], values: list[Row], state: GroupState) -> Row:
        return {"user": key[0], "n": len(values)}

    updating = flat_map_groups_with_state(ev, "user", keep, "none", output_mode="update")
    with pytest.raises(ValueError, match="in update mode is not supported with aggregation"):
        updating.group_by("user").agg(count().alias("rows")).query("update")
    mapped = map_groups_with_state(ev, "user", one)
    mapped.group_by("user").agg(count().alias("rows")).query("update")  # Spark allows it
    with pytest.raises(ValueError, match="Multiple mapGroupsWithStates"):
        map_groups_with_state(mapped, "user", one).query("update")
    with pytest.raises(ValueError, match="Mixing mapGroupsWithStates and flatMapGroupsWithStates"):
        flat_map_groups_with_state(mapped, "user", keep, output_mode="update").query("update")
    appending = flat_map_groups_with_state(ev, "user", keep, "none", output_mode="append")
    flat_map_groups_with_state(appending, "user", keep, output_mode="append").query("append")
    with pytest.raises(ValueError, match="Multiple flatMapGroupsWithStates"):
        flat_map_groups_with_state(updating, "user", keep, output_mode="update").query("update")
