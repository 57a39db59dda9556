"""Spark column expressions (weir.tables.expressions.expr): results per function with None handling,
three-valued logic, names as Spark derives them, and their use in filter/select/with_column."""

from __future__ import annotations

import io
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weir import (
    coalesce,
    col,
    concat,
    length,
    lit,
    lower,
    split,
    substring,
    upper,
    when,
)
from weir.service.replay import replay
from weir.tables.expressions.expr import Column
from weir.tables.expressions.expr_functions import spark_split
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import Stream, read

T, F, N = True, False, None


def ev(c: Column, row: dict[str, Any] | None = None) -> Any:
    return c.compile()(row or {})


def test_three_valued_and_or_not_truth_tables() -> None:
    values = [T, F, N]
    and_table = {
        (T, T): T, (T, F): F, (T, N): N,
        (F, T): F, (F, F): F, (F, N): F,
        (N, T): N, (N, F): F, (N, N): N,
    }  # fmt: skip
    or_table = {
        (T, T): T, (T, F): T, (T, N): T,
        (F, T): T, (F, F): F, (F, N): N,
        (N, T): T, (N, F): N, (N, N): N,
    }  # fmt: skip
    for x in values:
        assert ev(~col("x"), {"x": x}) == (None if x is None else not x)
        for y in values:
            row = {"x": x, "y": y}
            assert ev(col("x") & col("y"), row) is and_table[x, y]
            assert ev(col("x") | col("y"), row) is or_table[x, y]


def test_arithmetic_and_comparisons_with_null_and_zero() -> None:
    row = {"a": 7, "b": 2, "z": 0, "n": None}
    a, b = col("a"), col("b")
    assert [ev(e, row) for e in (a + b, a - b, a * b, a / b, a % b, -a)] == [9, 5, 14, 3.5, 1, -7]
    assert [ev(e, row) for e in (1 + a, 10 - a, 2 * a, 14 / a, 15 % a)] == [8, 3, 14, 2.0, 1]
    assert ev(lit(-7) % 2) == -1 and ev(lit(7) % -2) == 1  # Java remainder: sign of dividend
    assert ev(lit(-7.5) % 2) == -1.5
    assert ev(a / col("z"), row) is None and ev(a % col("z"), row) is None
    for e in (a + col("n"), col("n") * 2, -col("n"), col("n") > 1, a == col("n"), a != col("n")):
        assert ev(e, row) is None
    assert [ev(e, row) for e in (a == 7, a != 7, a < 8, a <= 7, a > 7, a >= 8)] == [
        T, F, T, T, F, F
    ]  # fmt: skip
    assert ev(col("missing") > 1, row) is None  # schemaless rows: a missing field reads None


def test_null_checks_isin_and_between() -> None:
    row = {"a": 2, "n": None}
    assert ev(col("n").isNull(), row) is T and ev(col("a").isNull(), row) is F
    assert ev(col("n").isNotNull(), row) is F and ev(col("a").isNotNull(), row) is T
    assert ev(col("a").isin(1, 2), row) is T
    assert ev(col("a").isin([1, 3]), row) is F
    assert ev(col("a").isin(1, None), row) is None  # Spark: no match but a null in the list
    assert ev(col("a").isin(2, None), row) is T
    assert ev(col("n").isin(1), row) is None
    assert [ev(col("a").between(lo, hi), row) for lo, hi in ((2, 3), (1, 2), (3, 4))] == [T, T, F]
    assert ev(col("n").between(1, 3), row) is None


def test_when_chains_and_coalesce() -> None:
    grade = when(col("x") >= 90, "A").when(col("x") >= 80, "B").otherwise("C")
    assert [ev(grade, {"x": x}) for x in (95, 85, 10, None)] == ["A", "B", "C", "C"]
    no_else = when(col("x") > 0, col("x") * 10)
    assert [ev(no_else, {"x": x}) for x in (2, -1, None)] == [20, None, None]
    assert grade.name == "CASE WHEN (x >= 90) THEN A WHEN (x >= 80) THEN B ELSE C END"
    with pytest.raises(ValueError):
        grade.when(col("x") > 1, "D")
    row = {"a": None, "b": None, "c": 3}
    assert ev(coalesce("a", "b", "c"), row) == 3
    assert ev(coalesce(col("a"), lit(0)), row) == 0
    assert ev(coalesce("a", "b"), row) is None


