"""Aggregates over Column expressions and group_by over Columns, as the course writes them:
section 4.1's tumbling and sliding queries, conditional aggregation, computed keys and time
columns, Spark's dict form of `agg` and output names, the compile scope, a Column that raises,
session-window merges and a restart on RocksDB for the new aggregates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.batches import run, run_restarting
from tests.events import ev, ms, win
from weir import (
    avg,
    col,
    collect_set,
    count,
    count_distinct,
    countDistinct,
    first,
    lit,
    max_by,
    min_by,
    mode,
    percentile_approx,
    session_window,
    sum_distinct,
    upper,
    when,
    window,
)
from weir import sum as spark_sum
from weir.tables.expressions.expr import Column, type_of
from weir.tables.operator import OutputMode, Row
from weir.tables.ops.functions import SQL_AGGREGATES
from weir.tables.query import Query
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import Store
from weir.tables.stream import Stream, read

BATCHES: list[list[Row]] = [
    [ev("10:01", amount=1.0), ev("10:07", "view", "u2", 2.0), ev("10:08", amount=4.0)],
    [ev("10:12", "view", amount=8.0), ev("10:04", "click", "u2", 16.0)],
    [ev("10:16", amount=32.0), ev("10:26", "buy", "u2", 64.0)],
    [],
]


def test_course_section_4_1_tumbling_and_sliding_give_the_name_based_rows(store: Store) -> None:
    events = read("events")
    # as the course writes them (pyspark.sql.functions: window, col, count, sum as spark_sum, avg)
    tumbling = (
        events.withWatermark("event_time", "5 minutes")
        .groupBy(window(col("event_time"), "10 minutes"), col("action"))
        .agg(
            count("*").alias("event_count"),
            spark_sum("amount").alias("total_amount"),
            avg("amount").alias("avg_amount"),
        )
    )
    sliding = (
        events.withWatermark("event_time", "5 minutes")
        .groupBy(window(col("event_time"), "10 minutes", "5 minutes"), col("user_id"))
        .agg(count("*").alias("event_count"), spark_sum("amount").alias("total_amount"))
    )
    by_name_tumbling = (
        events.with_watermark("event_time", "5 minutes")
        .group_by(window("event_time", "10 minutes"), "action")
        .agg(
            count().alias("event_count"),
            spark_sum("amount").alias("total_amount"),
            avg("amount").alias("avg_amount"),
        )
    )
    by_name_sliding = (
        events.with_watermark("event_time", "5 minutes")
        .group_by(window("event_time", "10 minutes", "5 minutes"), "user_id")
        .agg(count().alias("event_count"), spark_sum("amount").alias("total_amount"))
    )
    modes: list[OutputMode] = ["update", "append", "complete"]
    for mode_ in modes:
        got = run(tumbling.query(mode_), MemoryStore(), BATCHES)
        assert got == run(by_name_tumbling.query(mode_), MemoryStore(), BATCHES)
        assert any(got)
        got = run(sliding.query(mode_), MemoryStore(), BATCHES)
        assert got == run(by_name_sliding.query(mode_), MemoryStore(), BATCHES)
    assert run(tumbling.query("update"), store, BATCHES) == run(
        by_name_tumbling.query("update"), MemoryStore(), BATCHES
    )
    appended = run(tumbling.query("append"), MemoryStore(), BATCHES)
    assert appended[3][:2] == [  # the no-data batch: W = 10:21 closes [10:00, 10:10)
        {"action": "click", **win("10:00", "10:10"), "event_count": 3, "total_amount": 21.0,
         "avg_amount": 7.0},
        {"action": "view", **win("10:00", "10:10"), "event_count": 1, "total_amount": 2.0,
         "avg_amount": 2.0},
    ]  # fmt: skip


def test_conditional_aggregation_counts_and_sums_per_kind() -> None:
    funnel = (
        read("events")
        .group_by(window(col("event_time"), "15 minutes"))
        .agg(
            spark_sum(when(col("action") == "click", 1).otherwise(0)).alias("click_count"),
            count(when(col("action") == "view", True)).alias("view_count"),
            spark_sum(when(col("action") == "buy", col("amount"))).alias("bought"),
            spark_sum(col("amount") * 2),
            avg(col("amount").cast("double")),
        )
        .query("complete")
    )
    out = run(funnel, MemoryStore(), BATCHES)[-1]
    assert out == [
        {**win("10:00", "10:15"), "click_count": 3, "view_count": 2, "bought": None,
         "sum((amount * 2))": 62.0, "avg(CAST(amount AS DOUBLE))": 6.2},
        {**win("10:15", "10:30"), "click_count": 1, "view_count": 0, "bought": 64.0,
         "sum((amount * 2))": 192.0, "avg(CAST(amount AS DOUBLE))": 48.0},
    ]  # fmt: skip


def test_spark_default_output_names() -> None:
    kind = when(col("kind") == "click", 1).otherwise(0)
    names = [
        spark_sum(col("amount") * 2),
        spark_sum(kind),
        count(when(col("kind") == "click", 1)),
        avg(col("x").cast("double")),
        count("*"),
        count(lit(1)),
        count(col("x")),
        countDistinct("a", "b"),
        count_distinct(col("a")),
        sum_distinct("a"),
        collect_set(upper(col("page"))),
        max_by("page", col("t")),
        min_by(col("page"), "t"),
        mode(col("page")),
        first(col("page")),
    ]
    assert [a.name for a in names] == [
        "sum((amount * 2))",
        "sum(CASE WHEN (kind = click) THEN 1 ELSE 0 END)",
        "count(CASE WHEN (kind = click) THEN 1 END)",
        "avg(CAST(x AS DOUBLE))",
        "count(1)",
        "count(1)",
        "count(x)",
        "count(DISTINCT a, b)",
        "count(DISTINCT a)",
        "sum(DISTINCT a)",
        "collect_set(upper(page))",
        "max_by(page, t)",
        "min_by(page, t)",
        "mode(page)",
        "first(page)",
    ]
    assert SQL_AGGREGATES["percentile_approx"] is percentile_approx
    assert SQL_AGGREGATES["approx_percentile"] is percentile_approx
    assert SQL_AGGREGATES["mean"] is SQL_AGGREGATES["avg"]
    skip_nulls = first("x", ignorenulls=True)
    assert skip_nulls.result(skip_nulls.update(skip_nulls.init(), [None, 2, 3])) == 2


def keyed(stream: Stream) -> list[Row]:
    return run(stream.query("complete"), MemoryStore(), [[ev("10:01"), ev("10:02", "view", "u2"),
               ev("10:03", "View", "u2")]])[-1]  # fmt: skip


def test_group_by_columns_computed_keys_and_dict_agg() -> None:
    events = read("events")
    assert keyed(events.group_by(col("action")).count()) == keyed(events.group_by("action").count())
    assert keyed(events.groupBy(upper(col("action")).alias("action_upper")).count()) == [
        {"action_upper": "CLICK", "count": 1},
        {"action_upper": "VIEW", "count": 2},
    ]
    assert keyed(events.group_by(upper(col("action")), col("user_id").alias("who")).agg(
        countDistinct("action", "user_id"))) == [
        {"upper(action)": "CLICK", "who": "u1", "count(DISTINCT action, user_id)": 1},
        {"upper(action)": "VIEW", "who": "u2", "count(DISTINCT action, user_id)": 2},
    ]  # fmt: skip
    assert keyed(events.group_by("user_id").agg({"amount": "sum", "*": "count"})) == [
        {"user_id": "u1", "sum(amount)": 1.0, "count(1)": 1},
        {"user_id": "u2", "sum(amount)": 2.0, "count(1)": 2},
    ]
    assert keyed(events.group_by("user_id").agg({"amount": "mean", "action": "max"})) == [
        {"user_id": "u1", "avg(amount)": 1.0, "max(action)": "click"},
        {"user_id": "u2", "avg(amount)": 1.0, "max(action)": "view"},
    ]
    assert keyed(events.group_by("user_id").sum("amount")) == [
        {"user_id": "u1", "sum(amount)": 1.0},
        {"user_id": "u2", "sum(amount)": 2.0},
    ]
    assert keyed(events.group_by("user_id").max("action"))[1] == {
        "user_id": "u2",
        "max(action)": "view",
    }


def test_group_by_refusals() -> None:
    events = read("events")
    with pytest.raises(ValueError, match="listed twice"):
        events.group_by("action", col("action"))
    with pytest.raises(ValueError, match="alias the key apart"):
        events.group_by(upper(col("action")).alias("action")).agg(count("action"))
    with pytest.raises(ValueError, match="not an aggregate function of one column"):
        events.group_by("action").agg({"amount": "median_of_means"})
    with pytest.raises(ValueError, match=r"sum\(\*\)"):
        events.group_by("action").agg({"*": "sum"})
    with pytest.raises(ValueError, match="column names"):
        events.group_by("action").sum()


def test_window_over_a_computed_time_column() -> None:
    rows = [{"sec": 1_000, "v": 1}, {"sec": 1_009, "v": 2}, {"sec": 1_010, "v": 4}]
    out = run(
        read("events")
        .group_by(window(col("sec") * 1000, "10 seconds"))
        .agg(spark_sum("v"))
        .query("complete"),
        MemoryStore(),
        [rows],
    )[-1]
    assert out == [
        {"window_start": 1_000_000, "window_end": 1_010_000, "sum(v)": 3},
        {"window_start": 1_010_000, "window_end": 1_020_000, "sum(v)": 4},
    ]


def test_aggregate_inputs_compile_in_the_stream_type_scope() -> None:
    def build() -> Any:
        known = type_of(col("event_time"))  # read while compiling, as Spark's analyzer does
        return lambda _r: known

    probe = Column(build, "probe", ("event_time",))
    out = run(
        read("events").with_watermark("event_time", "1 minute").group_by().agg(first(probe))
        .query("complete"), MemoryStore(), [[ev("10:00")]],
    )  # fmt: skip
    assert out == [[{"first(probe)": "timestamp"}]]


def test_a_column_that_raises_dead_letters_its_row_once_even_in_sliding_windows() -> None:
    query = (
        read("events")
        .group_by(window(col("event_time"), "10 minutes", "5 minutes"))
        .agg(count("*").alias("n"), spark_sum(col("amount") + 1).alias("total"))
        .query("complete")
    )
    task = query.task(MemoryStore())
    bad = ev("10:06", amount="lots")
    result = task.run_batch({"events": [ev("10:01"), bad, ev("10:07", amount=3.0)]}, 0)
    assert result.rows == [
        {**win("09:55", "10:05"), "n": 1, "total": 2.0},
        {**win("10:00", "10:10"), "n": 2, "total": 6.0},
        {**win("10:05", "10:15"), "n": 1, "total": 4.0},
    ]
    assert [(r, stage) for r, _why, stage in result.ctx.errors] == [(bad, "user_function")]
    assert "aggregate input failed: TypeError" in result.ctx.errors[0][1]


def new_aggregates() -> list[Any]:
    return [
        collect_set(upper(col("action"))).alias("actions"),
        max_by("action", col("amount")).alias("top"),
        min_by(col("action"), "amount").alias("bottom"),
        percentile_approx(col("amount"), [0.5, 1.0]).alias("pcts"),
        countDistinct("action", "user_id").alias("pairs"),
        sum_distinct(col("amount") * 10).alias("distinct_tens"),
        mode(upper(col("action"))).alias("usual"),
    ]


def test_session_merges_fold_the_new_aggregates_as_all_their_rows() -> None:
    query = (
        read("events")
        .with_watermark("event_time", "0 minutes")
        .group_by(session_window(col("event_time"), "10 minutes"), col("user_id"))
        .agg(*new_aggregates())
        .query("append")
    )
    outs = run(
        query,
        MemoryStore(),
        [
            [ev("10:00", "view", amount=1.0), ev("10:20", "click", amount=3.0)],
            [ev("10:10", "buy", amount=2.0), ev("10:10", "buy", amount=2.0)],  # bridges them
            [ev("11:00", "view", "u2")],
            [],
        ],
    )
    assert outs[:3] == [[], [], []]
    assert outs[3] == [  # the no-data batch: W = 11:00 closes the merged session
        {"user_id": "u1", "window_start": ms("10:00"), "window_end": ms("10:30"),
         "actions": ["BUY", "CLICK", "VIEW"], "top": "click", "bottom": "view",
         "pcts": [2.0, 3.0], "pairs": 3, "distinct_tens": 60.0, "usual": "BUY"},
    ]  # fmt: skip


def test_new_aggregates_survive_a_restart_on_rocksdb(tmp_path: Path) -> None:
    def query() -> Query:
        return (
            read("events")
            .with_watermark("event_time", "5 minutes")
            .group_by(window(col("event_time"), "10 minutes"), col("user_id"))
            .agg(*new_aggregates())
            .query("update")
        )

    straight = run(query(), MemoryStore(), BATCHES)
    assert run_restarting(query, tmp_path / "db", BATCHES) == straight
    assert straight[1][0] == {
        "user_id": "u2", **win("10:00", "10:10"), "actions": ["CLICK", "VIEW"], "top": "click",
        "bottom": "view", "pcts": [2.0, 16.0], "pairs": 2, "distinct_tens": 180.0,
        "usual": "CLICK",
    }  # fmt: skip
