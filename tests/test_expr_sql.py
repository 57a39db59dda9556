"""SQL expression text (expressions.expr_sql): every construct gives the values of the Column
built by hand on generated rows with nulls, and DuckDB's values where Spark and DuckDB agree;
names as Spark derives them; one-line refusals naming the part; intervals; the registry; and
SQL text in Stream.filter/where/select_expr."""

from __future__ import annotations

import re
import sys
import types
from typing import Any

import duckdb
import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from weir import coalesce, col, concat, expr, length, lit, lower, substring, upper, when
from weir.tables.expressions import sql_functions
from weir.tables.expressions.expr import Column
from weir.tables.expressions.expr_sql import to_column
from weir.tables.expressions.sql_functions import functions
from weir.tables.operator import Row
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import Stream, read

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "a": st.none() | st.integers(-5, 5),
            "b": st.none() | st.integers(-5, 5),
            "s": st.none() | st.sampled_from(["", "a", "ab", "abc", "xa_b", "A%b", "bab"]),
            "p": st.none() | st.booleans(),
            "q": st.none() | st.booleans(),
        }
    ),
    min_size=1,
    max_size=12,
)

a, b, s, p, q = col("a"), col("b"), col("s"), col("p"), col("q")


def _like(v: Any, pattern: str) -> Any:
    return None if v is None else re.fullmatch(pattern, v, re.DOTALL) is not None


# SQL text -> the Column built by hand (same name) or a row -> value model (name checked apart)
BUILT: dict[str, Column] = {
    "a + b": a + b,
    "a - b": a - b,
    "a * b": a * b,
    "a / b": a / b,
    "a % b": a % b,
    "-a": -a,
    "a = b": a == b,
    "a <> b": a != b,
    "a != b": a != b,
    "a < b": a < b,
    "a <= b": a <= b,
    "a > b": a > b,
    "a >= b": a >= b,
    "p AND q": p & q,
    "p OR q": p | q,
    "NOT p": ~p,
    "p AND (q OR NOT p)": p & (q | ~p),
    "a IS NULL": a.isNull(),
    "a IS NOT NULL": a.isNotNull(),
    "a IN (1, 2, NULL)": a.isin(1, 2, None),
    "a IN (b, 3)": a.isin(b, 3),
    "a BETWEEN -1 AND b": a.between(-1, b),
    "CASE WHEN a > 0 THEN 'pos' WHEN a < 0 THEN 'neg' ELSE s END": when(a > 0, "pos")
    .when(a < 0, "neg")
    .otherwise(s),
    "CASE WHEN p THEN a END": when(p, a),
    "CAST(a AS STRING)": a.cast("string"),
    "CAST(s AS INT)": s.cast("int"),
    "CAST(a AS BIGINT)": a.cast("bigint"),
    "CAST(s AS BOOLEAN)": s.cast("boolean"),
    "CAST(a AS DOUBLE)": a.cast("double"),
    "coalesce(a, b, 0)": coalesce(a, b, lit(0)),
    "upper(s)": upper(s),
    "lower(s)": lower(s),
    "length(s)": length(s),
    "concat(s, '-', s)": concat(s, lit("-"), s),
    "substring(s, 2, 3)": substring(s, 2, 3),
    "a + 1 > b * 2 OR s IS NULL": ((a + 1) > (b * 2)) | s.isNull(),
    "a NOT IN (1, b)": ~a.isin(1, b),
    "a NOT BETWEEN b AND 3": ~a.between(b, 3),
    "nvl(a, b)": coalesce(a, b),
}

MODELS: dict[str, Any] = {
    "a <=> b": lambda r: r["a"] == r["b"],
    "IF(a > 0, a, b)": lambda r: r["a"] if r["a"] is not None and r["a"] > 0 else r["b"],
    "s LIKE 'a%'": lambda r: _like(r["s"], "a.*"),
    "s LIKE '_a\\\\_b'": lambda r: _like(r["s"], ".a_b"),
    "s RLIKE 'a.?b'": lambda r: None if r["s"] is None else re.search("a.?b", r["s"]) is not None,
    "s || 'x'": lambda r: None if r["s"] is None else r["s"] + "x",
    "CASE a WHEN 1 THEN 'one' ELSE 'other' END": lambda r: "one" if r["a"] == 1 else "other",
    "s NOT LIKE '%b'": lambda r: None if r["s"] is None else not r["s"].endswith("b"),
    "a div b": lambda r: (
        None if r["a"] is None or r["b"] is None or r["b"] == 0 else int(r["a"] / r["b"])
    ),
}

