"""Generated code (expressions.expr_codegen) computes exactly what the expressions' closures
compute: the same values, None rules and errors, per row and over a whole batch."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from weir import col, lit, when
from weir.tables.expressions.expr import Column
from weir.tables.expressions.expr_codegen import filter_rows, row_function, select_rows, set_columns

NAMES = ("a", "b", "c")
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(["x", "1", ""]),
)
rows = st.fixed_dictionaries({}, optional={n: values for n in NAMES})


def leaves() -> st.SearchStrategy[Column]:
    return st.one_of(st.sampled_from(NAMES).map(col), values.map(lit))


def extend(children: st.SearchStrategy[Column]) -> st.SearchStrategy[Column]:
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda p: p[0] + p[1]),
        pair.map(lambda p: p[0] - p[1]),
        pair.map(lambda p: p[0] * p[1]),
        pair.map(lambda p: p[0] / p[1]),
        pair.map(lambda p: p[0] % p[1]),
        pair.map(lambda p: p[0] == p[1]),
        pair.map(lambda p: p[0] != p[1]),
        pair.map(lambda p: p[0] < p[1]),
        pair.map(lambda p: p[0] >= p[1]),
        pair.map(lambda p: p[0] & p[1]),
        pair.map(lambda p: p[0] | p[1]),
        children.map(lambda c: ~c),
        children.map(lambda c: -c),
        children.map(lambda c: c.isNull()),
        children.map(lambda c: c.isNotNull()),
        children.map(lambda c: c.cast("long")),
        children.map(lambda c: c.cast("string")),
        st.tuples(children, children, children).map(lambda t: when(t[0], t[1]).otherwise(t[2])),
        st.tuples(children, children).map(lambda t: when(t[0], t[1])),
    )


exprs = st.recursive(leaves(), extend, max_leaves=8)


def outcome(fn: Any, arg: Any) -> Any:
    """The value, or the exception's type (generated code must fail where closures fail)."""
    try:
        v = fn(arg)
    except Exception as exc:  # the type is the result compared
        return type(exc)
    return ("nan",) if isinstance(v, float) and math.isnan(v) else v


@settings(max_examples=400, deadline=None)
@given(exprs, st.lists(rows, max_size=6))
def test_generated_row_function_equals_the_closures(e: Column, batch: list[dict]) -> None:
    closure, generated = e._build(), row_function(e)
    for r in batch:
        assert outcome(generated, r) == outcome(closure, r)


@settings(max_examples=300, deadline=None)
@given(exprs, st.lists(rows, max_size=6))
def test_batch_functions_equal_row_by_row(e: Column, batch: list[dict]) -> None:
    closure = e._build()
    for r in batch:
        want = outcome(closure, r)
        if isinstance(want, type):
            assert isinstance(outcome(filter_rows(e), [r]), type)
            assert isinstance(outcome(select_rows([("v", e)]), [r]), type)
            continue
        assert filter_rows(e)([r]) == ([r] if want is True else [])
        assert outcome(select_rows([("v", e)]), [r]) == outcome(lambda x: [{"v": closure(x)}], r)
        assert outcome(set_columns({"a": e}), [r]) == outcome(lambda x: [{**x, "a": closure(x)}], r)


def test_literals_are_bound_not_pasted() -> None:
    tricky = "x') or __import__('os').system('false') or ('"
    fn = row_function(col("a") == lit(tricky))
    assert fn({"a": tricky}) is True
    assert fn({"a": "x"}) is False
    assert row_function(col("a") + lit(float("inf")))({"a": 1}) == float("inf")
    assert row_function(col("a") * lit(0.5))({"a": 3}) == 1.5


def test_field_names_with_quotes_and_dots_are_keys() -> None:
    odd = 'it\'s "odd"'
    assert select_rows([(odd, col(f"`{odd}`"))])([{odd: 1}]) == [{odd: 1}]
    assert row_function(col("`a.b`"))({"a.b": 2, "a": {"b": 3}}) == 2
    assert row_function(col("a.b"))({"a.b": 2, "a": {"b": 3}}) == 3


def test_a_batch_with_a_missing_field_reads_it_as_null() -> None:
    rows = [{"a": 1, "b": 2}, {"a": 3}, {"b": 4}]
    assert select_rows([("a", col("a")), ("s", col("a") + col("b"))])(rows) == [
        {"a": 1, "s": 3},
        {"a": 3, "s": None},
        {"a": None, "s": None},
    ]
    assert filter_rows(col("b") > 1)(rows) == [rows[0], rows[2]]
    assert set_columns({"c": col("b") * 10})(rows) == [
        {"a": 1, "b": 2, "c": 20},
        {"a": 3, "c": None},
        {"b": 4, "c": 40},
    ]
