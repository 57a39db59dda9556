"""Stream-stream joins on an `expr(...)` condition (weir.tables.ops.join_expr): the course's
condition builds the same join node as on=/between= and gives the same rows batch by batch;
strict bounds, swapped sides, BETWEEN, aliases; an inner join's other conditions filter the
joined rows; one-line refusals."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weir import expr
from weir.tables.operator import Row
from weir.tables.ops.join import StreamJoinOperator
from weir.tables.query import QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import Stream, read

MIN = 60_000
HOUR = 60 * MIN
COURSE = """
    orders.order_id = shipments.order_id AND
    ship_time >= order_time AND
    ship_time <= order_time + interval 24 hours
"""


def sides() -> tuple[Stream, Stream]:
    orders = read("orders", ["order_time"]).with_watermark("order_time", "2 hours")
    shipments = read("shipments", ["ship_time"]).with_watermark("ship_time", "3 hours")
    return orders, shipments


def course_join(how: str = "inner") -> Stream:
    orders_wm, shipments_wm = sides()
    return orders_wm.join(shipments_wm, expr(COURSE), how)


def between_join(how: str = "inner") -> Stream:
    orders_wm, shipments_wm = sides()
    return orders_wm.join(
        shipments_wm,
        on="order_id",
        how=how,
        between=("ship_time", "order_time", "order_time + 24 hours"),
    )


def params(s: Stream) -> dict[str, Any]:
    op = s.node.op
    assert isinstance(op, StreamJoinOperator)
    return {
        **op.fingerprint(),
        "horizons": (op.left_horizon, op.right_horizon),
        "late": (op.left_late_col, op.right_late_col),
        "timestamps": s.node.timestamp_columns,
        "watermarks": s.node.watermarks,
    }


def test_course_condition_builds_the_same_join_node_as_between() -> None:
    assert params(course_join()) == params(between_join())
    assert params(course_join("left_outer")) == params(between_join("left_outer"))
    op = course_join().node.op
    assert isinstance(op, StreamJoinOperator)
    assert (op.keys, op.left_time, op.right_time, op.lower, op.upper) == (
        [("order_id", "order_id")],
        "order_time",
        "ship_time",
        0,
        24 * HOUR,
    )


@pytest.mark.parametrize(
    "condition",
    [
        "shipments.order_id = orders.order_id AND order_time <= ship_time"
        " AND order_time >= ship_time - interval 24 hours",
        "orders.order_id = shipments.order_id"
        " AND ship_time BETWEEN order_time AND order_time + INTERVAL '24' HOUR",
        "o.order_id = s.order_id AND (s.ship_time >= o.order_time)"
        " AND s.ship_time - interval 12 hours <= o.order_time + interval 12 hours",
        "order_id = shipments.order_id AND ship_time + interval 1 hour >= order_time"
        " + interval 1 hour AND ship_time <= order_time + interval 1 day",
    ],
)
def test_equivalent_spellings_give_the_same_node(condition: str) -> None:
    orders, shipments = sides()
    s = orders.alias("o").join(shipments.alias("s"), expr(condition), "inner")
    assert params(s) == params(between_join())


def test_strict_bounds_are_inclusive_bounds_one_ms_inside() -> None:
    orders, shipments = sides()
    strict = orders.join(
        shipments,
        expr(
            "orders.order_id = shipments.order_id AND ship_time > order_time"
            " AND ship_time < order_time + interval 24 hours"
        ),
    )
    inclusive = orders.join(
        shipments,
        on="order_id",
        between=("ship_time", "order_time + 1 ms", "order_time + 86399999 ms"),
    )
    assert params(strict) == params(inclusive)
    out = drive(
        strict,
        [
            ({"orders": [order("o", 0)]}, 1),
            ({"shipments": [ship("o", 0), ship("o", 1), ship("o", 24 * HOUR)]}, 2),
            ({"shipments": [ship("o", 24 * HOUR - 1)]}, 3),
        ],
    )
    assert [r["ship_time"] for r in out] == [1, 24 * HOUR - 1]


def test_on_and_how_positional_and_keyword_forms() -> None:
    orders, shipments = sides()
    kw = orders.join(shipments, on=expr(COURSE), how="inner")
    pos = orders.join(shipments, "order_id", "left_outer", time_range=(
        "ship_time", "order_time", 0, "24 hours"))  # fmt: skip
    assert params(kw) == params(between_join())
    assert params(pos) == params(between_join("left_outer"))


def order(oid: str, t: int, amount: float = 10.0) -> Row:
    return {"order_id": oid, "order_time": t, "amount": amount}


def ship(oid: str, t: int, amount: float = 1.0) -> Row:
    return {"order_id": oid, "ship_time": t, "fee": amount}


def drive(s: Stream, batches: list[tuple[dict[str, list[Row]], int]]) -> list[Row]:
    task: QueryTask = s.query("append").task(MemoryStore())
    out: list[Row] = []
    for batch, pt in batches:
        result = task.run_batch(batch, pt)
        task.commit(result)
        out.extend(result.rows)
        if task.wants_no_data_batch():
            result = task.run_batch({}, pt)
            task.commit(result)
            out.extend(result.rows)
    return out


events = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from(["o1", "o2", "o3"]),
        st.integers(0, 60).map(lambda h: h * HOUR + 0),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(events, st.sampled_from(["inner", "left_outer", "right_outer"]))
def test_course_condition_gives_the_rows_of_between(
    items: list[tuple[bool, str, int]], how: str
) -> None:
    batches: list[tuple[dict[str, list[Row]], int]] = []
    for i in range(0, len(items), 3):
        batch: dict[str, list[Row]] = {"orders": [], "shipments": []}
        for is_order, oid, t in items[i : i + 3]:
            if is_order:
                batch["orders"].append(order(oid, t))
            else:
                batch["shipments"].append(ship(oid, t))
        batches.append((batch, i + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert drive(course_join(how), batches) == drive(between_join(how), batches)


def test_inner_join_applies_other_conditions_to_the_joined_rows() -> None:
    orders, shipments = sides()
    s = orders.join(
        shipments,
        expr(
            COURSE + " AND orders.amount > 5 AND shipments.amount < orders.amount"
            " AND shipments.amount = 1"
        ),
        "inner",
    )
    assert params(Stream(s.node.parents[0])) == params(between_join())
    shipped = [_ship_with_amount("o1", HOUR, 1.0), _ship_with_amount("o2", HOUR, 1.0)]
    shipped.append(_ship_with_amount("o1", HOUR, 2.0))
    out = drive(
        s,
        [
            ({"orders": [order("o1", 0, 10.0), order("o2", 0, 3.0)]}, 1),
            ({"shipments": shipped}, 2),
        ],
    )
    # both sides have "amount" here: the joined row holds left_amount/right_amount
    assert [(r["order_id"], r["left_amount"], r["right_amount"]) for r in out] == [
        ("o1", 10.0, 1.0)
    ]


def _ship_with_amount(oid: str, t: int, amount: float) -> Row:
    return {"order_id": oid, "ship_time": t, "amount": amount}


def test_one_sided_time_bound_is_a_filter_of_an_inner_join() -> None:
    orders, shipments = sides()
    with pytest.warns(UserWarning, match="grows forever"):
        s = orders.join(
            shipments, expr("orders.order_id = shipments.order_id AND ship_time >= order_time")
        )
    out = drive(s, [({"orders": [order("o", HOUR)], "shipments": [ship("o", 0)]}, 1)])
    assert out == []


@pytest.mark.parametrize(
    ("condition", "how", "part"),
    [
        (COURSE + " AND orders.amount > 5", "left_outer", "'orders.amount > 5' is neither"),
        ("ship_time >= order_time AND ship_time <= order_time + interval 1 hour", "inner",
         "needs an equality key"),
        ("orders.order_id = shipments.order_id", "left_outer", "without a watermark"),
        ("orders.order_id = shipments.order_id AND ship_time >= order_time", "left",
         "bound 'ship_time >= order_time' has no upper bound on the same columns; a left_outer"),
        (COURSE, "full_outer", "unsupported join type 'full_outer'"),
        ("a = b AND " + COURSE, "inner", "cannot tell which side 'a = b'"),
        ("orders.order_id = shipments.order_id AND sum(x) > 1", "inner", "aggregate function"),
    ],
)  # fmt: skip
def test_refusals_are_one_line(condition: str, how: str, part: str) -> None:
    orders, shipments = sides()
    with pytest.raises(ValueError) as info:
        orders.join(shipments, expr(condition), how)
    assert "\n" not in str(info.value)
    assert part in str(info.value)


def test_a_built_column_condition_is_refused() -> None:
    from weir import col

    orders, shipments = sides()
    with pytest.raises(ValueError, match="must be SQL text"):
        orders.join(shipments, col("order_id") == col("order_id"))


def test_inner_join_filter_reads_struct_paths_of_a_side() -> None:
    orders, shipments = sides()
    s = orders.join(shipments, expr(COURSE + " AND orders.meta.vip AND fee < 5"))
    out = drive(
        s,
        [
            (
                {
                    "orders": [order("o1", 0) | {"meta": {"vip": True}}, order("o2", 0)],
                    "shipments": [ship("o1", HOUR), ship("o2", HOUR), ship("o1", HOUR, 9.0)],
                },
                1,
            )
        ],
    )
    assert [(r["order_id"], r["fee"]) for r in out] == [("o1", 1.0)]
