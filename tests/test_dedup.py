"""Streaming deduplication: exact rows per batch, definition checks, and property tests of
the three modes (event time in the key, keys kept forever, within watermark) against a
brute-force model."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.checks import on_rocksdb
from weir.tables.query import QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import Store
from weir.tables.stream import read

MIN = 60_000


def run(task: QueryTask, rows: list[dict[str, Any]], pt: int) -> tuple[list[Any], list[Any]]:
    result = task.run_batch({"raw": rows} if rows else {}, pt)
    task.commit(result)
    return result.rows, result.late_rows


def ev(eid: str, minute: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": eid, "event_ts": minute * MIN, **extra}


def test_drop_duplicates_with_event_time_exact(store: Store) -> None:
    q = (
        read("raw")
        .with_watermark("event_ts", "15 minutes")
        .drop_duplicates(["event_id", "event_ts"])
    )
    task = q.query().task(store)
    out, late = run(task, [ev("a", 0, n=1), ev("a", 0, n=2), ev("b", 20), ev("a", 1)], 1)
    assert out == [ev("a", 0, n=1), ev("b", 20), ev("a", 1)]
    assert task.state_rows() == 3
    # W(1) = 20 - 15 = 5 min: the duplicates still in state are dropped; then keys with
    # event time <= 5 min are forgotten.
    out, late = run(task, [ev("a", 0), ev("b", 20), ev("c", 4)], 2)
    assert out == [ev("c", 4)] and late == []
    assert task.state_rows() == 1  # only b@20
    # L(2) = 5 min: a@0 and c@4 are late now, not re-emitted even though forgotten.
    out, late = run(task, [ev("a", 0), ev("c", 4), ev("d", 6)], 3)
    assert out == [ev("d", 6)]
    assert [r["event_id"] for _, r in late] == ["a", "c"]
    assert {name for name, _ in late} == {"dedup"}


def test_drop_duplicates_all_columns(store: Store) -> None:
    q = read("raw").with_watermark("event_ts", "0 ms").drop_duplicates()
    task = q.query().task(store)
    out, _ = run(task, [ev("a", 0, x=1), ev("a", 0, x=1), ev("a", 0, x=2)], 1)
    assert out == [ev("a", 0, x=1), ev("a", 0, x=2)]


def test_keys_kept_forever_without_event_time_warns(store: Store) -> None:
    with pytest.warns(UserWarning, match="kept in state forever"):
        q = read("raw").with_watermark("event_ts", "1 minute").drop_duplicates(["event_id"])
    task = q.query().task(store)
    out, _ = run(task, [ev("a", 0), ev("b", 100)], 1)
    assert [r["event_id"] for r in out] == ["a", "b"]
    out, late = run(task, [ev("a", 200), ev("x", 10)], 2)
    assert out == [ev("x", 10)] and late == []  # a is remembered; L(2) = None still
    out, late = run(task, [ev("a", 500), ev("b", 10), ev("c", 300)], 3)
    assert [r["event_id"] for r in out] == ["c"]
    assert [r["event_id"] for _, r in late] == ["b"]  # late rows still dropped (Spark)
    assert task.state_rows() == 4  # a, b, x, c


def test_within_watermark(store: Store) -> None:
    q = read("raw").with_watermark("event_ts", "10 minutes")
    task = q.drop_duplicates_within_watermark(["event_id"]).query().task(store)
    out, _ = run(task, [ev("a", 0), ev("a", 5), ev("b", 30)], 1)
    assert out == [ev("a", 0), ev("b", 30)]
    # Batch 1 runs with W(1) = 20 min: a (expiry 0 + 10) is still a duplicate during the
    # batch and is forgotten after it; b is kept until W reaches 40.
    out, late = run(task, [ev("a", 25), ev("b", 35)], 2)
    assert out == [] and task.state_rows() == 1
    out, late = run(task, [ev("a", 26), ev("b", 36)], 3)
    assert out == [ev("a", 26)] and late == []
    assert task.state_rows() == 2


def test_within_watermark_emits_a_duplicate_again_once_its_first_copy_expired(
    store: Store,
) -> None:
    """Spark's dropDuplicatesWithinWatermark: a key is remembered until the watermark passes
    its first copy's event time + the delay; a copy arriving after that (and not late) is a
    new first copy, emitted again, and remembered again."""
    q = read("raw").with_watermark("event_ts", "10 minutes")
    task = q.drop_duplicates_within_watermark(["event_id"]).query().task(store)
    assert run(task, [ev("k", 100, n=1)], 1)[0] == [ev("k", 100, n=1)]  # expiry 110
    assert run(task, [ev("k", 104, n=2), ev("z", 125)], 2)[0] == [ev("z", 125)]  # dup; W -> 115
    run(task, [], 3)  # no-data batch with W = 115: k (expiry 110) is forgotten
    out, late = run(task, [ev("k", 112, n=3)], 4)  # 112 <= L = 115: late, dropped
    assert out == [] and [r["n"] for _, r in late] == [3]
    out, late = run(task, [ev("k", 116, n=4)], 5)  # not late, k forgotten: emitted again
    assert out == [ev("k", 116, n=4)] and late == []
    assert run(task, [ev("k", 117, n=5)], 6)[0] == []  # and remembered again (expiry 126)


def test_definition_checks() -> None:
    with pytest.raises(ValueError, match="without watermark"):
        read("raw").drop_duplicates_within_watermark(["event_id"])
    s = read("raw").with_watermark("event_ts", "1 minute").drop_duplicates(["event_id", "event_ts"])
    for mode in ("update", "complete"):
        with pytest.raises(ValueError, match="output mode is not supported for dedup"):
            s.query(mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.query("append")


def test_unparsable_event_time_dead_lettered(store: Store) -> None:
    s = read("raw").with_watermark("event_ts", "1 minute").drop_duplicates(["event_id", "event_ts"])
    task = s.query().task(store)
    result = task.run_batch({"raw": [{"event_id": "a", "event_ts": "garbage"}]}, 1)
    assert result.rows == [] and len(result.ctx.errors) == 1


# ---------------------------------------------------------------------------------------


def model(batches: list[list[dict[str, Any]]], delay: int, mode: str) -> list[list[Any]]:
    """Expected emitted (event_id, event_ts) per batch."""
    mx: int | None = None
    wm: int | None = None
    prev: int | None = None
    seen: dict[Any, int] = {}
    out: list[list[Any]] = []
    for rows in batches:
        emitted = []
        for r in rows:
            if prev is not None and r["event_ts"] <= prev:
                continue
            key = r["event_id"] if mode in ("forever", "within") else (r["event_id"], r["event_ts"])
            if key in seen:
                continue
            seen[key] = r["event_ts"] + delay if mode == "within" else r["event_ts"]
            emitted.append((r["event_id"], r["event_ts"]))
        if wm is not None and mode != "forever":
            seen = {k: t for k, t in seen.items() if t > wm}
        out.append(emitted)
        for r in rows:
            mx = r["event_ts"] if mx is None else max(mx, r["event_ts"])
        prev = wm
        if mx is not None and (wm is None or mx - delay > wm):
            wm = mx - delay
    return out


@st.composite
def dedup_scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 60))
    rows = []
    for i in range(n):
        t = max(0, i + draw(st.integers(-30, 5)))
        eid = draw(st.sampled_from("abcdef"))
        rows.append({"event_id": eid, "event_ts": t * MIN, "seq": i})
        if draw(st.integers(0, 3)) == 0:  # producer retry: same event later in the stream
            rows.insert(len(rows) + draw(st.integers(-3, 0)), dict(rows[-1]))
    return {
        "rows": rows,
        "sizes": draw(st.lists(st.integers(1, 10), min_size=1, max_size=10)),
        "delay": draw(st.integers(0, 20)) * MIN,
        "mode": draw(st.sampled_from(["event_time", "forever", "within"])),
    }


def check(sc: dict[str, Any], store: Store) -> None:
    base = read("raw").with_watermark("event_ts", sc["delay"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if sc["mode"] == "event_time":
            s = base.drop_duplicates(["event_id", "event_ts"])
        elif sc["mode"] == "forever":
            s = base.drop_duplicates(["event_id"])
        else:
            s = base.drop_duplicates_within_watermark(["event_id"])
    task = s.query().task(store)
    rows: list[dict[str, Any]] = sc["rows"]
    batches: list[list[dict[str, Any]]] = []
    got: list[list[Any]] = []
    pos, i = 0, 0
    while pos < len(rows) or i == 0:
        size = sc["sizes"][i % len(sc["sizes"])]
        pending = [rows[pos : pos + size]]
        pos, i = pos + size, i + 1
        while pending:
            batch = pending.pop()
            batches.append(batch)
            out, _ = run(task, [dict(r) for r in batch], len(batches))
            got.append([(r["event_id"], r["event_ts"]) for r in out])
            if task.wants_no_data_batch():
                pending.append([])
    assert got == model(batches, sc["delay"], sc["mode"])
    if sc["mode"] == "event_time":
        flat = [k for b in got for k in b]
        assert len(flat) == len(set(flat))  # each key at most once over the whole run


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=dedup_scenarios())
def test_dedup_matches_model_memory(sc: dict[str, Any]) -> None:
    check(sc, MemoryStore())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=dedup_scenarios())
def test_dedup_matches_model_rocksdb(sc: dict[str, Any]) -> None:
    on_rocksdb(check, sc)
