"""Nothing lost at the edges, in pure logic: failed rows are traced back to the input row they
came from, user aggregators that raise lose only the rows that made them raise, the event-time
guard keeps far-future rows out of the watermark, dead letters fit their topic, and replay
follows the same rules without a traceback."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from weir.service.dead_letters import SourcePosition, fit, headers, record_size
from weir.service.local.proc import free_port
from weir.service.replay import ReplayBatchError, replay
from weir.tables.operator import Row
from weir.tables.ops.functions import collect_list, count, udaf
from weir.tables.query import Query
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import Store
from weir.tables.stream import read
from weir.tables.timeutil import iso_utc
from weir.tables.window import window

T0 = 1_700_000_400_000
MIN = 60_000


class _RaisesOn:
    """A user aggregator (sum) that raises on one value, after mutating its accumulator."""

    def __init__(self, bad: Any) -> None:
        self.bad = bad

    def init(self) -> list[int]:
        return [0]

    def add(self, acc: list[int], value: Any) -> list[int]:
        acc[0] += 1000  # a half-done update: must leave no trace when it raises
        if value == self.bad:
            raise ValueError(f"cannot add {value!r}")
        acc[0] += int(value) - 1000
        return acc

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        return [a[0] + b[0]]

    def result(self, acc: list[int]) -> int:
        return acc[0]


def _ev(i: int, minute: int, v: Any, user: str = "u") -> Row:
    return {"id": i, "user": user, "ts": iso_utc(T0 + minute * MIN), "v": v}


def test_errors_are_traced_to_their_input_rows_through_maps_and_filters(store: Store) -> None:
    q = (
        read("events")
        .filter(lambda r: r["id"] != 4)
        .map(lambda r: {**r, "v2": r["v"]})
        .with_watermark("ts", "10 minutes")
        .group_by("user")
        .agg(udaf(_RaisesOn(7), "v2").alias("total"), collect_list("id").alias("ids"))
        .query("update")
    )
    task = q.task(store)
    rows = [_ev(i, i, i) for i in range(10)]
    rows[2]["ts"] = "not a time"
    rows[5].pop("ts")
    result = task.run_batch({"events": rows}, 0)
    stages = {
        orjson.dumps(r): (stage, origin)
        for (r, _why, stage), origin in zip(result.ctx.errors, result.error_origins, strict=True)
    }
    assert sorted(origin for _stage, origin in stages.values()) == [
        ("events", 2),
        ("events", 5),
        ("events", 7),
    ]
    assert sorted(stage for stage, _origin in stages.values()) == [
        "event_time",
        "event_time",
        "user_function",
    ]
    good = [0, 1, 3, 6, 8, 9]
    assert result.rows == [{"user": "u", "total": sum(good), "ids": good}]


@pytest.mark.parametrize("windowed", [False, True])
def test_user_aggregator_that_raises_dead_letters_only_its_rows(
    store: Store, windowed: bool
) -> None:
    keys: list[Any] = [window("ts", "10 minutes"), "user"] if windowed else ["user"]
    q = (
        read("events")
        .with_watermark("ts", "10 minutes")
        .group_by(*keys)
        .agg(udaf(_RaisesOn("bad"), "v").alias("total"), count().alias("n"))
        .query("update")
    )
    task = q.task(store)
    r1 = task.run_batch({"events": [_ev(0, 1, 5), _ev(1, 2, "bad"), _ev(2, 3, 6)]}, 0)
    task.commit(r1)
    assert [(r["total"], r["n"]) for r in r1.rows] == [(11, 2)]
    assert [(r["id"], stage) for r, _why, stage in r1.ctx.errors] == [(1, "user_function")]
    assert "ValueError: cannot add 'bad'" in r1.ctx.errors[0][1]
    # A new group whose only row fails is not created at all.
    r2 = task.run_batch({"events": [_ev(3, 4, "bad", user="w"), _ev(4, 4, 1)]}, 0)
    task.commit(r2)
    assert [(r["user"], r["total"], r["n"]) for r in r2.rows] == [("u", 12, 3)]
    assert [r["id"] for r, _why, _stage in r2.ctx.errors] == [3]


def _wm_query() -> Query:
    return (
        read("events").with_watermark("ts", "10 minutes").group_by("user").count().query("update")
    )


def test_event_time_guard_dead_letters_far_future_rows_and_keeps_the_watermark(
    store: Store,
) -> None:
    task = _wm_query().task(store)
    now = T0 + 60 * MIN
    ten_years = 10 * 365 * 24 * 60 * MIN
    rows = [_ev(0, 1, 1), _ev(1, 2 * 24 * 60 + 59, 1), _ev(2, 3, 1)]
    rows[1]["ts"] = iso_utc(now + ten_years)
    result = task.run_batch({"events": rows}, now, now + 24 * 60 * MIN)
    task.commit(result)
    assert [r["id"] for r, _why, _stage in result.ctx.errors] == [1]
    reason = result.ctx.errors[0][1]
    assert "ahead of processing time" in reason and "max_event_time_skew" in reason
    assert result.error_origins == [("events", 1)]
    assert task.watermark == T0 + 3 * MIN - 10 * MIN
    assert result.rows == [{"user": "u", "count": 2}]
    # Without the guard the same row moves the watermark ten years ahead, by that much.
    off = _wm_query().task(MemoryStore())
    r = off.run_batch({"events": [dict(_ev(5, 1, 1)), {**_ev(6, 1, 1), "ts": rows[1]["ts"]}]}, now)
    off.commit(r)
    assert off.watermark == now + ten_years - 10 * MIN


def test_dead_letter_headers_and_truncation() -> None:
    source = SourcePosition("t", 1, 42, T0)
    h = headers("ValueError: " + "x" * 5000, "user_function", source)
    d = dict(h)
    assert d["error.stage"] == b"user_function"
    assert (d["source.topic"], d["source.partition"], d["source.offset"]) == (b"t", b"1", b"42")
    assert d["source.timestamp"] == iso_utc(T0).encode()
    assert len(d["error"]) < 2100
    batch = dict(headers("boom", "batch", SourcePosition("t", 0, offsets=(5, 9))))
    assert batch["source.offsets"] == b"5-9" and "source.offset" not in batch
    # Fits: unchanged. Too large: cut to fit, with the original size.
    assert fit(b"k", b"v" * 100, h, 1_000_000) == (b"k", b"v" * 100, h)
    value = bytes(range(256)) * 8192  # 2 MiB
    key, cut, h2 = fit(b"key", value, h, 1_048_588)
    assert key == b"key" and value.startswith(cut) and len(cut) > 1_000_000
    assert record_size(key, cut, h2) <= 1_048_588
    assert dict(h2)["error.truncated"] == b"true"
    assert dict(h2)["error.original.size"] == str(len(value) + 3).encode()


def _lines(rows: list[Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


class _MergeFails:
    def init(self) -> int:
        return 0

    def add(self, acc: int, value: Any) -> int:
        return acc + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def result(self, acc: int) -> int:
        if acc >= 4:
            raise RuntimeError("result cannot be computed")
        return acc


def test_replay_dead_letters_rows_with_line_and_stage_and_applies_the_batch_policy() -> None:
    rows = [_ev(i, i, i) for i in range(6)]
    rows[1]["v"] = "bad"
    q = (
        read("events")
        .with_watermark("ts", "10 minutes")
        .group_by("user")
        .agg(udaf(_RaisesOn("bad"), "v").alias("total"))
        .query("update")
    )
    out, dead = io.BytesIO(), io.BytesIO()
    stats = replay(q, io.BytesIO(_lines(rows)), out, batch_size=3, dead=dead)
    assert stats.dead_letters == 1
    letter = orjson.loads(dead.getvalue())
    assert (letter["line"], letter["stage"]) == (2, "user_function")
    # A batch the query cannot run: one readable error, or its lines as dead letters.
    failing = read("events").group_by("user").agg(udaf(_MergeFails()).alias("n")).query("update")
    with pytest.raises(ReplayBatchError, match="the batch from line 4 failed: RuntimeError"):
        replay(failing, io.BytesIO(_lines(rows)), io.BytesIO(), batch_size=3)
    out, dead = io.BytesIO(), io.BytesIO()
    stats = replay(
        failing,
        io.BytesIO(_lines(rows)),
        out,
        batch_size=3,
        dead=dead,
        on_batch_failure="dead_letter",
    )
    letters = [orjson.loads(x) for x in dead.getvalue().splitlines()]
    assert [(x["line"], x["stage"]) for x in letters] == [(4, "batch"), (5, "batch"), (6, "batch")]
    assert [orjson.loads(x)["n"] for x in out.getvalue().splitlines()] == [3]


def test_replay_cli_bad_batch_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines([{"value": "a b"}, "x", {"value": None}]))
    proc = subprocess.run(
        [sys.executable, "-m", "weir.service.cli", "replay", "word_count", "--input", str(src)]
        + ["--output", str(tmp_path / "out.jsonl"), "--max-event-time-skew", "1 day"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_port_in_time_wait_is_kept() -> None:
    """After a crash the broker's port has connections in TIME_WAIT; `up` keeps the port."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end of the connection is in TIME_WAIT
    client.close()
    server.close()
    time.sleep(0.2)
    assert free_port(port) == port
    # A port another process listens on is not taken.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert free_port(taken) != taken


