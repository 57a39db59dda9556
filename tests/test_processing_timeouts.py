"""Processing-time timeouts fire in batches without input: the runner asks the query whether a
timer is due, as Spark's no-data micro-batches do for GroupStateTimeout.ProcessingTimeTimeout."""

from __future__ import annotations

from typing import Any

from weir.tables.operator import Row
from weir.tables.ops.arbitrary import GroupState
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import read


def _sessions(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
    if state.has_timed_out:
        n = state.get()
        state.remove()
        return [{"user": key[0], "clicks": n, "closed": True}]
    state.update((state.get() if state.exists else 0) + len(values))
    state.set_timeout_duration("1 minute")
    return []


def test_due_processing_timer_requests_a_no_data_batch() -> None:
    q = read("clicks").group_by("user").flat_map_groups_with_state(_sessions, "processing")
    task = q.query("append").task(MemoryStore())
    r = task.run_batch({"clicks": [{"user": "a"}, {"user": "a"}, {"user": "b"}]}, 0)
    assert r.rows == []
    task.commit(r)
    r = task.run_batch({"clicks": [{"user": "b"}]}, 30_000)  # b's timer moves to 90 s
    task.commit(r)
    assert not task.wants_no_data_batch(59_999)
    assert task.wants_no_data_batch(60_001)
    r = task.run_batch({}, 60_001)
    assert r.rows == [{"user": "a", "clicks": 2, "closed": True}]
    task.commit(r)
    assert not task.wants_no_data_batch(80_000)
    assert task.wants_no_data_batch(90_001)
    r = task.run_batch({}, 90_001)
    assert r.rows == [{"user": "b", "clicks": 2, "closed": True}]
    task.commit(r)
    assert not task.wants_no_data_batch(10**9)
