"""The exercise pipelines (weir.agents: dedup, order_matching, unmatched_orders, sessionization)
driven batch by batch with exact expected rows, over both stores."""

from __future__ import annotations

import random

from weir.agents import dedup, order_matching, sessionization, unmatched_orders
from weir.tables.operator import Row
from weir.tables.query import QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import Store
from weir.tables.timeutil import to_millis


def t(hhmm: str) -> int:
    return to_millis(f"2024-05-01T{hhmm}:00Z")


def run(task: QueryTask, batch: dict[str, list[Row]], pt: int) -> list[Row]:
    result = task.run_batch(batch, pt)
    task.commit(result)
    return result.rows


def run_with_no_data(task: QueryTask, batch: dict[str, list[Row]], pt: int) -> list[Row]:
    """A data batch, then the no-data batch the runner would add when the watermark moved."""
    out = run(task, batch, pt)
    if task.wants_no_data_batch():
        out += run(task, {}, pt + 1)
    return out


def raw(eid: str, hhmm: str, amount: float = 1.0) -> Row:
    return {
        "event_id": eid,
        "user_id": "u" + eid,
        "amount": amount,
        "event_ts": f"2024-05-01T{hhmm}:00Z",
    }


def test_dedup_pipeline(store: Store) -> None:
    task = dedup.query.task(store)
    out = run(task, {"raw_events": [raw("e1", "10:00"), raw("e2", "10:01"), raw("e1", "10:00")]}, 1)
    assert [(r["event_id"], r["event_ts"]) for r in out] == [("e1", t("10:00")), ("e2", t("10:01"))]
    assert dedup.query.timestamp_columns == {"event_ts"}
    # a retry with the same payload, and a new event 30 minutes later: W becomes 10:15
    out = run(task, {"raw_events": [raw("e2", "10:01"), raw("e3", "10:30")]}, 2)
    assert [r["event_id"] for r in out] == ["e3"]
    run(task, {}, 3)  # no-data batch: e1 and e2 (<= 10:15) leave the state
    assert task.state_rows() == 1
    result = task.run_batch({"raw_events": [raw("e1", "10:00"), raw("e4", "10:20")]}, 4)
    task.commit(result)
    assert [r["event_id"] for r in result.rows] == ["e4"]
    assert [r["event_id"] for _, r in result.late_rows] == ["e1"]  # too late to dedup: dropped


def order(oid: str, hhmm: str, user: str = "u1", amount: float = 20.0) -> Row:
    return {
        "order_id": oid,
        "user_id": user,
        "amount": amount,
        "order_ts": f"2024-05-01T{hhmm}:00Z",
    }


def pay(pid: str, oid: str, hhmm: str, method: str = "card") -> Row:
    return {"payment_id": pid, "order_id": oid, "payment_method": method, "pay_ts": t(hhmm)}


def matched_row(o: Row, p: Row) -> Row:
    return {**o, "order_ts": to_millis(o["order_ts"]), **p}


ORDERS = [order("o1", "10:00"), order("o2", "10:30", "u2", 5.0), order("o3", "11:00")]
PAYMENTS_1 = [pay("p1", "o1", "10:20"), pay("p2", "o2", "15:00")]  # p2: 4h30 after o2
PAYMENTS_2 = [pay("p3", "o3", "12:00", "paypal")]
FAR = {"orders": [order("o9", "20:00")], "payments": [pay("p9", "o9", "20:00")]}


def test_order_matching_pipeline(store: Store) -> None:
    task = order_matching.query.task(store)
    out = run(task, {"orders": [dict(o) for o in ORDERS], "payments": PAYMENTS_1}, 1)
    assert out == [matched_row(ORDERS[0], PAYMENTS_1[0])]
    out = run(task, {"payments": PAYMENTS_2}, 2)
    assert out == [matched_row(ORDERS[2], PAYMENTS_2[0])]
    assert task.state_rows() == 6  # W = 10:00 evicts nothing yet
    out = run_with_no_data(task, {k: [dict(r) for r in v] for k, v in FAR.items()}, 3)
    assert out == [matched_row(FAR["orders"][0], FAR["payments"][0])]
    assert task.watermark == t("18:00")  # min(20:00 - 1h, 20:00 - 2h)
    assert task.state_rows() == 2  # everything older than its horizon left the state
    assert {"order_ts", "pay_ts"} <= order_matching.query.timestamp_columns