def test_course_pipelines_guard_event_time_in_replay(tmp_path: Path) -> None:
    from weir.service.replay import replay_files

    rows = [
        {"event_id": i, "user_id": "u", "action": "click", "amount": 1, "event_time": iso_utc(t)}
        for i, t in enumerate([T0, T0 + MIN, 4_102_444_800_000, T0 + 2 * MIN])  # 2100-01-01
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines(rows))
    out = tmp_path / "out.jsonl"
    stats = replay_files("tumbling_window", src, out, batch_size=10, package="weir.agents")
    dead = [
        orjson.loads(x)
        for x in (tmp_path / "out.jsonl.dead-letters.jsonl").read_bytes().splitlines()
    ]
    assert stats.dead_letters == 1 and (dead[0]["line"], dead[0]["stage"]) == (3, "event_time")
    assert [orjson.loads(x)["event_count"] for x in out.read_bytes().splitlines()] == [3]
    off = replay_files(
        "tumbling_window", src, out, batch_size=10, max_event_time_skew_ms=-1, package="weir.agents"
    )
    assert off.dead_letters == 0 and off.output_rows == 2


def test_kraft_cluster_ids_never_start_with_a_dash() -> None:
    """One id in 64 used to start with "-", and the storage tool took it for an option."""
    from weir.service.local.kafka import _cluster_id

    ids = [_cluster_id() for _ in range(3000)]
    assert all(len(c) == 22 and not c.startswith("-") for c in ids)
