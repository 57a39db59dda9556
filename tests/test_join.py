"""Stream-stream joins: exact rows, definition-time refusals, and a property test against a
brute-force model of the semantics (every matching pair of non-late rows exactly once, in
the batch where the later row arrives; every unmatched outer row exactly once, in the first
batch whose watermark passed its horizon)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.checks import on_rocksdb
from weir.tables.query import Query, QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import LOCAL_PREFIX, LOCAL_STALE, Store
from weir.tables.stream import read

MIN = 60_000
HOUR = 60 * MIN


def run(task: QueryTask, batch: dict[str, list[dict[str, Any]]], pt: int) -> list[dict[str, Any]]:
    result = task.run_batch(batch, pt)
    task.commit(result)
    return result.rows


def orders_payments(how: str = "inner", **kw: Any) -> Query:
    orders = read("orders").with_watermark("order_ts", "1 hour")
    payments = read("payments").with_watermark("pay_ts", "2 hours")
    return orders.join(
        payments,
        on=["order_id"],
        how=how,
        between=("pay_ts", "order_ts", "order_ts + 4 hours"),
        **kw,
    ).query("append")


def order(oid: str, ts: int, user: str = "u1", amount: float = 10.0) -> dict[str, Any]:
    return {"order_id": oid, "user_id": user, "amount": amount, "order_ts": ts}


def payment(pid: str, oid: str, ts: int, method: str = "card") -> dict[str, Any]:
    return {"payment_id": pid, "order_id": oid, "payment_method": method, "pay_ts": ts}


def test_inner_join_exact_rows(store: Store) -> None:
    task = orders_payments().task(store)
    out = run(
        task,
        {
            "orders": [order("o1", 0), order("o2", HOUR)],
            "payments": [payment("p1", "o1", 30 * MIN), payment("px", "o9", 0)],
        },
        1,
    )
    assert out == [
        {
            "order_id": "o1",
            "user_id": "u1",
            "amount": 10.0,
            "order_ts": 0,
            "payment_id": "p1",
            "payment_method": "card",
            "pay_ts": 30 * MIN,
        }
    ]
    # o2's payment arrives later; a payment 5h after o1 does not match (range is 4 hours).
    out = run(
        task,
        {"payments": [payment("p2", "o2", 2 * HOUR), payment("p3", "o1", 5 * HOUR)]},
        2,
    )
    assert [(r["order_id"], r["payment_id"]) for r in out] == [("o2", "p2")]
    # ISO timestamps are parsed by the watermark operator.
    out = run(task, {"orders": [order("o3", 0) | {"order_ts": "1970-01-01T05:00:00Z"}]}, 3)
    assert [(r["order_id"], r["payment_id"]) for r in out] == []
    out = run(task, {"payments": [payment("p4", "o3", 6 * HOUR)]}, 4)
    assert [(r["order_id"], r["payment_id"], r["order_ts"]) for r in out] == [
        ("o3", "p4", 5 * HOUR)
    ]


def test_state_is_evicted_by_watermark_and_late_rows_dropped(store: Store) -> None:
    task = orders_payments().task(store)
    run(task, {"orders": [order("o1", 0)], "payments": [payment("p0", "zz", 0)]}, 1)
    assert task.state_rows() == 2
    # Move both streams far ahead: W = min(10h - 1h, 10h - 2h) = 8h > 0 + 4h.
    run(task, {"orders": [order("o9", 10 * HOUR)], "payments": [payment("p9", "q", 10 * HOUR)]}, 2)
    assert task.watermark == 8 * HOUR
    run(task, {}, 3)  # no-data batch: evicts with W = 8h
    assert task.state_rows() == 2  # o9 and p9 only
    # A payment for o1 at 3h is late now (3h <= L = 8h): dropped, recorded, no output.
    result = task.run_batch({"payments": [payment("p1", "o1", 3 * HOUR)]}, 4)
    task.commit(result)
    assert result.rows == []
    assert [name for name, _ in result.late_rows] == ["join(inner)"]


def test_left_outer_emits_unmatched_once_after_watermark(store: Store) -> None:
    task = orders_payments("left_outer", right_columns=["payment_id", "payment_method"]).task(store)
    out = run(task, {"orders": [order("o1", 0), order("o2", 0)]}, 1)
    assert out == []
    out = run(task, {"payments": [payment("p2", "o2", HOUR)]}, 2)
    assert [(r["order_id"], r["payment_id"]) for r in out] == [("o2", "p2")]
    # W = min(5h - 1h, 6h - 2h) = 4h: exactly o1's horizon (0 + 4h). Spark's state watermark
    # of the orders is W - 4h - 1 ms, so o1 stays (a payment at 4h would be late anyway).
    out = run(
        task, {"orders": [order("o3", 5 * HOUR)], "payments": [payment("p", "x", 6 * HOUR)]}, 3
    )
    assert out == []  # W(3) is still 0h - 1h; the watermark moves after this batch
    assert task.watermark == 4 * HOUR
    assert task.wants_no_data_batch()
    assert run(task, {}, 4) == []
    # W = 4h + 1 min: past o1's horizon -> emitted with nulls in the no-data batch.
    run(
        task,
        {"orders": [order("o4", 5 * HOUR + MIN)], "payments": [payment("q", "y", 6 * HOUR + MIN)]},
        5,
    )
    assert task.watermark == 4 * HOUR + MIN
    out = run(task, {}, 6)
    assert out == [
        {
            "order_id": "o1",
            "user_id": "u1",
            "amount": 10.0,
            "order_ts": 0,
            "payment_id": None,
            "payment_method": None,
            "pay_ts": None,
        }
    ]
    assert run(task, {}, 7) == []  # never again


def test_right_outer_and_column_clash(store: Store) -> None:
    left = read("a").with_watermark("ts", "10 minutes")
    right = read("b").with_watermark("ts", "10 minutes")
    q = left.join(
        right, on="k", how="right_outer", time_range=("ts", "ts", "-5 minutes", "5 minutes")
    ).query()
    task = q.task(store)
    out = run(
        task,
        {
            "a": [{"k": 1, "ts": 0, "v": "a"}],
            "b": [{"k": 1, "ts": MIN, "v": "b"}, {"k": 2, "ts": 0}],
        },
        1,
    )
    assert out == [{"k": 1, "left_ts": 0, "left_v": "a", "right_ts": MIN, "right_v": "b"}]
    assert {"left_ts", "right_ts", "ts"} <= q.timestamp_columns
    out = run(task, {"a": [{"k": 9, "ts": HOUR}], "b": [{"k": 9, "ts": HOUR + 10 * MIN}]}, 2)
    assert out == []
    out = run(task, {}, 3)  # W = 50 min: b rows at 0 and 1 min leave; only k=2 is unmatched
    assert out == [{"k": 2, "left_ts": None, "right_ts": 0}]


def test_between_reversed_columns_and_pairs(store: Store) -> None:
    left = read("clicks").with_watermark("click_ts", "0 ms")
    right = read("impressions").with_watermark("imp_ts", "0 ms")
    # clicks within 30 minutes after the impression, written from the clicks' side
    q = left.join(
        right,
        on=[("ad", "ad_id")],
        between=("click_ts", "imp_ts", "imp_ts + interval 30 minutes"),
    ).query()
    task = q.task(store)
    out = run(
        task,
        {
            "clicks": [{"ad": "x", "click_ts": 10 * MIN}, {"ad": "x", "click_ts": 50 * MIN}],
            "impressions": [{"ad_id": "x", "imp_ts": 0}],
        },
        1,
    )
    assert out == [{"ad": "x", "click_ts": 10 * MIN, "ad_id": "x", "imp_ts": 0}]


def test_null_keys_never_match(store: Store) -> None:
    q = orders_payments("left_outer")
    task = q.task(store)
    out = run(
        task,
        {"orders": [order(None, 0)], "payments": [payment("p", None, 0)]},  # type: ignore[arg-type]
        1,
    )
    assert out == []
    run(task, {"orders": [order("z", 20 * HOUR)], "payments": [payment("q", "z", 20 * HOUR)]}, 2)
    out = run(task, {}, 3)
    assert out == [
        {"order_id": None, "user_id": "u1", "amount": 10.0, "order_ts": 0, "pay_ts": None}
    ]


def test_unparsable_time_is_dead_lettered(store: Store) -> None:
    task = orders_payments().task(store)
    result = task.run_batch({"orders": [order("o", "not a time")]}, 1)  # type: ignore[arg-type]
    assert result.rows == [] and len(result.ctx.errors) == 1


def test_definition_refusals() -> None:
    a = read("a").with_watermark("ts", "1 minute")
    b = read("b").with_watermark("ts2", "1 minute")
    bare = read("c")
    with pytest.raises(ValueError, match="not supported without a watermark on both sides"):
        a.join(bare, on="k", how="left_outer", time_range=("ts", "ts", 0, 10))
    with pytest.raises(ValueError, match="time-range condition"):
        a.join(b, on="k", how="right_outer")
    with pytest.raises(ValueError, match="different inputs"):
        a.join(read("a"), on="k")
    with pytest.raises(ValueError, match="equality keys"):
        a.join(b, between=("ts2", "ts", "ts + 1 hour"))
    with pytest.raises(ValueError, match="unsupported join type"):
        a.join(b, on="k", how="full_outer", between=("ts2", "ts", "ts + 1 hour"))
    with pytest.raises(ValueError, match="empty time range"):
        a.join(b, on="k", time_range=("ts2", "ts", "1 hour", "0 ms"))
    with pytest.raises(ValueError, match="Append output mode"):
        a.join(b, on="k", between=("ts2", "ts", "ts + 1 hour")).query("update")
    with pytest.warns(UserWarning, match="grows forever"):
        a.join(bare, on="k")


# ---------------------------------------------------------------------------------------
# Property test against a brute-force model.

Event = tuple[str, int | None, int]  # side ("L"/"R"), key, event time (minutes)


def model(
    batches: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    delays: tuple[int, int],
    lo: int,
    hi: int,
    how: str,
) -> Counter[tuple[int, Any, Any]]:
    """Expected (batch index, lid, rid) multiset, straight from the definition."""
    maxes: dict[str, int] = {}
    wm: int | None = None
    prev: int | None = None
    marks: list[tuple[int | None, int | None]] = []
    arrived: list[tuple[str, int, dict[str, Any]]] = []
    for b, (ls, rs) in enumerate(batches):
        marks.append((wm, prev))
        late = prev
        for side, rows, col in (("L", ls, "lt"), ("R", rs, "rt")):
            for r in rows:
                if late is None or r[col] > late:
                    arrived.append((side, b, r))
                maxes[side] = max(maxes.get(side, r[col]), r[col])
        # Spark: no watermark until both watermarked inputs have had a row
        cands = [maxes[s] - delays[0 if s == "L" else 1] for s in maxes] if len(maxes) == 2 else []
        prev = wm
        if cands and (wm is None or min(cands) > wm):
            wm = min(cands)
    out: Counter[tuple[int, Any, Any]] = Counter()
    lefts = [(b, r) for s, b, r in arrived if s == "L"]
    rights = [(b, r) for s, b, r in arrived if s == "R"]

    def match(lr: dict[str, Any], rr: dict[str, Any]) -> bool:
        return (
            lr["k"] is not None
            and lr["k"] == rr["k"]
            and lr["lt"] + lo <= rr["rt"] <= lr["lt"] + hi
        )

    for bl, lr in lefts:
        for br, rr in rights:
            if match(lr, rr):
                out[(max(bl, br), lr["lid"], rr["rid"])] += 1

    def first_passing(arrival: int, horizon_time: int) -> int | None:
        for b in range(arrival, len(batches)):
            w = marks[b][0]
            if w is not None and horizon_time < w:  # Spark's state watermark: W - 1 ms
                return b
        return None

    if how == "left_outer":
        for bl, lr in lefts:
            if not any(match(lr, rr) for _, rr in rights):
                due = first_passing(bl, lr["lt"] + hi)
                if due is not None:
                    out[(due, lr["lid"], None)] += 1
    if how == "right_outer":
        for br, rr in rights:
            if not any(match(lr, rr) for _, lr in lefts):
                due = first_passing(br, rr["rt"] - lo)
                if due is not None:
                    out[(due, None, rr["rid"])] += 1
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 40))
    events: list[dict[str, Any]] = []
    for i in range(n):
        side = draw(st.sampled_from("LR"))
        key = draw(st.sampled_from([0, 1, 2, None]) if i % 7 == 6 else st.sampled_from([0, 1, 2]))
        t = max(0, i * 2 + draw(st.integers(-25, 10)))  # drifting time, out of order
        ev = {"side": side, "k": key, "t": t * MIN, "id": i}
        events.append(ev)
        if draw(st.integers(0, 9)) == 0:  # a duplicate, soon after
            events.append(dict(ev))
    sizes = draw(st.lists(st.integers(1, 8), min_size=1, max_size=20))
    lo = draw(st.integers(-10, 10))
    hi = lo + draw(st.integers(0, 20))
    return {
        "events": events,
        "sizes": sizes,
        "delays": (draw(st.integers(0, 15)) * MIN, draw(st.integers(0, 15)) * MIN),
        "lo": lo * MIN,
        "hi": hi * MIN,
        "how": draw(st.sampled_from(["inner", "left_outer", "right_outer"])),
        "restores": draw(st.sets(st.integers(0, 30), max_size=4)),
    }


def restored(changelog: dict[bytes, bytes | None]) -> MemoryStore:
    """A store holding only what the changelog carries, as a restore leaves it."""
    store = MemoryStore()
    records: dict[bytes, bytes | None] = {k: v for k, v in changelog.items() if v is not None}
    key, stale = Store.meta_change(LOCAL_STALE, True)
    store.write({**records, key: stale})
    return store


def check_scenario(sc: dict[str, Any], store: Store) -> None:
    """Run the scenario's batches; after each batch in `restores` the task starts over from a
    store rebuilt from its changelog alone (local state rebuilt by the operator)."""
    dl, dr = sc["delays"]
    left = read("L").with_watermark("lt", dl)
    right = read("R").with_watermark("rt", dr)
    q = left.join(right, on="k", how=sc["how"], time_range=("rt", "lt", sc["lo"], sc["hi"])).query()
    task = q.task(store)
    changelog: dict[bytes, bytes | None] = {}
    events: list[dict[str, Any]] = sc["events"]
    batches: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    got: Counter[tuple[int, Any, Any]] = Counter()
    pos, i = 0, 0
    while pos < len(events) or i == 0:
        size = sc["sizes"][i % len(sc["sizes"])]
        chunk = events[pos : pos + size]
        pos, i = pos + size, i + 1
        ls = [{"lid": e["id"], "k": e["k"], "lt": e["t"]} for e in chunk if e["side"] == "L"]
        rs = [{"rid": e["id"], "k": e["k"], "rt": e["t"]} for e in chunk if e["side"] == "R"]
        planned = [(ls, rs)]
        while planned:
            bl, br = planned.pop()
            b = len(batches)
            batches.append((bl, br))
            inputs = {"L": [dict(r) for r in bl], "R": [dict(r) for r in br]} if bl or br else {}
            result = task.run_batch(inputs, 1000 * (b + 1))
            changes = task.commit(result)
            assert not any(key.startswith(LOCAL_PREFIX) for key in changes)
            changelog.update(changes)
            for row in result.rows:
                got[(b, row.get("lid"), row.get("rid"))] += 1
                if row.get("lid") is not None and row.get("rid") is not None:
                    assert row["lt"] + sc["lo"] <= row["rt"] <= row["lt"] + sc["hi"]
            if b in sc["restores"]:
                task = q.task(restored(changelog))
            if task.wants_no_data_batch():
                planned.append(([], []))
    assert got == model(batches, sc["delays"], sc["lo"], sc["hi"], sc["how"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_join_matches_model_memory(sc: dict[str, Any]) -> None:
    check_scenario(sc, MemoryStore())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_join_matches_model_rocksdb(sc: dict[str, Any]) -> None:
    on_rocksdb(check_scenario, sc)
