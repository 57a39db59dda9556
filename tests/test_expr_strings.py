"""Regex and text functions (expressions.expr_strings, java_regex) and array/map functions
(weir.tables.expressions.expr_collections): exact values with nulls, where Java's regex differs from
Python's, and agreement with DuckDB where the semantics agree."""

from __future__ import annotations

import re
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weir import (
    array_contains,
    col,
    concat_ws,
    element_at,
    lit,
    lpad,
    ltrim,
    regexp_extract,
    regexp_extract_all,
    regexp_like,
    regexp_replace,
    rpad,
    rtrim,
    size,
    split,
    trim,
)
from weir.tables.expressions.expr import Column
from weir.tables.expressions.java_regex import java_regex


def ev(c: Column, row: dict[str, Any] | None = None) -> Any:
    return c.compile()(row or {})


def test_regexp_extract() -> None:
    row = {"s": "user-42 logged in from 10.0.0.7", "n": None}
    assert ev(regexp_extract("s", r"(\w+)-(\d+)", 2), row) == "42"
    assert ev(regexp_extract("s", r"(\w+)-(\d+)", 0), row) == "user-42"
    assert ev(regexp_extract("s", r"(\d+)\.(\d+)\.(\d+)\.(\d+)", 4), row) == "7"
    assert ev(regexp_extract("s", r"nothing(\d)", 1), row) == ""  # no match: "", not None
    assert ev(regexp_extract("s", r"(x)|(u)", 1), row) == ""  # a group that took no part
    assert ev(regexp_extract("n", r"(\d)", 1), row) is None
    assert ev(regexp_extract("i", r"(\d)", 1), {"i": 1234}) == "1"  # a number is cast to text
    assert regexp_extract("s", r"(\d)", 1).name == r"regexp_extract(s, (\d), 1)"
    with pytest.raises(ValueError, match="has 1 group"):
        regexp_extract("s", r"(\d)", 2)
    assert ev(regexp_extract_all("s", r"(\d+)", 1), row) == ["42", "10", "0", "0", "7"]


def test_regexp_replace_uses_java_replacement_syntax() -> None:
    row = {"s": "2024-05-01", "n": None}
    assert ev(regexp_replace("s", r"(\d+)-(\d+)-(\d+)", "$3/$2/$1"), row) == "01/05/2024"
    assert ev(regexp_replace("s", r"(?<y>\d{4})", "${y}!"), row) == "2024!-05-01"
    assert ev(regexp_replace("s", "-", r"\$"), row) == "2024$05$01"
    assert ev(regexp_replace("s", r"(\d)", "$10"), row) == "20002040-0050-0010"  # $1, "0"
    assert ev(regexp_replace("s", "x*", "_"), {"s": "ab"}) == "_a_b_"
    assert ev(regexp_replace("n", "a", "b"), row) is None
    with pytest.raises(ValueError, match="no group 2"):
        regexp_replace("s", r"(\d)", "$2")
    with pytest.raises(ValueError, match="followed by a group"):
        regexp_replace("s", r"\d", "$x")


def test_java_regex_differences_from_python() -> None:
    assert ev(regexp_like("s", r"^\d+$"), {"s": "١٢٣"}) is False  # Java's \d is ASCII only
    assert ev(regexp_like("s", r"a.b"), {"s": "a\rb"}) is False  # . stops at any line end
    assert ev(regexp_like("s", r"(?s)a.b"), {"s": "a\rb"}) is True
    assert ev(regexp_like("s", r"\Q1+1\E=2"), {"s": "1+1=2"}) is True
    assert ev(regexp_like("s", r"^\p{Upper}\p{Lower}+$"), {"s": "Weir"}) is True
    assert ev(regexp_like("s", r"(?<w>o)\k<w>"), {"s": "foo"}) is True
    assert ev(regexp_like("s", r"ab\z"), {"s": "ab\n"}) is False
    assert ev(regexp_like("s", r"ab\Z"), {"s": "ab\n"}) is True
    assert ev(regexp_like("s", r"a++b"), {"s": "aab"}) is True  # possessive, as in Java
    with pytest.raises(ValueError, match="Unicode property"):
        java_regex(r"\p{L}+")
    with pytest.raises(ValueError, match="&&"):
        java_regex(r"[a-z&&[^e]]")
    with pytest.raises(ValueError, match="regex"):
        regexp_like("s", "(unclosed")
    assert ev(split("s", r"\s+"), {"s": "a b\u00a0c"}) == ["a", "b\u00a0c"]  # ASCII \s


