"""The order of an aggregation's output rows: by window, then by the keys in `sort_key`'s
order (None, numbers, strings, then anything else by its JSON), whatever the key types: the
fast path (keys of one plain type per column compared in C) and the general one agree."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from weir.tables.ops.agg_base import keys_sort_key
from weir.tables.ops.aggregate import AggregateOperator
from weir.tables.stream import read
from weir.tables.window import window

plain = st.one_of(
    st.text(max_size=3),
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False),
)
anything = st.one_of(plain, st.none(), st.booleans(), st.lists(st.integers(0, 2), max_size=2))


def _operator(windowed: bool) -> AggregateOperator:
    s = read("ev").with_watermark("ts", "1 minute")
    grouped = s.group_by(window("ts", "1 minute"), "a", "b") if windowed else s.group_by("a", "b")
    (op,) = [
        n.op for n in grouped.count().query("update").nodes if n.op is not None and n.op.stateful
    ]
    assert isinstance(op, AggregateOperator)
    return op


def _expected(rows: list[dict[str, Any]], windowed: bool) -> list[dict[str, Any]]:
    def key(r: dict[str, Any]) -> Any:
        keys = keys_sort_key((r["a"], r["b"]))
        return (r["window_start"], r["window_end"], keys) if windowed else keys

    return sorted(rows, key=key)


@settings(max_examples=300, deadline=None)
@given(
    keys=st.one_of(
        st.lists(st.tuples(plain, plain), min_size=2, max_size=12),
        st.lists(st.tuples(anything, anything), min_size=2, max_size=12),
        st.lists(st.tuples(st.text(max_size=2), st.integers(0, 3)), min_size=2, max_size=12),
    ),
    windowed=st.booleans(),
)
def test_rows_sort_by_window_then_keys_in_sort_key_order(
    keys: list[tuple[Any, Any]], windowed: bool
) -> None:
    op = _operator(windowed)
    rows = []
    for i, (a, b) in enumerate(keys):
        row: dict[str, Any] = {"a": a, "b": b, "count": i}
        if windowed:
            row["window_start"] = (i % 3) * 60_000
            row["window_end"] = row["window_start"] + 60_000
        rows.append(row)
    got = op._sorted(list(rows))
    want = _expected(rows, windowed)
    # rows with equal sort keys keep their order (both sorts are stable)
    assert got == want