@pytest.mark.parametrize(
    ("value", "to", "expected"),
    [
        ("42", "int", 42),
        (" 42 ", "int", 42),
        ("1.9", "int", 1),
        ("-1.9", "int", -1),
        ("abc", "int", None),
        ("", "int", None),
        ("3000000000", "int", None),
        ("3000000000", "long", 3000000000),
        (3.99, "int", 3),
        (float("nan"), "int", 0),
        (True, "int", 1),
        ("1e3", "double", 1000.0),
        ("x", "double", None),
        (7, "double", 7.0),
        (7, "string", "7"),
        (True, "string", "true"),
        ("yes", "boolean", True),
        ("F", "boolean", False),
        ("maybe", "boolean", None),
        (0, "boolean", False),
        (2.5, "boolean", True),
        (None, "int", None),
    ],
)
def test_cast_spark_semantics(value: Any, to: str, expected: Any) -> None:
    got = ev(col("v").cast(to), {"v": value})
    assert got == expected and type(got) is type(expected)


def test_cast_of_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported type"):
        col("v").cast("decimal(10,2)")


def test_string_functions() -> None:
    row = {"s": "Hello", "n": None, "i": 5}
    assert ev(upper("s"), row) == "HELLO" and ev(lower(col("s")), row) == "hello"
    assert ev(length("s"), row) == 5
    assert ev(concat("s", lit(" "), lit("world")), row) == "Hello world"
    assert ev(concat("s", "i", lit(True)), row) == "Hello5true"
    for e in (upper("n"), lower("n"), length("n"), concat("s", "n"), substring("n", 1, 2)):
        assert ev(e, row) is None
    assert ev(split("n", ","), row) is None
    assert ev(upper("i"), row) == "5" and ev(length(lit(True)), row) == 4  # Spark's implicit cast
    with pytest.raises(TypeError, match="upper expects a string"):
        ev(upper(lit([1])), row)


@pytest.mark.parametrize(
    ("pos", "length_", "expected"),
    [(1, 2, "He"), (0, 2, "He"), (2, 100, "ello"), (-3, 2, "ll"), (-7, 3, "H"), (3, -1, ""),
     (6, 1, ""), (-5, 5, "Hello")],
)  # fmt: skip
def test_substring_spark_edge_cases(pos: int, length_: int, expected: str) -> None:
    assert ev(substring("s", pos, length_), {"s": "Hello"}) == expected


@pytest.mark.parametrize(
    ("text", "pattern", "limit", "expected"),
    [
        ("a,b,,c,,", ",", -1, ["a", "b", "", "c", "", ""]),  # trailing empties kept
        ("oneAtwoBthreeC", "[ABC]", -1, ["one", "two", "three", ""]),
        ("a1b22c", r"\d+", -1, ["a", "b", "c"]),
        (",a", ",", -1, ["", "a"]),
        ("abc", ",", -1, ["abc"]),
        ("", ",", -1, [""]),
        ("a,b,c", ",", 2, ["a", "b,c"]),
        ("abc", "", -1, ["a", "b", "c"]),
    ],
)
def test_split_like_spark(text: str, pattern: str, limit: int, expected: list[str]) -> None:
    assert spark_split(text, re.compile(pattern), limit) == expected
    if limit == -1:
        assert ev(split("s", pattern), {"s": text}) == expected


def test_names_references_and_bool_refused() -> None:
    assert col("a").name == "a" and col("a.b").name == "b"
    assert (col("amount") * 2).name == "(amount * 2)"
    assert ((col("a") > 1) & ~col("b")).name == "((a > 1) AND (NOT b))"
    assert col("a").cast("long").name == "CAST(a AS BIGINT)"
    assert upper("s").alias("u").name == "u"
    e = when(col("a") > col("b"), concat("c", "d")).otherwise(coalesce("e", lit(1)))
    assert e.references() == {"a", "b", "c", "d", "e"}
    assert ev(col("a.b"), {"a": {"b": 4}}) == 4 and ev(col("a.b"), {"a": 1}) is None
    assert ev(col("`a.b`"), {"a.b": 5}) == 5
    with pytest.raises(TypeError, match="use '&' for 'and'"):
        bool(col("a") > 1)
    with pytest.raises(TypeError):
        _ = 0 < col("a") < 5  # Python chains with `and`, which needs bool


