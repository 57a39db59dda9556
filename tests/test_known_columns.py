"""Columns known at definition: from the agent's schema through every builder step, an
expression naming a column the stream does not have refused in one line when the query is
defined, and the schema's types in the compile scope of expressions."""

from __future__ import annotations

from pathlib import Path

import pytest

from weir import App, col, window
from weir.tables.ops.functions import count
from weir.tables.ops.functions import sum as spark_sum
from weir.tables.stream import Stream, read

ORDERS = {"order_id": "string", "user_id": "string", "amount": "double", "ts": "timestamp"}
COLUMNS = "(columns: order_id, user_id, amount, ts)"


def orders() -> Stream:
    return read("orders", {"ts"}, ORDERS)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda s: s.filter(col("amout") > 0), f"filter: unknown column 'amout' {COLUMNS}"),
        (lambda s: s.where(col("user_id").isNull() | (col("x") > 1)), "filter: unknown column 'x'"),
        (lambda s: s.select("order_id", "amout"), f"select: unknown column 'amout' {COLUMNS}"),
        (lambda s: s.select((col("amout") * 2).alias("a")), "select: unknown column 'amout'"),
        (lambda s: s.select("data.*"), "select: unknown column 'data'"),
        (lambda s: s.with_column("x", col("amout") + 1), "with_column: unknown column 'amout'"),
        (lambda s: s.withColumns({"x": col("nope")}), "with_columns: unknown column 'nope'"),
        (lambda s: s.group_by("usr").count(), f"group_by: unknown column 'usr' {COLUMNS}"),
        (
            lambda s: s.group_by(window("time", "1 minute")).count(),
            "group_by: unknown column 'time'",
        ),
        (lambda s: s.group_by("user_id").agg(spark_sum("amt")), "agg: unknown column 'amt'"),
        (lambda s: s.with_watermark("event_time", "1 minute"), "with_watermark: unknown column"),
        (lambda s: s.drop_duplicates(["oder_id"]), "drop_duplicates: unknown column 'oder_id'"),
    ],
)
def test_an_unknown_column_is_refused_in_one_line(build: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        build(orders())  # type: ignore[operator]
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text


def test_join_checks_each_side_and_renames_clashes() -> None:
    left = orders().with_watermark("ts", "1 minute")
    pays = {"order_id": "string", "amount": "double", "pay_ts": "timestamp"}
    right = read("payments", {"pay_ts"}, pays).with_watermark("pay_ts", "1 minute")
    with pytest.raises(ValueError, match=r"^join \(right side\): unknown column 'user_id'"):
        left.join(right, on="user_id", between=("pay_ts", "ts", "ts + 1 hour"))
    joined = left.join(right, on="order_id", between=("pay_ts", "ts", "ts + 1 hour"))
    assert list(dict(joined.node.columns or ())) == [
        "order_id",
        "user_id",
        "left_amount",
        "ts",
        "right_amount",
        "pay_ts",
    ]
    with pytest.raises(ValueError, match="filter: unknown column 'amount'"):
        joined.filter(col("amount") > 0)


def test_columns_follow_each_step_and_are_unknown_after_a_python_map() -> None:
    s = orders().with_column("double", col("amount") * 2).with_column("t2", col("ts"))
    assert s.column_types()["t2"] == "timestamp" and s.column_types()["amount"] == "double"
    assert list(dict(s.node.columns or ())) == [*ORDERS, "double", "t2"]
    agg = (
        s.with_watermark("ts", "1 minute")
        .group_by(window("ts", "5 minutes"), "user_id")
        .agg(count().alias("n"), spark_sum("amount"))
    )
    assert dict(agg.node.columns or ()) == {
        "user_id": "string",
        "window_start": "timestamp",
        "window_end": "timestamp",
        "n": None,
        "sum(amount)": None,
    }
    with pytest.raises(ValueError, match="unknown column 'amount'"):
        agg.filter(col("amount") > 1)
    mapped = orders().map(lambda r: r)
    assert mapped.node.columns is None
    assert mapped.filter(col("anything") > 1).node.columns is None  # nothing to check against
    unioned = orders().union(read("more", {"ts"}, ORDERS))
    assert unioned.node.columns == orders().node.columns
    assert orders().union(read("other")).node.columns is None
    deduped = orders().with_watermark("ts", "1 minute").drop_duplicates(["order_id", "ts"])
    assert deduped.filter(col("amount") > 0).node.columns == orders().node.columns


def test_an_agents_schema_makes_the_known_columns(tmp_path: Path) -> None:
    app = App("known", state_dir=str(tmp_path))
    seen: list[dict[str, str]] = []

    def query(events: Stream) -> object:
        seen.append(events.column_types())
        return events.filter(col("amount") > 0).query("append")

    app.agent(
        app.topic("events"),
        schema="amount DOUBLE, at TIMESTAMP, loc STRUCT<lat: DOUBLE>",
        record_columns=["key", "offset"],
        name="ok",
    )(query)
    assert seen == [
        {
            "amount": "double",
            "at": "timestamp",
            "loc": "struct<lat:double>",
            "key": "string",
            "offset": "bigint",
        }
    ]
    with pytest.raises(ValueError, match=r"^filter: unknown column 'amout' \(columns: amount"):
        app.agent(app.topic("events"), schema={"amount": "double"}, name="bad")(
            lambda events: events.filter(col("amout") > 0).query("append")
        )
