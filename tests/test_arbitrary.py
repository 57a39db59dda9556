"""Arbitrary keyed state (flatMapGroupsWithState): calls, state, processing-time and
event-time timeouts (also in no-data batches), failures, refusals, and a property test of
an event-time-timeout counter against a model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.checks import on_rocksdb
from weir.tables.operator import Row
from weir.tables.ops.arbitrary import GroupState
from weir.tables.query import QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import Store
from weir.tables.stream import flat_map_groups_with_state, map_groups_with_state, read

MIN = 60_000


def run(task: QueryTask, rows: list[Row], pt: int, name: str = "ev") -> list[Row]:
    result = task.run_batch({name: rows} if rows else {}, pt)
    task.commit(result)
    return result.rows


def counter(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
    """Counts per key; reports and forgets a key idle for 1 minute of processing time."""
    if state.has_timed_out:
        total = state.get()
        state.remove()
        return [{"k": key[0], "final": total}]
    total = (state.get() if state.exists else 0) + len(values)
    state.update(total)
    state.set_timeout_duration("1 minute")
    return [{"k": key[0], "count": total}]


def test_processing_time_timeout(store: Store) -> None:
    q = flat_map_groups_with_state(read("ev"), "k", counter, timeout="processing").query()
    task = q.task(store)
    assert run(task, [{"k": "a"}, {"k": "b"}, {"k": "a"}], 0) == [
        {"k": "a", "count": 2},
        {"k": "b", "count": 1},
    ]
    assert run(task, [{"k": "b"}], 30_000) == [{"k": "b", "count": 2}]
    assert run(task, [], 60_000) == []  # a's timeout (60 s) is not strictly before 60 s
    assert run(task, [], 60_001) == [{"k": "a", "final": 2}]  # fires in a no-data batch
    assert task.state_rows() == 1
    assert run(task, [{"k": "a"}], 70_000) == [{"k": "a", "count": 1}]  # a starts afresh
    assert run(task, [], 200_000) == [{"k": "b", "final": 2}, {"k": "a", "final": 1}]
    assert task.state_rows() == 0


def test_event_time_timeout_and_late_rows(store: Store) -> None:
    def gaps(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
        if state.has_timed_out:
            closed = state.get()
            state.remove()
            return [{"user": key[0], "closed_at": closed}]
        last = max(v["ts"] for v in values)
        if state.exists:
            last = max(last, state.get())
        state.update(last)
        state.set_timeout_timestamp(last, "10 minutes")
        return []

    stream = read("ev").with_watermark("ts", "5 minutes")
    task = flat_map_groups_with_state(stream, ["user"], gaps, timeout="event").query().task(store)
    assert run(task, [{"user": "u", "ts": 0}, {"user": "v", "ts": 20 * MIN}], 1) == []
    # W = 15 min > u's timeout (10 min): u times out in the next batch (a no-data one).
    assert task.wants_no_data_batch()
    assert run(task, [], 2) == [{"user": "u", "closed_at": 0}]
    rows = [{"user": "u", "ts": 14 * MIN}, {"user": "u", "ts": 16 * MIN}]
    result = task.run_batch({"ev": rows}, 3)
    task.commit(result)
    assert [r["ts"] for _, r in result.late_rows] == [14 * MIN]  # at or before L = 15 min
    assert result.rows == []
    assert run(task, [{"user": "v", "ts": 40 * MIN}], 4) == []
    # W = 35 min: u (timeout 26 min) closes, v (timeout 50 min) stays open.
    assert run(task, [], 5) == [{"user": "u", "closed_at": 16 * MIN}]
    assert task.state_rows() == 1


def test_timeout_is_reset_on_every_call(store: Store) -> None:
    def once(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
        if state.has_timed_out:
            return [{"k": key[0], "timed_out": True}]
        if not state.exists:
            state.update(1)
            state.set_timeout_duration(10)
        return [{"k": key[0], "n": len(values)}]

    task = flat_map_groups_with_state(read("ev"), "k", once, "processing").query().task(store)
    run(task, [{"k": 1}], 0)
    run(task, [{"k": 1}], 5)  # called again without setting a timeout: it is cleared
    assert run(task, [], 100) == []
    task2 = flat_map_groups_with_state(read("ev"), "k", once, "processing").query()
    t2 = task2.task(MemoryStore())
    run(t2, [{"k": 1}], 0)
    assert run(t2, [], 11) == [{"k": 1, "timed_out": True}]
    assert run(t2, [], 1000) == []  # not re-armed by the timeout call


def test_failing_function_dead_letters_and_keeps_state(store: Store) -> None:
    def picky(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
        state.update(len(values))
        if key[0] == "bad":
            raise RuntimeError("boom")
        return [{"k": key[0]}]

    task = flat_map_groups_with_state(read("ev"), "k", picky).query().task(store)
    result = task.run_batch({"ev": [{"k": "bad"}, {"k": "ok"}, {"k": "bad"}]}, 0)
    task.commit(result)
    assert result.rows == [{"k": "ok"}]
    assert [reason for _, reason, _stage in result.ctx.errors] == [
        "flat_map_groups_with_state(picky) failed: RuntimeError: boom"
    ] * 2
    assert task.state_rows() == 1


def test_state_handle_rules() -> None:
    gs = GroupState(
        None, False, timed_out=False, timeout_kind="none", processing_time=5, watermark=7
    )
    with pytest.raises(ValueError, match="not defined"):
        gs.get()
    assert gs.get_option() is None
    with pytest.raises(ValueError, match="remove"):
        gs.update(None)
    with pytest.raises(ValueError, match="processing time timeout"):
        gs.set_timeout_duration("1 minute")
    with pytest.raises(ValueError, match="event time timeout"):
        gs.set_timeout_timestamp(10)
    ev = GroupState(1, True, timed_out=False, timeout_kind="event", processing_time=5, watermark=7)
    with pytest.raises(ValueError, match="earlier than the current watermark"):
        ev.set_timeout_timestamp(6)
    ev.set_timeout_timestamp("1970-01-01T00:00:00.007Z")
    assert ev.get_current_watermark_ms() == 7 and ev.get_current_processing_time_ms() == 5


def test_definition_refusals() -> None:
    with pytest.raises(ValueError, match="Watermark must be specified"):
        flat_map_groups_with_state(read("ev"), "k", counter, timeout="event")
    s = flat_map_groups_with_state(read("ev"), "k", counter)
    with pytest.raises(ValueError, match="Complete output mode"):
        s.query("complete")
    m = map_groups_with_state(read("ev"), "k", lambda k, v, s: {"k": k[0], "n": len(v)})
    with pytest.raises(ValueError, match="update mode is not supported with Append"):
        m.query("append")
    task = m.query("update").task(MemoryStore())
    assert run(task, [{"k": 1}, {"k": 1}], 0) == [{"k": 1, "n": 2}]


# ---------------------------------------------------------------------------------------


def sum_until_quiet(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
    """Sums a key's values; emits the sum once the watermark passes last event + 3 min."""
    if state.has_timed_out:
        total, _last = state.get()
        state.remove()
        return [{"k": key[0], "total": total}]
    total, last = state.get() if state.exists else (0, None)
    total += sum(v["x"] for v in values)
    last = max([v["ts"] for v in values] + ([last] if last is not None else []))
    state.update([total, last])
    wm = state.get_current_watermark_ms()
    state.set_timeout_timestamp(max(last + 3 * MIN, wm if wm is not None else last))
    return []