def test_unmatched_orders_pipeline(store: Store) -> None:
    task = unmatched_orders.query.task(store)
    assert run(task, {"orders": [dict(o) for o in ORDERS], "payments": PAYMENTS_1}, 1) == []
    assert run(task, {"payments": PAYMENTS_2}, 2) == []
    # W = 13:00 after this batch: not yet past o2's horizon (10:30 + 4h = 14:30)
    batch = {"orders": [order("o4", "14:00")], "payments": [pay("px", "zz", "15:00")]}
    assert run_with_no_data(task, batch, 3) == []
    out = run_with_no_data(task, {k: [dict(r) for r in v] for k, v in FAR.items()}, 4)
    # W = 18:00: o2 (10:30 + 4h) is past it; o4 (14:00 + 4h) is exactly at it, and Spark
    # keeps an order until W passes its horizon (state watermark W - 4h - 1 ms)
    assert out == [{"order_id": "o2", "user_id": "u2", "amount": 5.0, "order_ts": t("10:30")}]
    later = {"orders": [order("o10", "20:01")], "payments": [pay("p10", "o10", "20:01")]}
    out = run_with_no_data(task, later, 5)
    assert out == [{"order_id": "o4", "user_id": "u1", "amount": 20.0, "order_ts": t("14:00")}]
    assert run_with_no_data(task, {}, 7) == []


def test_unmatched_is_complement_of_matched_randomised() -> None:
    """Over a random out-of-order run, every non-late order is either matched
    (order_matching) or reported unmatched (unmatched_orders), never both, never twice."""
    rng = random.Random(7)
    orders, payments = [], []
    for i in range(300):
        ts = t("00:00") + i * 60_000 + rng.randint(-30, 30) * 60_000
        orders.append(order(f"o{i}", "00:00") | {"order_ts": ts})
        if rng.random() < 0.7:
            payments.append(
                pay(f"p{i}", f"o{i}", "00:00") | {"pay_ts": ts + rng.randint(-20, 300) * 60_000}
            )
    rng.shuffle(payments)
    tm, tu = order_matching.query.task(MemoryStore()), unmatched_orders.query.task(MemoryStore())
    matched: list[str] = []
    unmatched: list[str] = []
    late: set[str] = set()
    end = t("00:00") + 3 * 86_400_000
    batches = [
        {"orders": orders[b : b + 25], "payments": payments[b : b + 18]} for b in range(0, 300, 25)
    ]
    batches.append(
        {
            "orders": [order("zz", "00:00") | {"order_ts": end}],
            "payments": [pay("zz", "zz", "00:00") | {"pay_ts": end}],
        }
    )
    for n, batch in enumerate(batches):
        for task, sink in ((tm, matched), (tu, unmatched)):
            result = task.run_batch({k: [dict(r) for r in v] for k, v in batch.items()}, n)
            task.commit(result)
            sink += [r["order_id"] for r in result.rows]
            late |= {r["order_id"] for _, r in result.late_rows if "order_ts" in r}
            if task.wants_no_data_batch():
                sink += [r["order_id"] for r in run(task, {}, n)]
    matched_orders = set(matched) - {"zz"}
    assert len(unmatched) == len(set(unmatched))
    assert not set(unmatched) & matched_orders
    assert set(unmatched) | matched_orders | late == {o["order_id"] for o in orders}
    assert not late & (set(unmatched) | matched_orders)
    assert len(unmatched) > 10 and len(matched_orders) > 10


def ev(user: str, hhmm: str) -> Row:
    return {"user_id": user, "event_ts": f"2024-05-01T{hhmm}:00Z", "page": "/"}


def session(user: str, start: str, end: str, events: int) -> Row:
    return {
        "user_id": user,
        "session_start": t(start),
        "session_end": t(end),
        "events": events,
        "duration_ms": t(end) - t(start),
    }


def test_sessionization_pipeline(store: Store) -> None:
    task = sessionization.query.task(store)
    first = [ev("u1", "10:00"), ev("u1", "10:10"), ev("u1", "10:50"), ev("u2", "10:05")]
    first += [ev("u4", "10:00"), ev("u4", "10:50")]
    assert run(task, {"events": first}, 1) == []
    # W = 10:40: u2's session (10:05 + 30 min) closes; u4's 10:25 bridges its two runs.
    out = run_with_no_data(task, {"events": [ev("u4", "10:25")]}, 2)
    assert out == [session("u2", "10:05", "10:05", 1)]
    out = run_with_no_data(task, {"events": [ev("u3", "12:00")]}, 3)  # W = 11:50
    assert out == [
        session("u1", "10:00", "10:10", 2),
        session("u1", "10:50", "10:50", 1),
        session("u4", "10:00", "10:50", 3),
    ]
    assert task.state_rows() == 1  # u3's open session
    assert {"session_start", "session_end", "event_ts"} <= sessionization.query.timestamp_columns