def test_compile_builds_closures_once() -> None:
    calls = []
    base = col("a")
    original = base._build

    def counting() -> Any:
        calls.append(1)
        return original()

    counted = Column(counting, "a", {"a"})
    f = ((counted + 1) * 2 > 3).compile()
    assert len(calls) == 1
    assert [f({"a": a}) for a in range(3)] == [False, True, True]
    assert len(calls) == 1


def _run(stream: Any, rows: list[dict[str, Any]]) -> Any:
    return stream.query().task(MemoryStore()).run_batch({"events": rows}, 0)


def test_filter_and_where_keep_only_true_rows() -> None:
    rows = [{"amount": 5}, {"amount": -1}, {"amount": None}, {}]
    assert _run(read("events").filter(col("amount") > 0), rows).rows == [{"amount": 5}]
    assert _run(read("events").where(~(col("amount") > 0)), rows).rows == [{"amount": -1}]
    legacy = read("events").filter(lambda r: r.get("amount") == -1)
    assert _run(legacy, rows).rows == [{"amount": -1}]


def test_an_expression_error_dead_letters_the_row() -> None:
    good, bad = {"name": "ann"}, {"name": [3]}
    result = _run(read("events").with_column("u", upper("name")), [good, bad])
    assert result.rows == [{"name": "ann", "u": "ANN"}]
    [(row, reason, stage)] = result.ctx.errors
    assert row == bad and stage == "user_function"
    assert reason == "with_column(u) failed: TypeError: upper expects a string, got list [3]"
    result = _run(read("events").filter(upper("name") == "ANN"), [good, bad])
    assert result.rows == [good]
    assert result.ctx.errors[0][1].startswith("filter((upper(name) = ANN)) failed: TypeError")


def test_with_column_with_columns_and_select() -> None:
    rows = [{"a": 2, "s": "x", "t": 1}, {"a": None, "s": "y", "t": 2}]
    s = (
        read("events")
        .withColumn("a2", col("a") * 2)
        .with_columns({"a": coalesce("a", lit(0)), "big": col("a") > 1})
        .select("s", col("a2"), (col("a") + 1).alias("a1"), col("big"), col("t") % 2)
    )
    assert _run(s, rows).rows == [
        {"s": "x", "a2": 4, "a1": 3, "big": True, "(t % 2)": 1},
        {"s": "y", "a2": None, "a1": 1, "big": None, "(t % 2)": 0},
    ]
    with pytest.raises(ValueError, match="selected twice"):
        read("events").select(col("a"), col("b").alias("a"))


def test_camel_case_aliases_and_the_replay_path() -> None:
    src = b'{"user": "u1", "amount": 3}\n{"user": "u2", "amount": -2}\n{"user": "u3"}\n'
    q = (
        read("events")
        .where(col("amount").isNotNull() & (col("amount") > 0))
        .withColumn("label", when(col("amount") > 2, "big").otherwise("small"))
        .query()
    )
    out = io.BytesIO()
    replay(q, io.BytesIO(src), out, batch_size=10)
    got = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert got == [{"batch_id": 0, "user": "u1", "amount": 3, "label": "big"}]
    assert read("events").groupBy("user").key_columns == ("user",)
    assert Stream.dropDuplicates is Stream.drop_duplicates
    assert Stream.withWatermark is Stream.with_watermark
    assert Stream.withColumns is Stream.with_columns


_values = st.one_of(st.none(), st.integers(-5, 5), st.booleans())


def _model_gt(x: Any, k: int) -> Any:
    return None if x is None else x > k


def _model_and(x: Any, y: Any) -> Any:
    if x is False or y is False:
        return False
    return None if x is None or y is None else True


def _model_or(x: Any, y: Any) -> Any:
    if x is True or y is True:
        return True
    return None if x is None or y is None else False


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({"a": _values, "b": _values}, optional={"c": _values})))
def test_filter_keeps_exactly_the_rows_spark_would(rows: list[dict[str, Any]]) -> None:
    pred = ((col("a") > 1) & ~(col("b") > 0)) | (col("c") > 2)

    def model(r: dict[str, Any]) -> Any:
        b = _model_gt(r.get("b"), 0)
        left = _model_and(_model_gt(r.get("a"), 1), None if b is None else not b)
        return _model_or(left, _model_gt(r.get("c"), 2))

    expected = [r for r in rows if model(r) is True]
    assert _run(read("events").filter(pred), rows).rows == expected