# Where Spark (non-ANSI) and DuckDB agree: no division (DuckDB errors or differs on zero),
# no casts of text (DuckDB's rules differ), no regular expressions, no LIKE escapes (DuckDB's
# LIKE has no default escape character; Spark's is the backslash).
DUCKDB = [
    t
    for t in [*BUILT, *MODELS]
    if not any(x in t for x in ("/", "%", "CAST", "RLIKE", "substring", "\\", "div"))
]


@settings(max_examples=60, deadline=None)
@given(rows_strategy)
def test_sql_text_gives_the_values_of_the_built_column(rows: list[Row]) -> None:
    for text, built in BUILT.items():
        got, want = expr(text).compile(), built.compile()
        assert [got(r) for r in rows] == [want(r) for r in rows], text
    for text, model in MODELS.items():
        got = expr(text).compile()
        assert [got(r) for r in rows] == [model(r) for r in rows], text


_DUCKDB_SELECT = ", ".join(sqlglot.transpile(t, read="spark", write="duckdb")[0] for t in DUCKDB)


@settings(max_examples=25, deadline=None)
@given(rows_strategy)
def test_sql_text_agrees_with_duckdb(rows: list[Row]) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, a BIGINT, b BIGINT, s VARCHAR, p BOOLEAN, q BOOLEAN)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)",
        [(i, r["a"], r["b"], r["s"], r["p"], r["q"]) for i, r in enumerate(rows)],
    )
    table = con.execute(f"SELECT {_DUCKDB_SELECT} FROM t ORDER BY i").fetchall()
    for k, text in enumerate(DUCKDB):
        got = expr(text).compile()
        assert [got(r) for r in rows] == [line[k] for line in table], text


def test_built_pairs_have_the_same_name() -> None:
    for text, built in BUILT.items():
        if text not in ("a != b",):
            assert expr(text).name == built.name, text


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("amount > 0", "(amount > 0)"),
        ("amount * 2 AS double_amount", "double_amount"),
        ("upper(action) action_upper", "action_upper"),
        ("upper(action)", "upper(action)"),
        ("a <> b", "(NOT (a = b))"),
        ("a <=> b", "(a <=> b)"),
        ("NOT (a > 1 AND b IS NULL)", "(NOT ((a > 1) AND (b IS NULL)))"),
        ("a IN (1, 2)", "(a IN (1, 2))"),
        ("a BETWEEN 1 AND 2", "((a >= 1) AND (a <= 2))"),
        ("CASE WHEN a > 0 THEN 'p' ELSE 'n' END", "CASE WHEN (a > 0) THEN p ELSE n END"),
        ("IF(a > 0, 1, 2)", "(IF((a > 0), 1, 2))"),
        ("CAST(a AS BIGINT)", "CAST(a AS BIGINT)"),
        ("cast(a as string)", "CAST(a AS STRING)"),
        ("coalesce(a, 0)", "coalesce(a, 0)"),
        ("-a", "(- a)"),
        ("true", "true"),
        ("NULL", "NULL"),
        ("'text'", "text"),
        ("1.5", "1.5"),
        ("data.user.id", "id"),
        ("`odd.name`", "odd.name"),
        ("interval 24 hours", "INTERVAL '24' HOUR"),
        ("INTERVAL '10' MINUTE", "INTERVAL '10' MINUTE"),
        ("s LIKE 'a%'", "s LIKE a%"),
        ("s RLIKE '^a'", "RLIKE(s, ^a)"),
        ("s NOT LIKE 'a%'", "(NOT s LIKE a%)"),
        ("a div 2", "(a div 2)"),
    ],
)
def test_spark_names(text: str, name: str) -> None:
    assert expr(text).name == name


def test_literals_paths_and_backticks() -> None:
    row = {"data": {"user": {"id": 7}}, "odd.name": "x", "n": 3}
    assert expr("data.user.id").compile()(row) == 7
    assert expr("data.missing.id").compile()(row) is None
    assert expr("`odd.name`").compile()(row) == "x"
    assert [expr(t).compile()({}) for t in ["1", "1.5", "'it''s'", "TRUE", "false", "NULL"]] == [
        1,
        1.5,
        "its",
        True,
        False,
        None,
    ]
    assert expr("2147483648 * 2").compile()({}) == 4294967296


