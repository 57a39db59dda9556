"""Property tests: random out-of-order, late and duplicated events in random batches, checked
against a brute-force model of the watermark semantics (see weir.tables.ops.aggregate).

The model decides lateness from the watermark alone (W(k) = max event time of batches before k
minus the delay, L(k) = W(k-1)) and then aggregates all surviving rows of a window at once; the
engine works incrementally over its state store. They must agree.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weir.tables.operator import OutputMode, Row
from weir.tables.ops.functions import count, count_distinct
from weir.tables.ops.functions import max as agg_max
from weir.tables.ops.functions import min as agg_min
from weir.tables.ops.functions import sum as agg_sum
from weir.tables.query import Query
from weir.tables.state.memory import MemoryStore
from weir.tables.state.rocksdb import RocksDBStore
from weir.tables.state.store import Store
from weir.tables.stream import read
from weir.tables.window import WindowSpec, session_window, window

Event = tuple[int, str, int]  # (ts, user, amount)
WKey = tuple[int, int, str]  # (window start, window end, user)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    # A coarse time grid most of the time, so that window ends often coincide exactly with
    # the watermark (the boundary cases: end == L is late, end == W is closed).
    unit = draw(st.sampled_from([1, 5, 5, 5]))
    size = unit * draw(st.integers(max(1, 5 // unit), 40 // unit))
    slide = draw(st.one_of(st.none(), st.integers(1, size // unit).map(lambda n: n * unit)))
    delay = unit * draw(st.integers(0, 30 // unit))
    event = st.tuples(
        st.integers(0, 300 // unit).map(lambda n: n * unit),
        st.sampled_from("abc"),
        st.integers(0, 9),
    )
    batches: list[list[Event]] = []
    seen: list[Event] = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()) and batches:
            batches.append([])  # a no-data batch
            continue
        fresh = draw(st.lists(event, max_size=12))
        # duplicates of earlier events (producer retries) arrive later, in any batch
        dups = draw(st.lists(st.sampled_from(seen), max_size=3)) if seen else []
        batch = fresh + dups
        batch = draw(st.permutations(batch)) if batch else batch
        seen.extend(fresh)
        batches.append(batch)
    return {"size": size, "slide": slide, "delay": delay, "batches": batches}


def _aggregates() -> list[Any]:
    """The aggregates every property test computes (and the model mirrors)."""
    return [
        count().alias("n"),
        agg_sum("amount").alias("total"),
        agg_min("amount").alias("lo"),
        agg_max("amount").alias("hi"),
        count_distinct("amount").alias("distinct"),
    ]


def build(mode: OutputMode, size: int, slide: int | None, delay: int) -> Query:
    return (
        read("events")
        .with_watermark("ts", delay)
        .group_by(window("ts", size, slide), "user")
        .agg(*_aggregates())
        .query(mode)
    )


def as_rows(batch: list[Event]) -> list[Row]:
    return [{"ts": t, "user": u, "amount": a} for t, u, a in batch]


def run_engine(
    query: Query, store: Store, batches: list[list[Event]]
) -> tuple[list[list[Row]], list[list[Row]], list[list[Event]]]:
    """Run the batches, then no-data batches while the engine asks for them.

    Returns per batch: emitted rows, late rows, and the batch list actually run.
    """
    task = query.task(store)
    outs: list[list[Row]] = []
    lates: list[list[Row]] = []
    ran: list[list[Event]] = []
    todo = list(batches)
    while todo or task.wants_no_data_batch():
        batch = todo.pop(0) if todo else []
        result = task.run_batch({"events": as_rows(batch)} if batch else {}, 0)
        task.commit(result)
        outs.append(result.rows)
        lates.append([r for _op, r in result.late_rows])
        ran.append(batch)
    return outs, lates, ran


def watermarks(batches: list[list[Event]], delay: int) -> list[tuple[int | None, int | None]]:
    """(W(k), L(k)) per batch, straight from the definition."""
    out: list[tuple[int | None, int | None]] = []
    seen_max: int | None = None
    w_prev: int | None = None
    for batch in batches:
        w = None if seen_max is None else seen_max - delay
        out.append((w, w_prev))
        w_prev = w
        if batch:
            m = max(t for t, _u, _a in batch)
            seen_max = m if seen_max is None else max(seen_max, m)
    return out


def windows_of(spec: WindowSpec, t: int) -> list[tuple[int, int]]:
    """Every window [s, s + size) with s on the slide grid and s <= t < s + size."""
    return [
        (s, s + spec.size_ms)
        for s in range(t - spec.size_ms - spec.slide_ms, t + 1)
        if s % spec.slide_ms == 0 and s <= t < s + spec.size_ms
    ]


def aggregate(events: list[Event]) -> dict[str, Any]:
    amounts = [a for _t, _u, a in events]
    return {
        "n": len(events),
        "total": sum(amounts),
        "lo": min(amounts),
        "hi": max(amounts),
        "distinct": len(set(amounts)),
    }


def key_of(r: Row) -> WKey:
    return (r["window_start"], r["window_end"], r["user"])


def value_of(r: Row) -> dict[str, Any]:
    return {k: r[k] for k in ("n", "total", "lo", "hi", "distinct")}


def check(mode: OutputMode, sc: dict[str, Any], store: Store) -> None:
    spec = window("ts", sc["size"], sc["slide"])
    query = build(mode, sc["size"], sc["slide"], sc["delay"])
    outs, lates, ran = run_engine(query, store, sc["batches"])
    wms = watermarks(ran, sc["delay"])
    final_w = wms[-1][0]

    kept: defaultdict[WKey, list[Event]] = defaultdict(list)
    touched: list[set[WKey]] = []
    for k, batch in enumerate(ran):
        _w, late_wm = wms[k]
        late_here: list[Event] = []
        touched.append(set())
        for e in batch:
            dropped = False
            for s, end in windows_of(spec, e[0]):
                if mode != "complete" and late_wm is not None and end <= late_wm:
                    dropped = True
                    continue
                kept[(s, end, e[1])].append(e)
                touched[k].add((s, end, e[1]))
            if dropped:
                late_here.append(e)
        assert [(r["ts"], r["user"], r["amount"]) for r in lates[k]] == late_here
    expected = {wk: aggregate(evs) for wk, evs in kept.items()}

    for out in outs:
        assert out == sorted(out, key=key_of)  # deterministic order: window, then key
    if mode == "append":
        emitted = [(k, key_of(r), value_of(r)) for k, out in enumerate(outs) for r in out]
        keys = [wk for _k, wk, _v in emitted]
        assert len(keys) == len(set(keys)), "a window was emitted twice"
        closed = {wk for wk in expected if final_w is not None and wk[1] <= final_w}
        assert set(keys) == closed
        for k, wk, value in emitted:
            assert value == expected[wk]
            w_k = wms[k][0]
            assert w_k is not None and wk[1] <= w_k  # emitted only once the watermark passed
            w_before = wms[k - 1][0] if k else None
            assert w_before is None or wk[1] > w_before  # ... and in the first such batch
    elif mode == "update":
        last: dict[WKey, dict[str, Any]] = {}
        for k, out in enumerate(outs):
            assert {key_of(r) for r in out} == touched[k]
            for r in out:
                last[key_of(r)] = value_of(r)
        assert last == expected
    else:
        assert {key_of(r): value_of(r) for r in outs[-1]} == expected


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), mode=st.sampled_from(["append", "update", "complete"]))
def test_windowed_aggregation_matches_brute_force(sc: dict[str, Any], mode: OutputMode) -> None:
    check(mode, sc, MemoryStore())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), mode=st.sampled_from(["append", "update"]))
def test_windowed_aggregation_matches_brute_force_on_rocksdb(
    sc: dict[str, Any], mode: OutputMode
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = RocksDBStore(tmp)
        try:
            check(mode, sc, db)
        finally:
            db.close()


@st.composite
def ordered_batches(draw: st.DrawFn) -> tuple[list[list[Event]], int, int]:
    """Batches in event-time order across batches (any order inside a batch): nothing is
    late, and with a delay >= 1 no event can touch a session that was already closed."""
    gap = draw(st.integers(1, 20))
    delay = draw(st.integers(1, 15))
    times = sorted(draw(st.lists(st.integers(0, 300), max_size=40)))
    events = [(t, draw(st.sampled_from("ab")), draw(st.integers(0, 9))) for t in times]
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=6)))
    batches = []
    prev = 0
    for c in [*cuts, len(events)]:
        batch = events[prev:c]
        batches.append(draw(st.permutations(batch)) if batch else batch)
        prev = c
    return batches, gap, delay


def brute_sessions(events: list[Event], gap: int) -> dict[WKey, dict[str, Any]]:
    out: dict[WKey, dict[str, Any]] = {}
    for user in {u for _t, u, _a in events}:
        mine = sorted(e for e in events if e[1] == user)
        group: list[Event] = []
        for e in mine:
            if group and e[0] > group[-1][0] + gap:
                out[(group[0][0], group[-1][0] + gap, user)] = aggregate(group)
                group = []
            group.append(e)
        if group:
            out[(group[0][0], group[-1][0] + gap, user)] = aggregate(group)
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=ordered_batches(), mode=st.sampled_from(["append", "complete"]))
def test_session_windows_match_brute_force(
    case: tuple[list[list[Event]], int, int], mode: OutputMode
) -> None:
    batches, gap, delay = case
    query = (
        read("events")
        .with_watermark("ts", delay)
        .group_by(session_window("ts", gap), "user")
        .agg(*_aggregates())
        .query(mode)
    )
    outs, lates, ran = run_engine(query, MemoryStore(), batches)
    assert not any(lates)
    all_events = [e for b in batches for e in b]
    expected = brute_sessions(all_events, gap)
    if mode == "complete":
        assert {key_of(r): value_of(r) for r in outs[-1]} == expected
        return
    final_w = watermarks(ran, delay)[-1][0]
    emitted = [key_of(r) for out in outs for r in out]
    assert len(emitted) == len(set(emitted))
    closed = {wk: v for wk, v in expected.items() if final_w is not None and wk[1] <= final_w}
    assert {key_of(r): value_of(r) for out in outs for r in out} == closed
