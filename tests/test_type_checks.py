"""Spark's analysis of operand types where a stream's column types are known (an agent's
schema): nested values in arithmetic or text functions are refused when the query is defined,
in one line; a string in arithmetic is cast to double as Spark casts it implicitly."""

from __future__ import annotations

import io
import re
from typing import Any

import orjson
import pytest

from weir import col, expr, lit, read, upper
from weir.service.replay import replay
from weir.tables.query import Query
from weir.tables.stream import Stream

COLUMNS = {"tags": "array<string>", "loc": "struct<lat:double>", "s": "string", "n": "bigint"}


def typed() -> Stream:
    return read("events", columns=COLUMNS)


def rows_of(query: Query, rows: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    src = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    out, dead = io.BytesIO(), io.BytesIO()
    replay(query, io.BytesIO(src), out, batch_size=10, dead=dead)
    return (
        [
            {k: v for k, v in orjson.loads(x).items() if k != "batch_id"}
            for x in out.getvalue().splitlines()
        ],
        [orjson.loads(x) for x in dead.getvalue().splitlines()],
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda s: s.filter(col("tags") + 1 > 0),
            "data type mismatch in (tags + 1): tags is array",
        ),
        (lambda s: s.withColumn("x", col("n") * col("loc")), "loc is struct<lat:double>"),
        (lambda s: s.select(upper(col("tags"))), "data type mismatch in upper(tags)"),
        (lambda s: s.filter("tags = 'a'"), "data type mismatch in (tags = a)"),
    ],
)
def test_nested_operands_are_refused_at_definition(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        build(typed())
    assert "\n" not in str(e.value)


def test_a_string_in_arithmetic_is_cast_to_double_as_spark_does() -> None:
    q = typed().select(
        "s", (col("s") + 1).alias("plus"), (lit(2) * col("s")).alias("times"), expr("s / 2 AS half")
    )
    out, dead = rows_of(q.query("append"), [{"s": "12.5"}, {"s": "x"}, {"s": None}, {"s": " 3 "}])
    assert dead == []
    assert out == [
        {"s": "12.5", "plus": 13.5, "times": 25.0, "half": 6.25},
        {"s": "x", "plus": None, "times": None, "half": None},
        {"s": None, "plus": None, "times": None, "half": None},
        {"s": " 3 ", "plus": 4.0, "times": 6.0, "half": 1.5},
    ]


def test_without_known_types_a_string_in_arithmetic_is_dead_lettered() -> None:
    out, dead = rows_of(
        read("events").select((col("s") + 1).alias("plus")).query("append"),
        [{"s": "12.5"}, {"s": 1}],
    )
    assert out == [{"plus": 2}]
    assert len(dead) == 1 and "TypeError" in dead[0]["error"]


def test_decimal_text_is_a_number_in_arithmetic_comparisons_and_numeric_aggregates() -> None:
    from tests.batches import run
    from weir import avg, collect_list, max, min, sum
    from weir.tables.state.memory import MemoryStore

    s = read("events", columns={"k": "string", "p": "decimal(10,2)"})
    rows = [{"k": "a", "p": "12.50"}, {"k": "a", "p": "9.00"}, {"k": "a", "p": "100.25"}]
    q = s.groupBy("k").agg(sum("p"), avg("p"), max("p"), min(col("p")), collect_list("p"))
    (out,) = run(q.query("complete"), MemoryStore(), [rows])
    assert out == [  # not text: max was "9.00" and sum null before
        {
            "k": "a",
            "sum(p)": 121.75,
            "avg(p)": pytest.approx(40.5833333),
            "max(p)": 100.25,
            "min(p)": 9.0,
            "collect_list(p)": ["12.50", "9.00", "100.25"],  # the values themselves: exact
        }
    ]
    sel = s.select("p", (col("p") * 2).alias("d"), (col("p") > 10).alias("big"))
    (out,) = run(sel.query("append"), MemoryStore(), [rows[:2]])
    assert out == [{"p": "12.50", "d": 25.0, "big": True}, {"p": "9.00", "d": 18.0, "big": False}]
