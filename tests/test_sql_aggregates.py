"""Aggregates written as SQL text (`agg(expr("sum(amount) AS total"))`,
weir.tables.ops.sql_aggregates) give the rows and names of the same aggregates built in
Python, and aggregate text outside `agg` is refused when the query is defined."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.batches import run
from weir import (
    avg,
    col,
    collect_set,
    count,
    count_distinct,
    expr,
    max,
    max_by,
    percentile_approx,
    read,
    sum,
    when,
)
from weir.tables.state.memory import MemoryStore

rows = st.lists(
    st.fixed_dictionaries(
        {
            "k": st.sampled_from(["a", "b"]),
            "kind": st.sampled_from(["click", "view", None]),
            "amount": st.one_of(st.none(), st.integers(-50, 50)),
            "user": st.sampled_from(["u1", "u2", "u3", None]),
        }
    ),
    max_size=30,
)

SQL = [
    "count(*) AS n",
    "count(user)",
    "count(DISTINCT user, kind)",
    "sum(amount)",
    "avg(amount * 2) AS double_avg",
    "max(amount)",
    "sum(CASE WHEN kind = 'click' THEN 1 ELSE 0 END) AS clicks",
    "collect_set(user)",
    "max_by(user, amount)",
    "percentile_approx(amount, 0.5)",
]
PYTHON = [
    count("*").alias("n"),
    count("user"),
    count_distinct("user", "kind"),
    sum("amount"),
    avg(col("amount") * 2).alias("double_avg"),
    max("amount"),
    sum(when(col("kind") == "click", 1).otherwise(0)).alias("clicks"),
    collect_set("user"),
    max_by("user", "amount"),
    percentile_approx("amount", 0.5),
]


def by_key(out: list[dict]) -> dict[str, dict]:
    return {r["k"]: r for r in out}


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, min_size=1, max_size=3))
def test_sql_aggregates_equal_the_python_ones(batches: list[list[dict]]) -> None:
    sql = read("events").groupBy("k").agg(*(expr(t) for t in SQL)).query("complete")
    py = read("events").groupBy("k").agg(*PYTHON).query("complete")
    got = run(sql, MemoryStore(), batches)
    want = run(py, MemoryStore(), batches)
    assert [by_key(o) for o in got] == [by_key(o) for o in want]


def test_names_are_spark_names() -> None:
    out = run(
        read("events").groupBy("k").agg(*(expr(t) for t in SQL)).query("complete"),
        MemoryStore(),
        [[{"k": "a", "kind": "click", "amount": 3, "user": "u1"}]],
    )
    assert list(out[0][0]) == [
        "k",
        "n",
        "count(user)",
        "count(DISTINCT user, kind)",
        "sum(amount)",
        "double_avg",
        "max(amount)",
        "clicks",
        "collect_set(user)",
        "max_by(user, amount)",
        "percentile_approx(amount, 0.5, 10000)",
    ]
    assert out[0][0]["clicks"] == 1 and out[0][0]["n"] == 1


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda s: s.filter(expr("sum(amount) > 1")), "aggregate function outside an aggregation"),
        (lambda s: s.select(expr("count(*)")), "aggregate function outside an aggregation"),
        (
            lambda s: s.groupBy("k").agg(expr("sum(DISTINCT amount, k)")),
            "cannot apply sum_distinct",
        ),
        (lambda s: s.groupBy("k").agg(expr("stddev(amount)")), "aggregate function 'STDDEV"),
        (lambda s: s.groupBy("k").agg(expr("sum(max(amount))")), "aggregate inside an aggregate"),
    ],
)
def test_refused_at_definition_in_one_line(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        build(read("events"))  # type: ignore[operator]
    assert "\n" not in str(info.value)