def test_typed_time_literals() -> None:
    ts = expr("TIMESTAMP '2024-01-01 00:00:01'")
    assert (ts.name, ts.dtype, ts.compile()({})) == (
        "TIMESTAMP '2024-01-01 00:00:01'",
        "timestamp",
        1_704_067_201_000,
    )
    day = expr("DATE '2024-01-02'")
    assert (day.dtype, day.compile()({})) == ("date", "2024-01-02")
    assert expr("t >= TIMESTAMP '1970-01-01 00:00:01'").compile()({"t": 1000}) is True


def test_intervals_are_milliseconds_and_time_arithmetic_is_epoch_ms() -> None:
    assert expr("interval 24 hours").compile()({}) == 86_400_000
    assert expr("INTERVAL '10' MINUTE").compile()({}) == 600_000
    assert expr("interval 1 day 2 hours").compile()({}) == 93_600_000
    assert expr("interval 24 hours").dtype == "interval"
    plus = expr("order_time + interval 24 hours")
    assert plus.compile()({"order_time": 1_000}) == 86_401_000
    assert plus.name == "(order_time + INTERVAL '24' HOUR)"
    assert plus.dtype is None  # order_time's type is unknown to a bare expr(...)
    typed = to_column("order_time - interval 30 minutes", {"order_time": "timestamp"})
    assert typed.dtype == "timestamp"
    assert typed.compile()({"order_time": 1_800_000}) == 0
    assert to_column("interval 1 hour + t", {"t": "timestamp"}).dtype == "timestamp"


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("rank() OVER (ORDER BY a)", "unsupported window function 'RANK() OVER (ORDER BY a)'"),
        ("sum(amount)", "unsupported aggregate function outside an aggregation 'SUM(amount)'"),
        ("count(*) + 1", "aggregate function outside an aggregation 'COUNT(*)'"),
        ("countDistinct(a)", "aggregate function outside an aggregation"),
        ("nosuchfn(a)", "unsupported function 'NOSUCHFN(a)'"),
        ("a[0]", "unsupported construct Bracket 'a[0]'"),
        ("cast(a as map<string, int>)", "unsupported cast"),
        ("(a AS b) + 1", "unsupported alias inside an expression 'a AS b'"),
        ("interval 3 fortnights", "unsupported interval"),
        ("a IN (SELECT 1)", "unsupported"),
        ("a AND", "syntax error at column"),
        ("1 +", "syntax error"),
        ("'open", "syntax error"),
        ("TIMESTAMP 'soon'", "unsupported timestamp literal"),
        ("SELECT a FROM t", "expected an expression, not a statement"),
        ("a; b", "expected one expression"),
        ("upper(a, b)", "cannot apply upper(...)"),
        ("", "expected SQL expression text"),
    ],
)
def test_refusals_are_one_line_naming_the_part(text: str, part: str) -> None:
    with pytest.raises(ValueError) as info:  # an aggregate is refused where it is used
        read("events").filter(expr(text))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(("expr: ",))
    assert part in message


def test_registry_is_one_mapping_extended_by_a_module(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"upper", "lower", "length", "concat", "coalesce", "substr"} <= set(functions())
    module = types.ModuleType("weir_test_sql_functions")

    def repeat(c: Column, times: int) -> Column:
        f = c.compile
        return Column(lambda: (lambda g: lambda r: g(r) * times)(f()), f"repeat({c.name})")

    module.SQL_FUNCTIONS = {"repeat": repeat}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(
        sql_functions, "FUNCTION_MODULES", (*sql_functions.FUNCTION_MODULES, module.__name__)
    )
    functions.cache_clear()
    try:
        c = expr("REPEAT(upper(s), 2)")  # a literal after the first argument is a Python value
        assert c.compile()({"s": "ab"}) == "ABAB"
    finally:
        monkeypatch.undo()
        functions.cache_clear()
    with pytest.raises(ValueError, match="unsupported function 'REPEAT"):
        expr("repeat(s, 2)")


