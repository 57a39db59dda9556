"""Local state (the eviction and timeout indexes): never in the changelog, rebuilt after a
restore, so a task restored from its changelog alone emits exactly what it would have."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from tests.test_join import restored
from weir.tables.ops.arbitrary import GroupState
from weir.tables.query import QUERY_PREFIX, Query
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import LOCAL_PREFIX, OPERATOR_PREFIX
from weir.tables.stream import flat_map_groups_with_state, read

MIN = 60_000
Row = dict[str, Any]


def _join() -> Query:
    left = read("L").with_watermark("t", "10 minutes")
    right = read("R").with_watermark("t2", "10 minutes")
    return left.join(right, on="k", how="left_outer", time_range=("t2", "t", 0, 15 * MIN)).query()


def _dedup_within() -> Query:
    return (
        read("L").with_watermark("t", "10 minutes").drop_duplicates_within_watermark(["k"]).query()
    )


def _sessions(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
    if state.has_timed_out:
        closed = state.get()
        state.remove()
        return [{"k": key[0], "last": closed}]
    last = max([v["t"] for v in values] + ([state.get()] if state.exists else []))
    state.update(last)
    state.set_timeout_timestamp(last, "5 minutes")
    return []


def _timeouts() -> Query:
    stream = read("L").with_watermark("t", "10 minutes")
    return flat_map_groups_with_state(stream, ["k"], _sessions, timeout="event").query()


def _batches(seed: int) -> list[dict[str, list[Row]]]:
    """40 batches of rows on 6 keys with drifting, out-of-order event times."""
    rng = random.Random(seed)
    out: list[dict[str, list[Row]]] = []
    n = 0
    for b in range(40):
        ls, rs = [], []
        for _ in range(rng.randint(0, 6)):
            n += 1
            t = max(0, b * 3 * MIN + rng.randint(-12, 4) * MIN)
            if rng.random() < 0.5:
                ls.append({"id": n, "k": rng.randint(0, 5), "t": t})
            else:
                rs.append({"rid": n, "k": rng.randint(0, 5), "t2": t})
        out.append({"L": ls, "R": rs} if ls or rs else {})
    return out


def _outputs(
    build: Callable[[], Query], batches: list[dict[str, list[Row]]], restore: bool
) -> list[Any]:
    """Each batch's rows; with `restore`, the task starts from its changelog alone after
    every batch. Checks that no changelog record is local state."""
    query = build()
    task = query.task(MemoryStore())
    changelog: dict[bytes, bytes | None] = {}
    got = []
    for b, batch in enumerate(batches):
        result = task.run_batch(batch, 1000 * (b + 1))
        changes = task.commit(result)
        assert not [k for k in changes if k.startswith(LOCAL_PREFIX)]
        changelog.update(changes)
        got.append(sorted(map(repr, result.rows)))
        if restore:
            task = query.task(restored(changelog))
    return got


@pytest.mark.parametrize(
    "build", [_join, _dedup_within, _timeouts], ids=["join", "dedup", "timeouts"]
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_task_restored_from_its_changelog_emits_the_same_rows(
    build: Callable[[], Query], seed: int
) -> None:
    batches = _batches(seed)
    plain = _outputs(build, batches, restore=False)
    assert sum(map(len, plain)) >= 5  # the scenario emits rows, evictions included
    assert _outputs(build, batches, restore=True) == plain


def test_a_join_changelogs_only_its_rows() -> None:
    """Inner join of 200 orders with their payments, all evicted in the end: the changelog
    carries a put and a delete of each side's row list per key, and no index entry."""
    orders = read("o").with_watermark("ot", "1 minute")
    payments = read("p").with_watermark("pt", "1 minute")
    query = orders.join(payments, on="id", time_range=("pt", "ot", 0, 5 * MIN)).query()
    task = query.task(MemoryStore())
    operator_records = 0
    for b in range(20):
        ids = range(b * 10, b * 10 + 10)
        batch = {
            "o": [{"id": i, "ot": i * MIN} for i in ids],
            "p": [{"id": i, "pt": i * MIN + MIN} for i in ids],
        }
        changes = task.commit(task.run_batch(batch, b))
        operator_records += sum(k.startswith(OPERATOR_PREFIX) for k in changes)
    far = {"o": [{"id": -1, "ot": 10_000 * MIN}], "p": [{"id": -1, "pt": 10_000 * MIN}]}
    for b, batch in enumerate([far, {}]):  # the watermark passes every row, then evicts
        changes = task.commit(task.run_batch(batch, 100 + b))
        operator_records += sum(k.startswith(OPERATOR_PREFIX) for k in changes)
    assert task.state_rows() == 2  # the far order and payment
    assert operator_records == 200 * 2 * 2 + 2  # rows put and deleted, plus the far pair


def test_join_state_of_an_older_weir_is_moved_and_its_index_rebuilt() -> None:
    """State an older Weir wrote (under the plan position, the index among the rows, no
    fingerprints) is moved on the first batch, its index rebuilt as local state, and the
    query emits exactly what it would have."""
    batches = _batches(4)
    query = _join()
    plain = _outputs(_join, batches, restore=False)
    task = query.task(MemoryStore())
    for b, batch in enumerate(batches[:20]):
        task.commit(task.run_batch(batch, 1000 * (b + 1)))
    ((node_id, prefix),) = task._prefixes.items()
    legacy_prefix = task._positional[node_id]
    local_prefix = LOCAL_PREFIX + prefix[len(OPERATOR_PREFIX) :]
    legacy: dict[bytes, bytes | None] = {}
    for key, value in task.store.items():
        if key == QUERY_PREFIX + b"operators":
            continue
        for own in (prefix, local_prefix):
            if key.startswith(own):
                key = legacy_prefix + key[len(own) :]
        legacy[key] = value
    store = MemoryStore()
    store.write(legacy)
    moved = query.task(store)
    got = []
    for b, batch in enumerate(batches[20:], start=20):
        result = moved.run_batch(batch, 1000 * (b + 1))
        moved.commit(result)
        got.append(sorted(map(repr, result.rows)))
    assert got == plain[20:]
    keys = [k for k, _v in store.items()]
    assert not [k for k in keys if k.startswith(b"op")]
    assert not [k for k in keys if k.startswith(prefix + b"Lx") or k.startswith(prefix + b"Rx")]
    assert [k for k in keys if k.startswith(local_prefix + b"Lx")]
