"""Input schemas: typed fields as the course declares a StructType, with misfits refused
(field and reason) or, in permissive mode, made null as Spark's from_json does; and the same
in replay, where a misfit goes to the dead letters and the good rows run typed."""

from __future__ import annotations

import io

import orjson
import pytest

from weir.service.replay import replay
from weir.tables.ops.functions import count
from weir.tables.ops.functions import sum as spark_sum
from weir.tables.schema import Schema, SchemaError
from weir.tables.stream import read
from weir.tables.window import window

FIELDS = {
    "event_id": "string",
    "amount": "double",
    "n": "integer",
    "ok": "boolean",
    "event_time": "timestamp",
    "tags": ["string"],
    "user": {"name": "string", "age": "integer"},
}


def test_conform_types_nested_fields_and_lists() -> None:
    s = Schema(FIELDS)
    row = {
        "event_id": "e1",
        "amount": 3,  # an integer is a fine double
        "n": 2,
        "ok": True,
        "event_time": "2024-05-01T00:00:00Z",
        "tags": ["a", None],
        "user": {"name": "x", "age": 40, "extra": 1},
        "unknown": "left out",
    }
    assert s.conform(row) == {
        "event_id": "e1",
        "amount": 3.0,
        "n": 2,
        "ok": True,
        "event_time": 1_714_521_600_000,
        "tags": ["a", None],
        "user": {"name": "x", "age": 40},
    }
    assert s.conform({}) == dict.fromkeys(FIELDS)  # missing fields are null
    assert s.timestamp_columns() == {"event_time"}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"amount": "12.5"}, "amount: expected double, got string '12.5'"),
        ({"n": 1.5}, "n: expected integer, got double 1.5"),
        ({"ok": 1}, "ok: expected boolean, got integer 1"),
        ({"event_time": "yesterday"}, "event_time: "),
        ({"tags": "a"}, "tags: expected a list, got string"),
        ({"user": {"age": 2**31}}, "user.age: 2147483648 is out of the integer range"),
        ({"user": {"age": "old"}}, "user.age: expected integer, got string 'old'"),
        ({"user": []}, "user: expected an object, got list"),
    ],
)
def test_a_misfit_names_its_field_and_why(row: dict[str, object], reason: str) -> None:
    with pytest.raises(SchemaError) as caught:
        Schema(FIELDS).conform(row)
    assert str(caught.value).startswith(reason)


def test_permissive_mode_makes_misfits_null_as_spark_does() -> None:
    s = Schema(FIELDS, mode="permissive")
    got = s.conform({"event_id": 7, "amount": "12.5", "tags": ["a", 3], "user": {"age": "x"}})
    assert got["event_id"] == "7" and got["amount"] is None  # a string field takes JSON text
    assert got["tags"] == ["a", "3"] and got["user"] == {"name": None, "age": None}


def test_schema_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="amount: unknown type 'money'"):
        Schema({"amount": "money"})
    with pytest.raises(ValueError, match=r"tags: a list type is \[element type\]"):
        Schema({"tags": ["string", "integer"]})
    with pytest.raises(ValueError, match="schema mode must be"):
        Schema({"a": "string"}, mode="lenient")  # type: ignore[arg-type]


def test_replay_with_a_schema_dead_letters_misfits_and_sums_typed_values() -> None:
    """The course's warning case: "12.5" as text used to be left out of the sum silently."""
    q = (
        read("events", timestamp_columns={"event_time"})
        .with_watermark("event_time", "1 minute")
        .group_by(window("event_time", "10 minutes"))
        .agg(count().alias("n"), spark_sum("amount").alias("total"))
        .query("update")
    )
    lines = [
        {"event_id": "a", "amount": 10, "event_time": "2024-05-01T00:01:00Z"},
        {"event_id": "b", "amount": "12.5", "event_time": "2024-05-01T00:02:00Z"},
        {"event_id": "c", "amount": 2.5, "event_time": "2024-05-01T00:03:00Z"},
    ]
    src = io.BytesIO(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    out, dead = io.BytesIO(), io.BytesIO()
    schemas = {
        "events": Schema({"event_id": "string", "amount": "double", "event_time": "timestamp"})
    }
    stats = replay(q, src, out, batch_size=10, dead=dead, schemas=schemas)
    assert stats.dead_letters == 1
    rows = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert rows == [
        {
            "batch_id": 0,
            "window_start": "2024-05-01T00:00:00Z",
            "window_end": "2024-05-01T00:10:00Z",
            "n": 2,
            "total": 12.5,
        }
    ]
    (letter,) = [orjson.loads(x) for x in dead.getvalue().splitlines()]
    assert letter["line"] == 2 and letter["stage"] == "schema"
    assert "amount: expected double, got string '12.5'" in letter["error"]