def run(stream: Stream, rows: list[Row]) -> list[Row]:
    task = stream.query("append").task(MemoryStore())
    return task.run_batch({"events": rows}, 1).rows


EVENTS = [
    {"id": 1, "action": "buy", "amount": 5},
    {"id": 2, "action": "view", "amount": 0},
    {"id": 3, "action": None, "amount": None},
]


def test_stream_filter_and_where_take_sql_text() -> None:
    events = read("events")
    assert [r["id"] for r in run(events.filter("amount > 0"), EVENTS)] == [1]
    assert [r["id"] for r in run(events.where("amount = 0 OR action IS NULL"), EVENTS)] == [2, 3]
    assert [r["id"] for r in run(events.alias("e").filter("e.amount >= 0"), EVENTS)] == [1, 2]
    assert [r["id"] for r in run(events.filter("events.id > 2"), EVENTS)] == [3]
    with pytest.raises(ValueError, match="unsupported function 'NOPE"):
        events.filter("nope(amount)")


def test_select_expr_star_alias_and_implicit_alias() -> None:
    events = read("events")
    out = run(events.select_expr("*", "amount * 2 AS double_amount"), EVENTS[:1])
    assert out == [{"id": 1, "action": "buy", "amount": 5, "double_amount": 10}]
    out = run(events.selectExpr("id", "upper(action) action_upper"), EVENTS)
    assert out == [
        {"id": 1, "action_upper": "BUY"},
        {"id": 2, "action_upper": "VIEW"},
        {"id": 3, "action_upper": None},
    ]
    assert run(events.select_expr("amount > 0"), EVENTS[:2]) == [
        {"(amount > 0)": True},
        {"(amount > 0)": False},
    ]


def test_select_expr_expands_structs_and_the_alias_star() -> None:
    events = read("events")
    rows = [{"id": 1, "o": {"order_id": "a", "amount": 2}}, {"id": 2, "o": None}]
    out = run(events.select_expr("o.*", "id"), rows)
    assert out == [{"order_id": "a", "amount": 2, "id": 1}, {"id": 2}]
    out = run(events.alias("e").select_expr("e.*", "o.amount * 2 AS twice"), rows[:1])
    assert out == [{"id": 1, "o": {"order_id": "a", "amount": 2}, "twice": 4}]


def test_select_expr_keeps_and_makes_timestamp_columns() -> None:
    events = read("events", timestamp_columns=["t"])
    s = events.select_expr("*", "t + interval 1 hour AS t_end", "id")
    assert s.node.timestamp_columns == {"t", "t_end"}
    s = events.select_expr("t + interval 1 hour AS t_end", "id")
    assert s.node.timestamp_columns == {"t_end"}
    assert run(s, [{"id": 1, "t": 0}]) == [{"t_end": 3_600_000, "id": 1}]


def test_expr_columns_take_the_streams_types_and_alias_in_stream_methods() -> None:
    orders = read("orders", timestamp_columns=["order_time"]).alias("o")
    deadline = expr("o.order_time + interval 24 hours")
    assert deadline.dtype is None  # alone, order_time's type and the alias are unknown
    s = orders.with_column("deadline", deadline)
    assert s.node.timestamp_columns == {"order_time", "deadline"}
    task = s.query("append").task(MemoryStore())
    assert task.run_batch({"orders": [{"order_time": 0}]}, 1).rows == [
        {"order_time": 0, "deadline": 86_400_000}
    ]
    s = orders.select(expr("order_time + interval 1 hour").alias("t1"), "order_time")
    assert s.node.timestamp_columns == {"t1", "order_time"}
    s = orders.with_columns({"t2": expr("order_time - interval 1 minute")})
    assert s.node.timestamp_columns == {"t2", "order_time"}
    assert expr("a + 1").alias("b").alias("c").name == "c"
    assert [r["id"] for r in run(read("events").filter(expr("events.id > 2")), EVENTS)] == [3]


def test_with_column_refuses_text_pointing_to_expr() -> None:
    with pytest.raises(ValueError) as info:
        read("events").with_column("x", "amount * 2")
    assert "\n" not in str(info.value)
    assert "expr('amount * 2')" in str(info.value)
    out = run(read("events").with_column("x", expr("amount * 2")), EVENTS[:1])
    assert out == [{"id": 1, "action": "buy", "amount": 5, "x": 10}]