def model(batches: list[list[Row]], delay: int) -> list[list[Row]]:
    wm: int | None = None
    prev: int | None = None
    mx: int | None = None
    state: dict[Any, list[Any]] = {}  # key -> [total, last, timeout, first-seen order]
    out: list[list[Row]] = []
    for rows in batches:
        emitted: list[Row] = []
        order: list[Any] = []
        for r in rows:
            if prev is not None and r["ts"] <= prev:
                continue
            if r["k"] not in order:
                order.append(r["k"])
        for k in order:
            vals = [r for r in rows if r["k"] == k and (prev is None or r["ts"] > prev)]
            total, last = state[k][:2] if k in state else (0, None)
            total += sum(v["x"] for v in vals)
            last = max([v["ts"] for v in vals] + ([last] if last is not None else []))
            timeout = max(last + 3 * MIN, wm if wm is not None else last)
            state[k] = [total, last, timeout]
        if wm is not None:
            due = sorted(
                (v[2], k) for k, v in state.items() if v[2] < wm
            )  # timeout order, then key encoding order (ints: numeric)
            for _t, k in due:
                emitted.append({"k": k, "total": state.pop(k)[0]})
        out.append(emitted)
        for r in rows:
            mx = r["ts"] if mx is None else max(mx, r["ts"])
        prev = wm
        if mx is not None and (wm is None or mx - delay > wm):
            wm = mx - delay
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 40))
    rows = [
        {"k": draw(st.integers(0, 3)), "ts": max(0, i + draw(st.integers(-8, 3))) * MIN, "x": i}
        for i in range(n)
    ]
    return {
        "rows": rows,
        "sizes": draw(st.lists(st.integers(1, 8), min_size=1, max_size=8)),
        "delay": draw(st.integers(0, 6)) * MIN,
    }


def check(sc: dict[str, Any], store: Store) -> None:
    stream = read("ev").with_watermark("ts", sc["delay"])
    q = flat_map_groups_with_state(stream, "k", sum_until_quiet, timeout="event").query()
    task = q.task(store)
    rows: list[Row] = sc["rows"]
    batches: list[list[Row]] = []
    got: list[list[Row]] = []
    pos, i = 0, 0
    while pos < len(rows) or i == 0:
        pending = [rows[pos : pos + sc["sizes"][i % len(sc["sizes"])]]]
        pos, i = pos + sc["sizes"][i % len(sc["sizes"])], i + 1
        while pending:
            batch = pending.pop()
            batches.append(batch)
            got.append(run(task, [dict(r) for r in batch], len(batches)))
            if task.wants_no_data_batch():
                pending.append([])
    assert got == model(batches, sc["delay"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_event_timeout_matches_model_memory(sc: dict[str, Any]) -> None:
    check(sc, MemoryStore())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_event_timeout_matches_model_rocksdb(sc: dict[str, Any]) -> None:
    on_rocksdb(check, sc)