def test_trim_pad_and_concat_ws() -> None:
    row = {"s": "\t  hi  \n", "p": "  hi  ", "a": ["x", None, "y"], "n": None}
    assert ev(trim("s"), row) == "\t  hi  \n"  # Spark trims spaces only
    assert [ev(f("p"), row) for f in (trim, ltrim, rtrim)] == ["hi", "hi  ", "  hi"]
    assert ev(trim("p", "h "), row) == "i"
    assert ev(trim("n"), row) is None
    assert ev(lpad(lit("hi"), 5, "ab")) == "abahi" and ev(rpad(lit("hi"), 5, "ab")) == "hiaba"
    assert ev(lpad(lit("hello"), 3, "x")) == "hel" and ev(rpad(lit("hello"), 0, "x")) == ""
    assert ev(lpad(lit("hi"), 5, "")) == "hi" and ev(lpad(lit(7), 3, "0")) == "007"
    assert ev(concat_ws("-", "a", "n", lit(3), lit(True)), row) == "x-y-3-true"
    assert ev(concat_ws(",", "n"), row) == "" and ev(concat_ws(",")) == ""
    assert concat_ws("-", "a", "n").name == "concat_ws(-, a, n)"


def test_array_and_map_functions() -> None:
    row = {"a": [1, 2, None], "b": [1, 2], "e": [], "m": {"k": "v"}, "n": None}
    assert [ev(size(c), row) for c in "abemn"] == [3, 2, 0, 1, -1]  # size(null) is -1
    assert ev(array_contains("a", 2), row) is True
    assert ev(array_contains("a", 5), row) is None  # not found, and a null element
    assert ev(array_contains("b", 5), row) is False
    assert ev(array_contains("n", 5), row) is None and ev(array_contains("b", None), row) is None
    assert ev(array_contains("b", col("x")), {**row, "x": 1}) is True
    assert [ev(element_at("b", i), row) for i in (1, 2, 3, -1, -2, -3)] == [1, 2, None, 2, 1, None]
    assert ev(element_at("m", "k"), row) == "v" and ev(element_at("m", "z"), row) is None
    assert ev(element_at("n", 1), row) is None
    with pytest.raises(ValueError, match="start at 1"):
        ev(element_at("b", 0), row)
    with pytest.raises(TypeError):
        ev(size("s"), {"s": "text"})


# -- DuckDB as the oracle ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def _one(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> Any:
    return con.execute(sql, list(params)).fetchone()[0]  # type: ignore[index]


texts = st.text(alphabet="ab1 2-x_.", max_size=12)
PATTERNS = [r"(\d+)", r"([a-z]+)-(\d)", r"(a|b)(x)?", r"(\w+)\s(\w+)", r"(\.)(_*)"]


@settings(max_examples=150, deadline=None)
@given(texts, st.sampled_from(PATTERNS), st.integers(0, 1))
def test_regexp_functions_agree_with_duckdb(
    duck: duckdb.DuckDBPyConnection, s: str, pattern: str, idx: int
) -> None:
    row = {"s": s}
    assert ev(regexp_extract("s", pattern, idx), row) == _one(
        duck, "SELECT regexp_extract(?, ?, ?)", s, pattern, idx
    )
    assert ev(regexp_replace("s", pattern, "<$1>"), row) == _one(
        duck, "SELECT regexp_replace(?, ?, '<\\1>', 'g')", s, pattern
    )
    assert ev(regexp_like("s", pattern), row) == bool(re.search(pattern, s, re.ASCII))


@settings(max_examples=150, deadline=None)
@given(texts, st.integers(-2, 15), st.sampled_from(["*", "ab", "xyz"]), st.lists(st.none() | texts))
def test_text_functions_agree_with_duckdb(
    duck: duckdb.DuckDBPyConnection, s: str, n: int, pad: str, parts: list[str | None]
) -> None:
    row = {"s": s}
    got = (ev(lpad("s", n, pad), row), ev(rpad("s", n, pad), row), ev(trim("s"), row))
    expected = duck.execute("SELECT lpad(?, ?, ?), rpad(?, ?, ?), trim(?)", [s, n, pad] * 2 + [s])
    assert got == expected.fetchone()
    cols = [lit(p) for p in parts]
    if parts:
        placeholders = ", ".join("?::VARCHAR" for _ in parts)
        assert ev(concat_ws("|", *cols)) == _one(
            duck, f"SELECT concat_ws('|', {placeholders})", *parts
        )
