"""`Stream.with_column`: Spark's withColumn, and with `timestamp=True` its to_timestamp (a
time column held as epoch ms, rendered as ISO-8601 at the edges)."""

from __future__ import annotations

import io

import orjson

from weir.service.replay import replay
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import read
from weir.tables.timeutil import to_millis


def test_a_column_is_added_or_replaced_on_a_new_row() -> None:
    q = (
        read("events")
        .with_column("action_upper", lambda r: r["action"].upper())
        .with_column("amount", lambda r: r["amount"] * 2)
        .query()
    )
    task = q.task(MemoryStore())
    given = {"action": "view", "amount": 1.5}
    result = task.run_batch({"events": [given]}, 0)
    assert result.rows == [{"action": "view", "amount": 3.0, "action_upper": "VIEW"}]
    assert given == {"action": "view", "amount": 1.5}


def test_a_timestamp_column_is_parsed_null_kept_and_a_bad_value_dead_lettered() -> None:
    q = read("events").with_column("event_time", lambda r: r["ts"], timestamp=True).query()
    assert "event_time" in q.timestamp_columns
    task = q.task(MemoryStore())
    bad = {"ts": "soon"}
    result = task.run_batch({"events": [{"ts": "2024-05-01T10:00:00+02:00"}, {"ts": None}, bad]}, 0)
    assert result.rows == [
        {"ts": "2024-05-01T10:00:00+02:00", "event_time": to_millis("2024-05-01T08:00:00Z")},
        {"ts": None, "event_time": None},
    ]
    [(row, reason, stage)] = result.ctx.errors
    assert row == bad and stage == "user_function"
    assert reason == "with_column(event_time) failed: ValueError: not an ISO-8601 timestamp: 'soon'"


def test_the_time_is_written_as_iso_text_and_a_replaced_time_column_is_not() -> None:
    parsed = read("events").with_column("event_time", lambda r: r["ts"], timestamp=True)
    in_seconds = parsed.with_column("event_time", lambda r: r["event_time"] // 1000)
    assert "event_time" not in in_seconds.query().timestamp_columns
    line = b'{"ts": "2024-05-01T10:00:00.250+00:00"}\n'
    for stream, written in ((parsed, "2024-05-01T10:00:00.250Z"), (in_seconds, 1714557600)):
        out = io.BytesIO()
        replay(stream.query(), io.BytesIO(line), out, batch_size=10)
        assert orjson.loads(out.getvalue())["event_time"] == written
